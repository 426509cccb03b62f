"""The native layer: the one LLVM-text emitter, engine management, and the ABI.

* :mod:`.emitter`: LLVM IR text for ops (:func:`~.emitter.instruction`), batch loops,
  accumulator loops and element-wise kernels written as IR programs.
* :mod:`.engine`: llvmlite set-up and :func:`~.engine.native_engine` (text -> code).
* :mod:`.abi`: address blocks, float64 buffer checks, bound zero-argument calls.

It sits between ``ir`` (below) and ``backends`` (above); nothing here knows about
backends, the runtime, optimisers or solvers.
"""
