"""Matcher(spec, encoding=...): str fields are encoded before matching; without it, a TypeError."""

from __future__ import annotations

import random

import pytest

from keyfilter import Matcher, Spec, field

from conftest import keys_for, random_spec

SPEC = Spec(3).eq(0, "org1".encode()).range(1, ge=b"2024", lt=b"2025").prefix(2, "éng/".encode())


def test_str_fields_are_encoded():
    m = Matcher(SPEC, encoding="utf-8")
    assert m("org1", "2024-05", "éng/a") is True
    assert m("org1", "2024-05", "eng/a") is False
    # bytes and str mix freely, field by field and key by key.
    keys = [("org1", b"2024-05", "éng/a"), [b"org1", "2025", "éng/"], ("org2", "2024", "éng/"), (b"org1", b"2024", "éng/".encode())]
    assert m.mask(keys) == [True, False, False, True]
    assert m.count(keys) == 2
    # filter returns the key objects themselves, str fields and all.
    out = m.filter(iter(keys))
    assert out == [keys[0], keys[3]] and out[0] is keys[0]


def test_the_codec_decides_the_bytes():
    spec = Spec(1).eq(0, "é".encode("latin-1"))
    assert Matcher(spec, encoding="latin-1")("é") is True
    assert Matcher(spec, encoding="utf-8")("é") is False
    assert Matcher(Spec(1).eq(0, "é".encode("utf-16")), encoding="utf-16")("é") is True
    assert Matcher(Spec(1).eq(0, "é".encode("utf-32")), encoding="UTF-32")("é") is True
    assert Matcher(Spec(1).eq(0, b"e"), encoding="us-ascii")("e") is True


def test_agrees_with_encoding_first():
    # latin-1 maps every byte to one character and back, so any bytes key has a str twin.
    rng = random.Random(3)
    for _ in range(60):
        spec = random_spec(rng)
        keys = keys_for(rng, spec, 40)
        text_keys = [tuple(f.decode("latin-1") for f in key) for key in keys]
        m = Matcher(spec, encoding="latin-1")
        assert m.mask(text_keys) == Matcher(spec).mask(keys) == m.mask(keys)
        assert [m(*k) for k in text_keys] == m.mask(keys)


def test_without_an_encoding_str_is_a_type_error_that_says_what_to_do():
    m = Matcher(SPEC)
    assert m.encoding is None and "encoding" not in repr(m)
    with pytest.raises(TypeError) as info:
        m.filter([(b"org1", b"2024", b"eng/"), (b"org1", "2024", b"eng/")])
    assert str(info.value) == 'keys[1][1]: expected bytes, got str (Matcher(spec, encoding="utf-8") encodes str fields)'
    with pytest.raises(TypeError, match=r"^key\[0\]: expected bytes, got str \(Matcher"):
        m("org1", b"2024", b"eng/")
    # Other types stay refused, with or without an encoding.
    for matcher in (m, Matcher(SPEC, encoding="utf-8")):
        with pytest.raises(TypeError, match=r"^keys\[0\]\[2\]: expected bytes, got int$"):
            matcher.mask([(b"org1", b"2024", 7)])
        with pytest.raises(TypeError, match=r"^key\[2\]: expected bytes, got bytearray$"):
            matcher(b"org1", b"2024", bytearray(b"eng/"))


def test_a_character_the_codec_cannot_encode():
    m = Matcher(Spec(2).eq(0, b"a"), encoding="ascii")
    assert m("a", "b") is True
    with pytest.raises(UnicodeEncodeError, match="'ascii' codec can't encode"):
        m.mask([("a", "b"), ("a", "é")])
    # Lone surrogates are not UTF-8 either (strict errors).
    with pytest.raises(UnicodeEncodeError):
        Matcher(Spec(1), encoding="utf-8")("\udc80")


def test_encoding_names():
    assert Matcher(SPEC, encoding="UTF8").encoding == "utf-8"
    assert Matcher(SPEC, encoding="latin_1").encoding == "iso8859-1"
    assert repr(Matcher(SPEC, encoding="utf-8")) == repr(Matcher(SPEC))[:-1] + " encoding='utf-8'>"
    assert repr(Matcher(SPEC)).startswith("<keyfilter.Matcher arity=3 checks=")
    with pytest.raises(LookupError, match="no-such-codec"):
        Matcher(SPEC, encoding="no-such-codec")
    with pytest.raises(LookupError, match="not a text encoding"):
        Matcher(SPEC, encoding="rot13")
    with pytest.raises(TypeError, match="encoding must be a str"):
        Matcher(SPEC, encoding=b"utf-8")  # type: ignore[arg-type]
    # Codecs written in Python would run Python code in the middle of a scan.
    for name in ("cp1252", "utf-16-le", "shift_jis"):
        with pytest.raises(ValueError, match="utf-8, ascii, latin-1, utf-16 or utf-32"):
            Matcher(SPEC, encoding=name)


def test_the_extension_refuses_other_codecs_itself():
    # keyfilter._native.Matcher, used directly, skips the Python layer's checks.
    from keyfilter import _native

    with pytest.raises(ValueError, match="is not supported"):
        _native.Matcher(SPEC, "cp1252")
    assert _native.Matcher(SPEC, "UTF8")("org1", "2024", "éng/") is True


def test_str_subclasses_and_expressions():
    class Name(str):
        pass

    m = Matcher(Spec(2, (field(0) == b"x") | field(1).endswith(".tmp".encode())), encoding="utf-8")
    assert m(Name("x"), "a") is True and m("y", Name("a.tmp")) is True and m("y", "a") is False


def test_bytes_fields_are_never_decoded_with_an_encoding():
    # The encoding is only looked at for a field that is not bytes: bytes that
    # are not valid in the encoding still match (or not) exactly as without one.
    # (Whether that path is as fast is for benchmarks, not for a timed test.)
    eng = "éng/".encode()
    keys = [(b"org%d" % (i % 7), b"2024-%02d" % (i % 12), eng + b"\xff%d" % i) for i in range(2_000)]
    keys += [(b"org1", b"2024", eng + b"\xff\xfe"), (b"\xff", b"2024", eng)]
    plain, encoding = Matcher(SPEC), Matcher(SPEC, encoding="utf-8")
    assert encoding.mask(keys) == plain.mask(keys)
    assert encoding.count(keys) == plain.count(keys) > 0
    assert encoding(b"org1", b"2024", eng + b"\xff") is plain(b"org1", b"2024", eng + b"\xff") is True
