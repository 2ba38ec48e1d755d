import json

import pytest
from helpers.training import make_tiny

from go4align import __version__
from go4align.train import prepare_grid, run_dir_of, run_grid


def test_layout_and_grid_json(tmp_path):
    results = run_grid(
        make_tiny(epochs=2),
        ["ls", "go4align:num_groups=2", "stl"],
        [0, 3],
        tmp_path,
        progress=False,
        command="go4align bench --seeds 0,3",
    )
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["benchmark"] == "tiny" and grid["methods"] == ["ls", "go4align:num_groups=2", "stl"]
    assert grid["seeds"] == [0, 3] and grid["go4align_version"] == __version__ and "command" not in grid
    assert [i["command"] for i in grid["invocations"]] == ["go4align bench --seeds 0,3"]
    assert grid["protocol"]["epochs"] == 2 and "start_time" in grid
    for label in ("ls", "go4align:num_groups=2", "stl"):
        for seed in (0, 3):
            path = tmp_path / "runs" / label / f"seed{seed}" / "result.json"
            assert json.loads(path.read_text()) == results[label, seed]
    assert (run_dir_of(tmp_path, "ls", 0) / "checkpoint.pt").exists()
    assert sorted(p.name for p in (tmp_path / "runs" / "stl" / "seed0" / "tasks").iterdir()) == ["cls", "reg"]


def test_stl_takes_each_task_from_its_own_model(tmp_path):
    run_grid(make_tiny(epochs=2), ["stl"], [0], tmp_path, progress=False)
    stl = tmp_path / "runs" / "stl" / "seed0"
    merged = json.loads((stl / "result.json").read_text())
    own = {task: json.loads((stl / "tasks" / task / "result.json").read_text()) for task in ("reg", "cls")}
    assert own["reg"]["focus_task"] == "reg" and own["reg"]["trace"]["weights"][0] == [1.0, 0.0]
    assert merged["method"] == merged["method_label"] == "stl" and merged["complete"]
    assert merged["metrics"] == {
        "reg_mse": own["reg"]["metrics"]["reg_mse"],
        "cls_acc": own["cls"]["metrics"]["cls_acc"],
    }
    first = merged["epochs"][0]
    assert first["test"] == {
        "reg_mse": own["reg"]["epochs"][0]["test"]["reg_mse"],
        "cls_acc": own["cls"]["epochs"][0]["test"]["cls_acc"],
    }
    assert first["train_losses"] == {
        "reg": own["reg"]["epochs"][0]["train_losses"]["reg"],
        "cls": own["cls"]["epochs"][0]["train_losses"]["cls"],
    }
    assert first["time_s"] == own["reg"]["epochs"][0]["time_s"] + own["cls"]["epochs"][0]["time_s"]
    assert merged["trace"]["weights"][0] == [1.0, 1.0] and merged["trace"]["groups"] is None
    assert merged["trace"]["losses"][0] == [own["reg"]["trace"]["losses"][0][0], own["cls"]["trace"]["losses"][0][1]]


def test_completed_runs_are_skipped_and_grids_extend(tmp_path):
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False)
    calls = []
    results = run_grid(
        make_tiny(epochs=1), ["ls", "go4align"], [0, 1], tmp_path, progress=False, callbacks=[calls.append]
    )
    trained = {info.run_dir for info in calls}
    assert trained == {
        run_dir_of(tmp_path, "go4align", 0),
        run_dir_of(tmp_path, "go4align", 1),
        run_dir_of(tmp_path, "ls", 1),
    }
    assert len(results) == 4
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert grid["methods"] == ["ls", "go4align"] and grid["seeds"] == [0, 1]


def test_another_grid_in_the_same_directory_is_refused(tmp_path):
    run_grid(make_tiny(epochs=1), ["ls"], [0], tmp_path, progress=False)
    with pytest.raises(ValueError, match="holds a grid with another protocol"):
        run_grid(make_tiny(epochs=2), ["ls"], [0], tmp_path, progress=False)


@pytest.mark.parametrize(
    "methods, seeds, message",
    [
        (["ls", "ls"], [0], r"method\(s\) \['ls'\] given more than once"),
        (["go4align:num_groups=3"], [0], r"method 'go4align:num_groups=3' with 2 tasks: num_groups must be"),
        (["nope"], [0], "unknown method 'nope'"),
        ([], [0], "no methods"),
        (["ls"], [], "no seeds"),
        (["ls"], [0, 0], "distinct"),
        (["ls"], [-1], "seeds must be ints >= 0"),
    ],
)
def test_bad_grids_fail_before_training(methods, seeds, message):
    with pytest.raises(ValueError, match=message):
        prepare_grid(make_tiny(), methods, seeds)


def test_method_names_in_another_case_are_the_same_run(tmp_path):
    first = run_grid(make_tiny(epochs=1), ["GO4ALIGN", "LS"], [0], tmp_path, progress=False)
    again = run_grid(make_tiny(epochs=1), ["go4align", "ls"], [0], tmp_path, progress=False)  # reads, trains nothing
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["go4align", "ls"]
    assert again == first and json.loads((tmp_path / "grid.json").read_text())["methods"] == ["go4align", "ls"]
    with pytest.raises(ValueError, match=r"method\(s\) \['go4align'\] given more than once"):
        prepare_grid(make_tiny(), ["go4align", "GO4Align"], [0])
