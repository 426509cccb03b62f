"""The native layer: the emitter's element-wise kernels and loops, engines, and the ABI.

Element-wise kernels are checked bit for bit against numpy doing the same operations in
the same order (the contract an optimiser update written as an IR program relies on),
on random arrays with signed zeros, infinities and nans among the entries.
"""

from __future__ import annotations

import ctypes
import gc
import math
import weakref

import numpy as np
import pytest

from scalar_autograd.ir.program import Builder, Program, Var, ir_algebra
from scalar_autograd.native.abi import (
    BlockCall,
    address,
    address_block,
    bound_call,
    check_buffer,
)
from scalar_autograd.native.emitter import (
    FunctionEmitter,
    Operand,
    array,
    check_symbol,
    const,
    elementwise_kernel_ir,
    instruction,
    module,
    scalar,
)
from scalar_autograd.native.engine import available, native_engine, opt_level
from scalar_autograd.ops import OPS_BY_NAME

pytestmark = pytest.mark.skipif(not available(), reason="needs llvmlite")


def _compile_elementwise(program: Program, inputs, outputs, n_arrays, level=2):
    declarations: set[str] = set()
    text = elementwise_kernel_ir("elements", program, inputs, outputs, n_arrays,
                                 declarations)
    engine = native_engine(module("test", declarations, [text]), level)
    return engine, engine.address("elements")


def _run(function: int, engine, arrays: list[np.ndarray], scalars: np.ndarray) -> None:
    n = arrays[0].size if arrays else 0
    BlockCall(function, [n, *arrays, scalars], owner=engine)()


def _special_array(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.normal(size=n) * rng.choice([1e-300, 1e-8, 1.0, 1e8, 1e300], size=n)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1.0])
    where = rng.random(n) < 0.2
    a[where] = rng.choice(specials, size=int(where.sum()))
    return a


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit patterns, any nan equal to any nan (payloads may differ)."""
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (a.view(np.int64) == b.view(np.int64))))


def _adam_program() -> Program:
    """One Adam element, as the numpy equations write it, in the same order:
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    x = x - lr * (m / c1) / (sqrt(v / c2) + eps)."""
    b = Builder(n_params=0, n_inputs=9)
    m = ir_algebra(b)
    x, g, mom, vel, lr, b1, b2, c1, c2 = (Var(b, b.input(k)) for k in range(9))
    mom2 = b1 * mom + (1.0 - b1) * g
    vel2 = b2 * vel + (1.0 - b2) * g * g
    step = m.div(m.div(mom2, c1), m.sqrt(m.div(vel2, c2)) + 1e-8)
    x2 = x - lr * step
    return b.build([x2.id, mom2.id, vel2.id], 3)


def _var(b: Builder, slot: int) -> Var:
    return Var(b, b.input(slot))


def _adam_numpy(x, g, mom, vel, lr, b1, b2, c1, c2):
    with np.errstate(all="ignore"):
        mom2 = b1 * mom + (1.0 - b1) * g
        vel2 = b2 * vel + (1.0 - b2) * g * g
        step = (mom2 / c1) / (np.sqrt(vel2 / c2) + 1e-8)
        return x - lr * step, mom2, vel2


# --------------------------------------------------------------------------- element-wise


def test_an_in_place_update_is_bit_identical_to_numpy() -> None:
    b = Builder(n_params=0, n_inputs=3)  # slots: x, g, lr
    x, g, lr = b.input(0), b.input(1), b.input(2)
    program = b.build([b.emit("sub", (x, b.emit("mul", (lr, g))))], 1)
    engine, fn = _compile_elementwise(program, [array(0), array(1), scalar(0)], [0], 2)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 1000):
        xs, gs = _special_array(rng, n), _special_array(rng, n)
        with np.errstate(all="ignore"):
            expected = xs - 0.01 * gs
        _run(fn, engine, [xs, gs], np.array([0.01]))
        assert _same_bits(xs, expected)


@pytest.mark.parametrize("level", [0, 2])
def test_an_adam_element_is_bit_identical_to_numpy(level: int) -> None:
    program = _adam_program()
    inputs = [array(0), array(1), array(2), array(3)] + [scalar(k) for k in range(5)]
    engine, fn = _compile_elementwise(program, inputs, [0, 2, 3], 4, level)
    rng = np.random.default_rng(1)
    x, g = _special_array(rng, 500), _special_array(rng, 500)
    mom, vel = rng.normal(size=500), rng.random(500)
    hyper = (1e-3, 0.9, 0.999, 1 - 0.9**3, 1 - 0.999**3)
    expected = _adam_numpy(x, g, mom, vel, *hyper)
    arrays = [x.copy(), g.copy(), mom.copy(), vel.copy()]
    _run(fn, engine, arrays, np.array(hyper))
    for got, want in zip((arrays[0], arrays[2], arrays[3]), expected, strict=True):
        assert _same_bits(got, want)
    assert _same_bits(arrays[1], g)  # an input that is not an output is left alone


def test_expansions_are_lowered_and_agree_with_the_op_table() -> None:
    b = Builder(n_params=0, n_inputs=2)
    m = ir_algebra(b)
    u, w = _var(b, 0), _var(b, 1)
    outs = [m.tanh(u), m.sigmoid(u * w), m.atan2(u, w), m.where(m.gt(u, w), u, w)]
    program = b.build([o.id for o in outs], len(outs))
    engine, fn = _compile_elementwise(program, [array(0), array(1)], [2, 3, 4, 5], 6)
    rng = np.random.default_rng(2)
    us, ws = rng.normal(size=200) * 3, rng.normal(size=200) * 3
    arrays = [us, ws] + [np.zeros(200) for _ in range(4)]
    _run(fn, engine, arrays, np.zeros(1))
    names = [("tanh", lambda a, c: (a,)), ("sigmoid", lambda a, c: (a * c,)),
             ("atan2", lambda a, c: (a, c))]
    for k, (name, args) in enumerate(names):
        expected = [OPS_BY_NAME[name].eval(*args(a, c)) for a, c in zip(us, ws)]
        np.testing.assert_allclose(arrays[2 + k], expected, rtol=1e-15, atol=1e-300)
    np.testing.assert_array_equal(arrays[5], np.maximum(us, ws))


def test_outputs_may_be_inputs_constants_or_scalars() -> None:
    b = Builder(n_params=0, n_inputs=2)
    program = b.build([b.input(0), b.const(-0.0), b.input(1)], 3)
    engine, fn = _compile_elementwise(program, [array(0), scalar(3)], [1, 2, 0], 3)
    a0, a1, a2 = np.arange(4.0), np.ones(4), np.ones(4)
    _run(fn, engine, [a0, a1, a2], np.array([0.0, 0.0, 0.0, 7.5]))
    assert a1.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert all(math.copysign(1.0, v) < 0 and v == 0.0 for v in a2)
    assert a0.tolist() == [7.5] * 4


@pytest.mark.parametrize("inputs, outputs, n_arrays, error, match", [
    ([array(0)], [0], 1, ValueError, "one operand per program input"),
    ([array(0), array(1)], [0, 1], 1, ValueError, "one array per program output"),
    ([array(0), array(2)], [0], 2, ValueError, "reads array 2"),
    ([array(0), 1], [0], 2, TypeError, "must be array"),
    ([array(0), array(1)], [5], 2, ValueError, r"outputs\[0\]"),
    ([array(0), array(1)], [True], 2, ValueError, r"outputs\[0\]"),
])
def test_bad_bindings_are_refused(inputs, outputs, n_arrays, error, match) -> None:
    b = Builder(n_params=0, n_inputs=2)
    program = b.build([b.emit("add", (b.input(0), b.input(1)))], 1)
    with pytest.raises(error, match=match):
        elementwise_kernel_ir("f", program, inputs, outputs, n_arrays, set())


@pytest.mark.parametrize("name", ["f(ptr %x) {}\ndefine void @g", "", "1abc", "a b", "a;b"])
def test_function_names_cannot_inject_ir(name: str) -> None:
    with pytest.raises(ValueError, match="native function name"):
        check_symbol(name)
    b = Builder(n_params=0, n_inputs=1)
    program = b.build([b.input(0)], 1)
    with pytest.raises(ValueError, match="native function name"):
        elementwise_kernel_ir(name, program, [array(0)], [0], 1, set())


def test_operands_are_checked() -> None:
    with pytest.raises(ValueError, match="kind"):
        Operand("vector", 0)
    with pytest.raises(ValueError, match="index"):
        array(-1)
    assert scalar(2) == Operand("scalar", 2)


# --------------------------------------------------------------------------- loops, pieces


def test_an_accumulator_loop_sums_in_index_order() -> None:
    e = FunctionEmitter()
    n, a, b, out = e.arg(0, "i64"), e.arg(1, "ptr"), e.arg(2, "ptr"), e.arg(3, "ptr")
    e.loop_header("d", "entry", [("i64", "%k", "0", "%k.n"), ("double", "%s", "-0.0", "%s.n")],
                  "%k", n)
    product = e.dot([(e.load("double", a, "%k"), e.load("double", b, "%k"))])
    e.emit(f"%s.n = fadd double %s, {product}")
    e.emit("%k.n = add i64 %k, 1")
    e.emit("br label %d.head")
    e.label("d.exit")
    e.store("%s", out, "0")
    engine = native_engine(module("dot", e.declarations, [e.function("dot")]), 2)
    rng = np.random.default_rng(3)
    x, y, result = rng.normal(size=101), rng.normal(size=101), np.zeros(1)
    BlockCall(engine.address("dot"), [x.size, x, y, result], owner=engine)()
    expected = -0.0
    for p, q in zip(x.tolist(), y.tolist()):
        expected += p * q
    assert result[0] == expected


def test_compute_emits_a_program_through_instruction() -> None:
    b = Builder(n_params=1, n_inputs=0)
    program = b.build([b.emit("sqrt", (b.input(0),))], 1)
    e = FunctionEmitter()
    (name,) = e.compute(program, ["%in"], "%q.")
    assert name == "%q.v1"
    assert e.lines == instruction("sqrt", "%q.v1", ["%in"], set(), "%q.t1.")
    assert "declare double @llvm.sqrt.f64(double)" in e.declarations


def test_constants_keep_every_bit() -> None:
    for value in (0.0, -0.0, 1.0, math.inf, -math.inf, 5e-324, math.pi):
        text = const(value)
        assert int(text, 16) == np.array(value).view(np.uint64)
    assert const(math.nan).startswith("0x7FF8")


def test_opt_level_by_size() -> None:
    assert [opt_level(n) for n in (0, 3_999, 4_000, 9_999, 10_000)] == [2, 2, 1, 1, 0]


def test_bad_ir_raises_from_llvm() -> None:
    with pytest.raises(RuntimeError):
        native_engine("define void @f( {", 0)


# --------------------------------------------------------------------------- ABI


def test_check_buffer_names_the_argument_and_the_rule() -> None:
    x = np.zeros(3)
    assert check_buffer(x, "x", (3,)) is x
    with pytest.raises(TypeError, match="x must be a numpy float64 array; got list"):
        check_buffer([0.0], "x")
    with pytest.raises(TypeError, match="g must be a writeable C-contiguous float64"):
        check_buffer(np.zeros(3, np.float32), "g")
    with pytest.raises(TypeError, match="C-contiguous: False"):
        check_buffer(np.zeros(6)[::2], "g")
    frozen = np.zeros(2)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="writeable: False"):
        check_buffer(frozen, "out")
    assert check_buffer(frozen, "x", writeable=False) is frozen
    with pytest.raises(ValueError, match=r"out must have shape \(2,\); got \(3,\)"):
        check_buffer(x, "out", (2,))
    ints = np.zeros(2, np.int64)
    assert check_buffer(ints, "i", dtypes=(np.dtype(np.int64),)) is ints


def test_address_blocks_hold_addresses_and_integers() -> None:
    a, b = np.zeros(2), np.zeros(3, np.int64)
    block = address_block([7, a, b, 0])
    assert block.dtype == np.int64
    assert block.tolist() == [7, address(a), address(b), 0]


def test_a_bound_call_keeps_its_engine_and_buffers_alive() -> None:
    e = FunctionEmitter()
    x = e.arg(0, "ptr")
    e.store("3.0", x, "0")
    engine = native_engine(module("set", set(), [e.function("set3")]), 0)
    function = engine.address("set3")
    buffer = np.zeros(1)
    block = address_block([buffer])
    call = bound_call(function, [address(block)], (engine, block, buffer))
    assert isinstance(call, ctypes._CFuncPtr)  # type: ignore[attr-defined]
    watched = weakref.ref(buffer)
    del engine, block, buffer
    gc.collect()
    assert watched() is not None            # held by the bound call
    call()
    assert watched()[0] == 3.0              # type: ignore[index]
    del call
    gc.collect()
    assert watched() is None
