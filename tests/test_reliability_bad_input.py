"""Bad input, table-driven, over every public function of ``scalar_autograd``.

Two walks:

1. A *generic* walk over ``sa.__all__``: each public callable gets a valid call (from
   :data:`VALID`, or generated from the op table for the ops), then every positional
   argument in turn is replaced by a wrong-typed value, nan, inf, an empty sequence and
   an over-long sequence. The only acceptable outcomes are a ``TypeError`` or
   ``ValueError`` or a normal return: never another exception, a crash or a hang. A
   public name with no valid call in the table fails the walk (add one).
2. A *specific* table (:data:`CASES`): wrong types, wrong lengths, nan, inf, empty
   sequences and out-of-range options, each with the exact outcome: the error class and
   the argument name the message must contain, or the documented IEEE result.

Every op's IEEE results at special values, eager vs compiled, are checked in
``test_jit_ops.py``/``test_ops.py`` and by the random programs; here the ops are
checked for their argument types and for nan/inf propagating as documented.
"""

from __future__ import annotations

import inspect
import math
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.ops import OPS, VARIADIC

NAN, INF = math.nan, math.inf

# ----------------------------------------------------------------------------- helpers


class Raises:
    """Expect ``exc`` with every one of ``words`` in the message (case-insensitive)."""

    def __init__(self, exc: type[Exception] | tuple[type[Exception], ...], *words: str) -> None:
        self.exc, self.words = exc, words

    def __repr__(self) -> str:
        return f"Raises({self.exc}, {self.words})"


def check_outcome(thunk: Callable[[], Any], expect: Any) -> None:
    if isinstance(expect, Raises):
        with pytest.raises(expect.exc) as info:
            with _deadline(20):
                thunk()
        message = str(info.value).lower()
        for word in expect.words:
            assert word.lower() in message, f"message {str(info.value)!r} does not name {word!r}"
        return
    with _deadline(20):
        result = thunk()
    assert expect(result), f"unexpected result {result!r}"


class _deadline:
    """Turn a hang into a failure (SIGALRM; main thread, Unix)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if hasattr(signal, "SIGALRM"):
            def handler(*_: Any) -> None:
                raise TimeoutError(f"call did not return within {self.seconds} s")

            self._old = signal.signal(signal.SIGALRM, handler)
            signal.alarm(self.seconds)

    def __exit__(self, *_: Any) -> None:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self._old)


def is_nan(v: Any) -> bool:
    return math.isnan(v.data if isinstance(v, sa.Value) else v)


def data_is(expected: float) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        x = v.data if isinstance(v, sa.Value) else float(v)
        return (math.isnan(x) and math.isnan(expected)) or x == expected

    return check


def P(v: float = 1.0) -> sa.Value:  # noqa: N802 - a short name for the table
    return sa.Value(v, requires_grad=True)


def V3(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> sa.Vec3:  # noqa: N802
    return sa.Vec3(x, y, z)


def _compiled() -> sa.CompiledFunction:
    x, y = sa.Value(1.0), sa.Value(2.0)
    return sa.compile(x * y + sa.sin(x), [x, y], backend="python")


def _compiled_with_input() -> sa.CompiledFunction:
    x, t = sa.Value(1.0), sa.Value(0.0)
    return sa.compile((x - t) ** 2, [x], inputs=[t], backend="python")


# ----------------------------------------------------------------------------- valid calls

def _op_call(op: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    n = 3 if op.arity == VARIADIC else op.arity
    if op.arity == VARIADIC:
        return ([P(0.5), P(0.25), 1.0],), {}
    if op.name == "pow":
        return (P(0.5), 2.0), {}
    return tuple(P(0.5) for _ in range(n)), {}


def _residual_block() -> sa.ResidualBlock:
    return sa.ResidualBlock(lambda p, d: [p[0] - d[0]], [0], data=[[1.0], [2.0]])


VALID: dict[str, Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "nonlinear_least_squares": lambda: (([P(1.0)], lambda p: [p[0] - 2.0]), {}),
    "get_cache_dir": lambda: ((), {}),
    "curve_fit": lambda: ((lambda x, a, b: a * sa.exp(-b * x), np.linspace(0, 1, 10),
                           2 * np.exp(-np.linspace(0, 1, 10)), [1.0, 1.0]), {}),
    "batch_curve_fit": lambda: ((lambda x, a, b: a * sa.exp(-b * x), np.linspace(0, 1, 10),
                                 np.tile(2 * np.exp(-np.linspace(0, 1, 10)), (3, 1)),
                                 [1.0, 1.0]), {}),
    "batch_least_squares": lambda: ((lambda p, t: [p[0] - t[0], p[1] - t[1]], [0.0, 0.0]),
                                    {"data": (np.ones((4, 2)),)}),
    "batch_minimize": lambda: ((lambda p, t: (p[0] - t) ** 2, [0.0]),
                               {"data": (np.ones(4),)}),
    "ResidualBlock": lambda: ((lambda p, d: [p[0] - d[0]], [0]), {"data": [[1.0]]}),
    "LeastSquaresProblem": lambda: (([1.0], [_residual_block()]), {}),
    "Value": lambda: ((1.0,), {}),
    "as_value": lambda: ((1.0,), {}),
    "zero_grad": lambda: (([P()],), {}),
    "no_grad": lambda: ((), {}),
    "is_grad_enabled": lambda: ((), {}),
    "detect_anomaly": lambda: ((), {}),
    "to_dot": lambda: ((P() * 2,), {}),
    "topological_order": lambda: ((P() * 2,), {}),
    "check_grads": lambda: ((lambda a: sa.sum([v * v for v in a]), [1.0]), {}),
    "SGD": lambda: (([P()],), {}),
    "Adam": lambda: (([P()],), {}),
    "AdamW": lambda: (([P()],), {}),
    "clip_grad_norm": lambda: (([P()], 1.0), {}),
    "lbfgs": lambda: ((lambda p: (p[0] - 1.0) ** 2, [P(3.0)]), {"max_iterations": 5}),
    "minimize": lambda: _minimize_call(),
    "compile": lambda: _compile_call(),
    "compile_gradient_function": lambda: _compile_call(),
    "apply_compiled_gradients": lambda: (_grad_fn(), {}),
    "Vec2": lambda: ((1.0, 2.0), {}),
    "Vec3": lambda: ((1.0, 2.0, 3.0), {}),
    "Vec4": lambda: ((1.0, 2.0, 3.0, 4.0), {}),
    "Matrix3x3": lambda: (([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],), {}),
    "Neuron": lambda: ((2,), {}),
    "Layer": lambda: ((2, 3), {}),
    "MLP": lambda: ((2, [3, 1]), {}),
    "triangle_normal": lambda: ((V3(), V3(1), V3(0, 1)), {}),
    "triangle_area": lambda: ((V3(), V3(1), V3(0, 1)), {}),
    "interior_angle": lambda: ((V3(1), V3(), V3(0, 1)), {}),
    "angle_defect": lambda: ((V3(), [V3(1), V3(0, 1), V3(-1, -1)]), {}),
    "centroid": lambda: (([V3(), V3(1)],), {}),
    "vertex_normal": lambda: ((V3(), [V3(1), V3(0, 1), V3(-1, -1)]), {}),
    "project_to_plane": lambda: ((V3(1, 1, 1), V3(), V3(0, 0, 1)), {}),
    "signed_distance_to_plane": lambda: ((V3(1, 1, 1), V3(), V3(0, 0, 1)), {}),
    "dihedral_angle": lambda: ((V3(), V3(1), V3(0, 1), V3(0, 0, 1)), {}),
    "bounding_box": lambda: (([V3(), V3(1, 2, 3)],), {}),
    "mse": lambda: (([P(1.0), P(2.0)], [0.0, 0.0]), {}),
    "mae": lambda: (([P(1.0), P(2.0)], [0.0, 0.0]), {}),
    "huber": lambda: (([P(1.0), P(2.0)], [0.0, 0.0]), {}),
    "tukey": lambda: (([P(1.0), P(2.0)], [0.0, 0.0]), {}),
    "binary_cross_entropy": lambda: (([P(0.25), P(0.5)], [0.0, 1.0]), {}),
    "binary_cross_entropy_with_logits": lambda: (([P(0.25), P(0.5)], [0.0, 1.0]), {}),
    "categorical_cross_entropy": lambda: (([P(0.25), P(0.5)], 1), {}),
    "logsumexp": lambda: (([P(0.25), P(0.5)],), {}),
    "jit": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "export_c": lambda: (({"f": sa.compile(sa.Value(1.0) * 2.0, [])},
                          Path(tempfile.mkdtemp()) / "f.c"), {}),
    "compile_sum": lambda: ((sa.Value(1.0) * sa.Value(2.0), [], [], [[]]), {}),
    "parse": lambda: (("x * 2 + sin(y)", {"x": 1.0, "y": sa.Value(2.0)}), {}),
    "to_expression": lambda: ((sa.Value(1.0, label="x") * 2.0,), {}),
    "to_latex": lambda: ((sa.Value(1.0, label="x") * 2.0,), {}),
    "grad": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "value_and_grad": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "jacobian": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "hessian": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "hvp": lambda: ((lambda x: x * x,), {"backend": "python"}),
    "QuaternionManifold": lambda: ((), {}),
    "EigenQuaternionManifold": lambda: ((), {}),
    "AngleAxisManifold": lambda: ((), {}),
    "SphereManifold": lambda: ((3,), {}),
    "SubsetManifold": lambda: ((3, [1]), {}),
    "EuclideanManifold": lambda: ((2,), {}),
    "ProductManifold": lambda: ((sa.QuaternionManifold(), sa.EuclideanManifold(3)), {}),
    "custom_op": lambda: ((lambda m, x: m.exp(x) * x,),
                          {"partials": lambda m, x, out: (out + m.exp(x),),
                           "name": "bad_input_probe"}),
}
OP_NAMES = {"minimum": "min", "maximum": "max", "if_then_else": "where"}
"""Public spellings of ops whose function name differs from the op's."""


def _compile_call() -> tuple[tuple[Any, ...], dict[str, Any]]:
    x, y = sa.Value(1.0), sa.Value(2.0)
    return (x * y, [x, y]), {"backend": "python"}


def _grad_fn() -> tuple[Any, list[sa.Value]]:
    x = sa.Value(1.0)
    return sa.compile_gradient_function(x * x, [x], backend="python"), [x]


NOT_CALLED = {
    "set_cache_dir": "changes a process-wide setting (a wrong str is a valid relative path); "
                     "its argument checks are in test_portable.py",
    # result and status types: built by the solvers, read by users
    "OptimizeResult": "a frozen result record returned by the optimisers",
    "LeastSquaresResult": "a frozen result record returned by the solver",
    "BatchFitResult": "a result record returned by the batched least-squares solvers",
    "BatchMinimizeResult": "a result record returned by sa.batch_minimize",
    "Status": "an enum: Status(value) is Python's enum lookup (ValueError when unknown)",
    "LeastSquaresStatus": "an enum: lookup by value (ValueError when unknown)",
    "CompiledFunction": "made by sa.compile (its methods are walked in CASES)",
    "ValueLike": "a type alias",
    "Traced": "made by sa.jit / sa.grad / ... (its calls are walked in test_jit_guards.py)",
    "ConcretizationError": "an exception class",
    "CovarianceWarning": "a warning class",
    "FrozenBranchWarning": "a warning class",
    "SpecializationLimitError": "an exception class",
    "Manifold": "an abstract base class (subclassed with plus and minus)",
}


def _public_callables() -> list[str]:
    names = []
    for name in sa.__all__:
        obj = getattr(sa, name)
        if callable(obj) and not name.startswith("__") and name not in NOT_CALLED:
            names.append(name)
    return names


def _valid_call(name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if name in VALID:
        return VALID[name]()
    op_name = OP_NAMES.get(name, name)
    op = next((op for op in OPS if op.name == op_name), None)
    if op is not None:
        return _op_call(op)
    pytest.fail(f"public name sa.{name} has no valid call in VALID: add one so the bad-input "
                f"walk covers it")


WRONG = [
    ("object", object()),
    ("str", "abc"),
    ("None", None),
    ("bytes", b"\x00\x01"),
    ("dict", {"a": 1}),
    ("complex", 1j),
    ("nan", NAN),
    ("inf", INF),
    ("-inf", -INF),
    ("empty list", []),
    ("long list", [1.0] * 50),
    ("list with str", [1.0, "x"]),
    ("list with nan", [NAN, INF]),
    ("2-D array", np.zeros((2, 2))),
    ("negative int", -3),
    ("bool", True),
]


@pytest.mark.parametrize("name", _public_callables())
def test_every_public_callable_has_a_valid_call(name):
    args, kwargs = _valid_call(name)
    with _deadline(30):
        result = getattr(sa, name)(*args, **kwargs)
    if inspect.isgeneratorfunction(getattr(getattr(sa, name), "__wrapped__", None)):
        with result:
            pass


@pytest.mark.parametrize("name", _public_callables())
def test_wrong_arguments_raise_type_or_value_error_never_anything_else(name):
    fn = getattr(sa, name)
    args, kwargs = _valid_call(name)
    failures = []
    for position in range(len(args)):
        for label, bad in WRONG:
            trial = list(args)
            trial[position] = bad
            try:
                with _deadline(20):
                    fn(*trial, **kwargs)
            except (TypeError, ValueError):
                pass
            except Exception as exc:  # noqa: BLE001 - the point is to list the others
                failures.append(f"arg {position} = {label}: {type(exc).__name__}: {exc}"[:200])
    assert not failures, f"sa.{name}:\n" + "\n".join(failures)


# ----------------------------------------------------------------------------- specific table

def _ok(v: Any) -> bool:
    return True


CASES: list[tuple[str, Callable[[], Any], Any]] = [
    # --- Value and friends
    ("Value(str)", lambda: sa.Value("1.0"), Raises(TypeError, "data")),
    ("Value(None)", lambda: sa.Value(None), Raises(TypeError, "data")),
    ("Value(complex)", lambda: sa.Value(1j), Raises(TypeError, "data")),
    ("Value(label=5)", lambda: sa.Value(1.0, label=5), Raises(TypeError, "label")),
    ("Value(nan) keeps nan", lambda: sa.Value(NAN), is_nan),
    ("Value(inf) keeps inf", lambda: sa.Value(INF), data_is(INF)),
    ("Value(int beyond float)", lambda: sa.Value(10**400), Raises((TypeError, ValueError,
                                                                   OverflowError), "")),
    ("as_value(str)", lambda: sa.as_value("x"), Raises(TypeError, "x")),
    ("as_value(name)", lambda: sa.as_value([1.0], name="weights"), Raises(TypeError, "weights")),
    ("Value + str", lambda: sa.Value(1.0) + "a", Raises(TypeError, "")),
    ("Value * None", lambda: sa.Value(1.0) * None, Raises(TypeError, "")),
    ("Value ** Value", lambda: (sa.Value(2.0) ** sa.Value(3.0)), data_is(8.0)),
    ("Value / 0 is inf", lambda: sa.Value(1.0) / 0.0, data_is(INF)),
    ("0 / 0 is nan", lambda: sa.Value(0.0) / 0.0, is_nan),
    ("log(0) is -inf", lambda: sa.log(0.0), data_is(-INF)),
    ("sqrt(-1) is nan", lambda: sa.sqrt(-1.0), is_nan),
    ("exp(1000) is inf", lambda: sa.exp(1000.0), data_is(INF)),
    ("sin(inf) is nan", lambda: sa.sin(INF), is_nan),
    ("nan propagates", lambda: sa.Value(NAN) * 0.0 + 1.0, is_nan),
    ("inf - inf is nan", lambda: sa.Value(INF) - INF, is_nan),
    ("sum([]) is 0", lambda: sa.sum([]), data_is(0.0)),
    ("mean([])", lambda: sa.mean([]), Raises(ValueError, "mean")),
    ("sum(str)", lambda: sa.sum("abc"), Raises(TypeError, "")),
    ("sum(5)", lambda: sa.sum(5), Raises(TypeError, "")),
    ("pow(x, Value)", lambda: sa.pow(P(), "2"), Raises(TypeError, "")),
    # undocumented corner: a nan bound is ignored (comparisons with nan are false);
    # pinned so that eager and every backend keep agreeing on it
    ("clamp nan bound", lambda: sa.clamp(0.5, NAN, 1.0), data_is(NAN)),
    ("where nan cond is true", lambda: sa.where(NAN, 1.0, 2.0), data_is(1.0)),
    ("zero_grad(None)", lambda: sa.zero_grad(None), Raises(TypeError, "")),
    ("zero_grad([1.0])", lambda: sa.zero_grad([1.0]), Raises(TypeError, "")),
    ("backward twice", lambda: _backward_twice(), _ok),
    # --- graph walks
    ("topological_order('abc')", lambda: sa.topological_order("abc"),
     Raises(TypeError, "roots")),
    ("topological_order([1.0])", lambda: sa.topological_order([1.0]), Raises(TypeError, "roots")),
    ("topological_order(None)", lambda: sa.topological_order(None), Raises(TypeError, "roots")),
    ("topological_order([]) is []", lambda: sa.topological_order([]), lambda r: r == []),
    ("to_dot([1.0])", lambda: sa.to_dot([1.0]), Raises(TypeError, "output")),
    ("to_dot rankdir", lambda: sa.to_dot(P(), rankdir="XX"), Raises(ValueError, "rankdir")),
    ("to_dot hostile label", lambda: sa.to_dot(sa.Value(1.0, label='"}; evil [x="')),
     lambda s: '"}; evil' not in s),
    # --- compile
    ("compile backend", lambda: sa.compile(P(), [sa.Value(1.0)], backend="gpu"),
     Raises(ValueError, "backend")),
    ("compile backend type", lambda: sa.compile(P(), [sa.Value(1.0)], backend=3),
     Raises(TypeError, "backend")),
    ("compile outputs empty", lambda: sa.compile([], [sa.Value(1.0)]),
     Raises(ValueError, "outputs")),
    ("compile outputs str", lambda: sa.compile("x", [sa.Value(1.0)]), Raises(TypeError, "outputs")),
    ("compile params None", lambda: sa.compile(P(), None), Raises(TypeError, "params")),
    ("compile params float", lambda: sa.compile(P(), [1.0]), Raises(TypeError, "params")),
    ("compile params empty", lambda: sa.compile(sa.Value(2.0) * 3, [], backend="python"),
     lambda f: f([]) == 6.0),
    ("compile inputs overlap", lambda: _overlap(), Raises(ValueError, "inputs")),
    ("compile_gradient_function(float)", lambda: sa.compile_gradient_function(1.0, []),
     Raises(TypeError, "output")),
    ("apply_compiled_gradients wrong count", lambda: _apply_wrong_count(),
     Raises(ValueError, "")),
    # --- CompiledFunction methods
    ("f(x) short", lambda: _compiled()([1.0]), Raises(ValueError, "x")),
    ("f(x) long", lambda: _compiled()([1.0, 2.0, 3.0]), Raises(ValueError, "x")),
    ("f(x) empty", lambda: _compiled()([]), Raises(ValueError, "x")),
    ("f(x) str", lambda: _compiled()("ab"), Raises(TypeError, "x")),
    ("f(x) None", lambda: _compiled()(None), Raises(TypeError, "x")),
    ("f(x) scalar", lambda: _compiled()(1.0), Raises(TypeError, "x")),
    ("f(x) 2-D", lambda: _compiled()(np.zeros((2, 1))), Raises((TypeError, ValueError), "x")),
    ("f(x) complex", lambda: _compiled()([1j, 2.0]), Raises(TypeError, "x")),
    ("f(x) nan", lambda: _compiled()([NAN, 1.0]), is_nan),
    ("f(x) inf", lambda: _compiled()([INF, 1.0]), is_nan),  # inf*1 + sin(inf) = nan
    ("f(x) inf*2", lambda: _compiled()([2.0, INF]), data_is(INF)),
    ("value_and_grad nan", lambda: _compiled().value_and_grad([NAN, 1.0]),
     lambda r: math.isnan(r[0]) and math.isnan(r[1][0])),
    ("value_and_grad out wrong shape", lambda: _compiled().value_and_grad(
        [1.0, 2.0], out=np.zeros(3)), Raises(ValueError, "out")),
    ("value_and_grad out wrong dtype", lambda: _compiled().value_and_grad(
        [1.0, 2.0], out=np.zeros(2, dtype=np.float32)), Raises(TypeError, "out")),
    ("value_and_grad out list", lambda: _compiled().value_and_grad([1.0, 2.0], out=[0, 0]),
     Raises(TypeError, "out")),
    ("value_and_grad out read-only", lambda: _compiled().value_and_grad(
        [1.0, 2.0], out=_read_only(2)), Raises(TypeError, "out")),
    ("jacobian out wrong", lambda: _compiled().jacobian([1.0, 2.0], out=(np.zeros(1),
                                                                         np.zeros(2))),
     Raises(ValueError, "out[1]")),
    ("inputs missing is leaf data", lambda: _compiled_with_input()([3.0]), data_is(9.0)),
    ("inputs wrong length", lambda: _compiled_with_input()([3.0], [1.0, 2.0]),
     Raises(ValueError, "inputs")),
    ("inputs str", lambda: _compiled_with_input()([3.0], ["a"]), Raises(TypeError, "inputs")),
    ("inputs to a function without", lambda: _compiled()([1.0, 2.0], [1.0]),
     Raises(ValueError, "inputs")),
    ("bind x list", lambda: _compiled().bind([1.0, 2.0], np.zeros(2)), Raises(TypeError, "x")),
    ("bind x wrong length", lambda: _compiled().bind(np.zeros(3), np.zeros(2)),
     Raises(ValueError, "x")),
    ("bind grad float32", lambda: _compiled().bind(np.zeros(2), np.zeros(2, np.float32)),
     Raises(TypeError, "grad")),
    ("bind non-contiguous", lambda: _compiled().bind(np.zeros(4)[::2], np.zeros(2)),
     Raises(TypeError, "x")),
    ("bind inputs missing", lambda: _compiled_with_input().bind(np.zeros(1), np.zeros(1)),
     Raises(ValueError, "inputs")),
    ("bind value wrong", lambda: _compiled().bind(np.zeros(2), np.zeros(2), value=np.zeros(2)),
     Raises(ValueError, "value")),
    ("batch_values 1-D", lambda: _compiled().batch_values(np.zeros(2)), Raises(ValueError, "X")),
    ("batch_values wrong width", lambda: _compiled().batch_values(np.zeros((3, 3))),
     Raises(ValueError, "X")),
    ("batch_values str", lambda: _compiled().batch_values([["a", "b"]]), Raises(TypeError, "X")),
    ("batch_values empty", lambda: _compiled().batch_values(np.zeros((0, 2))),
     lambda v: v.shape == (0, 1)),
    ("batch_values nan row", lambda: _compiled().batch_values([[NAN, 1.0], [0.0, 1.0]]),
     lambda v: math.isnan(v[0, 0]) and v[1, 0] == 0.0),
    ("batch_jacobian U rows", lambda: _compiled_with_input().batch_jacobian(
        np.zeros((3, 1)), np.zeros((2, 1))), Raises(ValueError, "U")),
    ("batch_jacobian U missing", lambda: _compiled_with_input().batch_jacobian(
        np.zeros((3, 1))), Raises(ValueError, "U")),
    # --- check_grads
    ("check_grads f", lambda: sa.check_grads(1.0, [1.0]), Raises(TypeError, "f")),
    ("check_grads order", lambda: sa.check_grads(lambda a: a[0] * a[0], [1.0], order=0),
     Raises(ValueError, "order")),
    ("check_grads modes", lambda: sa.check_grads(lambda a: a[0] * a[0], [1.0], modes=("bogus",)),
     Raises(ValueError, "modes")),
    ("check_grads eps", lambda: sa.check_grads(lambda a: a[0] * a[0], [1.0], eps=-1.0),
     Raises(ValueError, "eps")),
    ("check_grads eps nan", lambda: sa.check_grads(lambda a: a[0] * a[0], [1.0], eps=NAN),
     Raises(ValueError, "eps")),
    ("check_grads x str", lambda: sa.check_grads(lambda a: a[0] * a[0], ["a"]),
     Raises(TypeError, "x")),
    # --- optimisers
    ("SGD lr negative", lambda: sa.SGD([P()], lr=-1.0), Raises(ValueError, "lr")),
    ("SGD lr nan", lambda: sa.SGD([P()], lr=NAN), Raises(ValueError, "lr")),
    ("SGD lr inf", lambda: sa.SGD([P()], lr=INF), Raises(ValueError, "lr")),
    ("SGD lr str", lambda: sa.SGD([P()], lr="0.1"), Raises(TypeError, "lr")),
    ("SGD momentum", lambda: sa.SGD([P()], momentum=-0.5), Raises(ValueError, "momentum")),
    ("SGD params float", lambda: sa.SGD([1.0]), Raises(TypeError, "params")),
    ("SGD params empty", lambda: sa.SGD([]), Raises(ValueError, "params")),
    ("SGD params None", lambda: sa.SGD(None), Raises(TypeError, "params")),
    ("Adam betas out of range", lambda: sa.Adam([P()], betas=(1.0, 0.999)),
     Raises(ValueError, "betas")),
    ("Adam betas short", lambda: sa.Adam([P()], betas=(0.9,)), Raises((TypeError, ValueError),
                                                                       "betas")),
    ("Adam eps negative", lambda: sa.Adam([P()], eps=-1e-8), Raises(ValueError, "eps")),
    ("AdamW weight_decay nan", lambda: sa.AdamW([P()], weight_decay=NAN),
     Raises(ValueError, "weight_decay")),
    ("clip_grad_norm max_norm negative", lambda: sa.clip_grad_norm([P()], -1.0),
     Raises(ValueError, "max_norm")),
    ("clip_grad_norm nonfinite (documented RuntimeError, as torch)", lambda: _clip_nonfinite(),
     Raises(RuntimeError, "error_if_nonfinite")),
    ("lbfgs max_iterations 0", lambda: sa.lbfgs(lambda p: p[0] ** 2, [P()], max_iterations=0),
     Raises(ValueError, "max_iterations")),
    ("lbfgs history_size", lambda: sa.lbfgs(lambda p: p[0] ** 2, [P()], history_size=-1),
     Raises(ValueError, "history_size")),
    ("lbfgs c1 c2", lambda: sa.lbfgs(lambda p: p[0] ** 2, [P()], c1=0.95, c2=0.1),
     Raises(ValueError, "c")),
    ("lbfgs objective", lambda: sa.lbfgs("f", [P()]), Raises(TypeError, "objective")),
    ("lbfgs params empty", lambda: sa.lbfgs(lambda p: sa.Value(0.0), []),
     Raises(ValueError, "params")),
    ("minimize loss not callable", lambda: sa.minimize("p ** 2", [P()]),
     Raises(TypeError, "loss")),
    ("minimize method", lambda: sa.minimize(*_minimize_call()[0], method="bogus"),
     Raises(ValueError, "method")),
    ("minimize max_iterations", lambda: sa.minimize(*_minimize_call()[0], max_iterations=-5),
     Raises(ValueError, "max_iterations")),
    ("minimize unknown option", lambda: sa.minimize(*_minimize_call()[0], bogus=1),
     Raises((TypeError, ValueError), "bogus")),
    ("minimize lr nan", lambda: sa.minimize(*_minimize_call()[0], lr=NAN),
     Raises(ValueError, "lr")),
    ("minimize nan start", lambda: _minimize_nan(),
     lambda r: not r.success and r.status.name == "NON_FINITE" and math.isnan(r.fun)),
    # --- least squares
    ("nlls residual_fn", lambda: sa.nonlinear_least_squares([P()], 3),
     Raises(TypeError, "residual_fn")),
    ("nlls max_iterations 0", lambda: sa.nonlinear_least_squares(
        [P()], lambda p: [p[0] - 1], max_iterations=0), Raises(ValueError, "max_iterations")),
    ("nlls cost_tolerance nan", lambda: sa.nonlinear_least_squares(
        [P()], lambda p: [p[0] - 1], cost_tolerance=NAN), Raises(ValueError, "cost_tolerance")),
    ("nlls loss", lambda: sa.nonlinear_least_squares([P()], lambda p: [p[0] - 1], loss="bogus"),
     Raises(ValueError, "loss")),
    ("nlls jacobian", lambda: sa.nonlinear_least_squares([P()], lambda p: [p[0] - 1],
                                                         jacobian="bogus"),
     Raises(ValueError, "jacobian")),
    ("nlls linear_solver", lambda: sa.nonlinear_least_squares(
        [P()], lambda p: [p[0] - 1], linear_solver="bogus"), Raises(ValueError, "linear_solver")),
    ("nlls params empty", lambda: sa.nonlinear_least_squares([], lambda p: [sa.Value(1.0)]),
     Raises(ValueError, "params")),
    ("nlls residuals empty", lambda: sa.nonlinear_least_squares([P()], lambda p: []),
     Raises(ValueError, "resid")),
    ("nlls residual str", lambda: sa.nonlinear_least_squares([P()], lambda p: ["a"]),
     Raises(TypeError, "resid")),
    ("nlls nan residual", lambda: sa.nonlinear_least_squares([P()], lambda p: [p[0] * NAN]),
     lambda r: r.status is not None),
    ("ResidualBlock fn", lambda: sa.ResidualBlock(3, [0]), Raises(TypeError, "fn")),
    ("ResidualBlock param_index", lambda: sa.ResidualBlock(lambda p, d: [p[0]], "a"),
     Raises((TypeError, ValueError), "param_index")),
    ("LeastSquaresProblem x0 str", lambda: sa.LeastSquaresProblem("abc"),
     Raises((TypeError, ValueError), "x0")),
    ("LeastSquaresProblem x0 nan", lambda: sa.LeastSquaresProblem([NAN]),
     Raises(ValueError, "x0")),
    ("LeastSquaresProblem block index", lambda: sa.LeastSquaresProblem([1.0], [
        sa.ResidualBlock(lambda p, d: [p[0]], [5])]), Raises(ValueError, "param_index")),
    # --- vectors, matrices, nn
    ("Vec3(str)", lambda: sa.Vec3("a", 0, 0), Raises(TypeError, "")),
    ("Vec3 nan", lambda: sa.Vec3(NAN, 0.0, 0.0).magnitude(), is_nan),
    ("Vec3 zero normalized", lambda: sa.Vec3(0.0, 0.0, 0.0).normalized().x,
     lambda v: is_nan(v) or v.data == 0.0),
    ("Matrix3x3 2 rows", lambda: sa.Matrix3x3([[1, 0, 0], [0, 1, 0]]),
     Raises((TypeError, ValueError), "rows")),
    ("Matrix3x3 short row", lambda: sa.Matrix3x3([[1, 0], [0, 1, 0], [0, 0, 1]]),
     Raises((TypeError, ValueError), "rows[0]")),
    ("Matrix3x3 str", lambda: sa.Matrix3x3("abc"), Raises((TypeError, ValueError), "rows")),
    ("Neuron n_inputs 0", lambda: sa.Neuron(0), Raises(ValueError, "n_inputs")),
    ("Neuron n_inputs float", lambda: sa.Neuron(2.5), Raises((TypeError, ValueError),
                                                             "n_inputs")),
    ("Neuron nonlinearity", lambda: sa.Neuron(2, nonlinearity="bogus"),
     Raises(ValueError, "nonlinearity")),
    ("MLP layer_sizes empty", lambda: sa.MLP(2, []), Raises(ValueError, "layer_sizes")),
    ("MLP forward wrong length", lambda: sa.MLP(2, [3, 1])([1.0]), Raises(ValueError, "")),
    # --- geometry
    ("triangle_area Vec2/Vec3 mix", lambda: sa.triangle_area(sa.Vec2(0, 0), V3(1), V3(0, 1)),
     Raises(TypeError, "")),
    ("triangle_normal tuple", lambda: sa.triangle_normal((0, 0, 0), V3(1), V3(0, 1)),
     Raises(TypeError, "a")),
    ("angle_defect no neighbors", lambda: sa.angle_defect(V3(), []),
     Raises(ValueError, "neighbors")),
    ("centroid empty", lambda: sa.centroid([]), Raises(ValueError, "points")),
    ("bounding_box empty", lambda: sa.bounding_box([]), Raises(ValueError, "points")),
    ("degenerate triangle area is 0", lambda: sa.triangle_area(V3(), V3(), V3()),
     data_is(0.0)),
    # --- losses
    ("mse lengths", lambda: sa.mse([1.0, 2.0], [1.0]), Raises(ValueError, "targets")),
    ("mse empty", lambda: sa.mse([], []), Raises(ValueError, "")),
    ("mse reduction", lambda: sa.mse([1.0], [1.0], reduction="bogus"),
     Raises(ValueError, "reduction")),
    ("mse nan", lambda: sa.mse([NAN], [1.0]), is_nan),
    ("mse inf", lambda: sa.mse([INF], [1.0]), data_is(INF)),
    ("huber delta", lambda: sa.huber([1.0], [1.0], delta=-1.0), Raises(ValueError, "delta")),
    ("tukey c", lambda: sa.tukey([1.0], [1.0], c=0.0), Raises(ValueError, "c")),
    ("bce eps", lambda: sa.binary_cross_entropy([0.5], [1.0], eps=-1.0),
     Raises(ValueError, "eps")),
    ("cce target range", lambda: sa.categorical_cross_entropy([0.1, 0.2], 5),
     Raises(ValueError, "target")),
    ("cce target negative", lambda: sa.categorical_cross_entropy([0.1, 0.2], -1),
     Raises(ValueError, "target")),
    ("logsumexp empty", lambda: sa.logsumexp([]), Raises(ValueError, "values")),
    ("logsumexp inf (scipy, torch)", lambda: sa.logsumexp([INF, 0.0]), data_is(INF)),
    ("logsumexp -inf (scipy, torch)", lambda: sa.logsumexp([-INF, -INF]), data_is(-INF)),
    ("logsumexp nan", lambda: sa.logsumexp([NAN, 0.0]), is_nan),
    ("logsumexp large", lambda: sa.logsumexp([1000.0, 1000.0]),
     data_is(1000.0 + math.log(2.0))),
    ("logsumexp gradient is softmax", lambda: _logsumexp_grad(),
     lambda g: abs(g[0] - 1 / (1 + math.e)) < 1e-15 and abs(sum(g) - 1.0) < 1e-15),
]


def _minimize_call() -> tuple[tuple[Any, ...], dict[str, Any]]:
    p = P(3.0)
    return ((p - 1.0) ** 2, [p]), {"method": "lbfgs", "max_iterations": 5, "backend": "python"}


def _minimize_nan() -> Any:
    p = P(NAN)
    return sa.minimize((p - 1.0) ** 2, [p], method="lbfgs", max_iterations=5, backend="python")


def _backward_twice() -> None:
    x = P(2.0)
    y = x * x
    y.backward()
    y.backward()
    return None


def _logsumexp_grad() -> list[float]:
    a, b = P(0.0), P(1.0)
    sa.logsumexp([a, b]).backward()
    return [a.grad, b.grad]


def _overlap() -> Any:
    x = sa.Value(1.0)
    return sa.compile(x * 2, [x], inputs=[x])


def _apply_wrong_count() -> Any:
    x, y = sa.Value(1.0), sa.Value(2.0)
    return sa.apply_compiled_gradients(lambda *a: [1.0], [x, y])


def _read_only(n: int) -> np.ndarray:
    a = np.zeros(n)
    a.flags.writeable = False
    return a


def _clip_nonfinite() -> Any:
    p = P()
    p.grad = NAN
    return sa.clip_grad_norm([p], 1.0, error_if_nonfinite=True)


KNOWN_DEFECTS: dict[str, str] = {}
"""Cases that fail today, each reported to its module's owner; strict, so a fix shows."""


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[c[0]]))
    if c[0] in KNOWN_DEFECTS else c for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_table(case):
    _, thunk, expect = case
    check_outcome(thunk, expect)


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_every_op_propagates_nan_and_inf_as_its_eval_says(op):
    """Each op's public function at nan/inf equals its table ``eval`` (never raises)."""
    fn = _op_function(op)
    n = 3 if op.arity == VARIADIC else op.arity
    for special in (NAN, INF, -INF, 0.0, -0.0):
        args = [special] + [0.5] * (n - 1)
        if op.arity == VARIADIC:
            result = fn(args)
        elif op.name == "pow":
            result = fn(special, 2.0)
            args = [special, 2.0]
        else:
            result = fn(*args)
        expected = op.eval(*args)
        assert data_is(expected)(result), (op.name, args, result.data, expected)
        with pytest.raises(TypeError):
            fn(*(["x"] * n)) if op.arity != VARIADIC else fn(["x"])


def _op_function(op: Any) -> Callable[..., sa.Value]:
    for name in (op.name, {"min": "minimum", "max": "maximum"}.get(op.name, "")):
        fn = getattr(sa, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    pytest.fail(f"op {op.name} has no module-level function")
