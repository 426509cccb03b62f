"""The opt-in on-disk kernel cache: verified files of object code and VM tapes.

Off by default. Turn it on with the environment variable ``SA_CACHE_DIR`` or with
:func:`set_cache_dir` (which wins over the variable; ``set_cache_dir(None)`` turns the
cache off whatever the variable says). Then the native kernels of every compiled
function (``"llvm"``: object code; ``"vm"``: the tape arrays), and the tape VM's own
object code, are stored there, so another process compiling or unpickling the same
program skips differentiation, code generation and LLVM altogether. The Python and
interpreter backends are not cached.

What is stored is never a Python pickle: a file is a header (magic, format version,
the full key, the payload's length and SHA-256) followed by the payload, named raw
little-endian arrays or object code. The key holds a digest of the library's own source
(so any change to the package, its version included, starts afresh), the llvmlite and
LLVM versions, the target triple, the host CPU's name and features, and for a kernel
the backend, its settings, the kernel kind and the program's SHA-256
(:meth:`~scalar_autograd.ir.program.Program.digest`). A file that is truncated,
corrupt or made for another key is ignored, compiled again and overwritten, never
executed. Files are written to a temporary name and renamed into place (atomic), so
threads and processes may write the same key at once. A directory that cannot be
written gives one :class:`DiskCacheWarning` per process and is then only read.

The cache holds code that will run: point it at a directory only you can write to.
Nothing is ever deleted; remove the directory to reclaim the space.

Example:
    >>> import tempfile, scalar_autograd as sa
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sa.set_cache_dir(tmp)
    ...     x = sa.Value(1.0)
    ...     f = sa.compile(sa.sin(x) * x, [x])
    ...     f.value_and_grad([0.0])[1].tolist()
    ...     sa.get_cache_dir() is not None
    ...     sa.set_cache_dir(None)
    [0.0]
    True
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalar_autograd.backends.base import KernelArtifact
from scalar_autograd.native.engine import native_engine

ENV_VAR = "SA_CACHE_DIR"
"""The environment variable naming the cache directory (empty or unset: no cache)."""

FORMAT = 1
"""Version of the file layout (part of every key, and checked in every header)."""

_MAGIC = b"SAKCACHE"
_HEADER = struct.Struct("<8sIIQ32s")  # magic, format, key length, payload length, sha256
_SUFFIX = ".sak"
_ALIGN = 16


class DiskCacheWarning(RuntimeWarning):
    """The cache directory could not be written: kernels are not saved there."""


# ----------------------------------------------------------------------------- settings

_UNSET = object()
_configured: object = _UNSET  # a Path, None (off), or _UNSET (follow SA_CACHE_DIR)
_settings_lock = threading.Lock()
_caches: dict[Path, DiskCache] = {}


def set_cache_dir(path: str | os.PathLike[str] | None) -> None:
    """Use the directory ``path`` for the on-disk kernel cache; ``None`` turns it off.

    This wins over the environment variable ``SA_CACHE_DIR``. The directory is created
    when the first kernel is saved; a relative path is taken relative to the current
    directory now. See the module docstring for what is stored and how it is checked.

    Args:
        path: a directory path (``str`` or ``os.PathLike``), or ``None``.

    Raises:
        TypeError: ``path`` is neither a path nor None.
        ValueError: ``path`` is the empty string.

    Example:
        >>> import scalar_autograd as sa
        >>> sa.set_cache_dir(None)
        >>> sa.get_cache_dir() is None
        True
    """
    global _configured
    if path is None:
        chosen: Path | None = None
    else:
        if isinstance(path, bytes) or not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str, an os.PathLike or None; got "
                            f"{type(path).__name__} {path!r:.80}")
        text = os.fspath(path)
        if not isinstance(text, str):
            raise TypeError(f"path must be a str path; got the bytes path {text!r:.80}")
        if not text:
            raise ValueError("path must name a directory (or be None to turn the cache "
                             "off); got ''")
        chosen = _absolute(text)
    with _settings_lock:
        _configured = chosen


def get_cache_dir() -> Path | None:
    """The cache directory in use: :func:`set_cache_dir`'s, else ``SA_CACHE_DIR``'s.

    ``None`` when the cache is off (the default).

    Example:
        >>> import scalar_autograd as sa
        >>> sa.set_cache_dir("/tmp/sa-kernels")
        >>> str(sa.get_cache_dir())
        '/tmp/sa-kernels'
        >>> sa.set_cache_dir(None)
    """
    configured = _configured
    if configured is not _UNSET:
        return configured  # type: ignore[return-value]
    text = os.environ.get(ENV_VAR, "")
    return _absolute(text) if text else None


def _absolute(text: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(text)))


def active_cache() -> DiskCache | None:
    """The :class:`DiskCache` of :func:`get_cache_dir` (one per directory), or None."""
    directory = get_cache_dir()
    if directory is None:
        return None
    cache = _caches.get(directory)
    if cache is None:
        with _settings_lock:
            cache = _caches.setdefault(directory, DiskCache(directory))
    return cache


# ----------------------------------------------------------------------------- keys

_fingerprint: str | None = None


_engines: dict[str, Any] = {}
_engines_lock = threading.Lock()


def process_engine(name: str, source: Callable[[], str], level: int) -> Any:
    """The engine of a module compiled once per process (a solver driver): ``source()``
    compiled at ``level``, its object code from the disk cache when one is set.

    ``name`` (a constant of the caller) keys the process-wide table; the cache is
    keyed by the text itself, so a changed driver never loads stale code.
    """
    engine = _engines.get(name)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(name)
            if engine is None:
                engine = _engines[name] = native_engine(source(), level,
                                                        cache=active_cache())
    return engine


def library_fingerprint() -> str:
    """SHA-256 of the package's Python source (``__version__`` included), once a process.

    Kernels depend on the op table, the passes, the emitter and the backends; hashing
    every source file is cheaper than being right about which ones (about 2 ms).
    """
    global _fingerprint
    if _fingerprint is None:
        root = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        files = sorted(root.rglob("*.py"))
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
        if not files:  # pragma: no cover - only for installs without source files
            from importlib.metadata import version

            digest.update(f"scalar-autograd {version('scalar-autograd')}".encode())
        _fingerprint = digest.hexdigest()
    return _fingerprint


# ----------------------------------------------------------------------------- files

class DiskCache:
    """Verified files under one directory (see the module docstring).

    A key is any text; the file is named by the SHA-256 of the full key (the key with
    the format version and :func:`library_fingerprint` in front), which its header
    repeats and :meth:`load` compares.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     cache = DiskCache(Path(tmp))
        ...     cache.save("greeting", b"hello")
        ...     cache.load("greeting"), cache.load("other")
        (b'hello', None)
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writable = True
        self._lock = threading.Lock()

    def _full_key(self, key: str) -> bytes:
        return f"scalar_autograd disk cache {FORMAT}\nlibrary={library_fingerprint()}\n" \
               f"{key}".encode()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``."""
        name = hashlib.sha256(self._full_key(key)).hexdigest()
        return self.directory / f"{name}{_SUFFIX}"

    def load(self, key: str) -> bytes | None:
        """The payload saved under ``key``, or ``None`` when absent or not intact."""
        full_key = self._full_key(key)
        path = self.directory / f"{hashlib.sha256(full_key).hexdigest()}{_SUFFIX}"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        return _verified_payload(data, full_key)

    def save(self, key: str, payload: bytes) -> None:
        """Store ``payload`` under ``key`` atomically (temporary file, then rename).

        The first failure to write warns (:class:`DiskCacheWarning`) and stops further
        writes to this directory in this process.
        """
        if not self.writable:
            return
        full_key = self._full_key(key)
        path = self.directory / f"{hashlib.sha256(full_key).hexdigest()}{_SUFFIX}"
        header = _HEADER.pack(_MAGIC, FORMAT, len(full_key), len(payload),
                              hashlib.sha256(payload).digest())
        head = header + full_key
        head += b"\0" * (-len(head) % _ALIGN)
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp",
                                       dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                f.write(payload)
            try:
                os.replace(tmp, path)
            except PermissionError:
                if not path.exists():  # (Windows refuses to replace a file being read:
                    raise              # then another writer has just stored this key)
            else:
                tmp = None
        except OSError as exc:
            self._give_up(exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _give_up(self, exc: OSError) -> None:
        with self._lock:
            if not self.writable:
                return
            self.writable = False
        warnings.warn(DiskCacheWarning(
            f"scalar_autograd cannot write its kernel cache directory {self.directory} "
            f"({type(exc).__name__}: {exc}); kernels are compiled as usual but not saved "
            f"there by this process (set SA_CACHE_DIR or sa.set_cache_dir to a writable "
            f"directory, or sa.set_cache_dir(None) to turn the cache off)"), stacklevel=2)


def _verified_payload(data: bytes, full_key: bytes) -> bytes | None:
    """The payload of a cache file ``data`` if its header, key and SHA-256 all check."""
    if len(data) < _HEADER.size:
        return None
    magic, version, key_len, payload_len, digest = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != FORMAT or key_len != len(full_key):
        return None
    key_end = _HEADER.size + key_len
    if data[_HEADER.size:key_end] != full_key:
        return None
    start = key_end + (-key_end % _ALIGN)
    if len(data) - start != payload_len:
        return None
    payload = data[start:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload


# ----------------------------------------------------------------------------- artifacts

_ART_MAGIC = b"SAKA"
_ART_HEAD = struct.Struct("<4s16sII")  # magic, backend, number of sizes, of blobs
_ART_SIZE = struct.Struct("<32sq")     # name, value
_ART_BLOB = struct.Struct("<32sQQ")    # name, offset, length


def pack_artifact(artifact: KernelArtifact) -> bytes:
    """A kernel artifact as bytes: a small index, then each blob 16-byte aligned.

    Example:
        >>> a = KernelArtifact("vm", {"n_regs": 3}, {"code": b"abc"})
        >>> unpack_artifact(pack_artifact(a)) == a
        True
    """
    sizes, blobs = dict(artifact.sizes), dict(artifact.blobs)
    index_len = _ART_HEAD.size + _ART_SIZE.size * len(sizes) + _ART_BLOB.size * len(blobs)
    parts = [_ART_HEAD.pack(_ART_MAGIC, _name(artifact.backend, 16), len(sizes),
                            len(blobs))]
    parts += [_ART_SIZE.pack(_name(k, 32), int(v)) for k, v in sizes.items()]
    offset = index_len + (-index_len % _ALIGN)
    data: list[bytes] = []
    for k, blob in blobs.items():
        parts.append(_ART_BLOB.pack(_name(k, 32), offset, len(blob)))
        pad = -len(blob) % _ALIGN
        data += [blob, b"\0" * pad]
        offset += len(blob) + pad
    head = b"".join(parts)
    return b"".join([head, b"\0" * (-len(head) % _ALIGN), *data])


def unpack_artifact(payload: bytes) -> KernelArtifact:
    """The artifact :func:`pack_artifact` wrote.

    Raises:
        ValueError: ``payload`` is not such a record (or is cut short).
    """
    try:
        magic, backend, n_sizes, n_blobs = _ART_HEAD.unpack_from(payload)
        if magic != _ART_MAGIC:
            raise ValueError(f"magic {magic!r}")
        pos = _ART_HEAD.size
        sizes: dict[str, int] = {}
        for _ in range(n_sizes):
            name, value = _ART_SIZE.unpack_from(payload, pos)
            sizes[_text(name)] = value
            pos += _ART_SIZE.size
        blobs: dict[str, bytes] = {}
        for _ in range(n_blobs):
            name, offset, length = _ART_BLOB.unpack_from(payload, pos)
            if offset + length > len(payload):
                raise ValueError("a blob past the end")
            blobs[_text(name)] = payload[offset:offset + length]
            pos += _ART_BLOB.size
    except (struct.error, ValueError) as exc:
        raise ValueError(f"payload is not a kernel artifact ({exc})") from None
    return KernelArtifact(_text(backend), sizes, blobs)


def _name(text: str, width: int) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"artifact names have at most {width} characters; got {text!r}")
    return raw


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii")
