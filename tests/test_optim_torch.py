"""SGD, Adam and AdamW follow torch.optim's trajectories (skipped without torch).

The problem: a small smooth non-quadratic loss of 3 parameters (float64 throughout);
the same gradient is fed to both sides at every step, and both sides step from their
own parameters, so differences would compound if the equations differed. Per step
the two agree to the last bit or within an ulp (PyTorch's CPU kernels may fuse a
multiply-add). Hyperparameters that make Adam jitter (e.g. ``betas=(0.7, 0.9)`` at
``lr=0.05`` here) amplify such ulps to ~1e-9 over 150 steps, so they are not used.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import scalar_autograd as sa

torch = pytest.importorskip("torch")

START = [0.8, -1.3, 0.4]
STEPS = 150


def _loss_sa(p):
    a, b, c = p
    return (a - 1.0) ** 2 + 3.0 * (b * c - 0.5) ** 2 + sa.sin(a + b) ** 2 + 0.1 * c ** 4


def _loss_torch(p):
    a, b, c = p[0], p[1], p[2]
    return (a - 1.0) ** 2 + 3.0 * (b * c - 0.5) ** 2 + torch.sin(a + b) ** 2 + 0.1 * c ** 4


CASES = [
    pytest.param(sa.SGD, torch.optim.SGD, {"lr": 0.02}, id="sgd"),
    pytest.param(sa.SGD, torch.optim.SGD, {"lr": 0.02, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(sa.SGD, torch.optim.SGD, {"lr": 0.02, "momentum": 0.8, "nesterov": True},
                 id="sgd-nesterov"),
    pytest.param(sa.SGD, torch.optim.SGD,
                 {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
                 id="sgd-nesterov-wd"),
    pytest.param(sa.SGD, torch.optim.SGD, {"lr": 0.02, "weight_decay": 0.1}, id="sgd-wd"),
    pytest.param(sa.Adam, torch.optim.Adam, {"lr": 0.05}, id="adam"),
    pytest.param(sa.Adam, torch.optim.Adam,
                 {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1},
                 id="adam-l2"),
    pytest.param(sa.AdamW, torch.optim.AdamW, {"lr": 0.05}, id="adamw-default-decay"),
    pytest.param(sa.AdamW, torch.optim.AdamW,
                 {"lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.3}, id="adamw"),
]


@pytest.mark.parametrize("ours, theirs, options", CASES)
def test_trajectory_matches_torch(ours, theirs, options):
    params = [sa.Value(v, requires_grad=True) for v in START]
    opt = ours(params, **options)
    tp = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    topt = theirs([tp], foreach=False, **options)
    for step in range(STEPS):
        opt.zero_grad()
        _loss_sa(params).backward()
        topt.zero_grad()
        _loss_torch(tp).backward()
        ours_grad = np.array([p.grad for p in params])
        np.testing.assert_allclose(tp.grad.numpy(), ours_grad, rtol=1e-9, atol=1e-12)
        opt.step()
        topt.step()
        np.testing.assert_allclose([p.data for p in params], tp.detach().numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=f"step {step + 1}")
    assert not np.allclose([p.data for p in params], START)


@pytest.mark.parametrize("ours, theirs, options", CASES)
def test_minimize_matches_torch(ours, theirs, options):
    method = {sa.SGD: "sgd", sa.Adam: "adam", sa.AdamW: "adamw"}[ours]
    params = [sa.Value(v, requires_grad=True) for v in START]
    result = sa.minimize(_loss_sa(params), params, method=method, max_iterations=STEPS,
                         **options)
    tp = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    topt = theirs([tp], foreach=False, **options)
    for _ in range(STEPS):
        topt.zero_grad()
        _loss_torch(tp).backward()
        topt.step()
    np.testing.assert_allclose(result.x, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    grads = [0.3, -4.0, 2.5, 1e-3]
    params = [sa.Value(0.0, requires_grad=True) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = g
    tps = [torch.zeros((), dtype=torch.float64, requires_grad=True) for _ in grads]
    for t, g in zip(tps, grads):
        t.grad = torch.tensor(g, dtype=torch.float64)
    ours = sa.clip_grad_norm(params, max_norm, norm_type=norm_type)
    theirs = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type=norm_type)
    assert ours == pytest.approx(float(theirs), rel=1e-14)
    np.testing.assert_allclose([p.grad for p in params], [float(t.grad) for t in tps],
                               rtol=1e-14)
