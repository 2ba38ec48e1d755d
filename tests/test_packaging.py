"""What the packaging promises: the demo extra installs every optional package the demo's methods
import, the package ships its typing marker and license, and the CI's demo check catches an
incomplete install. (CI also builds the wheel and sdist and installs them: .ci/run package.)"""

import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

from go4align import cli
from go4align.weighting import make

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
OPTIONAL = ("cvxpy", "scipy", "sklearn", "torchjd", "matplotlib")


def requirement_names(requirements):
    return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_demo_extra_holds_every_extra_the_demo_methods_ask_for(monkeypatch):
    for module in [m for m in sys.modules if m.split(".")[0] in OPTIONAL] + list(OPTIONAL):
        monkeypatch.setitem(sys.modules, module, None)  # as on a machine without them: imports fail
    asked = set()
    for method in cli.DEMO_METHODS:
        try:
            make(method, 3)
        except ImportError as error:
            (extra,) = re.findall(r"go4align\[(\w+)\]", str(error))
            asked.add(extra)
    assert asked == {"nashmtl", "cagrad"}  # the methods with optional solvers
    demo = requirement_names(EXTRAS["demo"])
    for extra in asked | {"sklearn", "report"}:  # the digits data and the report's figures
        assert requirement_names(EXTRAS[extra]) <= demo, extra


def test_tqdm_is_a_core_dependency_and_sphinx_the_docs_extra():
    assert "tqdm" in requirement_names(PYPROJECT["project"]["dependencies"])
    assert requirement_names(EXTRAS["docs"]) == {"sphinx"}


def test_the_package_ships_its_license_and_typing_marker():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "License :: OSI Approved :: MIT License" in PYPROJECT["project"]["classifiers"]
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["go4align"] == ["py.typed"]
    assert (Path(importlib.util.find_spec("go4align").origin).parent / "py.typed").is_file()


def check_demo():
    spec = importlib.util.spec_from_file_location("check_demo", ROOT / "scripts" / "check_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_folder(tmp_path):
    grid = tmp_path / "toy"
    (grid / "figures").mkdir(parents=True)
    (grid / "grid.json").write_text("{}")
    (grid / "report.md").write_text("# toy\n![task losses](figures/losses.png)\n")
    for name in ("report.html", "results.csv", "figures/losses.png"):
        (grid / name).write_text("x")
    return tmp_path


def test_the_demo_check_passes_a_complete_folder(demo_folder, capsys):
    (demo_folder / "toy" / "skipped.json").write_text(json.dumps({"mgda-ub": "does not apply to toy: ..."}))
    assert check_demo().main([str(demo_folder), "toy"]) == 0


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda g: (g / "results.csv").write_text(""), "results.csv: missing or empty"),
        (lambda g: (g / "figures" / "losses.png").unlink(), "losses.png: linked by report.md, missing or empty"),
        (lambda g: (g / "report.md").write_text("# no figures\n"), "report.md: links no figure"),
        (lambda g: (g / "grid.json").unlink(), "no grid.json"),
        (
            lambda g: (g / "skipped.json").write_text(json.dumps({"nash-mtl": "NashMTL needs cvxpy: pip install x"})),
            "toy: nash-mtl was skipped: NashMTL needs cvxpy",
        ),
    ],
)
def test_the_demo_check_names_what_is_missing(demo_folder, capsys, damage, problem):
    damage(demo_folder / "toy")
    assert check_demo().main([str(demo_folder), "toy"]) == 1
    assert problem in capsys.readouterr().err
