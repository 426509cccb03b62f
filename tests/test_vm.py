"""The tape VM's own mechanisms: every opcode, the superinstructions, and tapes written
straight from the forward program (``build_tape(program, reverse=True)``).

Oracles: the reference interpreter (Python floats; the same libm), and the gradient
program of ``ir.autodiff.reverse`` run on the VM. Results are compared bit for bit, a
NaN matching any NaN (no op can observe a NaN's sign: ``copysign`` reads it as
positive). Every compiled function is evaluated at points other than the one it was
traced at, with zeros of both signs, infinities and NaN among them.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scalar_autograd as sa
from scalar_autograd.backends import vm
from scalar_autograd.backends.base import KernelArtifact
from scalar_autograd.backends.interpreter import InterpreterBackend
from scalar_autograd.ir import autodiff
from scalar_autograd.ir.passes import lower
from scalar_autograd.ir.program import Builder, Program
from scalar_autograd.ir.trace import trace
from scalar_autograd.ops import OPS, OPS_BY_NAME, VARIADIC
from scalar_autograd.value import apply

_bits = struct.Struct("<d").pack

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -3.25, 1e-310, 1e300, -1e300, math.inf, -math.inf,
           math.nan]


def _same(a: float, b: float) -> bool:
    """Bit for bit, any NaN matching any NaN."""
    return _bits(a) == _bits(b) or (math.isnan(a) and math.isnan(b))


def assert_bits(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    a, e = np.atleast_1d(actual).tolist(), np.atleast_1d(expected).tolist()
    assert len(a) == len(e), f"{what}: {len(a)} != {len(e)} results"
    bad = [(i, x, y) for i, (x, y) in enumerate(zip(a, e)) if not _same(x, y)]
    assert not bad, f"{what}: (index, actual, expected) {bad[:5]}"


def run(kernel, x, u=(), n_values: int = 1, n_derivs: int = 0) -> np.ndarray:
    """Values then derivatives of one evaluation."""
    val, der = np.zeros(n_values), np.zeros(n_derivs)
    kernel.run(np.asarray(x, dtype=float), np.asarray(u, dtype=float), val, der,
               np.zeros(max(kernel.n_scratch, 1)))
    return np.concatenate([val, der])


def gradient_oracles(program: Program, x, n_diff: int | None = None):
    """(VM on the reverse tape, VM on autodiff's gradient program, interpreter on it)."""
    n_diff = program.n_values if n_diff is None else n_diff
    grad = autodiff.reverse(program, lower=True, n_diff=n_diff)
    sizes = (program.n_values, grad.n_derivs)
    return (run(vm.VMKernel.reverse(program, n_diff), x, (), *sizes),
            run(vm.VMKernel(grad), x, (), *sizes),
            run(InterpreterBackend().compile(grad), x, (), *sizes))


# ----------------------------------------------------------------------------- opcodes

PRIMITIVE_OPS = [OPS_BY_NAME[name] for name in vm.PRIMITIVES]


@pytest.mark.parametrize("op", PRIMITIVE_OPS, ids=lambda op: op.name)
def test_every_primitive_opcode_agrees_with_the_interpreter(op) -> None:
    """Values (forward tape) and gradients (reverse tape) of ``op`` on params, at special
    values and random points, traced at one point and run at the others."""
    params = [sa.Value(0.75) for _ in range(op.arity)]
    program, _ = trace([apply(op, *params)], params)
    value_tape = vm.VMKernel(lower(program))
    reference = InterpreterBackend().compile(lower(program))
    rng = np.random.default_rng(op.arity * 101 + len(op.name))
    points = [[a] * op.arity for a in SPECIAL]
    points += rng.choice(np.array(SPECIAL), (40, op.arity)).tolist()
    points += rng.uniform(-4, 4, (40, op.arity)).tolist()
    for x in points:
        assert_bits(run(value_tape, x), run(reference, x), f"{op.name} at {x}")
        fused, autodiff_vm, interpreted = gradient_oracles(program, x)
        assert_bits(fused, autodiff_vm, f"{op.name}: reverse tape vs autodiff at {x}")
        assert_bits(fused, interpreted, f"{op.name}: reverse tape vs interpreter at {x}")


@pytest.mark.parametrize("op", [op for op in OPS if op.name not in vm.PRIMITIVES
                                and op.name != "stop_gradient"], ids=lambda op: op.name)
def test_expansion_ops_differentiate_on_the_reverse_tape(op) -> None:
    """Ops lowered into others (sigmoid, min, clamp, mod, mean, sums...): the reverse tape
    lowers them on the way and runs their partial rules exactly as autodiff does."""
    n = 3 if op.arity == VARIADIC else op.arity
    params = [sa.Value(0.5 + k) for k in range(n)]
    program, _ = trace([apply(op, *params)], params)
    rng = np.random.default_rng(len(op.name))
    for x in rng.choice(np.array(SPECIAL), (25, n)).tolist() + rng.uniform(-3, 3, (25, n)).tolist():
        fused, autodiff_vm, interpreted = gradient_oracles(program, x)
        assert_bits(fused, autodiff_vm, f"{op.name} at {x}")
        assert_bits(fused, interpreted, f"{op.name} vs interpreter at {x}")


# ----------------------------------------------------------------------------- superinstructions

def _opcodes(kernel: vm.VMKernel) -> list[str]:
    return [vm.OPCODES[o] for o in kernel.code[:, 0].tolist()]


def _fusion_cases():
    """(name, function of params x, y, z, superinstruction expected in the value tape)."""
    return [
        ("mul_add, product second", lambda x, y, z: z + x * y, "mul_add"),
        ("mul_add, product first", lambda x, y, z: x * y + z, "mul_add"),
        ("add_add chain", lambda x, y, z: ((x + y) + z) + (x * 0.5), "add_add"),
        ("add_add, inner sum second", lambda x, y, z: z + (x + y), "add_add"),
        ("sub from add of neg", lambda x, y, z: x + (-(y * z)), "sub"),
        ("sub from neg first", lambda x, y, z: (-(y * z)) + x, "sub"),
        ("sincos", lambda x, y, z: sa.sin(x * y) + sa.cos(x * y) * z, "sincos"),
    ]


@pytest.mark.parametrize("case", _fusion_cases(), ids=lambda case: case[0])
def test_superinstructions_are_used_and_exact(case) -> None:
    name, f, expected = case
    params = [sa.Value(v) for v in (0.3, -1.1, 2.0)]
    program, _ = trace([f(*params)], params)
    kernel = vm.VMKernel(lower(program))
    assert expected in _opcodes(kernel), (name, kernel.source)
    reference = InterpreterBackend().compile(lower(program))
    rng = np.random.default_rng(7)
    points = rng.choice(np.array(SPECIAL), (60, 3)).tolist() + rng.uniform(-9, 9, (60, 3)).tolist()
    for x in points:
        assert_bits(run(kernel, x), run(reference, x), f"{name} at {x}")
        fused, autodiff_vm, interpreted = gradient_oracles(program, x)
        assert_bits(fused, autodiff_vm, f"{name}: gradient at {x}")
        assert_bits(fused, interpreted, f"{name}: gradient vs interpreter at {x}")


def test_mul_add_keeps_both_roundings() -> None:
    # a*b + c with a single rounding (an FMA) would give 2**-104 here, not 0
    x, y, z = sa.Value(1.0), sa.Value(1.0), sa.Value(1.0)
    program, _ = trace([x * y + z], [x, y, z])
    kernel = vm.VMKernel(lower(program))
    assert "mul_add" in _opcodes(kernel)
    a = 1.0 + 2.0**-52
    got = run(kernel, [a, a, -(1.0 + 2.0**-51)])[0]
    assert got == a * a - (1.0 + 2.0**-51) == 0.0


def test_a_value_read_twice_is_not_fused_away() -> None:
    x, y = sa.Value(0.5), sa.Value(1.5)
    p = x * y
    program, _ = trace([p + x, p], [x, y])  # the product is also an output
    kernel = vm.VMKernel(lower(program))
    assert "mul" in _opcodes(kernel)
    assert_bits(run(kernel, [3.0, -2.0], (), 2), [-3.0, -6.0])


def test_long_add_chains_pair_up_every_other_link() -> None:
    xs = [sa.Value(float(k)) for k in range(9)]
    total = xs[0]
    for v in xs[1:]:
        total = total + v * v          # mul_add links
    program, _ = trace([total + (xs[0] + xs[1] + xs[2] + xs[3])], xs)
    kernel = vm.VMKernel(lower(program))
    ops = _opcodes(kernel)
    assert ops.count("mul_add") >= 8 and "add_add" in ops
    x = np.random.default_rng(3).uniform(-2, 2, 9)
    assert_bits(run(kernel, x), run(InterpreterBackend().compile(lower(program)), x))


def test_sincos_row_matches_sin_and_cos_bit_for_bit() -> None:
    x = sa.Value(0.1)
    program, _ = trace([sa.sin(x), sa.cos(x)], [x])
    kernel = vm.VMKernel(lower(program))
    assert _opcodes(kernel) == ["sincos"]
    rng = np.random.default_rng(11)
    values = SPECIAL + (rng.uniform(-10, 10, 300).tolist()
                        + (10.0 ** rng.uniform(-300, 300, 100)).tolist()
                        + [k * math.pi / 2 for k in range(-20, 21)])
    for v in values:
        assert_bits(run(kernel, [v], (), 2), [math.sin(v) if math.isfinite(v) else math.nan,
                                              math.cos(v) if math.isfinite(v) else math.nan],
                    f"at {v!r}")
    assert isinstance(vm.exact_sincos(), bool)


def test_sin_and_cos_on_a_chain_stay_two_rows_side_by_side() -> None:
    # where the next row reads the sine, its latency is what counts: the cosine (from the
    # gradient) moves next to it instead of joining it in one sincos call
    x = sa.Value(0.2)
    acc = x
    for _ in range(4):
        acc = sa.sin(acc) * 0.5 + acc
    program, _ = trace([acc], [x])
    kernel = vm.VMKernel.reverse(program)
    ops = _opcodes(kernel)
    assert "sincos" not in ops and ops.count("sin") == 4
    assert all(ops[i + 1] == "cos" for i, o in enumerate(ops) if o == "sin")
    for v in [0.3, -2.0, 1e10, math.inf, -0.0, math.nan]:
        fused, autodiff_vm, interpreted = gradient_oracles(program, [v])
        assert_bits(fused, autodiff_vm, f"at {v}")
        assert_bits(fused, interpreted, f"vs interpreter at {v}")


# ----------------------------------------------------------------------------- random programs

_OPS = [op for op in OPS if op.name != "pow"]
_FLOATS = st.one_of(st.floats(-4.0, 4.0, allow_nan=False),
                    st.sampled_from([0.0, -0.0, 1.0, math.inf, -math.inf, math.nan, 1e300]))


@st.composite
def recipes(draw):
    """A random DAG over params and constants, with several outputs: every op of the
    table, repeated arguments (``x * x``) and shared subexpressions included. A recipe
    is rebuilt at any point by :func:`build`."""
    n_params = draw(st.integers(1, 3))
    steps = []
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(_OPS))
        n = draw(st.integers(1, 5)) if op.arity == VARIADIC else op.arity
        refs = [draw(st.integers(0, 10**6)) if draw(st.booleans())
                else draw(st.floats(-3, 3, allow_nan=False)) for _ in range(n)]
        steps.append((op, refs))
    exponent = draw(st.sampled_from([2.0, 3.0, 0.5, -1.0]))
    outputs = draw(st.lists(st.integers(0, 10**6), max_size=2))
    return n_params, steps, exponent, outputs


def build(recipe, values, requires_grad: bool = False):
    """The recipe's output Values (the last node first) and its params."""
    n_params, steps, exponent, extra = recipe
    params = [sa.Value(v, requires_grad=requires_grad) for v in values]
    nodes = list(params)
    for op, refs in steps:
        operands = [nodes[r % len(nodes)] if isinstance(r, int) else r for r in refs]
        if not any(isinstance(a, sa.Value) for a in operands):
            operands[0] = nodes[-1]
        nodes.append(apply(op, *operands))
    last = nodes[-1] + nodes[-2].pow(exponent)
    return [last] + [nodes[r % len(nodes)] for r in extra], params


def _points(data, n: int) -> list[list[float]]:
    return [[data.draw(_FLOATS) for _ in range(n)] for _ in range(3)]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=recipes(), data=st.data())
def test_reverse_tapes_of_random_programs_match_autodiff_bit_for_bit(recipe, data) -> None:
    traced = [data.draw(st.floats(-2, 2)) for _ in range(recipe[0])]
    outputs, params = build(recipe, traced)
    program, _ = trace(outputs, params)
    n_diff = data.draw(st.integers(0, program.n_values))
    for x in _points(data, len(params)):
        fused, autodiff_vm, interpreted = gradient_oracles(program, x, n_diff)
        assert_bits(fused, autodiff_vm, f"reverse tape vs autodiff at {x}\n{program}")
        assert_bits(fused, interpreted, f"reverse tape vs interpreter at {x}\n{program}")
        values = run(vm.VMKernel(lower(program)), x, (), program.n_values)
        assert_bits(values, fused[:program.n_values], f"value tape at {x}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipe=recipes(), data=st.data())
def test_random_programs_agree_with_eager_mode(recipe, data) -> None:
    traced = [data.draw(st.floats(-2, 2)) for _ in range(recipe[0])]
    outputs, params = build(recipe, traced)
    program, _ = trace(outputs[:1], params)
    kernel = vm.VMKernel.reverse(program)
    for x in _points(data, len(params)):
        result = run(kernel, x, (), 1, len(params))
        eager, leaves = build(recipe, x, requires_grad=True)
        assert_bits(result[:1], [eager[0].data], f"value at {x}")
        if not eager[0].requires_grad:
            continue
        eager[0].backward()
        grad = np.array([leaf.grad for leaf in leaves])
        # eager backward accumulates in its own order: compare where all is finite
        if np.all(np.isfinite(grad)) and np.all(np.isfinite(result)) and \
                np.all(np.abs(result) < 1e100):
            np.testing.assert_allclose(result[1:], grad, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- shapes of programs

def test_reverse_tape_handles_constant_outputs_params_as_outputs_and_no_derivatives() -> None:
    x, y = sa.Value(1.0), sa.Value(2.0)
    program, _ = trace([x, sa.Value(3.0) * 2.0, y * y], [x, y])
    for n_diff in (0, 1, 2, 3):
        for point in ([0.5, -0.25], [math.inf, -0.0], [math.nan, 2.0]):
            fused, autodiff_vm, _ = gradient_oracles(program, point, n_diff)
            assert_bits(fused, autodiff_vm, f"n_diff={n_diff} at {point}")
    value_then_grad = run(vm.VMKernel.reverse(program, 1), [0.5, -0.25], (), 3, 2)
    assert value_then_grad.tolist() == [0.5, 6.0, 0.0625, 1.0, 0.0]
    with pytest.raises(ValueError, match="n_diff"):
        vm.VMKernel.reverse(program, 4)


def test_reverse_tape_of_a_long_sum_and_inputs() -> None:
    # a sum longer than ir.passes.MAX_SUM_ARITY is split when lowered; runtime inputs
    xs = [sa.Value(0.1 * k) for k in range(150)]
    u = sa.Value(2.0)
    out = sa.sum([v * v * u for v in xs]) + sa.mean(xs[:70])
    program, _ = trace([out], xs, [u])
    x = np.random.default_rng(5).uniform(-1, 1, 150)
    grad = autodiff.reverse(program, lower=True)
    fused = run(vm.VMKernel.reverse(program), x, [1.5], 1, 150)
    assert_bits(fused, run(vm.VMKernel(grad), x, [1.5], 1, 150))
    assert_bits(fused, run(InterpreterBackend().compile(grad), x, [1.5], 1, 150))


def test_reverse_tape_runs_in_batches() -> None:
    x, y = sa.Value(1.0), sa.Value(2.0)
    program, _ = trace([sa.sin(x * y) + sa.exp(-y)], [x, y])
    kernel = vm.VMKernel.reverse(program)
    X = np.random.default_rng(2).uniform(-2, 2, (7, 2))
    V, D = np.zeros((7, 1)), np.zeros((7, 2))
    kernel.run_batch(X, np.zeros((7, 0)), V, D, np.zeros(kernel.n_scratch))
    for row in range(7):
        assert_bits(np.concatenate([V[row], D[row]]), run(kernel, X[row], (), 1, 2))


def test_the_program_of_a_reverse_kernel_is_autodiffs() -> None:
    x = sa.Value(0.5)
    program, _ = trace([sa.tanh(x) * x], [x])
    kernel = vm.VMKernel.reverse(program)
    assert kernel.program == autodiff.reverse(program, lower=True)
    assert "tape VM program" in kernel.source and kernel.n_rows == kernel.code.shape[0]


def test_an_unlowered_program_is_refused_by_the_value_tape() -> None:
    x = sa.Value(0.5)
    program, _ = trace([sa.sigmoid(x)], [x])
    with pytest.raises(ValueError, match="lowered"):
        vm.VMKernel(program)


def test_a_sum_of_one_term_is_its_term() -> None:
    # the Builder never makes one, but a program may hold it (tapes alias the register)
    program = Program((("input", 0), ("sum", (0,)), ("sin", (1,))), (2,), 1, 0, 1)
    for x in ([0.5], [-0.0], [math.inf]):
        assert_bits(run(vm.VMKernel(program), x), [math.sin(x[0]) if math.isfinite(x[0])
                                                   else math.nan])
        fused, autodiff_vm, _ = gradient_oracles(program, x)
        assert_bits(fused, autodiff_vm, f"at {x}")


def test_malformed_programs_are_refused_before_native_code_runs() -> None:
    forward = Program((("input", 0), ("sin", (5,))), (1,), 1, 0, 1)   # a later node
    with pytest.raises(ValueError, match="later or missing"):
        vm.build_tape(forward, reverse=True)
    wrong_arity = Program((("input", 0), ("sin", (0, 0))), (1,), 1, 0, 1)
    with pytest.raises(ValueError, match="number of arguments"):
        vm.build_tape(wrong_arity)
    bad_slot = Program((("input", 3), ("sin", (0,))), (1,), 1, 0, 1)
    with pytest.raises(ValueError, match="slots"):
        vm.build_tape(bad_slot)


# ----------------------------------------------------------------------------- artifacts

def _artifact_kernel():
    x, y = sa.Value(0.3), sa.Value(0.9)
    program, _ = trace([sa.sin(x) * sa.cos(x) + x * y], [x, y])
    return vm.VMKernel.reverse(program)


def test_a_reverse_kernel_saves_and_loads_as_an_artifact() -> None:
    kernel = _artifact_kernel()
    artifact = kernel.artifact()
    assert artifact.sizes["tape_format"] == vm.TAPE_FORMAT
    loaded = vm.VMBackend().load(artifact, lambda: kernel.program)
    for x in ([0.1, 0.2], [math.inf, 1.0], [-0.0, math.nan]):
        assert_bits(run(loaded, x, (), 1, 2), run(kernel, x, (), 1, 2))


@pytest.mark.parametrize("damage", ["format", "register", "opcode", "leaves", "outputs"])
def test_a_damaged_tape_is_refused(damage) -> None:
    artifact = _artifact_kernel().artifact()
    sizes, blobs = dict(artifact.sizes), dict(artifact.blobs)
    code = np.frombuffer(blobs["code"], dtype="<i4").reshape(-1, 5).copy()
    if damage == "format":
        sizes["tape_format"] = vm.TAPE_FORMAT - 1
    elif damage == "register":
        code[-1, 3] = sizes["n_regs"]         # one past the last register
    elif damage == "opcode":
        code[0, 0] = len(vm.OPCODES)
    elif damage == "leaves":
        sizes["n_regs"] = 2                   # fewer registers than params + constants
    else:
        sizes["n_derivs"] += 1
    blobs["code"] = code.tobytes()
    with pytest.raises(ValueError, match="VM tape"):
        vm.VMKernel.from_artifact(KernelArtifact("vm", sizes, blobs), lambda: None)


def test_the_builder_gives_every_node_one_register() -> None:
    # SSA: no register is written twice, every read is of a leaf or an earlier row
    b = Builder(2, 0)
    x, y = b.input(0), b.input(1)
    s = b.emit("sin", (b.emit("mul", (x, y)),))
    out = b.emit("add", (s, b.emit("cos", (b.emit("mul", (x, y)),))))
    program = b.build([out], 1)
    tape = vm.build_tape(autodiff.reverse(program, lower=True))
    written: set[int] = set(range(tape.n_leaves))
    for op, dst, a, bb, c in tape.code.tolist():
        reads = [a, bb, c][: vm._N_OPERANDS[op]]
        assert all(r in written for r in reads)
        targets = [dst, bb] if vm.OPCODES[op] == "sincos" else [dst]
        assert not written.intersection(targets)
        written.update(targets)
