"""Type checkers see keyfilter's real types: Client (imported lazily at run time)
and Matcher, through py.typed, _native.pyi and the annotations."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import List, Optional

import pytest

import keyfilter

PACKAGE = Path(keyfilter.__file__).resolve().parent

# What a user's code looks like to mypy; each line a reveal_type() or a mistake.
USER_CODE = """\
import keyfilter
from keyfilter import Spec

spec = Spec(1).eq(0, b"a")
client = keyfilter.Client("localhost:50051", token="t", metadata=[("x-tenant", "a")])
reveal_type(client)
reveal_type(client.match(spec, [(b"a",)], metadata=[("x-request-id", "1")]))
reveal_type(client.compile(spec))
client.no_such_method()
client.match(spec, [(b"a",)], timeout="soon")
m = keyfilter.Matcher(spec, encoding="utf-8")
reveal_type(m)
reveal_type(m.mask([("a",), (b"b",)]))
reveal_type(m.encoding)
try:
    spec.validate()
except keyfilter.InvalidSpec as e:
    reveal_type(e.message)
"""


def test_the_package_ships_its_type_information():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_native.pyi").is_file()


def test_client_annotations_resolve():
    client = keyfilter.Client  # the lazy import, as at run time
    # match: Arrow data in, Arrow out; rows in, a list of bool out.
    arrow, rows = typing.get_overloads(client.match)
    assert typing.get_type_hints(rows)["return"] == List[bool]
    assert typing.get_type_hints(arrow)["keys"] == keyfilter._arrow.ArrowData
    hints = typing.get_type_hints(client.match)
    assert hints["timeout"] == Optional[float]
    assert "metadata" in hints and "metadata" in typing.get_type_hints(client.filter)
    init = typing.get_type_hints(client.__init__)
    assert init["token"] == Optional[str] and "metadata" in init
    assert typing.get_type_hints(client.compile)["return"] == typing.Callable[..., bool]
    assert typing.get_type_hints(keyfilter.Matcher.__new__)["encoding"] == Optional[str]


def test_mypy_sees_client_and_matcher(tmp_path):
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed: pip install './python[test]'")
    source = tmp_path / "user.py"
    source.write_text(USER_CODE)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         "--no-error-summary", "--hide-error-context", "user.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    lines = out.stdout.splitlines()
    text = "\n".join(lines) + out.stderr

    def at(line_no: int) -> List[str]:
        """mypy's messages about that line of user.py; "builtins." dropped (older mypy writes it)."""
        found = [line.split(": ", 2)[-1] for line in lines if line.startswith(f"user.py:{line_no}:")]
        return [message.replace("builtins.", "") for message in found]

    assert at(6) == ['Revealed type is "keyfilter._client.Client"'], text
    assert at(7) == ['Revealed type is "list[bool]"'], text
    assert at(8) == ['Revealed type is "def (*Any, **Any) -> bool"'], text
    assert at(9) == ['"Client" has no attribute "no_such_method"  [attr-defined]'], text
    # match is overloaded (Arrow data or rows): the bad timeout is the one error of that line.
    errors = [line for line in lines if line.startswith("user.py:10: error:")]
    assert len(errors) == 1, text
    assert ('Argument "timeout" to "match" of "Client" has incompatible type "str"' in errors[0]) or (
        'No overload variant of "match" of "Client" matches argument types' in errors[0] and errors[0].count('"str"') == 1
    ), text
    assert at(12) == ['Revealed type is "keyfilter._matcher.Matcher"'], text
    assert at(13) == ['Revealed type is "list[bool]"'], text
    assert at(14)[0] in ('Revealed type is "Union[str, None]"', 'Revealed type is "str | None"'), text
    assert at(18) == ['Revealed type is "str"'], text
    # Nothing else: the package itself type-checks as mypy follows it.
    assert len([line for line in lines if ": error:" in line]) == 2, text
