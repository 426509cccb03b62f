"""Benchmarks of scalar_autograd against its peers; ``python -m benchmarks`` runs the suite.

Each script here also runs on its own (``python benchmarks/bench_jit.py``); see
:mod:`benchmarks.suite` for the suite and ``benchmarks/RESULTS.md`` for its last figures.
"""
