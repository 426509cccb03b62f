"""``sa.export_c``: compiled functions written out as one C99 source file and its header.

Each function becomes the four C functions of
:func:`~scalar_autograd.backends.c_source.generate_c` (``NAME``, ``NAME_values``,
``NAME_value_and_grad``, ``NAME_jacobian``); the ``.c`` file holds them all, with the
static helpers once, and includes the header, which declares them (``extern "C"`` for
C++) and defines their sizes (``NAME_N_PARAMS``, ``NAME_N_INPUTS``, ``NAME_N_OUTPUTS``).
Both files are written atomically: on any error neither is touched.

Example:
    >>> import pathlib, tempfile, scalar_autograd as sa
    >>> x, y = sa.Value(1.0), sa.Value(2.0)
    >>> f = sa.compile((1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2, [x, y])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     c_file, h_file = sa.export_c({"rosenbrock": f}, pathlib.Path(d) / "model.c")
    ...     header = h_file.read_text()
    ...     includes = '#include "model.h"' in c_file.read_text()
    >>> h_file.name, includes
    ('model.h', True)
    >>> for line in header.splitlines():
    ...     if line.startswith(("#define rosenbrock", "double", "void")):
    ...         print(line)
    #define rosenbrock_N_PARAMS 2
    #define rosenbrock_N_INPUTS 0
    #define rosenbrock_N_OUTPUTS 1
    double rosenbrock(const double *x);
    void rosenbrock_values(const double *x, double *values);
    double rosenbrock_value_and_grad(const double *x, double *grad);
    void rosenbrock_jacobian(const double *x, double *values, double *jac);
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from scalar_autograd.backends.c_source import (
    CONTRACT,
    CFunction,
    check_c_name,
    file_head,
    translate,
)
from scalar_autograd.runtime.compiled import CompiledFunction

_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.c\Z")
"""What the ``.c`` file may be called: its header's name goes into an ``#include``."""


def _check_path(path: object) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike naming the .c file; got "
                        f"{type(path).__name__} {path!r:.80}")
    target = Path(path)
    if not _FILE_NAME.match(target.name):
        raise ValueError(f"path must name a .c file whose name has only letters, digits, "
                         f"'_', '.' and '-' (it is written into an #include); got "
                         f"{str(path)!r:.200}")
    if not target.parent.is_dir():
        raise ValueError(f"path must be in an existing directory; got {str(path)!r:.200} "
                         f"(no directory {str(target.parent)!r:.200})")
    return target


def _translate_all(functions: object) -> list[CFunction]:
    if not isinstance(functions, Mapping):
        raise TypeError(f"functions must be a mapping of C names to CompiledFunctions; got "
                        f"{type(functions).__name__}")
    if not functions:
        raise ValueError("functions must hold at least one function; got an empty mapping")
    translated: list[CFunction] = []
    owner: dict[str, str] = {}    # every public C identifier -> the name that defines it
    for name, function in functions.items():
        check_c_name(name, f"functions key {name!r:.80}")
        if not isinstance(function, CompiledFunction):
            raise TypeError(f"functions[{name!r}] must be a CompiledFunction (from "
                            f"sa.compile); got {type(function).__name__}")
        program = function.program
        if program.n_values != function.n_outputs:
            raise ValueError(f"functions[{name!r}] carries {program.n_values - function.n_outputs}"
                             f" guard output(s) of sa.jit, which C code would not check; "
                             f"export a function from sa.compile")
        c_function = translate(program, name)
        for identifier in c_function.identifiers():
            if identifier in owner:
                raise ValueError(f"functions keys {owner[identifier]!r} and {name!r} both "
                                 f"define the C name {identifier!r}; rename one")
            owner[identifier] = name
        translated.append(c_function)
    return translated


def _header(translated: list[CFunction]) -> str:
    blocks = "\n".join(f.summary() + f.macros() + "".join(s + ";\n" for s in f.signatures())
                       for f in translated)
    # the include guard names the content (the file's name is the user's)
    guard = "SCALAR_AUTOGRAD_" + hashlib.sha256(blocks.encode()).hexdigest()[:16].upper() \
        + "_H"
    return (f"{CONTRACT}\n#ifndef {guard}\n#define {guard}\n\n#ifdef __cplusplus\n"
            f'extern "C" {{\n#endif\n\n{blocks}\n#ifdef __cplusplus\n}}\n#endif\n\n'
            f"#endif /* {guard} */\n")


def _write_atomically(texts: list[tuple[Path, str]]) -> None:
    """Write every file through a temporary file in its directory, then rename them all
    into place (``os.replace``); on an error while writing, no target is touched."""
    temporaries: list[tuple[str, Path]] = []
    try:
        for target, text in texts:
            fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                             dir=target.parent)
            temporaries.append((temporary, target))
            with os.fdopen(fd, "w", encoding="ascii", newline="\n") as handle:
                handle.write(text)
            # mkstemp makes the file private (0o600): give it the target's mode, or the
            # usual mode of a source file
            mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
            os.chmod(temporary, mode)
        for temporary, target in temporaries:
            os.replace(temporary, target)
    finally:
        for temporary, _ in temporaries:
            if os.path.exists(temporary):
                os.unlink(temporary)


def export_c(functions: Mapping[str, CompiledFunction], path: str | os.PathLike[str]
             ) -> tuple[Path, Path]:
    """Write ``functions`` as C99 code: ``path`` (the ``.c`` file) and its header.

    For each ``name: f`` the file defines ``double name(const double *x)`` (output 0),
    ``void name_values(x, values)``, ``double name_value_and_grad(x, grad)`` and
    ``void name_jacobian(x, values, jac)`` (row-major, ``n_outputs x n_params``), each
    with ``const double *inputs`` after ``x`` when ``f`` has runtime inputs; the header
    (the same path with suffix ``.h``) declares them and defines ``name_N_PARAMS``,
    ``name_N_INPUTS`` and ``name_N_OUTPUTS``. The numerics are those of ``f`` on the
    llvm backend: compile with ``-ffp-contract=off`` and never with ``-ffast-math``
    (see :func:`~scalar_autograd.backends.c_source.generate_c`).

    Args:
        functions: C name prefix -> compiled function (from ``sa.compile``); each name
            a C identifier (see :func:`~scalar_autograd.backends.c_source.check_c_name`).
        path: the ``.c`` file to write (its directory must exist; its name is letters,
            digits, ``_``, ``.`` and ``-``, since the header's name is ``#include``\\ d).

    Returns:
        The paths of the ``.c`` file and of the header.

    Raises:
        TypeError: ``functions`` is not a mapping of str to CompiledFunction, or
            ``path`` is not a path.
        ValueError: an unacceptable name, two names defining the same C name, an
            empty mapping, a function of ``sa.jit`` with guards, or a bad path.
        OSError: the files could not be written (then neither was changed).

    Example:
        >>> import pathlib, tempfile, scalar_autograd as sa
        >>> a, t = sa.Value(0.0), sa.Value(0.0)
        >>> loss = sa.compile((a - t) ** 2, [a], inputs=[t])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     c_file, _ = sa.export_c({"loss": loss}, pathlib.Path(d) / "loss.c")
        ...     source = c_file.read_text()
        >>> "double loss(const double *x, const double *inputs)" in source
        True
        >>> sa.export_c({"1st": loss}, "loss.c")
        Traceback (most recent call last):
        ...
        ValueError: functions key '1st' must be a C identifier: a letter, then letters, \
digits and single underscores ([A-Za-z][A-Za-z0-9_]*, no '__'), at most 64 characters; \
got '1st'
    """
    translated = _translate_all(functions)
    c_path = _check_path(path)
    h_path = c_path.with_suffix(".h")
    helpers = set().union(*(f.helpers for f in translated))
    c_text = file_head(helpers, includes=[h_path.name]) + "".join(
        "\n" + f.definitions for f in translated)
    _write_atomically([(h_path, _header(translated)), (c_path, c_text)])
    return c_path, h_path
