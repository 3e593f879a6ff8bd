"""materialize() of code generated for another CPython version says which version."""

from __future__ import annotations

import dis
import re
import sys
from typing import List

import pytest

import keyfilter
from keyfilter import Spec, field
from keyfilter import _native, _verify

RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHERS = [v for v in keyfilter.SUPPORTED_VERSIONS if v != RUNNING]
SPECS = {
    # The AND chain, with comparisons (whose inline caches differ per version) and IN.
    "and": Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"b"]),
    # The expression shape, with a SUFFIX leaf (a slice: BUILD_SLICE or BINARY_SLICE).
    "expr": Spec(3, ((field(0) == b"org1") | ~field(2).endswith(b".bak")) & field(1).contains(b"x")),
    # Constant functions: the smallest code there is.
    "true": Spec(0),
    "false": Spec(1).isin(0, []),
}
BUILT_FOR = re.compile(r"built for CPython ((?:3\.\d+)(?: or 3\.\d+)*), this is (3\.\d+)")


def named_versions(message: str) -> List[str]:
    found = BUILT_FOR.search(message)
    assert found, message
    assert found.group(2) == RUNNING
    return found.group(1).split(" or ")


def test_every_supported_version_is_tried():
    assert RUNNING in keyfilter.SUPPORTED_VERSIONS
    assert len(OTHERS) == len(keyfilter.SUPPORTED_VERSIONS) - 1 >= 6


@pytest.mark.parametrize("version", OTHERS)
def test_code_for_another_version_names_it(version):
    for kind, spec in SPECS.items():
        code = keyfilter.compile_code(spec, python_version=version)
        if code == keyfilter.compile_code(spec):
            # Byte for byte this interpreter's code too (only tiny constant
            # functions can be): it runs, and rightly so.
            assert kind in ("true", "false"), (kind, version)
            assert keyfilter.materialize(code, spec.arity)(*([b""] * spec.arity)) is (kind == "true")
            continue
        with pytest.raises(ValueError) as info:
            keyfilter.materialize(code, spec.arity)
        message = str(info.value)
        assert version in named_versions(message), (kind, message)
        assert f"compile_code(spec, python_version='{RUNNING}')" in message
        # The verifier's own finding stays attached.
        assert isinstance(info.value.__cause__, ValueError)
        assert "code object rejected" in str(info.value.__cause__)


@pytest.mark.parametrize("version", OTHERS)
def test_the_rich_specs_name_exactly_their_version(version):
    # Code with comparisons and a slice differs between every two versions.
    for kind in ("and", "expr"):
        spec = SPECS[kind]
        with pytest.raises(ValueError) as info:
            keyfilter.materialize(keyfilter.compile_code(spec, python_version=version), spec.arity)
        assert named_versions(str(info.value)) == [version], kind


def test_bad_code_is_not_called_another_versions():
    code = bytearray(keyfilter.compile_code(SPECS["and"]))
    # An altered constant index, and the right code under the wrong arity.
    for data, arity in ((bytes(code[:-1]), 3), (bytes(code), 2)):
        with pytest.raises(ValueError) as info:
            keyfilter.materialize(data, arity)
        assert "built for CPython" not in str(info.value)
    assert "built for CPython" not in _message(lambda: keyfilter.materialize(b"c" + b"\0" * 40, 0))


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_the_generators_table_of_this_version_is_this_interpreters():
    # The tables the detection trusts for other versions, checked where they can be: here.
    table = _native.opcodes(RUNNING)
    assert table
    for name, number, caches in table:
        assert dis.opmap[name] == number, name
        assert _verify._cache_entries(number, name) == caches, name
    numbers = {name: (number, caches) for name, number, caches in table}
    for kind, spec in SPECS.items():
        assert _verify.is_generated_for(keyfilter.compile_code(spec), spec.arity, sys.version_info[1], numbers)
