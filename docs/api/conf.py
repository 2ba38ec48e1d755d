"""Sphinx configuration of the API reference: sphinx-build -W --keep-going docs/api build/api."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from go4align import __version__  # noqa: E402

project = "go4align"
author = "go4align contributors"
copyright = "2026, go4align contributors"
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Each object is documented in its own module only: packages re-export (``__all__``) what their
# modules define, and documenting both would give every name two targets.
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The optional extras are imported only where they are used; the reference needs none of them.
autodoc_mock_imports = ["sklearn", "matplotlib", "cvxpy", "scipy", "torchjd", "rdkit", "qm9pack", "PIL", "lightning"]
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
