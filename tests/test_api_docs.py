"""The API reference lists every public module: a new module without a page would go
undocumented without a Sphinx warning."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
    package = ROOT / "src"
    names = []
    for path in sorted((package / "go4align").rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if any(part.startswith("_") for part in parts[1:]) and parts[-1] != "__init__":
            continue  # private modules (_checks, __main__)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [name for name in names if name != "go4align"]  # the root re-exports; index.rst is its page


def test_every_public_module_has_an_automodule_entry():
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.rst"))
    missing = [name for name in public_modules() if f".. automodule:: {name}\n" not in pages + "\n"]
    assert not missing, f"add these to docs/api/*.rst: {missing}"
