import pytest
import torch

from go4align.train import MethodSpec, parse_method_spec, single_task_weighting, split_methods
from go4align.weighting import GO4Align, make
from go4align.weighting.stl import STL


def test_parse_names_options_and_labels():
    assert parse_method_spec("ls") == MethodSpec("ls", {}, "ls")
    spec = parse_method_spec("go4align:num_groups=3,beta=0.001")
    assert spec.name == "go4align" and spec.options == {"num_groups": 3, "beta": 0.001}
    assert spec.label == "go4align:num_groups=3,beta=0.001"
    spec = parse_method_spec("GO4Align:clustering=lloyd,scale_balance=null,smooth_alignment=false")
    assert (
        spec.name == "go4align" and spec.label == "go4align:clustering=lloyd,scale_balance=null,smooth_alignment=false"
    )
    assert spec.options == {"clustering": "lloyd", "scale_balance": None, "smooth_alignment": False}
    assert parse_method_spec("go4align:clustering=[0,1,0],num_groups=2").options == {
        "clustering": [0, 1, 0],
        "num_groups": 2,
    }
    assert parse_method_spec("stl").is_stl


@pytest.mark.parametrize("text", ["GO4ALIGN", "go4align", " Go4Align ", "go4align:", "GO4Align : "])
def test_labels_that_differ_only_in_the_names_case_are_one_method(text):
    assert parse_method_spec(text) == MethodSpec("go4align", {}, "go4align")


def test_option_values_keep_their_case():
    assert parse_method_spec("STL").label == "stl" and parse_method_spec("STL").is_stl
    spec = parse_method_spec("GO4ALIGN:clustering=Lloyd")
    assert spec.label == "go4align:clustering=Lloyd" and spec.options == {"clustering": "Lloyd"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("famous", r"unknown method 'famous' in 'famous'; available: .*go4align.*ls.*stl"),
        ("go4align:num_groups", "expected key=value"),
        ("go4align:num_groups=2,num_groups=3", "given twice"),
        ("stl:task=1", "stl takes no options"),
        ("ls/2", "no '/'"),
        ("  ", "non-empty"),
        ("go4align:=3", "expected key=value"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_method_spec(text)


def test_split_command_line_lists():
    assert split_methods("go4align:num_groups=3,beta=0.001,ls,stl") == ["go4align:num_groups=3,beta=0.001", "ls", "stl"]
    assert split_methods("go4align:clustering=[0,1,0],num_groups=2,ls") == [
        "go4align:clustering=[0,1,0],num_groups=2",
        "ls",
    ]
    assert split_methods("ls,go4align:beta=0,go4align:beta=1") == ["ls", "go4align:beta=0", "go4align:beta=1"]
    with pytest.raises(ValueError, match="follows no 'method:'"):
        split_methods("num_groups=3,ls")
    with pytest.raises(ValueError, match="empty method"):
        split_methods("ls,,go4align")


def test_build_merges_protocol_defaults_and_explains_errors():
    defaults = {"go4align": {"num_groups": 3, "beta": 0.5}}
    spec = parse_method_spec("go4align:beta=0.1")
    assert spec.effective_options(defaults) == {"num_groups": 3, "beta": 0.1}
    weighting = spec.build(4, defaults)
    assert isinstance(weighting, GO4Align) and weighting.num_groups == 3 and weighting.beta == 0.1
    with pytest.raises(ValueError, match=r"method 'go4align:num_groups=5' with 3 tasks: num_groups must be .* got 5"):
        parse_method_spec("go4align:num_groups=5").build(3)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['k'\]; it accepts \[.*'num_groups'"):
        parse_method_spec("go4align:k=2").build(3)
    with pytest.raises(ValueError, match="beta must be"):
        parse_method_spec("go4align:beta=-1").build(3)


def test_single_task_weighting_is_the_registered_stl_method():
    weighting = single_task_weighting(3, 1)
    assert type(weighting) is STL and repr(weighting) == repr(make("stl", 3, task=1))
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    weights = weighting.backward(losses)
    assert weights.tolist() == [0.0, 1.0, 0.0] and losses.grad.tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="task must be an int in"):
        single_task_weighting(3, 3)
