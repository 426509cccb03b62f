"""The optimiser updates are written once (optim/equations.py) and run three ways.

* on floats, one element at a time, and on whole numpy arrays: the same bits;
* as native code built from the same functions on the IR builder: the same bits (the
  identity tests of test_optim_equivalence.py), with no fused multiply-add in the
  machine code and Adam's ``pow`` left a libm call;
* the native programs depend on a config's form (its branches) only, never on its
  hyperparameter values, so one compiled module serves every learning rate.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from scalar_autograd.ops import FLOATS, OPS_BY_NAME, Algebra
from scalar_autograd.optim.array_algebra import ARRAYS
from scalar_autograd.optim.equations import (
    ADAM_RULE,
    SGD_RULE,
    AdamConfig,
    AdamForm,
    SGDConfig,
    SGDForm,
    UpdateRule,
)
from scalar_autograd.optim.native import (
    StateLayout,
    UpdateKernel,
    element_program,
    native_available,
    step_program,
    update_source,
)

ADAM_CONFIGS = [AdamConfig(lr=lr, beta1=b1, beta2=b2, weight_decay=wd, decoupled=dec)
                for lr, b1, b2, wd, dec in itertools.product(
                    [1e-3, 0.3], [0.0, 0.5, 0.51, 0.9], [0.999, 0.0], [0.0, 0.1],
                    [False, True])]
SGD_CONFIGS = [SGDConfig(lr=lr, momentum=m, nesterov=nest, weight_decay=wd)
               for lr, m, nest, wd in itertools.product([1e-3, 0.3], [0.0, 0.9],
                                                        [False, True], [0.0, 0.1])
               if m > 0 or not nest]
CONFIGS = ADAM_CONFIGS + SGD_CONFIGS
FORMS = ([(ADAM_RULE, AdamForm(*f)) for f in itertools.product([False, True], repeat=3)
          if not (f[0] and f[1])]
         + [(SGD_RULE, SGDForm(*f)) for f in itertools.product([False, True], repeat=3)
            if f[1] or not f[2]])


def _rule(config) -> UpdateRule:
    return ADAM_RULE if isinstance(config, AdamConfig) else SGD_RULE


class _Strict(float):
    """A float whose ``/`` and ``**`` raise (its ``+ - *`` give _Strict again): the
    equations must divide and raise to powers through the algebra."""

    def __truediv__(self, other):
        raise AssertionError("an update used '/' instead of m.div")

    __rtruediv__ = __truediv__

    def __pow__(self, other):
        raise AssertionError("an update used '**' instead of m.pow")

    __rpow__ = __pow__


def _strict(op):
    return lambda *args: _Strict(op(*map(float, args)))


for _name in ("add", "radd", "sub", "rsub", "mul", "rmul", "neg"):
    setattr(_Strict, f"__{_name}__", _strict(getattr(float, f"__{_name}__")))
STRICT = Algebra("strict", {name: _strict(getattr(FLOATS, name)) for name in OPS_BY_NAME})


@pytest.mark.parametrize("rule, form", FORMS, ids=lambda v: getattr(v, "name", str(v)))
def test_updates_use_the_algebra_for_division_and_powers(rule, form):
    config = ADAM_CONFIGS[0] if rule is ADAM_RULE else SGD_CONFIGS[0]
    inputs = rule.inputs(*[_Strict(v) for v in rule.inputs.of(config, 3)])
    scalars = rule.step_scalars(STRICT, inputs)
    arrays = [_Strict(v) for v in (0.5, -0.25, 0.125, 0.0625)[:len(rule.arrays)]]
    new = rule.element(STRICT, form, *arrays, scalars)
    assert all(type(v) is _Strict for v in (*scalars, *new))


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_whole_arrays_give_the_bits_of_one_element_at_a_time(config):
    rule = _rule(config)
    rng = np.random.default_rng(1)
    n = 9
    arrays = [rng.normal(size=n) for _ in rule.arrays]
    arrays[-1] = np.abs(arrays[-1])  # a second moment is >= 0
    form = rule.form(config)
    for steps_taken in (0, 1, 7):
        scalars = rule.step_scalars(FLOATS, rule.inputs.of(config, steps_taken))
        whole = rule.element(ARRAYS, form, *arrays, scalars)
        for i in range(n):
            one = rule.element(FLOATS, form, *[float(a[i]) for a in arrays], scalars)
            assert [float(w[i]) for w in whole] == list(one)


def test_native_programs_depend_on_the_form_only():
    by_form: dict = {}
    for config in CONFIGS:
        rule = _rule(config)
        program = element_program(rule, rule.form(config))
        by_form.setdefault((rule.name, rule.form(config)), set()).add(program.key())
    assert all(len(keys) == 1 for keys in by_form.values())
    assert len({k for keys in by_form.values() for k in keys}) == len(by_form)
    # hyperparameters are program inputs (read from the state array), never constants
    for rule in (SGD_RULE, ADAM_RULE):
        constants = {v for kind, v in step_program(rule).nodes if kind == "const"}
        assert constants <= {0.0, 1.0}


def test_the_state_layout_names_every_word_once():
    for rule in (SGD_RULE, ADAM_RULE):
        layout = StateLayout(rule)
        assert len(set(layout.words)) == len(layout.words)
        assert {"steps_taken", "gradient_tolerance", "reason"} <= set(layout.words)
        assert set(rule.scalars._fields) <= set(layout.words)
        config = ADAM_CONFIGS[5] if rule is ADAM_RULE else SGD_CONFIGS[5]
        h = layout.state_array(rule.inputs.of(config, 4))
        assert h[layout["steps_taken"]] == 4.0 and h[layout["lr"]] == config.lr
        assert layout.block_word("h") == 1 + len(rule.arrays)


@pytest.mark.skipif(not native_available(), reason="needs llvmlite")
@pytest.mark.parametrize("rule, form", FORMS, ids=lambda v: getattr(v, "name", str(v)))
def test_native_updates_have_no_fused_multiply_add(rule, form):
    from scalar_autograd.native.engine import _ensure_llvm, _optimise

    llvm = _ensure_llvm()
    source = update_source(rule, form)
    assert "contract" not in source and "fast" not in source
    module = llvm.parse_assembly(source)
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2)
    _optimise(llvm, module, machine, 2)
    assembly = machine.emit_assembly(module).lower()
    assert "fma" not in assembly and "fmadd" not in assembly
    if rule is ADAM_RULE:  # beta1**t, beta2**t and bias_correction2**0.5 stay libm calls
        assert str(module).count("call double @pow(") == 3


@pytest.mark.skipif(not native_available(), reason="needs llvmlite")
def test_native_kernel_checks_its_buffers():
    state = ADAM_RULE.init(3)
    with pytest.raises(TypeError, match="g must be a"):
        UpdateKernel(np.zeros(3), np.zeros(3, dtype=np.float32), state, ADAM_CONFIGS[0])
    with pytest.raises(ValueError, match=r"exp_avg must have shape \(4,\)"):
        UpdateKernel(np.zeros(4), np.zeros(4), state, ADAM_CONFIGS[0])


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_numpy_steps_in_blocks_give_the_same_bits(config, monkeypatch):
    from scalar_autograd.optim import equations

    rule = _rule(config)
    rng = np.random.default_rng(2)
    n = 23
    x0 = rng.normal(size=n)
    grads = [rng.normal(size=n) for _ in range(5)]
    runs = []
    for block in (equations.NUMPY_BLOCK, 5):
        monkeypatch.setattr(equations, "NUMPY_BLOCK", block)
        x, state = x0.copy(), rule.init(n)
        for g in grads:
            rule.step(config, state, x, g)
        runs.append([x, *[getattr(state, v) for v in rule.state_vectors]])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
