"""The README's code stays true: its "Your own tasks" example runs as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_own_tasks_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    section = text.split("### Your own tasks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    results = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("result.json"))
    assert "runs/shop/runs/go4align/seed1/result.json" in results
    assert "runs/shop/runs/stl/seed0/result.json" in results
