"""SegNet-MTAN and plain SegNet: shapes, the shared/task parameter split, bad inputs."""

import re

import pytest
import torch

from go4align.benchmarks.models import SegNetMTAN, SegNetSplit, build_segnet

TASKS = ("semantic", "depth", "normal")
WIDTH = 2


@pytest.fixture(scope="module", params=["mtan", "split"])
def model(request):
    torch.manual_seed(0)
    return build_segnet(request.param, TASKS, num_classes=5, width=WIDTH)


def test_output_shapes_and_representation(model):
    x = torch.randn(2, 3, 32, 64)
    predictions, representation = model(x, return_representation=True)
    assert {task: tuple(p.shape) for task, p in predictions.items()} == {
        "semantic": (2, 5, 32, 64),
        "depth": (2, 1, 32, 64),
        "normal": (2, 3, 32, 64),
    }
    assert representation.shape == (2, WIDTH, 32, 64)
    assert torch.allclose(predictions["semantic"].exp().sum(1), torch.ones(2, 32, 64), atol=1e-5)
    assert torch.allclose(predictions["normal"].norm(dim=1), torch.ones(2, 32, 64), atol=1e-5)
    assert model(x).keys() == predictions.keys()


def test_shared_and_task_parameters_are_disjoint_and_cover_the_model(model):
    shared = {id(p) for p in model.shared_parameters()}
    task = {id(p) for p in model.task_parameters()}
    assert len(shared) == len(model.shared_parameters()) and len(task) == len(model.task_parameters())
    assert shared.isdisjoint(task)
    assert shared | task == {id(p) for p in model.parameters()}


def test_task_parameters_get_gradient_only_from_their_task_and_shared_from_all(model):
    model.zero_grad()
    predictions = model(torch.randn(2, 3, 32, 32))
    predictions["depth"].sum().backward()
    depth_only = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    foreign = [n for n in depth_only if any(f".{t}." in n for t in ("semantic", "normal"))]
    assert not foreign, f"the depth loss reached other tasks' parameters: {foreign[:3]}"
    # every shared parameter outside other tasks' attention masks is reached by every task
    masks = ("encoder_att.semantic", "encoder_att.normal", "decoder_att.semantic", "decoder_att.normal")
    shared_names = {id(p) for p in model.shared_parameters()}
    assert all(
        p.grad is not None for n, p in model.named_parameters() if id(p) in shared_names and not n.startswith(masks)
    )
    model.zero_grad()


@pytest.mark.parametrize(
    "split, task_prefixes", [("strict", ("encoder_att.", "decoder_att.", "heads.")), ("reference", ("heads.",))]
)
def test_mtan_parameter_split(split, task_prefixes):
    model = SegNetMTAN(TASKS, num_classes=5, width=WIDTH, parameter_split=split)
    task = {id(p) for p in model.task_parameters()}
    for name, parameter in model.named_parameters():
        assert (id(parameter) in task) == name.startswith(task_prefixes), name
    with pytest.raises(ValueError, match="parameter_split must be 'reference' or 'strict', got 'x'"):
        SegNetMTAN(TASKS, num_classes=5, width=WIDTH, parameter_split="x")


def test_full_width_parameter_counts_match_the_reference():
    # nash-mtl's SegNetMtan / SegNet for NYUv2 (13 classes) have these many parameters.
    assert sum(p.numel() for p in SegNetMTAN(TASKS, num_classes=13).parameters()) == 44_229_073
    assert sum(p.numel() for p in SegNetSplit(TASKS, num_classes=13).parameters()) == 25_055_185


def test_single_task_split_model_is_the_stl_model():
    model = SegNetSplit(("depth",), num_classes=13, width=WIDTH)
    assert model(torch.randn(1, 3, 32, 32)).keys() == {"depth"}


@pytest.mark.parametrize("shape", [(2, 3, 48, 64), (2, 1, 32, 32), (3, 32, 32)])
def test_rejects_inputs_of_the_wrong_shape(shape):
    model = SegNetSplit(("depth",), num_classes=13, width=WIDTH)
    with pytest.raises(ValueError, match="multiples of 32, got " + re.escape(str(shape))):
        model(torch.randn(shape))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "unet"}, "architecture must be one of .*, got 'unet'"),
        ({"width": 0}, "width must be a positive int, got 0"),
        ({"width": 2.5}, "width must be a positive int, got 2.5"),
        ({"num_classes": 1}, "num_classes must be an int >= 2 for the semantic task, got 1"),
        ({"tasks": ("depth", "edges")}, "unknown dense task"),
    ],
)
def test_rejects_bad_construction_arguments(kwargs, message):
    arguments = {"architecture": "mtan", "tasks": TASKS, "num_classes": 13, "width": WIDTH, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_segnet(**arguments)
