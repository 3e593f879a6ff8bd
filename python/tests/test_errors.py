"""One exception hierarchy: KeyFilterError > InvalidSpec (also a ValueError),
RemoteError, CodeRejected (also a ValueError).

The remote half (the client mapping gRPC errors) is in test_client.py; the
client's refusals of signed code (CodeRejected) in test_signing.py."""

from __future__ import annotations

import marshal
import pickle

import pytest

import keyfilter
from keyfilter import CodeRejected, InvalidSpec, KeyFilterError, RemoteError, Spec, field

BAD = Spec(3).eq(0, b"a").eq(5, b"b")
BAD_MESSAGE = "spec.predicates[1]: field 5 is out of range for arity 3"
BAD_EXPR = Spec(2, (field(0) == b"a") | (field(7) == b"b"))


def test_the_hierarchy():
    assert issubclass(InvalidSpec, KeyFilterError) and issubclass(InvalidSpec, ValueError)
    assert issubclass(RemoteError, KeyFilterError) and not issubclass(RemoteError, ValueError)
    assert issubclass(CodeRejected, KeyFilterError) and issubclass(CodeRejected, ValueError)
    assert not issubclass(CodeRejected, InvalidSpec) and not issubclass(InvalidSpec, CodeRejected)
    assert not issubclass(KeyFilterError, ValueError)
    for name in ("KeyFilterError", "InvalidSpec", "RemoteError", "CodeRejected"):
        assert name in keyfilter.__all__
        assert getattr(keyfilter, name).__doc__


@pytest.mark.parametrize(
    "call",
    [
        lambda spec: spec.validate(),
        lambda spec: spec.explain(),
        lambda spec: keyfilter.Matcher(spec),
        lambda spec: keyfilter.Matcher(spec, encoding="utf-8"),
        lambda spec: keyfilter.compile(spec),
        lambda spec: keyfilter.compile_code(spec, python_version="3.12"),
        lambda spec: keyfilter.disassemble(spec, python_version="3.14"),
    ],
    ids=["validate", "explain", "Matcher", "Matcher-encoding", "compile", "compile_code", "disassemble"],
)
def test_a_bad_spec_is_invalid_spec_everywhere_with_the_server_message(call):
    with pytest.raises(InvalidSpec) as info:
        call(BAD)
    e = info.value
    assert str(e) == e.message == BAD_MESSAGE
    assert e.code is None  # found locally
    # What code written before the hierarchy catches still catches it.
    with pytest.raises(ValueError, match=r"^spec\.expr\.any\.items\[1\]\.predicate \(field 7\): field 7 is out"):
        call(BAD_EXPR)


def test_the_error_is_the_only_one_shown():
    # The extension's plain ValueError says nothing more: it is not chained.
    with pytest.raises(InvalidSpec) as info:
        BAD.validate()
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_other_faults_stay_plain_value_errors():
    spec = Spec(1).eq(0, b"a")
    with pytest.raises(ValueError, match="^python_version: unsupported") as info:
        keyfilter.compile_code(spec, python_version="2.7")
    assert not isinstance(info.value, KeyFilterError)
    with pytest.raises(ValueError, match="^name: ") as info:
        keyfilter.compile(spec, name="no spaces")
    assert not isinstance(info.value, KeyFilterError)
    # A bad version is reported first even when the spec is bad too, as the server does.
    with pytest.raises(ValueError, match="^python_version: ") as info:
        keyfilter.compile_code(BAD, python_version="3.99")
    assert not isinstance(info.value, InvalidSpec)


OTHER_VERSION = "3.12" if keyfilter._codegen.running_version() != "3.12" else "3.13"


@pytest.mark.parametrize(
    "code, why",
    [
        (b"not marshal", "code object rejected: "),
        (marshal.dumps(compile("lambda k0: True", "<x>", "eval")), "code object rejected: "),
        (keyfilter.compile_code(Spec(1).eq(0, b"a"), python_version=OTHER_VERSION), f"built for CPython {OTHER_VERSION}"),
    ],
    ids=["garbage", "foreign-code", "another-version"],
)
def test_refused_code_is_code_rejected(code, why):
    with pytest.raises(CodeRejected, match=why) as info:
        keyfilter.materialize(code, 1)
    assert info.value.code is None and str(info.value).startswith("code object rejected: ")
    # Asking for another version than the running one is refused before any parsing.
    with pytest.raises(CodeRejected, match="cannot run on Python"):
        keyfilter.materialize(keyfilter.compile_code(Spec(1)), 1, python_version=OTHER_VERSION)


def test_spec_file_faults_are_invalid_spec():
    with pytest.raises(InvalidSpec, match=r"predicates\[0\]\.op"):
        Spec.from_json('{"arity": 1, "predicates": [{"field": 0, "op": "like", "value": "x"}]}')
    with pytest.raises(InvalidSpec):
        Spec.from_json("{not json")


def test_errors_pickle_into_equal_errors():
    # multiprocessing sends a worker's exception back pickled.
    local = InvalidSpec(BAD_MESSAGE)
    back = pickle.loads(pickle.dumps(local))
    assert type(back) is InvalidSpec and str(back) == BAD_MESSAGE and back.code is None
    remote = RemoteError("UNAVAILABLE", "connection refused")
    back = pickle.loads(pickle.dumps(remote))
    assert type(back) is RemoteError and (back.code, back.message) == ("UNAVAILABLE", "connection refused")
    assert str(back) == "UNAVAILABLE: connection refused"


def test_the_old_two_argument_constructor_still_works():
    class Code:
        name = "INVALID_ARGUMENT"

    e = KeyFilterError(Code, "name: bad")
    assert (e.code, e.message, str(e)) == (Code, "name: bad", "INVALID_ARGUMENT: name: bad")
    with pytest.raises(TypeError, match=r"\(message\) or \(code, message\)"):
        KeyFilterError()
