import importlib.util
import json
import re
from pathlib import Path

import pytest

from go4align import benchmarks, cli
from go4align.benchmarks import Protocol, get_benchmark, qm9
from go4align.cli import build_benchmark, load_config, main
from go4align.lock_file import RUN_LOCK
from go4align.report.results import describe_missing, load_grid, missing_runs
from go4align.weighting import available

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run(*argv):
    return main([str(a) for a in argv])


def test_bench_runs_a_grid_and_resumes(tmp_path, capsys):
    out, config = tmp_path / "grid", tmp_path / "toy.toml"
    config.write_text('benchmark = "toy"\n[benchmark_options]\nsteps_per_epoch = 10\n[protocol]\nepochs = 3\n')
    argv = ["bench", "--config", config, "--methods", "ls,go4align:beta=0.001", "--methods", "stl"]
    argv += ["--seeds", "0,1", "--epochs", "2", "--out", out, "--quiet", "--threads", "1"]
    assert run(*argv) == 0
    grid = json.loads((out / "grid.json").read_text())
    assert grid["methods"] == ["ls", "go4align:beta=0.001", "stl"] and grid["seeds"] == [0, 1]
    assert grid["protocol"]["epochs"] == 2 and grid["benchmark_options"]["steps_per_epoch"] == 10
    assert grid["invocations"][0]["command"].startswith("go4align bench --config ") and "command" not in grid
    results = sorted(p.relative_to(out).as_posix() for p in out.rglob("result.json"))
    assert "runs/go4align:beta=0.001/seed1/result.json" in results and "runs/stl/seed0/result.json" in results
    stamp = (out / "runs" / "ls" / "seed0" / "result.json").stat().st_mtime_ns
    assert run(*argv) == 0  # everything complete: nothing is retrained
    assert (out / "runs" / "ls" / "seed0" / "result.json").stat().st_mtime_ns == stamp
    commands = [i["command"] for i in json.loads((out / "grid.json").read_text())["invocations"]]
    assert len(commands) == 2 and commands[0] == commands[1] and str(tmp_path) not in commands[0]
    assert "--config .../toy.toml" in commands[0] and "--out .../grid" in commands[0]  # outside the working dir
    assert "go4align report" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--benchmark", "digits", "--methods", "lsq"],
            r"unknown method 'lsq'; did you mean 'ls'\? methods: .*go4align.*ls",
        ),
        (["--benchmark", "nyu", "--methods", "ls"], r"unknown benchmark 'nyu'; installed: .*digits.*toy"),
        (
            ["--benchmark", "toy", "--methods", "go4align:num_groups=3"],
            r"num_groups must be an int in \[1, num_tasks=2\], got 3",
        ),
        (["--benchmark", "toy", "--methods", "go4align:groups=2"], r"takes no option\(s\) \['groups'\]"),
        (
            ["--benchmark", "toy", "--methods", "ls", "--data-dir", "/data"],
            r"'toy' takes no option\(s\) \['data_dir'\]",
        ),
        (
            ["--benchmark", "fashion", "--methods", "ls", "--data-dir", "/nonexistent"],
            "apt-get install -y dataset-fashion-mnist",
        ),
        (["--benchmark", "nyuv2", "--methods", "ls"], r"the nyuv2 benchmark needs data_dir \(--data-dir DIR\)"),
        (
            ["--benchmark", "celeba", "--methods", "ls", "--data-dir", "/nonexistent"],
            "expected CelebA layout at /nonexistent",
        ),
        (["--benchmark", "toy", "--methods", "ls", "--seeds", "0,x"], "--seeds must be comma-separated ints"),
        (["--benchmark", "toy", "--methods", "ls", "--seeds", "1,1"], "distinct"),
        (["--benchmark", "toy", "--methods", "ls", "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (
            ["--benchmark", "toy", "--methods", "ls", "--seeds", "-1"],
            r"--seeds must be comma-separated ints >= 0, got '-1'",
        ),
        (["--benchmark", "toy", "--methods", "ls,go4align,ls"], r"method\(s\) \['ls'\] given more than once"),
        (
            ["--benchmark", "toy", "--methods", "ls", "--checkpoint-every", "0"],
            "--checkpoint-every must be >= 1, got 0",
        ),
        (["--benchmark", "toy", "--methods", "ls,stl:task=0"], "stl takes no options"),
        (["--benchmark", "toy", "--methods", "ls", "--threads", "0"], "--threads must be >= 1"),
        (["--methods", "ls"], r"give --benchmark NAME \(installed: .*\) or --config FILE"),
        (
            ["--config", CONFIGS / "nyuv2.toml", "--benchmark", "toy", "--methods", "ls"],
            "conflicts with benchmark = 'nyuv2'",
        ),
        (["--config", "/no/such.toml", "--methods", "ls"], "config file /no/such.toml does not exist"),
        (["--benchmark", "toy", "--methods", "ls", "--device", "tpu7"], "device must name a torch device"),
    ],
)
def test_bench_errors_are_clear(tmp_path, capsys, argv, message):
    assert run("bench", *argv, "--out", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert error.startswith("go4align bench: error: ")
    assert re.search(message, error), error
    assert error.count("\n") == 1 and "Traceback" not in error  # one line
    assert not (tmp_path / "out").exists()  # nothing written, not even grid.json


def test_a_registered_benchmark_missing_from_the_build_is_named(tmp_path, capsys):
    benchmarks.register_benchmark("absent", "go4align.benchmarks.absent:make_benchmark")
    try:
        assert run("bench", "--benchmark", "absent", "--methods", "ls", "--out", tmp_path / "out") == 2
    finally:
        benchmarks.unregister_benchmark("absent")
    error = capsys.readouterr().err
    assert "benchmark 'absent' is registered to go4align.benchmarks.absent:make_benchmark, but module" in error
    assert "go4align.benchmarks.absent is not part of this installation" in error
    assert not (tmp_path / "out").exists()


def test_qm9_without_its_data_says_what_to_install(tmp_path, capsys, monkeypatch):
    config = tmp_path / "qm9.toml"
    cache = tmp_path / "cache"
    config.write_text(f'benchmark = "qm9"\n[benchmark_options]\nprotocol = "tiny"\ncache_dir = "{cache}"\n')
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "qm9pack" else find_spec(name, *a)
    )
    assert run("bench", "--config", config, "--methods", "ls", "--out", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert error.startswith("go4align bench: error: qm9pack is not installed.")
    assert "pip install 'go4align[qm9]'" in error and not (tmp_path / "out").exists()


def test_config_files_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('benchmark = "toy"\nmethods = ["ls"]\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['methods'\]"):
        load_config(bad)
    bad.write_text("benchmark = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('benchmark = "toy"\n[protocol]\nepoch = 3\n')
    with pytest.raises(ValueError, match=r"unknown protocol field\(s\) \['epoch'\]"):
        build_benchmark(None, load_config(bad))
    bad.write_text('benchmark = "fashion"\n[benchmark_options]\ndata_dir = "/a"\n')
    with pytest.raises(cli.UsageError, match="--data-dir '/b' conflicts with data_dir = '/a'"):
        build_benchmark(None, load_config(bad), data_dir="/b")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_config_is_a_valid_protocol(path):
    config = load_config(path)
    assert isinstance(config["benchmark"], str)
    protocol = Protocol(**config["protocol"])
    assert protocol.epochs >= 1 and protocol.lr > 0


@pytest.mark.parametrize("name", ["digits", "synthetic", "toy"])
def test_configs_of_the_builtin_benchmarks_match_their_code(name):
    configured = build_benchmark(None, load_config(CONFIGS / f"{name}.toml"))
    assert configured.protocol == get_benchmark(name).protocol
    assert configured.options == get_benchmark(name).options


def test_qm9_configs_name_their_split():
    assert load_config(CONFIGS / "qm9.toml")["benchmark_options"] == {"protocol": "full"}
    reduced = load_config(CONFIGS / "qm9-reduced.toml")["benchmark_options"]
    sizes = {f"{split}_size": len(positions) for split, positions in qm9.PROTOCOLS["reduced"].items()}
    assert reduced == {"protocol": "reduced", **sizes}


def test_report_writes_the_report_or_says_why_not(tmp_path, capsys):
    assert run("report", tmp_path) == 2
    error = capsys.readouterr().err
    assert error.startswith("go4align report: error: ") and "grid.json" in error
    out = tmp_path / "grid"
    assert run("bench", "--benchmark", "toy", "--methods", "ls,go4align", "--epochs", "1", "--out", out, "--quiet") == 0
    capsys.readouterr()
    assert run("report", out) == 0
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert str(out / "report.html") in capsys.readouterr().out


def test_demo_runs_its_suite_and_reports(tmp_path, capsys, monkeypatch):
    suite = (
        ("toy", {"steps_per_epoch": 5}, {"epochs": 1}, False),
        ("synthetic", {"num_tasks": 4, "num_groups": 2, "train_size": 50}, {"epochs": 1}, True),
    )
    monkeypatch.setattr(cli, "DEMO_SUITE", suite)
    reported = []
    monkeypatch.setattr(cli, "write_report", reported.append)
    assert run("demo", "--out", tmp_path, "--seeds", "0", "--quiet") == 0
    assert reported == [tmp_path / "toy", tmp_path / "synthetic"]
    assert (tmp_path / "synthetic" / "runs" / "stl" / "seed0" / "result.json").exists()
    assert not (tmp_path / "toy" / "runs" / "stl").exists()
    ran = json.loads((tmp_path / "toy" / "grid.json").read_text())["methods"]
    assert {"go4align", "ls"} <= set(ran) <= set(available()) - {"stl"}  # methods that fit the toy
    assert "go4align demo finished" in capsys.readouterr().out


def test_list(capsys):
    assert run("list") == 0
    out = capsys.readouterr().out
    methods, benchmarks = out.splitlines()[:2]
    assert "go4align" in methods and "stl" in methods
    assert all(name in benchmarks for name in ("digits", "fashion", "synthetic", "toy"))


def test_the_command_line_is_checked_before_any_data_loads(tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(cli, "get_benchmark", lambda *a, **k: loaded.append(a))
    out = tmp_path / "out"
    for argv in (
        ["--methods", "ls,famo,lsq"],
        ["--methods", "ls", "--seeds", "0,zero"],
        ["--methods", "ls", "--device", "tpu7"],
        ["--methods", "ls", "--threads", "-2"],
        ["--methods", "ls", "--config", tmp_path / "missing.toml"],
    ):
        assert run("bench", "--benchmark", "digits", *argv, "--out", out) == 2
    (tmp_path / "file").write_text("")
    assert run("bench", "--benchmark", "digits", "--methods", "ls", "--out", tmp_path / "file" / "sub") == 2
    assert run("bench", "--benchmark", "digits", "--methods", "ls", "--out", tmp_path / "file") == 2
    assert run("demo", "--seeds", "a", "--out", out) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 8 and all(e.startswith(("go4align bench: error: ", "go4align demo: error: ")) for e in errors)
    assert "file exists and is not a directory" in errors[6] and "is not a directory" in errors[5]
    assert loaded == [] and not out.exists()


@pytest.mark.parametrize(
    "argv", [["bench", "--benchmark", "toy"], ["bench", "--frobnicate"], ["demo", "--seeds"], ["report"], ["nonsense"]]
)
def test_argparse_mistakes_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        run(*argv)
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1 and ": error: " in error and "--help" in error


def _subcommands():
    parser = cli.parser()
    (commands,) = [a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction)]
    return parser, commands.choices


@pytest.mark.parametrize("name", ["", "bench", "report", "demo", "list"])
def test_help_is_plain_text_and_documents_every_option(name, capsys):
    parser, commands = _subcommands()
    command = commands[name] if name else parser
    text = command.format_help()
    assert not re.search(r":(class|func|mod|math|meth):|``", text), text
    assert all(action.help for action in command._actions), [a.dest for a in command._actions if not a.help]
    assert command.description


def test_demo_help_says_what_it_runs():
    text = _subcommands()[1]["demo"].format_help()
    for name, *_ in cli.DEMO_SUITE:
        assert f"  {name}: " in text
    assert "--quick" in text and ", ".join(cli.DEMO_METHODS) in text and "5 minutes" in text


@pytest.mark.slow
def test_epoch_lines_only_with_verbose(tmp_path, capsys):
    argv = ["bench", "--benchmark", "toy", "--methods", "ls", "--epochs", "2", "--quiet"]
    assert run(*argv, "--out", tmp_path / "a") == 0
    assert "epoch" not in capsys.readouterr().err
    assert run(*argv, "--out", tmp_path / "b", "--verbose") == 0
    assert re.search(r"\[toy\] ls seed0 epoch 2/2", capsys.readouterr().err)


def test_bench_and_demo_use_one_thread_unless_told(tmp_path, monkeypatch):
    chosen = []
    monkeypatch.setattr(cli.torch, "set_num_threads", chosen.append)
    monkeypatch.setattr(cli, "run_grid", lambda *a, **k: None)
    monkeypatch.setattr(cli, "QUICK_SUITE", (("toy", {"steps_per_epoch": 2}, {"epochs": 1}, False),))
    monkeypatch.setattr(cli, "write_report", lambda out: None)
    assert run("bench", "--benchmark", "toy", "--methods", "ls", "--out", tmp_path) == 0
    assert run("bench", "--benchmark", "toy", "--methods", "ls", "--out", tmp_path, "--threads", "2") == 0
    assert run("demo", "--quick", "--out", tmp_path) == 0
    assert chosen == [1, 2, 1]


def test_demo_quick_runs_the_quick_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "QUICK_SUITE", (("toy", {"steps_per_epoch": 2}, {"epochs": 1}, False),))
    monkeypatch.setattr(cli, "DEMO_METHODS", ("ls", "mgda-ub"))
    assert run("demo", "--quick", "--seeds", "0", "--out", tmp_path, "--quiet") == 0
    out, err = capsys.readouterr()
    assert "note: toy: mgda-ub does not apply, skipped" in err and "Traceback" not in err
    assert (tmp_path / "toy" / "report.md").stat().st_size > 0
    assert "Not run: mgda-ub: does not apply to toy" in (tmp_path / "toy" / "report.md").read_text()
    invocations = json.loads((tmp_path / "toy" / "grid.json").read_text())
    assert "go4align demo --quick --seeds 0 --out" in json.dumps(invocations)


# -- --shard, --workers, --launcher: checked before any data loads --------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shard", "3/2"], r"shard 3/2: k/n needs n >= 1 and 1 <= k <= n \(k is 1-based"),
        (["--shard", "1-2"], r"shard must be k/n with ints, 1 <= k <= n \(e\.g\. 1/4\), or auto; got '1-2'"),
        (["--shard", "auto"], r"--shard auto reads a Slurm job array's .* not set"),
        (["--workers", "0"], r"--workers must be >= 1, got 0"),
        (["--workers", "2", "--device", "mps"], r"--workers 2 gives each worker its own device: use --device cuda"),
        (["--partition", "gpu", "--wait"], r"--partition, --wait: option\(s\) of --launcher submitit, which was not"),
        (["--launcher", "submitit", "--shard", "1/2"], r"--launcher submitit gives job k of --jobs N the shard k/N"),
        (["--launcher", "submitit", "--jobs", "0"], r"--jobs must be >= 1, got 0"),
        (["--launcher", "submitit", "--submitit-param", "account"], r"--submitit-param must be KEY=VALUE"),
    ],
)
def test_parallel_options_are_checked_before_data_loads(tmp_path, capsys, monkeypatch, extra, message):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    loaded = []
    monkeypatch.setattr(cli, "build_benchmark", lambda *a, **k: loaded.append(a))
    assert run("bench", "--benchmark", "toy", "--methods", "ls", "--out", tmp_path / "out", *extra) == 2
    error = capsys.readouterr().err
    assert error.startswith("go4align bench: error: ") and error.count("\n") == 1, error
    assert re.search(message, error), error
    assert loaded == [] and not (tmp_path / "out").exists()


def test_workers_are_refused_under_torchrun(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run("bench", "--benchmark", "toy", "--methods", "ls", "--out", tmp_path / "o", "--workers", "2") == 2
    assert "do not run them under torchrun" in capsys.readouterr().err


def test_submitit_parameters_come_from_the_options(tmp_path, monkeypatch):
    submitted = []
    monkeypatch.setattr(cli, "submit", lambda *a, **k: (submitted.append(k["parameters"]), 0)[1])
    options = ["--partition", "gpu", "--gpus-per-node", "2", "--submitit-param", "slurm_account=abc"]
    options += ["--submitit-param", "mem_gb=32.5"]
    bench = ["bench", "--benchmark", "toy", "--methods", "ls", "--out", tmp_path / "o", "--launcher", "submitit"]
    assert run(*bench, *options) == 0
    assert run(*bench, "--cluster", "local") == 0  # submitit's local default would end a job after 2 minutes
    assert submitted == [
        {"timeout_min": None, "gpus_per_node": 2, "slurm_partition": "gpu", "slurm_account": "abc", "mem_gb": 32.5},
        {"timeout_min": cli.LOCAL_TIMEOUT_MIN, "gpus_per_node": None, "slurm_partition": None},
    ]


def test_a_shard_runs_its_part_and_report_names_the_rest(tmp_path, capsys):
    argv = ["bench", "--benchmark", "toy", "--methods", "ls,famo", "--seeds", "0,1", "--epochs", "1", "--quiet"]
    assert run(*argv, "--out", tmp_path / "g", "--shard", "1/2") == 0
    out = capsys.readouterr()
    assert "shard 1/2: 2 of the grid's 4 runs" in out.err and "shard 1/2 done" in out.out
    done = sorted(
        p.parent.relative_to(tmp_path / "g" / "runs").as_posix() for p in (tmp_path / "g").rglob("result.json")
    )
    assert done == ["famo/seed0", "ls/seed0"]  # round-robin over famo 0, famo 1, ls 0, ls 1
    pytest.importorskip("matplotlib")
    assert run("report", tmp_path / "g") == 0
    message = "2 of the 4 runs of grid.json have no complete result: ls seed 1 (not started); famo seed 1 (not started)"
    assert message in capsys.readouterr().err and message in (tmp_path / "g" / "report.md").read_text()
    # a run another process holds is named with its owner, read as the locks read it
    (tmp_path / "g" / "runs" / "ls" / "seed1").mkdir(parents=True)
    (tmp_path / "g" / "runs" / "ls" / "seed1" / RUN_LOCK).write_text('{"host": "node3", "pid": 77, "job": "9.0"}')
    (tmp_path / "g" / "runs" / "famo" / "seed1").mkdir(parents=True)
    (tmp_path / "g" / "runs" / "famo" / "seed1" / RUN_LOCK).write_text("not json")
    grid = load_grid(tmp_path / "g")
    assert describe_missing(grid, missing_runs(grid)).startswith(
        "2 of the 4 runs of grid.json have no complete result: ls seed 1 (in progress: run.lock held by node3 pid "
        "77, Slurm job 9.0); famo seed 1 (in progress: run.lock held by an unknown process (the lock file cannot be "
        "read))"
    )
