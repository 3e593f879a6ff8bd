"""The examples of python/README.md's "Expressions" section run, and say what they claim."""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import pytest

import keyfilter

from conftest import PYTHON_DIR


def section_blocks(heading: str) -> List[Tuple[str, str]]:
    """``(language, code)`` of every fenced block in the README section ``heading``."""
    text = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_section_has_examples():
    languages = [language for language, _ in section_blocks("Expressions")]
    assert languages.count("python") >= 3
    assert "text" in languages


def test_expressions_examples_run(capsys):
    if not hasattr(keyfilter._native, "explain"):
        pytest.fail("keyfilter._native has no explain(): the extension predates boolean expressions")
    namespace: Dict[str, object] = {"__name__": "readme"}
    for language, code in section_blocks("Expressions"):
        if language == "python":
            exec(compile(code, "README.md (Expressions)", "exec"), namespace)
    # The plan shown in the text block is what explain() prints for the example's spec.
    (shown,) = [code for language, code in section_blocks("Expressions") if language == "text"]
    assert namespace["spec"].explain() == shown  # type: ignore[attr-defined]
    assert shown in capsys.readouterr().out
