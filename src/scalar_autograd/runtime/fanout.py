"""Fan a batch of independent problems out: threads here, or any executor elsewhere.

A batched solve (:func:`scalar_autograd.batch_curve_fit`,
:func:`scalar_autograd.batch_least_squares`, :func:`scalar_autograd.batch_minimize`)
is a :class:`Job`: ``count`` problems, solved in *chunks* ``[start, stop)``.

* With threads (``executor=None``), each chunk is one native call that writes its
  results straight into the job's output arrays with the GIL released, so ``workers``
  threads keep that many cores busy. ``workers=1`` runs the chunks on the calling
  thread.
* With an ``executor`` (any :class:`concurrent.futures.Executor`: a
  ``ProcessPoolExecutor``, or a Dask ``distributed.Client.get_executor()``), each chunk
  is a picklable task (:meth:`Job.task`: the model travels as its program, never as
  machine code) whose result the calling process merges (:meth:`Job.merge`).

Chunks are independent and each problem is solved by the same native code wherever it
runs, so the results do not depend on how the batch was split.

Progress: ``progress=True`` shows a bar on stderr (redrawn on a terminal, plain lines
every 10% otherwise), ``False`` nothing, ``None`` (the default) shows it once the batch
has run for :data:`PROGRESS_AFTER` seconds. A ``KeyboardInterrupt`` (Ctrl-C) stops the
fan-out: chunks not started are cancelled, chunks running finish, and :func:`fan_out`
returns ``True`` (interrupted); the job's outputs keep their "not run" marks for the
problems no chunk reached. Each problem is stored whole or not at all: worker threads
are never interrupted (only the calling thread sees Ctrl-C), :meth:`Job.solve` on the
calling thread leaves a problem it was stopped in untouched, and a :meth:`Job.merge`
the interrupt hit is redone.

Example:
    >>> import numpy as np
    >>> class Squares:
    ...     count = 10
    ...     def __init__(self): self.out = np.zeros(10)
    ...     def solve(self, start, stop): self.out[start:stop] = np.arange(start, stop) ** 2
    ...     def task(self, start, stop): return (np.arange, (start, stop))
    ...     def merge(self, start, stop, result): self.out[start:stop] = result ** 2
    >>> job = Squares()
    >>> fan_out(job, workers=2, chunk_size=3, progress=False)
    False
    >>> job.out.tolist()[:5]
    [0.0, 1.0, 4.0, 9.0, 16.0]
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from scalar_autograd.progress import ProgressBar
from scalar_autograd.validation import check_bool, check_optional, check_positive_int

PROGRESS_AFTER = 2.0
"""Seconds a batch runs before ``progress=None`` shows its bar."""
MAX_THREAD_CHUNK = 2048
"""Most problems in one chunk on threads (a chunk is the unit of progress and of
interruption)."""


class Job(Protocol):
    """A batch of ``count`` independent problems, solved chunk by chunk."""

    count: int

    def solve(self, start: int, stop: int) -> None:
        """Solve problems ``start .. stop-1`` here, into the outputs; a
        KeyboardInterrupt may stop it between problems, never leaving one half
        stored."""

    def task(self, start: int, stop: int) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """A picklable ``(function, args)`` solving the chunk elsewhere."""

    def merge(self, start: int, stop: int, result: Any) -> None:
        """Store what :meth:`task`'s function returned."""


def default_workers() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_workers(workers: Any) -> int:
    """``workers`` (None: :func:`default_workers`) as a positive int, or raise."""
    if workers is None:
        return default_workers()
    return check_positive_int(workers, "workers")


def check_executor(executor: Any) -> Any:
    """``executor`` if it is None or has ``submit``; else a TypeError naming it."""
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must be a concurrent.futures.Executor (something with "
                        f"submit) or None; got {type(executor).__name__}")
    return executor


def _chunks(count: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, count)) for s in range(0, count, size)]


class _Progress:
    """The bar of one fan-out: started at once, never, or after PROGRESS_AFTER s."""

    def __init__(self, count: int, setting: bool | None, noun: str) -> None:
        self.count, self.setting, self.noun = count, setting, noun
        self.start = time.perf_counter()
        self.bar: ProgressBar | None = None
        self.done = 0
        self._decile = -1
        if setting:
            self._open()

    def _open(self) -> None:
        self.bar = ProgressBar(max(self.count, 1))
        self.bar.advance(self.done, self._label(force=True))

    def _label(self, force: bool = False) -> str | None:
        decile = 10 * self.done // max(self.count, 1)
        if self.bar is not None and not self.bar.tty and not force and decile == self._decile:
            return None
        self._decile = decile
        return f"{self.done:,} of {self.count:,} {self.noun}"

    def advance(self, units: int) -> None:
        self.done += units
        if self.bar is None and self.setting is None \
                and time.perf_counter() - self.start >= PROGRESS_AFTER:
            self._open()
            return
        if self.bar is not None:
            self.bar.advance(units, self._label())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fan_out(job: Job, *, workers: int | None = None, executor: Any = None,
            chunk_size: int | None = None, progress: bool | None = None,
            noun: str = "problems") -> bool:
    """Solve every problem of ``job``; returns whether a KeyboardInterrupt stopped it.

    Args:
        job: the batch (see :class:`Job`).
        workers: threads (None: every core); ignored with an ``executor``.
        executor: a ``concurrent.futures.Executor`` to send the chunks to, or None.
        chunk_size: problems per chunk (None: about 16 chunks per thread, at most
            :data:`MAX_THREAD_CHUNK`; with an executor, about 64 chunks in all).
        progress: ``True``, ``False`` or ``None`` (after :data:`PROGRESS_AFTER` s).
        noun: what the bar counts.

    Raises:
        TypeError, ValueError: for a bad ``workers``, ``executor``, ``chunk_size`` or
            ``progress`` (named, with what was received).
    """
    n_workers = check_workers(workers)
    executor = check_executor(executor)
    check_optional(check_positive_int)(chunk_size, "chunk_size")
    check_optional(check_bool)(progress, "progress")
    count = job.count
    if count == 0:
        return False
    if chunk_size is None:
        if executor is not None:
            chunk_size = max(1, -(-count // 64))
        else:
            chunk_size = max(1, min(MAX_THREAD_CHUNK, count // (16 * n_workers)))
    chunks = _chunks(count, chunk_size)
    bar = _Progress(count, progress, noun)
    try:
        if executor is not None:
            return _run_futures(job, chunks, bar, executor, remote=True)
        if n_workers == 1 or len(chunks) == 1:
            return _run_here(job, chunks, bar)
        with cf.ThreadPoolExecutor(max_workers=n_workers) as pool:
            return _run_futures(job, chunks, bar, pool, remote=False)
    finally:
        bar.close()


def _run_here(job: Job, chunks: list[tuple[int, int]], bar: _Progress) -> bool:
    try:
        for start, stop in chunks:
            job.solve(start, stop)
            bar.advance(stop - start)
    except KeyboardInterrupt:
        return True
    return False


def _run_futures(job: Job, chunks: list[tuple[int, int]], bar: _Progress, executor: Any,
                 remote: bool) -> bool:
    """Submit every chunk, then collect them as they finish (merging the results of
    remote ones). On a KeyboardInterrupt the chunks not started are cancelled and the
    ones running finish and are collected; on any other error the chunks not started
    are cancelled and the error propagates."""
    futures: dict[Any, tuple[int, int]] = {}
    pending: set[Any] = set()           # submitted and not collected yet

    def collect(future: Any) -> None:
        start, stop = futures[future]
        result = future.result()
        if remote:
            job.merge(start, stop, result)
        pending.discard(future)         # after the merge: an interrupted merge is redone
        bar.advance(stop - start)

    try:
        for start, stop in chunks:
            if remote:
                function, args = job.task(start, stop)
                future = executor.submit(function, *args)
            else:
                future = executor.submit(job.solve, start, stop)
            futures[future] = (start, stop)
            pending.add(future)
        while pending:
            done, _ = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            for future in done:
                collect(future)
    except KeyboardInterrupt:
        for future in pending:
            future.cancel()
        # the chunks already running finish (native code cannot be stopped midway) and
        # their results are kept, as are those of chunks done but not collected yet; a
        # chunk that failed (a worker process hit by the same Ctrl-C) stays not run
        cf.wait(pending)
        for future in list(pending):
            if not future.cancelled() and future.exception() is None:
                collect(future)
        return True
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    return False
