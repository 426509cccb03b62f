"""The JIT's public API: compile, value_and_grad, jacobian, bind, batches, the seed's
API, caching, bad input, hostile names and threads. Checked against hand-computed
values and finite differences, always at points other than the traced one."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import scalar_autograd as sa
from jit_support import assert_same, central_difference
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.native import engine as native_engine
from scalar_autograd.runtime.cache import KERNELS


def test_sum_and_mean_compiled_at_one_point_are_right_at_another(backend):
    p = [sa.Value(v) for v in (1.0, 2.0, 3.0)]
    f_sum = sa.compile(sa.sum(p), p, backend=backend)
    f_mean = sa.compile(sa.mean(p), p, backend=backend)
    value, grad = f_sum.value_and_grad([4.0, 5.0, 6.0])
    assert value == 15.0 and grad.tolist() == [1.0, 1.0, 1.0]
    value, grad = f_mean.value_and_grad([4.0, 5.0, 6.0])
    assert value == 5.0 and grad.tolist() == [1 / 3] * 3


def test_where_compiled_on_one_side_is_right_on_the_other(backend):
    x = sa.Value(2.0)  # traced where x > 1
    y = sa.where(x > 1.0, x * x, 3.0 * x)
    f = sa.compile(y, [x], backend=backend)
    assert f.value_and_grad([3.0])[0] == 9.0
    value, grad = f.value_and_grad([-1.0])  # the other branch
    assert value == -3.0 and grad.tolist() == [3.0]


def test_comparisons_clamp_mod_round_stay_live(backend):
    x, lo = sa.Value(0.5), sa.Value(-1.0)
    outs = [x > 0.0, sa.clamp(x, lo, 1.0), x % 0.75, sa.round(x), sa.maximum(x, 0.25)]
    f = sa.compile(outs, [x, lo], backend=backend)
    np.testing.assert_array_equal(f([-2.5, -1.0]), [0.0, -1.0, 0.5, -3.0, 0.25])
    np.testing.assert_array_equal(f([2.5, -1.0]), [1.0, 1.0, 0.25, 3.0, 2.5])
    _, jac = f.jacobian([-2.5, -1.0])
    np.testing.assert_array_equal(jac, [[0, 0], [0, 1], [1, 0], [0, 0], [0, 0]])


def test_many_outputs_jacobian_by_forward_and_reverse_mode(backend):
    a, b = sa.Value(0.3), sa.Value(-0.7)
    outs = [sa.sin(a) * b, a * a + b, sa.exp(a - b), sa.atan2(a, b), a / b, sa.tanh(a * b)]
    f = sa.compile(outs, [a, b], backend=backend)  # 6 outputs, 2 params: forward mode
    g = sa.compile(outs[:1], [a, b], backend=backend)  # 1 output: reverse mode
    x = [1.1, 0.4]
    values, jac = f.jacobian(x)
    expected = [math.sin(1.1) * 0.4, 1.1**2 + 0.4, math.exp(0.7), math.atan2(1.1, 0.4),
                1.1 / 0.4, math.tanh(0.44)]
    assert_same(values, expected, rel=1e-15)
    for r in range(len(outs)):
        for c in range(2):
            def f_r(xs, r=r):
                return float(f(xs)[r])
            assert abs(jac[r, c] - central_difference(f_r, x, c)) < 1e-7 * max(1, abs(jac[r, c]))
    assert_same(g.jacobian(x)[1][0], jac[0], rel=1e-15)


def test_inputs_are_runtime_arguments_and_other_leaves_constants(backend):
    p = sa.Value(1.0, label="p")
    target = sa.Value(5.0, label="target")
    scale = sa.Value(2.0)  # neither param nor input: frozen at 2.0
    f = sa.compile(scale * (p - target) ** 2, [p], inputs=[target], backend=backend)
    value, grad = f.value_and_grad([3.0], inputs=[1.0])
    assert (value, grad.tolist()) == (8.0, [8.0])
    scale.data = 100.0
    assert f([3.0], inputs=[1.0]) == 8.0
    target.data = 0.0  # inputs=None reads the input leaves' current data
    assert f([3.0]) == 18.0


def test_out_buffers_and_bind(backend):
    angles = [sa.Value(0.1 * i) for i in range(5)]
    f = sa.compile(planar_ik_loss(angles, (2.0, 1.5)), angles, backend=backend)
    x = np.linspace(-0.5, 0.5, 5)
    value, grad = f.value_and_grad(x)
    out = np.zeros(5)
    value2, same = f.value_and_grad(x, out=out)
    assert same is out and value2 == value
    np.testing.assert_array_equal(out, grad)
    xb, gb, vb = x.copy(), np.zeros(5), np.zeros(1)
    step = f.bind(xb, gb, value=vb)
    step()
    assert vb[0] == value
    np.testing.assert_array_equal(gb, grad)
    xb[:] = 0.0  # in place: the bound call sees the new point
    step()
    assert abs(vb[0] - ((5 - 2.0) ** 2 + 1.5**2)) < 1e-12


def test_batches_loop_natively_and_match_single_calls(backend):
    a, b = sa.Value(0.0), sa.Value(0.0)
    t = sa.Value(0.0)
    f = sa.compile([a * sa.exp(-b * t), a * t], [a, b], inputs=[t], backend=backend)
    rng = np.random.default_rng(3)
    X, U = rng.normal(size=(20, 2)), rng.normal(size=(20, 1))
    V, J = f.batch_jacobian(X, U)
    for i in range(20):
        v, jac = f.jacobian(X[i], U[i])
        np.testing.assert_array_equal(V[i], v)
        np.testing.assert_array_equal(J[i], jac)
    np.testing.assert_array_equal(f.batch_values(X, U), V)


def test_seed_api_compile_gradient_function_and_apply(backend):
    x = sa.Value(2.0)
    y = sa.Value(3.0)
    x.param_name = "x"
    y.param_name = "y"
    fn = sa.compile_gradient_function(x * x * y + sa.sin(y), [x, y], backend=backend)
    assert fn(1.0, 0.0) == [0.0, 2.0]  # [2xy, x^2 + cos y]
    x.data, y.data = 4.0, 0.5
    grads = sa.apply_compiled_gradients(fn, [x, y])
    assert grads == [4.0, 16.0 + math.cos(0.5)]
    assert (x.grad, y.grad) == (4.0, 16.0 + math.cos(0.5))


def test_seed_usage_traditional_and_compiled_sgd_loops_agree():
    """The seed's two training patterns give the same trajectory."""
    def run(compiled: bool) -> list[float]:
        angles = [sa.Value(0.2 * (i + 1), requires_grad=True) for i in range(5)]
        fn = (sa.compile_gradient_function(planar_ik_loss(angles, (2.0, 1.5)), angles)
              if compiled else None)
        for _ in range(200):
            sa.zero_grad(angles)
            if compiled:
                sa.apply_compiled_gradients(fn, angles)
            else:
                planar_ik_loss(angles, (2.0, 1.5)).backward()
            for a in angles:
                a.data -= 0.05 * a.grad
        return [a.data for a in angles]

    assert_same(run(True), run(False), rel=1e-12)


def test_ik_reaches_its_target_with_compiled_gradients():
    angles = [sa.Value(0.3, requires_grad=True) for _ in range(3)]
    target = (sa.Value(1.2), sa.Value(1.9))
    f = sa.compile(planar_ik_loss(angles, target), angles, inputs=list(target))
    x = np.full(3, 0.3)
    for tx, ty in [(1.2, 1.9), (-1.0, 0.5)]:
        for _ in range(3000):
            value, grad = f.value_and_grad(x, [tx, ty])
            x -= 0.1 * grad
        assert value < 1e-12


def test_cache_hit_on_the_same_structure_and_miss_on_other_constants():
    KERNELS.clear()
    def build(c: float):
        x = sa.Value(1.0)
        return sa.compile(sa.sin(x) * c, [x], backend="python"), x

    f1, _ = build(2.0)
    f1([0.5])
    hits = KERNELS.hits
    f2, _ = build(2.0)
    assert KERNELS.hits == hits + 1 and f2._entry is f1._entry
    f3, _ = build(3.0)
    assert f3._entry is not f1._entry and f3([0.5]) == math.sin(0.5) * 3.0


def test_hostile_labels_and_param_names_never_reach_generated_code(backend):
    evil = 'x); __import__("os").system("echo pwned")  # \n"""\'; }'
    x = sa.Value(1.0, label=evil, requires_grad=True)
    x.param_name = evil
    y = sa.Value(2.0, label=evil)
    z = x * y + sa.sqrt(x)
    z.label = evil
    f = sa.compile(z, [x], inputs=[y], backend=backend)
    value, grad = f.value_and_grad([4.0], [3.0])
    assert value == 14.0 and grad.tolist() == [3.25]
    assert "pwned" not in f.source and "import" not in f.source
    fn = sa.compile_gradient_function(z, [x], backend=backend)
    assert fn(4.0) == [2.25]


def test_nan_and_inf_flow_as_in_eager_mode(backend):
    x = sa.Value(1.0)
    outs = [sa.log(x), sa.sqrt(x), 1.0 / x, sa.exp(x * 1000.0), x - x]
    f = sa.compile(outs, [x], backend=backend)
    for v in (0.0, -1.0, math.inf, math.nan):
        eager = [o.data for o in
                 [sa.log(v), sa.sqrt(v), 1.0 / sa.Value(v), sa.exp(sa.Value(v) * 1000.0),
                  sa.Value(v) - v]]
        assert_same(f([v]), eager, rel=1e-15, what=f"x={v}")


@pytest.mark.parametrize("bad_backend", ["gpu", "", "LLVM"])
def test_unknown_backend_is_a_value_error(bad_backend):
    x = sa.Value(1.0)
    with pytest.raises(ValueError, match="backend"):
        sa.compile(x * 2, [x], backend=bad_backend)


def test_llvm_without_llvmlite_says_how_to_install(monkeypatch):
    monkeypatch.setattr(native_engine, "_llvm", None)
    x = sa.Value(1.0)
    with pytest.raises(ImportError, match="pip install llvmlite"):
        sa.compile(x * 2, [x], backend="llvm")
    assert sa.compile(x * 2, [x], backend="auto").backend == "python"


def test_bad_params_and_inputs():
    x, y = sa.Value(1.0), sa.Value(2.0)
    z = x * y
    with pytest.raises(ValueError, match=r"params\[0\] must be a leaf"):
        sa.compile(z, [z])
    with pytest.raises(ValueError, match=r"params\[1\] appears twice"):
        sa.compile(z, [x, x])
    with pytest.raises(ValueError, match=r"inputs\[0\] is also a param"):
        sa.compile(z, [x], inputs=[x])
    with pytest.raises(TypeError, match=r"params\[0\] must be a Value"):
        sa.compile(z, [1.0])
    with pytest.raises(TypeError, match="outputs"):
        sa.compile("z", [x])
    with pytest.raises(ValueError, match="outputs must hold"):
        sa.compile([], [x])
    with pytest.raises(TypeError, match="params must be a sequence"):
        sa.compile(z, x)


def test_bad_call_arguments_name_the_argument():
    x, y = sa.Value(1.0), sa.Value(2.0)
    f = sa.compile(x * y, [x, y])
    with pytest.raises(ValueError, match="x must have length 2; got length 3"):
        f([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="x must be a sequence"):
        f(1.0)
    with pytest.raises(TypeError, match="x must hold 2 real numbers"):
        f(["a", "b"])
    with pytest.raises(ValueError, match="inputs must be empty"):
        f([1.0, 2.0], inputs=[1.0])
    with pytest.raises(ValueError, match="out must have shape"):
        f.value_and_grad([1.0, 2.0], out=np.zeros(3))
    with pytest.raises(TypeError, match="grad must be a writeable C-contiguous float64"):
        f.bind(np.zeros(2), np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="X must have shape"):
        f.batch_values(np.zeros((4, 3)))
    g = sa.compile([x, y], [x, y])
    with pytest.raises(ValueError, match="single output"):
        g.value_and_grad([1.0, 2.0])


def test_two_threads_give_the_serial_results():
    angles = [sa.Value(0.0) for _ in range(20)]
    f = sa.compile(planar_ik_loss(angles, (3.0, 4.0)), angles)
    rng = np.random.default_rng(11)
    points = rng.normal(size=(400, 20))
    serial = [f.value_and_grad(p) for p in points]
    results: dict[int, list] = {}

    def work(k: int) -> None:
        results[k] = [f.value_and_grad(p) for p in points]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        for (v, g), (sv, sg) in zip(results[k], serial):
            assert v == sv
            np.testing.assert_array_equal(g, sg)


def test_vm_is_a_backend_of_its_own_and_the_cache_keys_the_resolved_name(monkeypatch):
    from scalar_autograd.backends import get_backend, registry, resolve_backend

    KERNELS.clear()
    x = sa.Value(0.5)
    y = sa.sin(x) * x + 1.0
    native = sa.compile(y, [x], backend="llvm")
    vm = sa.compile(y, [x], backend="vm")
    assert (native.backend, vm.backend, get_backend("vm").name) == ("llvm", "vm", "vm")
    assert vm.source.startswith("; tape VM program")
    for point in ([0.3], [-2.0]):
        assert_same(vm(point), native(point), rel=1e-15)
        assert_same(vm.value_and_grad(point)[1], native.value_and_grad(point)[1], rel=1e-15)
    # over the threshold "llvm" (and "auto") resolve to "vm": a different cache entry,
    # so the native code compiled above is not reused
    monkeypatch.setattr(registry, "VM_THRESHOLD", 0)
    assert resolve_backend("auto", native.program) == "vm"
    again = sa.compile(y, [x], backend="llvm")
    assert again.backend == "vm" and again.source == vm.source
    KERNELS.clear()


def test_large_graph_uses_the_vm_and_agrees_with_native_code():
    rng = np.random.default_rng(5)
    xs = [sa.Value(float(v)) for v in rng.uniform(-1, 1, 20)]
    acc = xs[0]
    for i in range(6000):  # ~24k instructions: over VM_THRESHOLD
        acc = acc * 0.999 + sa.sin(xs[i % 20] * xs[(7 * i + 3) % 20] + acc)
    f = sa.compile(acc, xs)
    assert f.backend == "vm"
    g = sa.compile(acc, xs, backend="python")
    x = rng.uniform(-1, 1, 20)
    v1, g1 = f.value_and_grad(x)
    v2, g2 = g.value_and_grad(x)
    assert_same(v1, v2, rel=1e-12)
    assert_same(g1, g2, rel=1e-9, abs_tol=1e-300)


def test_deep_chain_of_a_hundred_thousand_nodes_compiles():
    x = sa.Value(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0000001
    f = sa.compile(y, [x])
    value, grad = f.value_and_grad([2.0])
    assert abs(value - 2.0 * 1.0000001**100_000) < 1e-9
    assert abs(grad[0] - 1.0000001**100_000) < 1e-9


def test_group_residuals_keep_pow_exponents_as_constants():
    from scalar_autograd.runtime import group_residuals

    c = sa.Value(0.0)
    xs = [1.0, -2.0, 0.5, 3.0]
    # exponent 2 in every row: baked into the program, only x_i stays per-row data
    squares = group_residuals([(c - xi) ** 2 for xi in xs], [c])
    assert len(squares) == 1 and squares[0].data.shape == (4, 1)
    np.testing.assert_array_equal(squares[0].data[:, 0], xs)
    # an exponent is structural: rows with different exponents are different groups,
    # each with its exponent compiled in (x ** 2.0 is x * x)
    exps = [2.0, 3.0, 2.0, 0.5]
    mixed = group_residuals([(c - xi) ** e for xi, e in zip(xs, exps)], [c])
    assert sorted(g.rows.tolist() for g in mixed) == [[0, 2], [1], [3]]
    # x_i is per-row data where rows differ; a group of one row compiles it in
    assert all(g.data.shape[1] == (1 if g.rows.size > 1 else 0) for g in mixed)
    at = -1.5                                       # not the traced point (0)
    for group in (*squares, *mixed):
        values, jac = group.jacobian(np.array([at]))
        powers = [2.0] * 4 if group is squares[0] else exps
        for k, row in enumerate(group.rows):
            base, e = at - xs[row], powers[row]
            if base < 0 and e != int(e):                # C99 pow: nan, as eager
                assert math.isnan(values[k])
                continue
            assert values[k] == base ** e
            assert jac[k, 0] == pytest.approx(e * base ** (e - 1), rel=1e-15)


def test_group_residuals_groups_by_structure_with_per_row_data():
    from scalar_autograd.runtime import group_residuals

    cx, cy, r = sa.Value(0.0), sa.Value(0.0), sa.Value(1.0)
    pts = [(1.0, 2.0), (-0.5, 0.25), (3.0, -1.0)]
    residuals = [sa.sqrt((cx - px) ** 2 + (cy - py) ** 2) - r for px, py in pts]
    residuals.append(cx * cy - 2.0)  # another structure, params in another order
    groups = group_residuals(residuals, [cx, cy, r])
    assert sorted(g.rows.tolist() for g in groups) == [[0, 1, 2], [3]]
    x = np.array([0.5, -0.25, 2.0])  # not the traced point
    for g in groups:
        values, jac = g.jacobian(x)
        for k, row in enumerate(g.rows):
            if row == 3:
                assert values[k] == 0.5 * -0.25 - 2.0
                np.testing.assert_array_equal(jac[k], [-0.25, 0.5])
            else:
                px, py = pts[row]
                d = math.hypot(0.5 - px, -0.25 - py)
                assert abs(values[k] - (d - 2.0)) < 1e-15
                np.testing.assert_allclose(jac[k], [(0.5 - px) / d, (-0.25 - py) / d, -1.0],
                                           rtol=1e-14)
