"""Bad input: every option is validated up front, and the message names it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import scalar_autograd as sa

POSITIVE = "a finite real number > 0"          # the shared rules' wording (validation.py)
NONNEGATIVE = "a finite real number >= 0"
UNIT = r"a real number in \[0, 1\)"


def _params(n=2):
    return [sa.Value(0.5 * (i + 1), requires_grad=True) for i in range(n)]


def _loss(p):
    return sa.sum([(x - 1.0) ** 2 for x in p])


# ------------------------------------------------------------------ params
BAD_PARAMS = [
    ([], ValueError, "at least one"),
    ("ab", TypeError, "iterable of Value"),
    (sa.Value(1.0, requires_grad=True), TypeError, "iterable of Value"),
    (3, TypeError, "iterable of Value"),
    ([1.0], TypeError, r"params\[0\] is float"),
]


def _non_leaf():
    a = sa.Value(1.0, requires_grad=True)
    return [a * 2.0], ValueError, "leaf"


def _duplicate():
    a = sa.Value(1.0, requires_grad=True)
    return [a, a], ValueError, "same Value twice"


@pytest.mark.parametrize("make", [lambda c=c: c for c in BAD_PARAMS] + [_non_leaf, _duplicate])
@pytest.mark.parametrize("build", [
    lambda p: sa.SGD(p, 0.1),
    lambda p: sa.Adam(p),
    lambda p: sa.AdamW(p),
    lambda p: sa.lbfgs(_loss, p),
    lambda p: sa.minimize(sa.Value(1.0), p),
], ids=["SGD", "Adam", "AdamW", "lbfgs", "minimize"])
def test_bad_params(make, build):
    params, error, match = make()
    with pytest.raises(error, match=match):
        build(params)


@pytest.mark.parametrize("build", [
    lambda p: sa.SGD(p, 0.1), lambda p: sa.Adam(p), lambda p: sa.AdamW(p),
], ids=["SGD", "Adam", "AdamW"])
def test_the_stateful_optimisers_need_requires_grad(build):
    # they read .grad, which backward() fills only for params that require grad
    with pytest.raises(ValueError, match="requires_grad"):
        build([sa.Value(1.0)])


@pytest.mark.parametrize("solve", [
    lambda f, p: sa.lbfgs(f, p),                                  # eager
    lambda f, p: sa.lbfgs(f(p), p),                               # Value graph
    lambda f, p: sa.minimize(f(p), p, method="lbfgs"),
    lambda f, p: sa.minimize(f, p, method="lbfgs"),               # traced
    lambda f, p: sa.minimize(f(p), p, method="adam", lr=0.1, max_iterations=2000),
    lambda f, p: sa.lbfgs(f, p, bounds=(None, 0.5)),
], ids=["lbfgs-function", "lbfgs-value", "minimize-value", "minimize-function",
        "minimize-adam", "lbfgs-bounds"])
def test_the_solvers_take_params_without_requires_grad(solve):
    # as nonlinear_least_squares: the solver differentiates whatever the flag says
    params = [sa.Value(0.0), sa.Value(3.0, requires_grad=True)]
    result = solve(_loss, params)
    expected = [0.5, 0.5] if result.active_mask is not None else [1.0, 1.0]
    np.testing.assert_allclose([p.data for p in params], expected, atol=1e-5)
    assert [p.requires_grad for p in params] == [False, True]   # left as they were


# ------------------------------------------------------------------ optimiser options
BAD_OPTIONS = [
    (sa.SGD, {"lr": 0.0}, ValueError, f"`lr` must be {POSITIVE}; got 0.0"),
    (sa.SGD, {"lr": -1.0}, ValueError, f"`lr` must be {POSITIVE}"),
    (sa.SGD, {"lr": math.nan}, ValueError, f"`lr` must be {POSITIVE}; got nan"),
    (sa.SGD, {"lr": math.inf}, ValueError, f"`lr` must be {POSITIVE}; got inf"),
    (sa.SGD, {"lr": "0.1"}, TypeError, f"`lr` must be {POSITIVE}; got str"),
    (sa.SGD, {"lr": True}, TypeError, f"`lr` must be {POSITIVE}; got bool"),
    (sa.SGD, {"momentum": -0.1}, ValueError, f"`momentum` must be {NONNEGATIVE}"),
    (sa.SGD, {"nesterov": True}, ValueError, "`nesterov` requires `momentum` > 0"),
    (sa.SGD, {"nesterov": 1, "momentum": 0.9}, TypeError, "`nesterov` must be a bool"),
    (sa.SGD, {"weight_decay": -1e-3}, ValueError, f"`weight_decay` must be {NONNEGATIVE}"),
    (sa.Adam, {"lr": 0}, ValueError, f"`lr` must be {POSITIVE}"),
    (sa.Adam, {"betas": (1.0, 0.999)}, ValueError, rf"`betas\[0\]` must be {UNIT}"),
    (sa.Adam, {"betas": (0.9, -0.1)}, ValueError, rf"`betas\[1\]` must be {UNIT}"),
    (sa.Adam, {"betas": (0.9,)}, ValueError, "`betas` must be a pair"),
    (sa.Adam, {"betas": 0.9}, TypeError, "`betas` must be a pair"),
    (sa.Adam, {"eps": 0.0}, ValueError, f"`eps` must be {POSITIVE}"),
    (sa.Adam, {"weight_decay": -1.0}, ValueError, f"`weight_decay` must be {NONNEGATIVE}"),
    (sa.AdamW, {"lr": -0.1}, ValueError, f"`lr` must be {POSITIVE}"),
    (sa.AdamW, {"betas": (0.9, 1.5)}, ValueError, r"`betas\[1\]`"),
    (sa.AdamW, {"eps": -1e-8}, ValueError, f"`eps` must be {POSITIVE}"),
    (sa.AdamW, {"weight_decay": -0.01}, ValueError, f"`weight_decay` must be {NONNEGATIVE}"),
]


@pytest.mark.parametrize("cls, options, error, match", BAD_OPTIONS)
def test_bad_optimiser_options(cls, options, error, match):
    with pytest.raises(error, match=match):
        cls(_params(), **options)


@pytest.mark.parametrize("method", ["sgd", "adam", "adamw"])
def test_minimize_validates_the_same_options(method):
    for cls, options, error, match in BAD_OPTIONS:
        name = {sa.SGD: "sgd", sa.Adam: "adam", sa.AdamW: "adamw"}[cls]
        if name != method:
            continue
        params = _params()
        with pytest.raises(error, match=match):
            sa.minimize(_loss(params), params, method=method, **options)
        assert [p.data for p in params] == [0.5, 1.0]


def test_lr_is_positional_and_settable():
    params = _params()
    opt = sa.SGD(params, 0.25)
    assert opt.lr == 0.25
    opt.lr = 0.5
    assert opt.config.lr == 0.5
    with pytest.raises(ValueError, match=f"`lr` must be {POSITIVE}"):
        opt.lr = -1.0
    assert opt.lr == 0.5
    assert sa.Adam(params, 0.01).lr == 0.01
    assert sa.AdamW(params, 0.02).config.weight_decay == 1e-2


def test_repr_names_the_hyperparameters():
    assert "SGD(2 params, lr=0.1" in repr(sa.SGD(_params(), 0.1))
    assert "betas=[0.9, 0.999]" in repr(sa.Adam(_params()))


# ------------------------------------------------------------------ L-BFGS options
BAD_LBFGS = [
    ({"max_iterations": 0}, ValueError, "`max_iterations` must be a positive integer; got 0"),
    ({"max_iterations": -3}, ValueError, "`max_iterations` must be a positive integer"),
    ({"max_iterations": 2.5}, TypeError, "`max_iterations` must be a positive integer"),
    ({"max_iterations": True}, TypeError, "`max_iterations`"),
    ({"history_size": 0}, ValueError, "`history_size` must be a positive integer"),
    ({"gradient_tolerance": -1e-6}, ValueError, f"`gradient_tolerance` must be {NONNEGATIVE}"),
    ({"ftol": -1.0}, ValueError, f"`ftol` must be {NONNEGATIVE}"),
    ({"max_evaluations": 0}, ValueError, "`max_evaluations`"),
    ({"c1": 0.0}, ValueError, r"`c1` must be a real number in \(0, 1\)"),
    ({"c2": 1.0}, ValueError, r"`c2` must be a real number in \(0, 1\)"),
    ({"c1": 0.5, "c2": 0.4}, ValueError, "`c1` must be < `c2`"),
    ({"max_line_search": 0}, ValueError, "`max_line_search`"),
    ({"callback": 3}, TypeError, "`callback` must be callable"),
    ({"history": 1}, TypeError, "`history` must be a bool"),
]


@pytest.mark.parametrize("options, error, match", BAD_LBFGS)
def test_bad_lbfgs_options(options, error, match):
    params = _params()
    with pytest.raises(error, match=match):
        sa.lbfgs(_loss, params, **options)
    assert [p.data for p in params] == [0.5, 1.0]


@pytest.mark.parametrize("options, error, match", BAD_LBFGS)
def test_minimize_validates_lbfgs_options(options, error, match):
    params = _params()
    with pytest.raises(error, match=match):
        sa.minimize(_loss(params), params, method="lbfgs", **options)


def test_bad_lbfgs_objectives():
    params = _params()
    with pytest.raises(TypeError, match="`objective` must be a function"):
        sa.lbfgs(3.0, params)
    with pytest.raises(ValueError, match="`inputs` is only used with a compiled"):
        sa.lbfgs(_loss, params, inputs=[1.0])
    other = _params()
    f = sa.compile(_loss(other), other)
    with pytest.raises(ValueError, match="compiled objective's params"):
        sa.lbfgs(f, params)
    with pytest.raises(ValueError, match="takes 2 params"):
        sa.lbfgs(f, _params(3))


# ------------------------------------------------------------------ minimize
def test_bad_minimize_arguments():
    params = _params()
    loss = _loss(params)
    with pytest.raises(ValueError, match="`method` must be one of 'adam', 'adamw', 'sgd'"):
        sa.minimize(loss, params, method="bfgs")
    with pytest.raises(TypeError, match="unknown option.*momentum"):
        sa.minimize(loss, params, method="adam", momentum=0.9)
    with pytest.raises(TypeError, match="unknown option.*betas"):
        sa.minimize(loss, params, method="lbfgs", betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="`max_iterations` must be a positive integer"):
        sa.minimize(loss, params, max_iterations=0)
    with pytest.raises(TypeError, match="`loss` must be a Value, a compiled function"):
        sa.minimize("loss", params)
    with pytest.raises(ValueError, match="captured from outside"):  # a function loss
        sa.minimize(lambda p: loss, params)                         # must use p
    with pytest.raises(TypeError, match="inputs"):
        sa.minimize(loss, params, inputs=[1.0])
    with pytest.raises(TypeError, match="`callback` must be callable"):
        sa.minimize(loss, params, callback="print")
    with pytest.raises(TypeError, match="`progress` must be a bool"):
        sa.minimize(loss, params, progress=1)
    with pytest.raises(TypeError, match="`history` must be a bool"):
        sa.minimize(loss, params, history="yes")
    with pytest.raises(ValueError, match=f"`gradient_tolerance` must be {NONNEGATIVE}"):
        sa.minimize(loss, params, method="adam", gradient_tolerance=-1.0)
    with pytest.raises(TypeError, match=f"`gradient_tolerance` must be {NONNEGATIVE}; got None"):
        sa.minimize(loss, params, method="lbfgs", gradient_tolerance=None)
    two = sa.compile([params[0] * 1.0, params[1] * 1.0], params)
    with pytest.raises(ValueError, match="one output"):
        sa.minimize(two, params)
    assert [p.data for p in params] == [0.5, 1.0]


def test_minimize_with_a_raising_callback_leaves_params_unchanged():
    params = _params()

    def callback(k, x, f):
        raise KeyboardInterrupt

    for method, options in (("adam", {"lr": 0.1}), ("lbfgs", {})):
        with pytest.raises(KeyboardInterrupt):
            sa.minimize(_loss(params), params, method=method, callback=callback, **options)
        assert [p.data for p in params] == [0.5, 1.0]


def test_minimize_first_order_statuses():
    # non-finite loss: stops at the first nan iterate, in both loops
    a = sa.Value(3.0, requires_grad=True)
    loss = sa.log(a)  # decreasing a by SGD steps of 1 reaches a <= 0: nan/-inf
    results = []
    for callback in (None, lambda k, x, f: None):
        a.data = 3.0
        results.append(sa.minimize(loss, [a], method="sgd", lr=10.0, max_iterations=50,
                                   callback=callback, history=True))
    for r in results:
        assert r.status is sa.Status.NON_FINITE and not r.success
        assert not math.isfinite(r.fun) and r.iterations < 50
        assert len(r.history) == r.iterations + 1
    assert results[0].iterations == results[1].iterations
    assert np.array_equal(results[0].x, results[1].x)
    # gradient tolerance: native and Python loops stop at the same step
    stops = []
    for callback in (None, lambda k, x, f: None):
        p = _params()
        r = sa.minimize(_loss(p), p, method="adam", lr=0.05, max_iterations=5000,
                        gradient_tolerance=1e-3, callback=callback)
        assert r.status is sa.Status.CONVERGED_GRADIENT and r.success
        assert r.grad_norm <= 1e-3
        stops.append((r.iterations, r.x.tolist()))
    assert stops[0] == stops[1] and stops[0][0] < 5000


def test_progress_prints_to_stderr(capsys):
    p = _params()
    sa.minimize(_loss(p), p, method="adam", max_iterations=100, progress=True)
    err = capsys.readouterr().err
    assert "adam iteration 100/100" in err and err.count("\n") == 10
    p = _params()
    sa.minimize(_loss(p), p, method="lbfgs", progress=True)
    assert "lbfgs iteration 1/100" in capsys.readouterr().err


# ------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("cls, options", [
    (sa.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    (sa.Adam, {"lr": 0.05, "weight_decay": 0.01}),
    (sa.AdamW, {"lr": 0.05}),
])
def test_state_dict_round_trip_continues_the_same_trajectory(cls, options):
    def run(opt, params, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(params).backward()
            opt.step()

    p1 = _params(3)
    o1 = cls(p1, **options)
    run(o1, p1, 20)
    saved = json.loads(json.dumps(o1.state_dict()))  # plain data
    p2 = [sa.Value(p.data, requires_grad=True) for p in p1]
    o2 = cls(p2, lr=1.0)
    o2.load_state_dict(saved)
    assert o2.state_dict() == o1.state_dict()
    run(o1, p1, 20)
    run(o2, p2, 20)
    assert [p.data for p in p1] == [p.data for p in p2]


def test_load_state_dict_validates_everything_before_changing_anything():
    params = _params()
    opt = sa.Adam(params, lr=0.1)
    opt.zero_grad()
    _loss(params).backward()
    opt.step()
    good = opt.state_dict()
    before = json.dumps(good)

    def broken(path, value):
        sd = json.loads(before)
        node = sd
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return sd

    cases = [
        ("not a dict", TypeError, "`state_dict` must be a mapping"),
        ({"optimizer": "Adam"}, ValueError, "exactly the keys"),
        (broken(["optimizer"], "SGD"), ValueError, "belongs to optimizer 'SGD'"),
        (broken(["num_params"], 3), ValueError, "is for 3 parameters"),
        (broken(["hyperparameters", "lr"], -1.0), ValueError, f"`lr` must be {POSITIVE}"),
        (broken(["hyperparameters", "betas"], [0.9, 1.0]), ValueError, r"`betas\[1\]`"),
        (broken(["hyperparameters"], {"lr": 0.1}), ValueError, "exactly the keys"),
        (broken(["state", "step"], -1), ValueError, "step"),
        (broken(["state", "exp_avg"], [0.0]), ValueError, "must hold 2 floats"),
        (broken(["state", "exp_avg"], [0.0, math.nan]), ValueError, "finite"),
        (broken(["state", "exp_avg_sq"], [0.0, -1.0]), ValueError, ">= 0"),
        (broken(["state", "exp_avg_sq"], "ab"), TypeError, "array-like of real numbers"),
    ]
    for bad, error, match in cases:
        with pytest.raises(error, match=match):
            opt.load_state_dict(bad)
        assert json.dumps(opt.state_dict()) == before
    sgd = sa.SGD(params, 0.1, momentum=0.5)
    with pytest.raises(ValueError, match="nesterov"):
        sgd.load_state_dict({"optimizer": "SGD", "num_params": 2,
                             "hyperparameters": {"lr": 0.1, "momentum": 0.0,
                                                 "nesterov": True, "weight_decay": 0.0},
                             "state": {"step": 0, "momentum_buffer": [0.0, 0.0]}})


# ------------------------------------------------------------------ clipping
def test_clip_grad_norm_semantics_and_validation():
    a, b = _params()
    a.grad, b.grad = 3.0, 4.0
    assert sa.clip_grad_norm([a, b], 10.0) == 5.0
    assert (a.grad, b.grad) == (3.0, 4.0)  # factor clamped to 1: unchanged
    assert sa.clip_grad_norm([a, b], 1.0, norm_type=math.inf) == 4.0
    assert b.grad == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match=f"`max_norm` must be {NONNEGATIVE}"):
        sa.clip_grad_norm([a, b], -1.0)
    with pytest.raises(ValueError, match="`norm_type` must be a real number > 0"):
        sa.clip_grad_norm([a, b], 1.0, norm_type=0.0)
    with pytest.raises(TypeError, match=r"params\[1\] is float"):
        sa.clip_grad_norm([a, 1.0], 1.0)
    a.grad = math.inf
    with pytest.raises(RuntimeError, match="not finite|is inf"):
        sa.clip_grad_norm([a, b], 1.0, error_if_nonfinite=True)
    assert sa.clip_grad_norm([], 1.0) == 0.0
