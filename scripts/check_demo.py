"""Check a finished `go4align demo` folder: every benchmark has its grid, a non-empty report.md,
report.html and results.csv, and every figure the report links exists and is not empty; no method
was skipped for a missing package (the demo's extra must install all it needs).

    python scripts/check_demo.py runs/demo digits synthetic toy

Only the standard library: it runs in the demo's own environment. Exit 1 names each problem.
"""

import json
import re
import sys
from pathlib import Path


def problems(grid: Path) -> list[str]:
    found = []
    if not (grid / "grid.json").is_file():
        return [f"{grid}: no grid.json (the demo did not run this benchmark)"]
    for name in ("report.md", "report.html", "results.csv"):
        path = grid / name
        if not path.is_file() or path.stat().st_size == 0:
            found.append(f"{path}: missing or empty")
    report = grid / "report.md"
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text()) if report.is_file() else []
    if not figures:
        found.append(f"{report}: links no figure")
    for link in figures:
        figure = grid / link
        if not figure.is_file() or figure.stat().st_size == 0:
            found.append(f"{figure}: linked by report.md, missing or empty")
    skipped = grid / "skipped.json"
    if skipped.is_file():
        for label, why in json.loads(skipped.read_text()).items():
            if "pip install" in why:  # a missing optional dependency, not a method that does not apply
                found.append(f"{grid.name}: {label} was skipped: {why}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, names = Path(argv[0]), argv[1:]
    found = [p for name in names for p in problems(root / name)]
    for problem in found:
        print(f"check_demo: {problem}", file=sys.stderr)
    if not found:
        print(f"check_demo: {', '.join(names)}: reports, tables and figures present; no method lacked a package")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
