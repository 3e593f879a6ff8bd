"""keyfilter.compile / compile_code / disassemble."""

from __future__ import annotations

import importlib.util
import marshal
import sys

import pytest

import keyfilter
from keyfilter import Spec

SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").prefix(2, b"eng/")
RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_compile_gives_a_plain_function():
    f = keyfilter.compile(SPEC)
    assert f(b"org1", b"2024-05", b"eng/x") is True
    assert f(b"org1", b"2025", b"eng/x") is False
    assert f.__name__ == "keyfilter_match"
    assert f.__code__.co_argcount == 3
    assert f.__globals__ == {"__builtins__": {}}
    assert f.__code__.co_filename == "<keyfilter>"
    with pytest.raises(TypeError):
        f(b"org1", b"2024")
    with pytest.raises(TypeError):
        f(b"org1", b"2024", b"eng/", b"extra")


def test_names():
    assert keyfilter.compile(SPEC, name="by_org").__name__ == "by_org"
    with pytest.raises(ValueError) as info:
        keyfilter.compile(SPEC, name="not valid")
    assert str(info.value).startswith('name: name "not valid" is not a valid')
    with pytest.raises(ValueError, match="^name: "):
        keyfilter.compile_code(SPEC, name="1abc")


@pytest.mark.parametrize("name", ["ключ", "名前_2", "é" * 200])
def test_names_are_python_identifiers_not_only_ascii(name):
    assert name.isidentifier()
    f = keyfilter.compile(SPEC, name=name)
    assert f.__name__ == name and f.__code__.co_name == name
    assert f(b"org1", b"2024-05", b"eng/x") is True
    g = keyfilter.materialize(keyfilter.compile_code(SPEC, name=name), 3)
    assert g.__name__ == name and g(b"org1", b"2025", b"eng/x") is False
    # At most 200 characters, whatever their UTF-8 length.
    with pytest.raises(ValueError, match="^name: "):
        keyfilter.compile_code(SPEC, name="é" * 201)


def test_compile_code_for_every_supported_version():
    assert keyfilter.SUPPORTED_VERSIONS == ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15")
    seen = set()
    for version in keyfilter.SUPPORTED_VERSIONS:
        code = keyfilter.compile_code(SPEC, python_version=version)
        assert isinstance(code, bytes) and code[0] & 0x7F == ord("c")
        seen.add(code)
    assert len(seen) == len(keyfilter.SUPPORTED_VERSIONS)
    assert keyfilter.compile_code(SPEC) == keyfilter.compile_code(SPEC, python_version=RUNNING)
    assert keyfilter.compile_code(SPEC, python_version=RUNNING + ".4") == keyfilter.compile_code(SPEC)
    # The running interpreter's own marshal reads it.
    code = marshal.loads(keyfilter.compile_code(SPEC))
    assert code.co_argcount == 3


@pytest.mark.parametrize("version", ["3.8", "3.16", "2.7", "3", "", "x.y", "3.09"])
def test_unsupported_versions(version):
    with pytest.raises(ValueError) as info:
        keyfilter.compile_code(SPEC, python_version=version)
    assert str(info.value).startswith("python_version: unsupported python_version")


def test_invalid_spec_message_is_the_servers():
    with pytest.raises(ValueError) as info:
        keyfilter.compile(Spec(2).eq(0, b"a").ne(2, b"b"))
    assert str(info.value) == "spec.predicates[1]: field 2 is out of range for arity 2"
    with pytest.raises(TypeError):
        keyfilter.compile("spec")


def test_disassemble():
    text = keyfilter.disassemble(SPEC)
    assert "COMPARE_OP" in text and "LOAD_CONST" in text
    assert "POP_JUMP" in keyfilter.disassemble(SPEC, python_version="3.12")


def test_magic_numbers_match_this_interpreter():
    from keyfilter import _native

    assert _native.magic(RUNNING) == importlib.util.MAGIC_NUMBER
