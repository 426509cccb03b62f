"""C export (``sa.export_c``, ``backends.c_source``): the generated C99, compiled by the
system C compiler and loaded with ctypes, against the llvm backend.

One library holds every case (each op of the table, with params only and with a runtime
input, pow at several exponents, multi-output Jacobians in reverse and forward mode, a
program large enough to be split into chunks), so the compiler runs once. Values,
gradients and Jacobians must equal the llvm backend's *bit for bit*: both run the same
lowered programs, op by op in the same order without contraction, and call the same
libm (``sqrt``, ``floor`` & co. are exact; the only rewrites either compiler makes
without fast-math, such as ``pow(x, 2.0) -> x*x``, are made by both). The one
exception is a NaN's sign and payload, which IEEE-754 leaves to the hardware and the
operand order a compiler picks: any NaN equals any NaN here.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.backends import c_source
from scalar_autograd.backends.c_source import check_c_name, generate_c
from scalar_autograd.ops import OPS, VARIADIC
from scalar_autograd.value import apply

SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, math.inf, -math.inf, math.nan, -math.nan, 1e308,
            5e-324]
POW_EXPONENTS = [2.5, 2.0, 0.5, -1.0, 3.0, 0.0]
N_RANDOM = 20
CFLAGS = ["-O2", "-std=c99", "-ffp-contract=off", "-Wall", "-Wextra", "-pedantic"]

_P = ctypes.POINTER(ctypes.c_double)


def _compiler() -> str:
    found = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if found is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    return found


def _shared_library(c_file: Path, flags: list[str] = CFLAGS) -> ctypes.CDLL:
    so = c_file.with_suffix(".so")
    command = [_compiler(), *flags, "-fPIC", "-shared", "-o", str(so), str(c_file), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    return ctypes.CDLL(str(so))


def _ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    return a.ctypes.data_as(_P)


class CFunctions:
    """The four C functions of one exported name, called like a CompiledFunction."""

    def __init__(self, lib: ctypes.CDLL, name: str, f: sa.CompiledFunction) -> None:
        self.f = f
        self.n, self.k, self.m = f.n_params, f.n_inputs, f.n_outputs
        self.first = getattr(lib, name)
        self.first.restype = ctypes.c_double
        self.values = getattr(lib, name + "_values")
        self.values.restype = None
        self.grad = getattr(lib, name + "_value_and_grad")
        self.grad.restype = ctypes.c_double
        self.jac = getattr(lib, name + "_jacobian")
        self.jac.restype = None

    def _args(self, x: np.ndarray, u: np.ndarray) -> list[ctypes._Pointer]:  # type: ignore[type-arg]
        return [_ptr(x), _ptr(u)] if self.k else [_ptr(x)]

    def run(self, x: list[float], u: list[float]
            ) -> tuple[float, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
        """Output 0, all outputs, (output 0, its gradient), (outputs, Jacobian)."""
        xa = np.array(x, dtype=np.float64).reshape(self.n)
        ua = np.array(u, dtype=np.float64).reshape(self.k)
        args = self._args(xa, ua)
        first = self.first(*args)
        values = np.full(self.m, 7.0)
        self.values(*args, _ptr(values))
        grad = np.full(self.n, 7.0)
        value = self.grad(*args, _ptr(grad))
        jv, jac = np.full(self.m, 7.0), np.full((self.m, self.n), 7.0)
        self.jac(*args, _ptr(jv), _ptr(jac))
        return first, values, value, grad, jv, jac


def _bits(a: np.ndarray | float) -> list[int | str]:
    """Bit patterns, with every NaN the same (IEEE leaves its sign and payload open)."""
    flat = np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel()
    return ["nan" if math.isnan(v) else int(b)
            for v, b in zip(flat.tolist(), flat.view(np.int64).tolist())]


def assert_bits(actual: np.ndarray | float, expected: np.ndarray | float, what: str) -> None:
    assert _bits(actual) == _bits(expected), f"{what}: C {actual!r} != llvm {expected!r}"


def check_against_llvm(c: CFunctions, x: list[float], u: list[float], what: str,
                       grad_reference: sa.CompiledFunction | None = None) -> None:
    """C and the llvm backend at one point: every output bit for bit."""
    f = c.f
    first, values, value, grad, jv, jac = c.run(x, u)
    inputs = u if c.k else None
    ref_values = np.atleast_1d(f(x, inputs))
    ref_jv, ref_jac = f.jacobian(x, inputs)
    where = f"{what} at x={x} u={u}"
    assert_bits(values, ref_values, f"{where}: values")
    assert_bits(first, ref_values[0], f"{where}: first value")
    assert_bits(jv, ref_jv, f"{where}: jacobian values")
    assert_bits(jac, ref_jac, f"{where}: jacobian")
    single = grad_reference if grad_reference is not None else f
    ref_value, ref_grad = single.value_and_grad(x, inputs)
    assert_bits(value, ref_value, f"{where}: value_and_grad value")
    assert_bits(grad, ref_grad, f"{where}: gradient")


# ----------------------------------------------------------------------------- the cases


def _n_args(op) -> int:
    return 3 if op.arity == VARIADIC else op.arity


def _domains(op) -> list[tuple[float, float]]:
    return [op.domain[min(i, len(op.domain) - 1)] for i in range(_n_args(op))]


class Case:
    """One exported function: its CompiledFunction, how to sample it, and labels."""

    def __init__(self, name: str, f: sa.CompiledFunction, domains: list[tuple[float, float]],
                 grad_reference: sa.CompiledFunction | None = None,
                 specials: bool = True) -> None:
        self.name, self.f, self.domains = name, f, domains
        self.grad_reference = grad_reference
        self.specials = specials


def _op_cases() -> list[Case]:
    cases = []
    for op in OPS:
        domains = _domains(op)
        n = len(domains)
        if op.name == "pow":
            for j, c in enumerate(POW_EXPONENTS):
                x = sa.Value(1.5, label="x")
                cases.append(Case(f"op_pow_{j}", sa.compile(x.pow(c), [x], backend="llvm"),
                                  domains[:1]))
            continue
        leaves = [sa.Value(0.5, label=f"a{i}") for i in range(n)]
        out = apply(op, *leaves)
        cases.append(Case(f"op_{op.name}", sa.compile(out, leaves, backend="llvm"), domains))
        if n >= 2:   # the last argument a runtime input
            cases.append(Case(f"opin_{op.name}",
                              sa.compile(out, leaves[:-1], leaves[-1:], backend="llvm"),
                              domains))
    return cases


def _composite_cases() -> list[Case]:
    x, y, t = sa.Value(0.3, label="x"), sa.Value(-0.7, label="y"), sa.Value(2.0, label="t")
    outs = [sa.sin(x) * y + t, x / y, sa.relu(x - y), sa.where(x > y, x, y * y),
            sa.minimum(x, y * t), sa.maximum(sa.abs(x), y), sa.clamp(x * t, -1.0, 1.0),
            sa.Value(2.0), x]      # a constant output and a param output
    forward = sa.compile(outs, [x, y], [t], backend="llvm")     # 9 outputs > 2 params
    a = [sa.Value(0.1 * i, label=f"p{i}") for i in range(5)]
    few = [sa.tanh(a[0] * a[1] + a[2]) - sa.log1p(a[3] * a[3]) * a[4],
           sa.sum([sa.sigmoid(v) for v in a]), a[2]]
    reverse = sa.compile(few, a, backend="llvm")                 # 3 outputs < 5 params
    no_input = sa.compile(outs[:4], [x, y, t], backend="llvm")   # 4 outputs > 3 params
    n_big = 40
    xs = [sa.Value(0.01 * i, label=f"z{i}") for i in range(n_big)]
    big_out = xs[0]
    for i in range(600):          # deep and wide: values cross chunk boundaries
        big_out = big_out * 0.999 + sa.sin(xs[i % n_big] * xs[(7 * i + 3) % n_big] + big_out)
    big = sa.compile([big_out, xs[3], sa.Value(-0.0)], xs, backend="llvm")
    big_single = sa.compile(big_out, xs, backend="llvm")
    assert big.program.n_instructions > 2 * c_source.CHUNK   # split into chunks
    return [
        Case("multi_forward", forward, [(-2.0, 2.0), (-2.0, 2.0), (-2.0, 2.0)],
             sa.compile(outs[0], [x, y], [t], backend="llvm")),
        Case("multi_reverse", reverse, [(-2.0, 2.0)] * 5,
             sa.compile(few[0], a, backend="llvm")),
        Case("multi_no_input", no_input, [(-2.0, 2.0)] * 3,
             sa.compile(outs[0], [x, y, t], backend="llvm")),
        Case("chunked", big, [(-1.0, 1.0)] * n_big, big_single, specials=False),
    ]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, CFunctions],
                                                                 list[Case], Path]:
    _compiler()
    cases = _op_cases() + _composite_cases()
    directory = tmp_path_factory.mktemp("c_export")
    c_file, _ = sa.export_c({case.name: case.f for case in cases}, directory / "cases.c")
    lib = _shared_library(c_file)
    return {case.name: CFunctions(lib, case.name, case.f) for case in cases}, cases, c_file


def _points(case: Case, rng: np.random.Generator) -> list[list[float]]:
    n = len(case.domains)
    points = [[float(rng.uniform(lo, hi)) for lo, hi in case.domains] for _ in range(N_RANDOM)]
    points += [[-v for v in p] for p in points[:5]]       # the other side of every kink
    if case.specials:
        points += [[float(rng.choice(SPECIALS)) for _ in range(n)] for _ in range(25)]
        points += [[s] * n for s in SPECIALS]              # ties: min(a, a), relu(0), ...
        points += [[s, *p[1:]] for s in SPECIALS for p in points[:1]]
    return points


def test_every_case_matches_llvm_bit_for_bit(library) -> None:
    functions, cases, _ = library
    rng = np.random.default_rng(16)
    for case in cases:
        c = functions[case.name]
        for point in _points(case, rng):
            x, u = point[: c.n], point[c.n:]
            check_against_llvm(c, x, u, case.name, case.grad_reference)


def test_every_op_is_exported(library) -> None:
    functions, _, c_file = library
    names = {op.name for op in OPS}
    assert {n for n in names if f"op_{n}" in functions or n == "pow"} == names
    source = c_file.read_text()
    assert "__c0(" in source and "__c1(" in source     # the big program was chunked
    assert "sa__copysign(" in source


def test_branches_take_both_sides(library) -> None:
    """Spot checks of the selections, against eager mode's own conventions."""
    functions, _, _ = library
    relu, minimum = functions["op_relu"], functions["op_min"]
    value, grad = relu.run([-1.0], [])[2:4]
    assert (value, grad.tolist()) == (0.0, [0.0])
    value, grad = relu.run([2.0], [])[2:4]
    assert (value, grad.tolist()) == (2.0, [1.0])
    value, grad = relu.run([0.0], [])[2:4]
    assert (value, grad.tolist()) == (0.0, [0.0])           # relu'(0) = 0
    value, grad = minimum.run([1.0, 1.0], [])[2:4]
    assert (value, grad.tolist()) == (1.0, [0.5, 0.5])      # a tie splits the gradient
    assert math.isnan(minimum.run([math.nan, 1.0], [])[0])  # min with nan is nan
    assert math.isnan(relu.run([math.nan], [])[0])
    where = functions["op_where"]
    assert where.run([math.nan, 1.0, 2.0], [])[0] == 1.0    # a nan condition is true
    sign = functions["op_sign"].run([-0.0], [])[0]
    assert math.copysign(1.0, sign) == -1.0                  # sign keeps -0.0


# ----------------------------------------------------------------------------- the source


def test_to_c_is_generate_c_and_compiles_alone(tmp_path: Path) -> None:
    x = sa.Value(1.0, label="x")
    f = sa.compile(sa.copysign(sa.exp(x), x - 1.0), [x], backend="llvm")
    source = f.to_c("alone")
    assert source == generate_c(f.program, "alone")
    for macro in ("alone_N_PARAMS 1", "alone_N_INPUTS 0", "alone_N_OUTPUTS 1"):
        assert f"#define {macro}\n" in source
    c_file = tmp_path / "alone.c"
    c_file.write_text(source)
    lib = _shared_library(c_file, [*CFLAGS, "-Werror"])
    check_against_llvm(CFunctions(lib, "alone", f), [0.25], [], "alone")


def test_constants_are_exact() -> None:
    assert c_source.literal(0.1) == "0x1.999999999999ap-4"
    assert float.fromhex(c_source.literal(math.pi)) == math.pi
    assert c_source.literal(-0.0) == "(-0.0)"
    assert c_source.literal(math.nan) == "NAN"
    assert c_source.literal(-math.nan) == "(-NAN)"
    assert c_source.literal(math.inf) == "INFINITY"
    assert c_source.literal(5e-324) == "0x0.0000000000001p-1022"
    assert c_source.literal(2.0 ** 60) == "0x1.0000000000000p+60"
    assert c_source.literal(-3.0) == "(-3.0)"


def test_labels_never_reach_the_output(tmp_path: Path) -> None:
    evil = "'); system(\"rm -rf /\"); /*"
    x = sa.Value(1.0, label=evil)
    x.param_name = evil
    t = sa.Value(2.0, label=evil + "*/ #include <stdio.h>")
    f = sa.compile(sa.sin(x) * t + x, [x], [t], backend="llvm")
    source = generate_c(f.program, "safe")
    c_file, h_file = sa.export_c({"safe": f}, tmp_path / "safe.c")
    for text in (source, c_file.read_text(), h_file.read_text()):
        assert "system" not in text and "rm -rf" not in text and "stdio" not in text
        assert text.isascii()


@pytest.mark.parametrize("name", [
    "", "1st", "_private", "__x", "a__b", "bad name", "ünïcode", "x" * 65, "f-g", "a.b",
    "double", "int", "return", "bool", "class", "new", "sin", "sinf", "pow", "NAN",
    "INFINITY", "isnan", "DBL_MAX", "M_PI", "main", "'); system(\"rm",
])
def test_bad_names_are_refused(name: str) -> None:
    x = sa.Value(1.0)
    f = sa.compile(x * x, [x], backend="llvm")
    with pytest.raises(ValueError, match=r"^name must be a C identifier") as info:
        generate_c(f.program, name)
    assert repr(name)[:60] in str(info.value)
    with pytest.raises(ValueError, match="C identifier"):
        f.to_c(name)


def test_name_and_program_types_are_checked() -> None:
    x = sa.Value(1.0)
    f = sa.compile(x * x, [x], backend="llvm")
    with pytest.raises(TypeError, match=r"^name must be a str"):
        generate_c(f.program, b"f")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^program must be a Program"):
        generate_c(f, "f")  # type: ignore[arg-type]
    from scalar_autograd.ir.autodiff import reverse
    with pytest.raises(ValueError, match=r"^program must be a forward program"):
        generate_c(reverse(f.program), "f")
    assert check_c_name("x" * 64) == "x" * 64
    assert check_c_name("Model_2") == "Model_2"


def test_the_contract_is_enforced_by_the_preprocessor(tmp_path: Path) -> None:
    x = sa.Value(1.0)
    c_file = tmp_path / "fast.c"
    c_file.write_text(generate_c(sa.compile(x * x, [x], backend="llvm").program, "fast"))
    for flag in ("-ffast-math", "-ffinite-math-only"):
        done = subprocess.run([_compiler(), "-std=c99", flag, "-fsyntax-only", str(c_file)],
                              capture_output=True, text=True)
        assert done.returncode != 0 and "fast-math" in done.stderr, flag


def _gcc_with_fma() -> bool:
    try:
        version = subprocess.run([_compiler(), "--version"], capture_output=True,
                                 text=True).stdout
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "Free Software Foundation" in version and re.search(r"\bfma\b", cpu) is not None


def test_no_fma_contraction_even_when_asked_for(tmp_path: Path) -> None:
    """gcc in its default GNU mode fuses a*b+c into an fma; the file's pragma stops it."""
    if not _gcc_with_fma():
        pytest.skip("needs gcc and a CPU with FMA")
    a, b, c = sa.Value(1.0), sa.Value(1.0), sa.Value(1.0)
    f = sa.compile(a * b + c, [a, b, c], backend="llvm")
    c_file = tmp_path / "contract.c"
    sa.export_c({"fused": f}, c_file)
    lib = _shared_library(c_file, ["-O2", "-mfma", "-ffp-contract=fast"])
    cf = CFunctions(lib, "fused", f)
    rng = np.random.default_rng(3)
    differs = 0
    for _ in range(200):
        x = rng.uniform(-1.0, 1.0, 3).tolist()
        check_against_llvm(cf, x, [], "a*b+c")
        fused = float(Fraction(x[0]) * Fraction(x[1]) + Fraction(x[2]))   # one rounding
        differs += fused != x[0] * x[1] + x[2]
    assert differs > 20     # the points do tell a fused result apart


# ----------------------------------------------------------------------------- export_c


def _f() -> sa.CompiledFunction:
    x = sa.Value(1.0)
    return sa.compile(x * x, [x], backend="llvm")


def test_export_writes_a_header_with_guards_and_sizes(tmp_path: Path) -> None:
    x, t = sa.Value(1.0), sa.Value(0.0)
    fit = sa.compile([x - t, x * t], [x], [t], backend="llvm")
    c_file, h_file = sa.export_c({"sq": _f(), "fit": fit}, str(tmp_path / "two.c"))
    assert (c_file, h_file) == (tmp_path / "two.c", tmp_path / "two.h")
    header = h_file.read_text()
    guard = re.search(r"#ifndef (SCALAR_AUTOGRAD_[0-9A-F]{16}_H)\n#define \1\n", header)
    assert guard is not None and header.rstrip().endswith(f"#endif /* {guard.group(1)} */")
    for line in ("#define fit_N_PARAMS 1", "#define fit_N_INPUTS 1",
                 "#define fit_N_OUTPUTS 2", "#define sq_N_OUTPUTS 1",
                 "double fit(const double *x, const double *inputs);",
                 "void fit_jacobian(const double *x, const double *inputs, double *values, "
                 "double *jac);", 'extern "C" {'):
        assert line in header, line
    source = c_file.read_text()
    assert '#include "two.h"' in source
    assert source.count("static double sa__copysign") <= 1
    assert source.count("#include <math.h>") == 1
    # the header compiles by itself, in C and in C++
    done = subprocess.run([_compiler(), "-std=c99", "-Wall", "-pedantic", "-fsyntax-only",
                           "-x", "c", str(h_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is not None:
        done = subprocess.run([cxx, "-Wall", "-fsyntax-only", "-x", "c++", str(h_file)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    lib = _shared_library(c_file, [*CFLAGS, "-Werror"])
    check_against_llvm(CFunctions(lib, "fit", fit), [0.75], [0.5], "fit",
                       sa.compile(x - t, [x], [t], backend="llvm"))


def test_export_arguments_are_checked(tmp_path: Path) -> None:
    f = _f()
    target = tmp_path / "m.c"
    with pytest.raises(TypeError, match=r"^functions must be a mapping"):
        sa.export_c([("f", f)], target)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^functions must hold at least one"):
        sa.export_c({}, target)
    with pytest.raises(TypeError, match=r"^functions\['g'\] must be a CompiledFunction"):
        sa.export_c({"f": f, "g": lambda x: x}, target)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"^functions key 'int' must be a C identifier"):
        sa.export_c({"int": f}, target)
    with pytest.raises(TypeError, match=r"^functions key 3 must be a str"):
        sa.export_c({3: f}, target)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"'f' and 'f_values' both define the C name "
                                         r"'f_values'"):
        sa.export_c({"f": f, "f_values": f}, target)
    with pytest.raises(TypeError, match=r"^path must be a str or os.PathLike"):
        sa.export_c({"f": f}, 3)  # type: ignore[arg-type]
    for bad in ("m.h", "m", "m c.c", 'm".c', "../x/m.cpp"):
        with pytest.raises(ValueError, match=r"^path must name a \.c file"):
            sa.export_c({"f": f}, tmp_path / bad)
    with pytest.raises(ValueError, match=r"^path must be in an existing directory"):
        sa.export_c({"f": f}, tmp_path / "missing" / "m.c")
    assert os.listdir(tmp_path) == []          # nothing was written


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _f()
    target = tmp_path / "m.c"
    sa.export_c({"f": f}, target)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert sorted(before) == ["m.c", "m.h"]
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):                       # a bad function: nothing changes
        sa.export_c({"g": f, "h": "not a function"}, target)  # type: ignore[dict-item]
    from scalar_autograd.runtime import export

    def failing_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "replace", failing_write)
    with pytest.raises(OSError, match="disk full"):
        sa.export_c({"g": f}, target)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before   # no temporaries


def test_guarded_jit_functions_are_refused(tmp_path: Path) -> None:
    from scalar_autograd.ir.trace import trace
    from scalar_autograd.runtime.compiled import CompiledFunction, _entry_for

    x = sa.Value(1.0)
    program, _ = trace([x * x, x > 0.0], [x])      # as sa.jit: a guard output last
    guarded = CompiledFunction(_entry_for(program, "llvm", n_aux=1), [x])
    with pytest.raises(ValueError, match="guard output"):
        sa.export_c({"g": guarded}, tmp_path / "g.c")


def test_export_c_is_public() -> None:
    assert "export_c" in sa.__all__ and sa.export_c is sa.runtime.export_c
