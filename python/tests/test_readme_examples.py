"""The README examples of the package run as written: the main README's "Python
package" snippet, and python/README.md's sections on errors, authentication,
str keys and pickling. Only the server address differs (the test server
listens on a free port)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

import grpc  # noqa: E402,F401  (the [grpc] extra: its absence fails the run)

from conftest import PYTHON_DIR, REPO, Server, running_server  # noqa: E402

TOKEN = "s3cret"  # what python/README.md's examples send
SECTIONS = ["Errors", "Authentication and metadata", "`str` keys", "Arrow data", "Pickling and multiprocessing"]


def python_blocks(readme: Path, heading: str) -> List[str]:
    """The ```python blocks of the section ``heading`` (a ``## `` heading)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.S | re.M)


def run(code: str, where: str) -> Dict[str, object]:
    namespace: Dict[str, object] = {"__name__": "readme"}
    exec(compile(code, where, "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def token_server() -> Iterator[Server]:
    with running_server("--auth-tokens", TOKEN) as s:
        yield s


def test_main_readme_python_package_snippet_runs(server):
    (code,) = python_blocks(REPO / "README.md", "Python package")
    assert "127.0.0.1:50051" in code
    namespace = run(code.replace("127.0.0.1:50051", server.addr), "README.md (Python package)")
    rows = namespace["rows"]
    # What the snippet's comments claim.
    assert namespace["m"].filter(rows) == [rows[0]]  # type: ignore[attr-defined]
    assert [namespace["fn"](*row) for row in rows] == [True, False]  # type: ignore[operator]


@pytest.mark.parametrize("heading", SECTIONS)
def test_package_readme_sections_run(heading, token_server):
    blocks = python_blocks(PYTHON_DIR / "README.md", heading)
    assert blocks, heading
    for code in blocks:
        run(code.replace("localhost:50051", token_server.addr), f"python/README.md ({heading})")
