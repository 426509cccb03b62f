"""Security: generated code never contains a user string, and nothing is ever unpickled.

Labels and ``param_name``s are the only user strings a graph carries. Every hostile
string below would, if spliced into generated Python or LLVM IR, either break the code
or create a marker file; each contains the word ``PWNED`` so that any splice shows up in
the generated source. The graphs are compiled on every backend (interpreter, python,
llvm native code and the llvm tape VM), called through every hot path, and the sources
are searched. A source-tree scan checks that no module unpickles, unmarshals or
``eval``s anything, and that ``exec`` only runs the python backend's own generated code.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.backends import vm as vm_backend
from scalar_autograd.runtime.cache import KERNELS

SRC = Path(__file__).resolve().parent.parent / "src" / "scalar_autograd"


def hostile_strings(marker_file: Path) -> list[str]:
    touch = f'__import__("pathlib").Path({str(marker_file)!r}).write_text("PWNED")'
    return [
        f'x); {touch}  # PWNED',
        f'"""\n{touch}\n"""  # PWNED',
        f"'; {touch}; '  PWNED",
        f"\n{touch}\n# PWNED",
        "PWNED}\ndefine void @kernel() {\n  ret void\n}\n",
        "PWNED\"\n  %v0 = fadd double 1.0, 1.0\n; ",
        "%v0 PWNED @kernel ; declare double @system(ptr)",
        "{0} {x} %s %d PWNED \\x00 \\n",
        "PWNED\x00\x07\x1b[31m\u202e\ufeff",
        "PWNED" * 5000,
        "v0 PWNED",
        "x[0] PWNED",
    ]


def build(strings: list[str]) -> tuple[list[sa.Value], list[sa.Value], list[sa.Value]]:
    """Two params, one input, three outputs; every node labelled with a hostile string."""
    a = sa.Value(0.0, label=strings[0])
    b = sa.Value(0.0, label=strings[1])
    t = sa.Value(0.0, label=strings[2])
    a.param_name = strings[3]
    b.param_name = strings[4]
    t.param_name = strings[5]
    y1 = a * b + sa.sin(a) - t
    y2 = sa.where(a > b, sa.exp(a), sa.sqrt(b * b + 1.0))
    y3 = sa.sum([a, b, t, 2.5]) / (1.0 + t * t)
    nodes = sa.topological_order([y1, y2, y3])
    for i, node in enumerate(nodes):
        if node.op is not None:
            node.label = strings[i % len(strings)]
    return [a, b], [t], [y1, y2, y3]


def expected(a: float, b: float, t: float) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([a * b + np.sin(a) - t,
                       np.exp(a) if a > b else np.sqrt(b * b + 1.0),
                       (a + b + t + 2.5) / (1.0 + t * t)])
    jac = np.array([[b + np.cos(a), a],
                    [np.exp(a) if a > b else 0.0, 0.0 if a > b else b / np.sqrt(b * b + 1.0)],
                    [1.0 / (1.0 + t * t)] * 2])
    return values, jac


def generated_sources(f: sa.CompiledFunction) -> str:
    kernels = [f._entry.value_kernel(), f._entry.deriv_kernel()]
    texts = [f.source] + [k.source for k in kernels]
    if f.backend == "vm":
        texts.append(vm_backend.machine().source)
    return "\n".join(texts)


def test_hostile_labels_and_param_names_on_every_backend(backend, tmp_path):
    marker = tmp_path / "pwned"
    strings = hostile_strings(marker)
    params, inputs, outputs = build(strings)
    f = sa.compile(outputs, params, inputs=inputs, backend=backend)
    for point, t in (([0.3, -0.2], 0.5), ([-1.0, 2.0], -3.0)):
        values, jac = expected(*point, t)
        np.testing.assert_allclose(f(point, [t]), values, rtol=1e-13)
        v, j = f.jacobian(point, [t])
        np.testing.assert_allclose(v, values, rtol=1e-13)
        np.testing.assert_allclose(j, jac, rtol=1e-12, atol=1e-15)
        V, J = f.batch_jacobian([point], [[t]])
        np.testing.assert_allclose(J[0], jac, rtol=1e-12, atol=1e-15)
        x, g, val, u = np.array(point), np.zeros(6), np.zeros(3), np.array([t])
        f.bind(x, g, inputs=u, value=val)()
        np.testing.assert_allclose(g.reshape(3, 2), jac, rtol=1e-12, atol=1e-15)
    source = generated_sources(f)
    assert "pwned" not in source.lower()
    for s in strings:
        assert s not in source
    scalar = sa.compile(outputs[0], params, inputs=inputs, backend=backend)
    assert scalar.value_and_grad([0.3, -0.2], [0.5])[1].tolist() == pytest.approx(
        expected(0.3, -0.2, 0.5)[1][0].tolist(), rel=1e-12)
    assert "pwned" not in generated_sources(scalar).lower()
    fn = sa.compile_gradient_function(outputs[0], params, backend=backend)
    params[0].data, params[1].data, inputs[0].data = 0.3, -0.2, 0.5
    assert sa.apply_compiled_gradients(fn, params) == pytest.approx(
        expected(0.3, -0.2, 0.5)[1][0].tolist(), rel=1e-12)
    assert not marker.exists(), "a hostile string was executed"


def test_labels_do_not_reach_the_kernel_cache_key():
    """Graphs that differ only in labels share one kernel: labels cannot shape code."""
    KERNELS.clear()
    plain = build([""] * 12)
    hostile = build(hostile_strings(Path("/nonexistent/pwned")))
    f1 = sa.compile(plain[2], plain[0], inputs=plain[1], backend="python")
    f2 = sa.compile(hostile[2], hostile[0], inputs=hostile[1], backend="python")
    assert f1._entry is f2._entry


def test_dot_export_escapes_hostile_labels():
    evil = 'a"];\n  evil [label="PWNED"];\n  x -> y [label="'
    plain = sa.to_dot(sa.Value(1.0, label="a") * 2.0)
    dot = sa.to_dot(sa.Value(1.0, label=evil) * 2.0)
    assert dot.count("\n") == plain.count("\n")
    assert not any(line.lstrip().startswith("evil") for line in dot.splitlines())
    assert '\\"' in dot


# ----------------------------------------------------------------------------- source scan

FORBIDDEN = {
    r"\bimport\s+(pickle|cPickle|marshal|shelve|dill|cloudpickle|joblib)\b": "unpickling module",
    r"\bfrom\s+(pickle|marshal|shelve|dill|cloudpickle|joblib)\b": "unpickling module",
    r"\b(pickle|marshal|dill|cloudpickle|joblib)\.(load|loads)\b": "unpickling call",
    r"allow_pickle\s*=\s*True": "numpy pickle loading",
    r"\byaml\.load\(|\btorch\.load\(": "object deserialisation",
    r"(?<![\w.])eval\(": "builtin eval",
    r"__import__\((?![\"'])": "__import__ of a computed name",
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if code.strip():
            lines.append((n, code))
    return lines


def test_no_module_unpickles_evals_or_imports_computed_names():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        for n, code in _code_lines(path):
            for pattern, what in FORBIDDEN.items():
                if re.search(pattern, code):
                    problems.append(f"{path.relative_to(SRC)}:{n}: {what}: {code.strip()}")
    assert not problems, "\n".join(problems)


def test_exec_runs_only_the_python_backends_generated_source():
    uses = []
    for path in sorted(SRC.rglob("*.py")):
        for n, code in _code_lines(path):
            if re.search(r"(?<![\w.])exec\(", code):
                uses.append((path.relative_to(SRC).as_posix(), n, code.strip()))
    assert uses, "expected the python backend's exec"
    for where, n, code in uses:
        assert where == "backends/python.py", f"{where}:{n}: exec outside the python backend"
        assert "self.source" in code, f"{where}:{n}: exec of something but generated source"
