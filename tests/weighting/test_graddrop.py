from __future__ import annotations

import pytest
import torch
from helpers.weighting import HardSharing, assert_close_lists, expected_gradients, one_step, task_jacobian

from go4align.weighting import GradDrop

# -- the reference formulation: the shared parameters' gradients ------------------------------------

# FAMO's reference GradDrop (Cranial-XIX/FAMO methods/weight_methods.py, commit 0a6ad06) run once on
# `reference_problem(scale)` after torch.manual_seed(7), with its defaults (max_norm 1.0); the
# gradients it wrote, float32. scale 0.01: the shared gradient has norm 7.8e-4 (no clipping);
# scale 1: it was clipped to norm 1. Reproduce with a checkout of that repository:
#     torch.manual_seed(7); GradDrop(3, "cpu").backward(losses, shared_parameters=[weight, bias])
REFERENCE = {
    0.01: {
        "shared": [
            6.870279321447015e-05, -0.00010529628343647346, -3.047156860702671e-05, -8.454837370663881e-05,
            4.835678555537015e-05, -0.0001859399490058422, -0.0001113932448788546, 7.748678035568446e-05,
            -0.00010636281513143331, -0.0001432388526154682, -1.884506127680652e-05, -0.0003933447296731174,
            0.00015367561718448997, 9.236522600986063e-05, -0.00016464191139675677, -0.0005387730197981,
        ],
        "heads": [
            -0.009210139513015747, -0.004086613655090332, -0.004837579093873501, 0.0020785254891961813,
            0.0002404720289632678, 0.03171997517347336, -0.026575153693556786, 0.008398322388529778,
            0.013774456456303596, 0.02888531982898712, -0.056448664516210556, 0.01376868411898613,
        ],
    },
    1.0: {
        "shared": [
            0.08756064623594284, -0.13419845700263977, -0.038835544139146805, -0.10775558650493622,
            0.06162996590137482, -0.23697754740715027, -0.1419690102338791, 0.09875570237636566,
            -0.13555775582790375, -0.18255572021007538, -0.024017727002501488, -0.5013118386268616,
            0.19585715234279633, 0.11771804094314575, -0.209833562374115, -0.6866579055786133,
        ],
        "heads": [
            -0.9210141897201538, -0.4086613357067108, -0.48375800251960754, 0.2078525722026825,
            0.024046793580055237, 3.171997547149658, -2.6575160026550293, 0.8398325443267822,
            1.3774456977844238, 2.888533115386963, -5.64486837387085, 1.3768682479858398,
        ],
    },
}  # fmt: skip


def reference_problem(scale: float):
    """Three regression tasks on a tanh layer (4 units); float32, as the reference's buffers."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, generator=generator).requires_grad_()
    bias = torch.randn(4, generator=generator).requires_grad_()
    heads = (scale * torch.randn(3, 4, generator=generator)).requires_grad_()
    x = torch.randn(8, 3, generator=generator)
    y = scale * torch.randn(8, 3, generator=generator) * torch.tensor([1.0, 3.0, 10.0])
    losses = ((torch.tanh(x @ weight.T + bias) @ heads.T - y) ** 2).mean(0)
    return [weight, bias], heads, losses


@pytest.mark.parametrize("scale", sorted(REFERENCE))
def test_one_step_matches_the_reference_code(scale):
    shared, heads, losses = reference_problem(scale)
    assert GradDrop(3, seed=7).backward(losses, shared_parameters=shared) is None
    expected = REFERENCE[scale]
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(got, torch.tensor(expected["shared"]), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(heads.grad.reshape(-1), torch.tensor(expected["heads"]), rtol=1e-5, atol=1e-9)


def by_hand_parameters(jac, draw, leak=0.0):
    purity = 0.5 * (1 + jac.sum(0) / (jac.abs().sum(0) + 1e-8))
    mask = ((purity > draw) & (jac > 0)) | ((purity < draw) & (jac < 0))
    return (jac * (leak + (1 - leak) * mask.to(jac.dtype))).sum(0)


@pytest.mark.parametrize("leak", [0.0, 0.4])
def test_parameters_direction_by_hand_with_the_same_draws(leak):
    jac = torch.randn(3, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    draw = torch.rand(20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    result = GradDrop(3, leak=leak, max_norm=0, seed=5).aggregate(jac, torch.ones(3, dtype=torch.float64), [])
    assert result.weights is None
    torch.testing.assert_close(result.direction, by_hand_parameters(jac, draw, leak))
    assert "shared_grad_norm" not in result.extras


def test_the_shared_gradient_is_clipped_to_max_norm():
    model = HardSharing(3)
    model.y.mul_(100)  # large losses: a shared gradient far longer than max_norm
    _, unclipped = one_step(GradDrop(3, max_norm=0, seed=5), model)
    method = GradDrop(3, max_norm=0.5, seed=5)
    _, clipped = one_step(method, model)
    shared = len(model.shared_parameters())
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in unclipped[:shared]]).double())
    assert norm > 0.5
    torch.testing.assert_close(method.diagnostics["shared_grad_norm"], norm)
    factor = float(0.5 / (norm + 1e-6))
    assert_close_lists(clipped[:shared], [g * factor for g in unclipped[:shared]])
    assert_close_lists(clipped[shared:], unclipped[shared:])  # heads are not clipped


def test_representation_target_clips_the_shared_parameters_when_asked():
    model = HardSharing(3)
    model.y.mul_(100)
    method = GradDrop(3, target="representation", max_norm=0.25)
    _, grads = one_step(method, model)
    shared = len(model.shared_parameters())
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads[:shared]]))
    assert float(method.diagnostics["shared_grad_norm"]) > 0.25
    assert abs(float(norm) - 0.25) < 1e-5


def test_parameters_backward_writes_the_direction_and_plain_head_gradients():
    model = HardSharing(3)
    _, jac = task_jacobian(model, "parameters")
    weights, grads = one_step(GradDrop(3, leak=1.0, max_norm=0), model)  # leak 1: plain sum
    assert weights is None
    assert_close_lists(grads, expected_gradients(model, jac.sum(0), torch.ones(3, dtype=torch.float64)))


def test_the_default_is_the_reference_formulation():
    method = GradDrop(3)
    assert (method.target, method.max_norm, method.activation_sign, method.leak) == ("parameters", 1.0, False, 0.0)
    model = HardSharing(3)
    losses, z = model()
    with pytest.raises(ValueError, match="shared_parameters"):
        method.backward(losses, shared_representation=z)


# -- the paper's and LibMTL's formulation: the shared representation --------------------------------


def run(method, jac, z):
    result = method.aggregate(jac, torch.ones(jac.shape[0], dtype=torch.float64), [z])
    assert result.weights is None
    return result.direction.view_as(z)


def by_hand(grads, z, draw, leak=0.0, activation_sign=True):
    signed = grads * z.sign() if activation_sign else grads
    s = signed.sum(1)
    purity = 0.5 * (1 + s.sum(0) / (s.abs().sum(0) + 1e-7))
    mask = ((purity > draw) & (s > 0)) | ((purity < draw) & (s < 0))
    return (grads * (leak + (1 - leak) * mask.to(grads.dtype)).unsqueeze(1)).sum(0)


@pytest.mark.parametrize("leak, activation_sign", [(0.0, True), (0.3, True), (0.0, False)])
def test_direction_by_hand_with_the_same_draws(leak, activation_sign):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    grads = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    draw = torch.rand(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    method = GradDrop(3, target="representation", leak=leak, activation_sign=activation_sign, seed=5)
    torch.testing.assert_close(run(method, grads.reshape(3, -1), z), by_hand(grads, z, draw, leak, activation_sign))


def test_full_leak_or_pure_signs_keep_everything():
    generator = torch.Generator().manual_seed(1)
    z = torch.rand(4, 5, generator=generator, dtype=torch.float64) + 0.1
    grads = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    full_leak = GradDrop(3, target="representation", leak=1.0)
    torch.testing.assert_close(run(full_leak, grads.reshape(3, -1), z), grads.sum(0))
    agreeing = grads.abs()  # every task pushes every feature the same way: purity 1
    torch.testing.assert_close(run(GradDrop(3, target="representation"), agreeing.reshape(3, -1), z), agreeing.sum(0))


def test_representation_backward_returns_none_and_heads_get_plain_gradients():
    model = HardSharing(3)
    method = GradDrop(3, target="representation", leak=1.0)
    assert (method.activation_sign, method.max_norm) == (True, 0.0)
    _, jac = task_jacobian(model, "representation")
    weights, grads = one_step(method, model)
    assert weights is None and "weights" not in method.diagnostics
    assert method.diagnostics["kept_fraction"].shape == (3,)
    assert_close_lists(
        grads, expected_gradients(model, jac.sum(0), torch.ones(3, dtype=torch.float64), "representation")
    )


def test_representation_backward_needs_the_representation():
    model = HardSharing(3)
    losses, _ = model()
    with pytest.raises(ValueError, match="shared_representation"):
        GradDrop(3, target="representation").backward(losses, shared_parameters=model.shared_parameters())


@pytest.mark.parametrize(
    "options, named",
    [
        ({"leak": 1.5}, "leak"),
        ({"leak": -0.1}, "leak"),
        ({"activation_sign": 1, "target": "representation"}, "activation_sign"),
        ({"activation_sign": True}, "activation_sign"),  # parameters have no activation
        ({"max_norm": -1.0}, "max_norm"),
        ({"max_norm": float("nan")}, "max_norm"),
        ({"target": "features"}, "target"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_bad_options_are_named(options, named):
    with pytest.raises(ValueError, match=named):
        GradDrop(3, **options)
