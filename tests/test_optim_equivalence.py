"""Optimisers give the same trajectory from every gradient source and every loop.

* graph gradients (``backward()``) vs compiled gradients (``apply_compiled_gradients``)
  over 1000 steps of the seed's IK example: equal to 1e-12 relative. The two gradient
  sources may differ in the last bit (different summation order), so the comparison
  needs a trajectory that does not amplify rounding: with ``lr=0.01, betas=(0.8, 0.99),
  weight_decay=0.1`` AdamW oscillates near the minimum after ~950 steps and a 1e-15
  difference grows to 1e-2 within 50 steps, for any pair of gradient sources that are
  not bit-identical;
* ``minimize`` vs the hand-written ``zero_grad()``/gradient/``step()`` loop: identical;
* the native update kernels and loop vs the numpy equations: bit-identical.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import scalar_autograd as sa
from scalar_autograd.kinematics import planar_ik_loss
from scalar_autograd.optim.equations import (
    AdamConfig,
    SGDConfig,
    adam_init,
    adam_step,
    sgd_init,
    sgd_step,
)
from scalar_autograd.optim.native import AdamKernel, SGDKernel, native_available

TARGET = (2.0, 1.5)
START = [0.3, -0.2, 0.5, 0.1, -0.4]

OPTIMISERS = [
    pytest.param("sgd", {"lr": 0.01}, id="sgd"),
    pytest.param("sgd", {"lr": 0.01, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param("sgd", {"lr": 0.01, "momentum": 0.9, "nesterov": True,
                         "weight_decay": 1e-3}, id="sgd-nesterov-wd"),
    pytest.param("adam", {"lr": 0.01}, id="adam"),
    pytest.param("adam", {"lr": 0.01, "weight_decay": 1e-3}, id="adam-l2"),
    pytest.param("adamw", {"lr": 0.01}, id="adamw"),
    pytest.param("adamw", {"lr": 0.003, "betas": (0.8, 0.99), "weight_decay": 0.1},
                 id="adamw-betas-wd"),
]

_CLASSES = {"sgd": sa.SGD, "adam": sa.Adam, "adamw": sa.AdamW}


def _angles(values=START):
    return [sa.Value(v, label=f"theta{i}", requires_grad=True) for i, v in enumerate(values)]


def _graph_loop(method, options, steps):
    params = _angles()
    opt = _CLASSES[method](params, **options)
    for _ in range(steps):
        opt.zero_grad()
        planar_ik_loss(params, TARGET).backward()
        opt.step()
    return np.array([p.data for p in params])


def _compiled_loop(method, options, steps):
    params = _angles()
    fn = sa.compile_gradient_function(planar_ik_loss(params, TARGET), params)
    opt = _CLASSES[method](params, **options)
    for _ in range(steps):
        opt.zero_grad()
        sa.apply_compiled_gradients(fn, params)
        opt.step()
    return np.array([p.data for p in params])


@pytest.mark.parametrize("method, options", OPTIMISERS)
def test_graph_and_compiled_gradients_give_the_same_trajectory(method, options):
    graph = _graph_loop(method, options, 1000)
    compiled = _compiled_loop(method, options, 1000)
    np.testing.assert_allclose(compiled, graph, rtol=1e-12, atol=0.0)
    # and the optimiser did move the arm toward the target
    params = _angles(graph)
    assert planar_ik_loss(params, TARGET).data < planar_ik_loss(_angles(), TARGET).data


@pytest.mark.parametrize("method, options", OPTIMISERS)
def test_minimize_equals_the_hand_written_loop(method, options):
    steps = 300
    hand = _compiled_loop(method, options, steps)
    params = _angles()
    result = sa.minimize(planar_ik_loss(params, TARGET), params, method=method,
                         max_iterations=steps, **options)
    assert result.status is sa.Status.COMPLETED and result.success
    assert result.iterations == steps and result.nfev == steps + 1
    assert np.array_equal(result.x, hand)
    assert [p.data for p in params] == hand.tolist()  # written back
    assert result.fun == planar_ik_loss(params, TARGET).data


@pytest.mark.parametrize("method, options", OPTIMISERS)
def test_python_loop_equals_native_loop(method, options):
    """A callback forces the per-step Python loop; the iterates must not change."""
    seen = []
    runs = []
    for callback in (None, lambda k, x, f: seen.append((k, f))):
        params = _angles()
        runs.append(sa.minimize(planar_ik_loss(params, TARGET), params, method=method,
                                max_iterations=200, callback=callback, history=True,
                                **options))
    native, python = runs
    assert np.array_equal(native.x, python.x)
    assert native.history == python.history
    assert len(native.history) == 201 and native.history[-1] == native.fun
    assert [k for k, _ in seen] == list(range(1, 201))
    assert [f for _, f in seen] == list(native.history[1:])


@pytest.mark.skipif(not native_available(), reason="needs llvmlite")
def test_native_updates_are_bit_identical_to_the_numpy_equations():
    rng = np.random.default_rng(0)
    n = 23
    adam_configs = [AdamConfig(lr=lr, beta1=b1, beta2=b2, weight_decay=wd, decoupled=dec)
                    for lr, b1, b2, wd, dec in itertools.product(
                        [1e-3, 0.3], [0.0, 0.9, 0.3], [0.999, 0.0], [0.0, 0.1],
                        [False, True])]
    sgd_configs = [SGDConfig(lr=lr, momentum=m, nesterov=nest, weight_decay=wd)
                   for lr, m, nest, wd in itertools.product([1e-3, 0.3], [0.0, 0.9],
                                                            [False, True], [0.0, 0.1])
                   if m > 0 or not nest]
    for config in adam_configs + sgd_configs:
        adam = isinstance(config, AdamConfig)
        x_ref = rng.normal(size=n)
        x_nat = x_ref.copy()
        g = np.empty(n)
        s_ref = adam_init(n) if adam else sgd_init(n)
        s_nat = adam_init(n) if adam else sgd_init(n)
        kernel = (AdamKernel if adam else SGDKernel)(x_nat, g, s_nat, config)
        scratch = np.empty((2, n))
        for _ in range(40):
            g[:] = rng.normal(size=n) * np.sin(x_ref)
            (adam_step if adam else sgd_step)(x_ref, g, s_ref, config, scratch)
            kernel.update()
            assert np.array_equal(x_ref, x_nat), config
        kernel.sync()
        assert s_nat.step == s_ref.step == 40


def test_minimize_without_native_code_gives_the_same_result():
    from scalar_autograd.optim.first_order import run_first_order
    from scalar_autograd.optim.oracles import BoundOracle

    params = _angles()
    f = sa.compile(planar_ik_loss(params, TARGET), params)
    x0 = np.array(START)
    config = AdamConfig(lr=0.02, weight_decay=0.01, decoupled=True)
    runs = [run_first_order(BoundOracle(f, 5), x0, config, 250, use_native=native)
            for native in (True, False)]
    assert np.array_equal(runs[0].x, runs[1].x)
    assert runs[0].fun == runs[1].fun


def test_minimize_reuses_a_compiled_function_with_runtime_inputs():
    params = _angles()
    tx, ty = sa.Value(0.0, label="tx"), sa.Value(0.0, label="ty")
    f = sa.compile(planar_ik_loss(params, (tx, ty)), params, inputs=[tx, ty])
    r1 = sa.minimize(f, params, method="lbfgs", inputs=[2.0, 1.5])
    assert r1.success and r1.fun < 1e-12
    x, y = sa.kinematics.planar_arm_end(params)
    assert abs(x.data - 2.0) < 1e-6 and abs(y.data - 1.5) < 1e-6
    r2 = sa.minimize(f, params, method="lbfgs", inputs=[-1.0, 3.0])
    x, y = sa.kinematics.planar_arm_end(params)
    assert r2.success and abs(x.data + 1.0) < 1e-6 and abs(y.data - 3.0) < 1e-6
    # Value loss with input leaves: their current .data is used
    tx.data, ty.data = 1.0, 1.0
    r3 = sa.minimize(planar_ik_loss(params, (tx, ty)), params, method="lbfgs",
                     inputs=[tx, ty])
    x, y = sa.kinematics.planar_arm_end(params)
    assert r3.success and abs(x.data - 1.0) < 1e-5 and abs(y.data - 1.0) < 1e-5


@pytest.mark.parametrize("backend", ["python", "interpreter"])
def test_minimize_on_other_backends_uses_the_python_loop_with_the_same_result(backend):
    runs = []
    for b in ("auto", backend):
        params = _angles()
        runs.append(sa.minimize(planar_ik_loss(params, TARGET), params, method="adamw",
                                lr=0.01, max_iterations=100, backend=b))
    np.testing.assert_allclose(runs[1].x, runs[0].x, rtol=1e-13, atol=0.0)


def test_only_zero_argument_native_functions_run_in_the_native_loop():
    import ctypes

    from scalar_autograd.optim.native import native_address

    a = sa.Value(1.0)
    f = sa.compile(a * a, [a])
    bound = f.bind(np.zeros(1), np.zeros(1))
    assert native_address(lambda: None) is None
    assert native_address(ctypes.CFUNCTYPE(None, ctypes.c_void_p)(1234)) is None
    assert native_address(ctypes.CFUNCTYPE(ctypes.c_int)(1234)) is None
    if f.backend == "llvm":
        assert isinstance(native_address(bound), int)


def test_nested_and_threaded_solves_on_one_compiled_function_do_not_share_buffers():
    import threading

    from scalar_autograd.optim.first_order import run_first_order
    from scalar_autograd.optim.oracles import bound_oracle

    params = _angles()
    tx, ty = sa.Value(0.0), sa.Value(0.0)
    f = sa.compile(planar_ik_loss(params, (tx, ty)), params, inputs=[tx, ty])
    targets = [(2.0, 1.5), (-1.0, 2.0), (0.5, -3.0)]

    def fresh_solve(target):
        ps = _angles()
        g = sa.compile(planar_ik_loss(ps, (tx, ty)), ps, inputs=[tx, ty])
        return sa.minimize(g, ps, method="adam", lr=0.02, max_iterations=300,
                           inputs=list(target)).x

    expected = {t: fresh_solve(t) for t in targets}

    inner = []

    def callback(k, x, fval):
        if k == 1:  # a nested solve on the same compiled function in the same thread
            inner.append(sa.minimize(f, params, method="adam", lr=0.02, max_iterations=300,
                                     inputs=[-1.0, 2.0]).x)
            for p, v in zip(params, START):
                p.data = v

    outer = sa.minimize(f, params, method="adam", lr=0.02, max_iterations=300,
                        inputs=[2.0, 1.5], callback=callback)
    assert np.array_equal(outer.x, expected[(2.0, 1.5)])
    assert np.array_equal(inner[0], expected[(-1.0, 2.0)])

    config = AdamConfig(lr=0.02)
    results = {}

    def worker(target):
        out = []
        for _ in range(5):
            with bound_oracle(f, 5, list(target)) as oracle:
                out.append(run_first_order(oracle, np.array(START), config, 300).x)
        results[target] = out

    threads = [threading.Thread(target=worker, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(targets)
    for target, xs in results.items():
        for x in xs:
            assert np.array_equal(x, expected[target])


# ---------------------------------------------------------------------------- functional API
@pytest.mark.parametrize("method, options", [p.values for p in OPTIMISERS],
                         ids=[p.id for p in OPTIMISERS])
def test_the_functional_steps_are_the_stateful_optimisers(method, options):
    """``sgd_step``/``adam_step`` (public, scalar_autograd.optim) give the iterates of
    ``sa.SGD``/``sa.Adam``/``sa.AdamW`` bit for bit, with the config those take."""
    from scalar_autograd.optim import AdamWConfig

    params = _angles()
    opt = _CLASSES[method](params, **options)
    f = sa.compile(planar_ik_loss(params, TARGET), params)
    if method == "sgd":
        config, state, step = SGDConfig(**options), sgd_init(5), sgd_step
    else:
        betas = options.get("betas", (0.9, 0.999))
        kwargs = {k: v for k, v in options.items() if k != "betas"}
        config_class = AdamWConfig if method == "adamw" else AdamConfig
        config = config_class(beta1=betas[0], beta2=betas[1], **kwargs)
        state, step = adam_init(5), adam_step
    x = np.array(START)
    grad = np.empty(5)
    for _ in range(200):
        f.value_and_grad(x, out=grad)
        step(x, grad, state, config)
        for p, g in zip(params, f.value_and_grad([p.data for p in params])[1].tolist()):
            p.grad = g
        opt.step()
        assert x.tolist() == [p.data for p in params]
    assert state.step == 200


def test_the_functional_steps_validate_their_arrays():
    x, g = np.zeros(3), np.ones(3)
    with pytest.raises(TypeError, match="`x` must be a writable 1-D float64"):
        adam_step([0.0, 0.0, 0.0], g, adam_init(3), AdamConfig())
    with pytest.raises(TypeError, match="`x` must be a writable 1-D float64"):
        sgd_step(np.zeros(3, dtype=np.float32), g, sgd_init(3), SGDConfig())
    with pytest.raises(ValueError, match=r"`grad` must be an array of x's shape \(3,\)"):
        sgd_step(x, np.ones(1), sgd_init(3), SGDConfig())
    with pytest.raises(ValueError, match=r"`state.exp_avg` must be an array of x's shape"):
        adam_step(x, g, adam_init(4), AdamConfig())
    with pytest.raises(TypeError, match="`state` must be of type SGDState"):
        sgd_step(x, g, adam_init(3), SGDConfig())
    with pytest.raises(TypeError, match="`config` must be of type AdamConfig"):
        adam_step(x, g, adam_init(3), SGDConfig())
    with pytest.raises(ValueError, match="`n` must be an integer >= 0"):
        adam_init(-1)
    assert x.tolist() == [0.0, 0.0, 0.0]
