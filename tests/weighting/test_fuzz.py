"""The fuzz suite (``fuzzing.py``): every method of ``helpers.methods.METHODS``, each constructor argument
with hostile values and each option set with hostile losses, ends in a named error or a correct
result; none in a bare traceback or a silent wrong result."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from fuzzing import LOSS_VARIANTS, OWNED_ELSEWHERE, Model, cases, run
from helpers.methods import METHODS

from go4align.weighting import FAMO, IMTLG, UW, PCGrad, make

ALL = list(cases())
BY_ID = {case.id: case for case in ALL}


def test_at_least_1800_inputs():
    assert len(ALL) >= 1800
    assert set(OWNED_ELSEWHERE) <= set(BY_ID), set(OWNED_ELSEWHERE) - set(BY_ID)


@pytest.mark.parametrize("label", [info.label for info in METHODS])
def test_every_input_ends_in_a_named_error_or_a_correct_result(label):
    failures = []
    for case in ALL:
        if case.label != label or case.id in OWNED_ELSEWHERE:
            continue
        outcome = run(case)
        if outcome.kind not in ("named", "correct"):
            failures.append(f"{outcome.kind}: {case.id}: {outcome.detail[:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "case_id",
    [
        pytest.param(case_id, marks=pytest.mark.xfail(strict=True, reason=reason))
        for case_id, reason in OWNED_ELSEWHERE.items()
    ],
)
def test_inputs_owned_elsewhere(case_id):
    assert run(BY_ID[case_id]).kind in ("named", "correct")


def test_the_outcomes_are_told_apart():
    """The harness itself: a healthy step is correct, a detached one a named error."""
    assert run(next(c for c in ALL if c.id == "ls[]:healthy")).kind == "correct"
    assert run(next(c for c in ALL if c.id == "ls[]:detached")).kind == "named"
    assert run(next(c for c in ALL if c.id == "ls[]:num_tasks=str")).kind == "named"


# -- the policies the fuzzing decided, pinned ----------------------------------------------------


def losses_of(model: Model, variant: str) -> torch.Tensor:
    return LOSS_VARIANTS[variant](model).losses


def test_famo_refuses_negative_losses_naming_the_task_and_step():
    model = Model()
    with pytest.raises(ValueError, match=r"loss < 0 at step 0 for task\(s\) \[0\]"):
        FAMO(3).backward(losses_of(model, "negative-one"))


def test_famo_accepts_a_zero_loss_with_eps_and_refuses_it_without():
    model = Model()
    weights = FAMO(3).backward(losses_of(model, "zero-one"))
    assert torch.isfinite(weights).all() and (weights >= 0).all()
    with pytest.raises(ValueError, match=r"loss <= 0 at step 0 for task\(s\) \[0\]"):
        FAMO(3, eps=0.0).backward(losses_of(Model(), "zero-one"))


def test_famo_refuses_negative_losses_after_the_step():
    model = Model()
    famo = FAMO(3)
    famo.backward(model()[0])
    with pytest.raises(ValueError, match=r"loss < 0 at step 1 for task\(s\) \[1\]"):
        famo.after_step(lambda: torch.tensor([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("name", ["uw", "ls", "famo", "imtl-g", "graddrop"])
def test_detached_losses_are_refused_before_any_gradient_is_written(name):
    model = Model()
    method = make(name, 3)
    losses, z = model()
    with pytest.raises(ValueError, match="losses must require grad"):
        method.backward(losses.detach(), shared_parameters=model.shared(), shared_representation=z)
    assert all(p.grad is None for p in [*model.parameters(), *method.parameters()])
    assert method.step == 0


def test_uw_with_detached_losses_does_not_train_its_log_variances_alone():
    method = UW(3)
    with pytest.raises(ValueError, match="losses must require grad"):
        method.backward(torch.ones(3))
    assert method.log_variance.grad is None


def test_meta_losses_are_refused_and_the_state_stays_where_it_was():
    famo = FAMO(3)
    with pytest.raises(ValueError, match="meta"):
        famo.backward(Model()()[0].to("meta"))
    assert famo.logits.device.type == "cpu"


def test_imtl_g_leaves_a_task_without_shared_gradient_out_and_says_so():
    model = Model()
    call = LOSS_VARIANTS["task-without-shared-dependence"](model)
    method = IMTLG(3)
    with pytest.warns(RuntimeWarning, match=r"task\(s\) \[1\] have a zero shared gradient"):
        weights = method.backward(call.losses, shared_parameters=call.shared_parameters)
    assert method.diagnostics["degenerate"].tolist() == [0.0, 1.0, 0.0]
    assert weights[1] == pytest.approx(1 / 3)
    assert weights[0] + weights[2] == pytest.approx(1.0)
    assert any(bool((p.grad != 0).any()) for p in model.shared())


def test_imtl_g_on_the_others_equals_imtl_g_without_the_degenerate_task():
    g = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with_zero = torch.stack([g[0], torch.zeros(5, dtype=torch.float64), g[1]])
    losses = torch.ones(3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning):
        weights = IMTLG(3).aggregate(with_zero, losses, []).weights
    alone = IMTLG(2).aggregate(g, losses[:2], []).weights
    torch.testing.assert_close(weights[[0, 2]], alone)


@pytest.mark.parametrize("variant", ["span-1e-30-1e30", "span-1e-20-1e20", "subnormal", "near-float32-max"])
def test_pcgrad_is_finite_across_30_orders_of_magnitude(variant):
    model = Model()
    call = LOSS_VARIANTS[variant](model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = PCGrad(3).backward(call.losses, shared_parameters=call.shared_parameters)
    assert torch.isfinite(weights).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_weights_beyond_the_losses_dtype_are_named_with_the_step():
    """SI's 1 / 1e-40 exceeds float32: before, the gradients silently became inf."""
    with pytest.raises(ValueError, match=r"weight .* at step 0 does not fit the losses' dtype torch.float32"):
        make("si", 3).backward(losses_of(Model(), "subnormal"))


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_go4align_weights_losses_twenty_orders_apart_finitely(preset):
    """GO4Align's mean(L) / 1e-30 exceeds float32: it bounds p (default) or rescales every
    weight by one factor (paper), so the weights and gradients stay finite."""
    model = Model()
    weights = make("go4align", 3, preset=preset).backward(losses_of(model, "span-1e-30-1e30"))
    assert torch.isfinite(weights).all() and (weights > 0).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_methods_refuse_a_representation_the_losses_do_not_reach():
    model = Model()
    losses, _ = model()
    method = make("aligned-mtl", 3, target="representation")
    with pytest.raises(ValueError, match="no task loss depends on shared_representation at step 0"):
        method.backward(losses, shared_representation=torch.ones(8, 6, requires_grad=True))


@pytest.mark.parametrize("value", [1e-300, math.ulp(0.0)])
@pytest.mark.parametrize("name", ["famo", "nash-mtl"])
def test_clip_norms_that_write_zeros_are_refused(name, value):
    with pytest.raises(ValueError, match="max_norm"):
        make(name, 3, max_norm=value)
