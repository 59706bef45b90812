"""The bundled library imports itself only relatively: inside ComfyUI it is ``<extension>.echomimic``."""

from __future__ import annotations

import re

from tests.parity_cases import REPO_ROOT

ABSOLUTE = re.compile(r"^\s*(from echomimic[ .]|import echomimic\b)", re.MULTILINE)


def test_library_never_imports_itself_absolutely() -> None:
    """Catches ``from echomimic.x import y`` inside the library: in ComfyUI there is no top-level
    ``echomimic`` package (the extension is imported under its folder's name), so such a module fails to
    import there, or picks up another copy whose exception classes the nodes' error boundary does not catch."""
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
        for folder in ("echomimic",)  # nodes/: tests/test_nodes_import.py
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if path.name != "__main__.py"
        for text in [path.read_text(encoding="utf-8")]
        for match in ABSOLUTE.finditer(text)
    ]
    assert not offenders, offenders
