"""Every relative link of the Markdown we ship (README, docs/, the stored results) reaches a file
that is in the repository, and an anchor reaches a heading of that file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "results").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = CODE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def _links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(CODE.sub("", path.read_text(encoding="utf-8")))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]  # http:, mailto: ... are not files here


def test_the_documents_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert {"README.md", "docs/results.md", "results/README.md", "results/qm9-cpu/report.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_link_reaches_an_existing_file(document):
    for target in _links(document):
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        assert path.exists(), f"{document.relative_to(ROOT)} links {target}, which does not exist"
        assert ROOT in path.parents or path == ROOT, f"{document.relative_to(ROOT)} links outside: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{document.relative_to(ROOT)} links {target}: no such heading"


def test_slug_follows_github():
    assert _slug("Where GO4Align's mechanism can act") == "where-go4aligns-mechanism-can-act"
    assert _slug(" Scale-out, mixed precision, resilience") == "scale-out-mixed-precision-resilience"
