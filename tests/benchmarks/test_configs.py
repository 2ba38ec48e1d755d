"""The configs of the code's protocols are generated from the code: the files in configs/ are
the generator's output, and each reads back as the protocol it was written from."""

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from go4align.benchmarks import Protocol
from go4align.benchmarks.configs import GENERATED, ConfigFile, check, main, render, write
from go4align.cli import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_configs_folder_is_the_generators_output():
    assert check(CONFIGS) == [], "run `python -m go4align.benchmarks.configs` and commit configs/"


@pytest.mark.parametrize("config", GENERATED, ids=lambda c: c.name)
def test_a_generated_config_reads_back_as_its_protocol(tmp_path, config):
    path = tmp_path / config.name
    path.write_text(render(config))
    loaded = load_config(path)
    assert loaded["benchmark"] == config.benchmark
    assert loaded.get("benchmark_options", {}) == dict(config.options)
    assert Protocol(**loaded["protocol"]) == config.protocol()
    assert config.source in path.read_text()  # says where it comes from


def test_a_stale_or_missing_file_is_found_and_rewritten(tmp_path, capsys):
    write(tmp_path)
    first = GENERATED[0].name
    (tmp_path / first).write_text((tmp_path / first).read_text().replace("epochs = ", "epochs = 1"))
    (tmp_path / GENERATED[1].name).unlink()
    (tmp_path / "mine.toml").write_text("benchmark = 'toy'\n")  # hand-written files are left alone
    assert main(["--dir", str(tmp_path), "--check"]) == 1
    assert f"{first}, {GENERATED[1].name} differ from the code" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path)]) == 0 and check(tmp_path) == []
    assert (tmp_path / "mine.toml").read_text() == "benchmark = 'toy'\n"


def test_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--dir", str(tmp_path / "absent")])
    assert caught.value.code == 2 and "is not a directory" in capsys.readouterr().err


@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False))
def test_a_float_is_written_as_toml_that_reads_back_exactly(value):
    config = ConfigFile("x.toml", "digits", "go4align.benchmarks.digits:PROTOCOL", "a rate", {"rate": value})
    text = render(config)
    assert tomllib.loads(text)["benchmark_options"]["rate"] == value
    (written,) = [line.removeprefix("rate = ") for line in text.splitlines() if line.startswith("rate = ")]
    assert len(written) <= len(repr(value))  # 1e-4 rather than 0.0001, as a person writes a rate
