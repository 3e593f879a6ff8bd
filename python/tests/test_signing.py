"""Signed matchers: the client verifies Compile signatures before running code,
and accepts only answers signed for its own request by a key id it was given
(a refusal is keyfilter.CodeRejected, a KeyFilterError and a ValueError)."""
import subprocess

import pytest

import keyfilter
from keyfilter import _native
from keyfilter._client import _compile_request, _SpecBytes
from conftest import _server_binary, running_server

SPEC = keyfilter.Spec(arity=2).eq(0, b"org1").prefix(1, b"eng/")
EVERYTHING = keyfilter.Spec(arity=2)
RUNNING = keyfilter._codegen.running_version()


def keygen(path):
    """`keyfilter keygen`: writes a private key, returns (hex public key, PEM public key)."""
    out = subprocess.run([str(_server_binary()), "keygen", "-o", str(path)], check=True, capture_output=True,
                         text=True).stdout
    hex_key = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("public key (hex)"))
    pem = out[out.index("-----BEGIN PUBLIC KEY-----"):]
    return hex_key, pem


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    hex_key, pem = keygen(d / "server.pem")
    other_hex, _ = keygen(d / "other.pem")
    return d, hex_key, pem, other_hex


@pytest.fixture(scope="module")
def signing(keys):
    d, hex_key, pem, other_hex = keys
    with running_server("--signing-key", str(d / "server.pem")) as server:
        yield server, hex_key, pem, other_hex


@pytest.fixture(scope="module")
def named_signing(keys):
    """A server that signs under an explicit key id."""
    d, hex_key, _, _ = keys
    with running_server("--signing-key", str(d / "server.pem"), "--signing-key-id", "release-2") as server:
        yield server, hex_key


def raw_compile(client, spec, python_version=RUNNING, name=""):
    """The decoded CompileResponse, unchecked: (code, version, magic, signature, key_id)."""
    return client._compile(_compile_request(_SpecBytes(spec), python_version, name))


def replaying(client, response):
    """Makes `client` receive `response` for any Compile request (a stub that replays)."""
    client._compile = lambda request, timeout=None, metadata=None: response
    return client


def test_signed_code_verifies_with_the_servers_key(signing):
    server, hex_key, pem, _ = signing
    for key in (hex_key, pem, bytes.fromhex(hex_key), {hex_key[:16]: hex_key}):
        with keyfilter.Client(server.addr, verify_key=key, timeout=30) as client:
            fn = client.compile(SPEC)
            assert fn(b"org1", b"eng/db") is True
            assert fn(b"org2", b"eng/db") is False
            # The digest is of the spec as validated: a FilterSpec message sent
            # instead of a Spec verifies the same way.
            assert client.compile(SPEC.to_proto(), name="m")(b"org1", b"eng/x") is True


def test_a_signature_from_another_key_is_refused(signing):
    server, hex_key, _, other_hex = signing
    # One key: accepted only under its own default id, which is not the server's.
    with keyfilter.Client(server.addr, verify_key=other_hex, timeout=30) as client:
        with pytest.raises(keyfilter.CodeRejected, match="not an accepted key id"):
            client.compile(SPEC)
    # The server's key id, but mapped to another key: the signature fails.
    with keyfilter.Client(server.addr, verify_key={hex_key[:16]: other_hex}, timeout=30) as client:
        with pytest.raises(keyfilter.CodeRejected, match="does not verify"):
            client.compile(SPEC)


def test_an_unknown_key_id_is_refused(named_signing):
    server, hex_key = named_signing
    with keyfilter.Client(server.addr, verify_key=hex_key, timeout=30) as client:
        with pytest.raises(keyfilter.CodeRejected, match=r"key id 'release-2': not an accepted key id \(accepted: " + hex_key[:16]):
            client.compile(SPEC)
    with keyfilter.Client(server.addr, verify_key={"release-1": hex_key}, timeout=30) as client:
        with pytest.raises(keyfilter.CodeRejected, match="not an accepted key id"):
            client.compile(SPEC)
    with keyfilter.Client(server.addr, verify_key={"release-1": hex_key, "release-2": hex_key}, timeout=30) as client:
        assert client.compile(SPEC)(b"org1", b"eng/") is True
    # The key id is signed too: the same answer relabelled with another id fails.
    with keyfilter.Client(server.addr, timeout=30) as client:
        code, version, magic, signature, key_id = raw_compile(client, SPEC)
    assert key_id == "release-2"
    with keyfilter.Client(server.addr, verify_key={"release-1": hex_key}, timeout=30) as client:
        replaying(client, (code, version, magic, signature, "release-1"))
        with pytest.raises(keyfilter.CodeRejected, match="does not verify"):
            client.compile(SPEC)


def test_an_answer_for_another_request_is_refused(signing):
    server, hex_key, _, _ = signing
    with keyfilter.Client(server.addr, timeout=30) as plain:
        match_all = raw_compile(plain, EVERYTHING)
        for_spec = raw_compile(plain, SPEC)
    with keyfilter.Client(server.addr, verify_key=hex_key, timeout=30) as client:
        # The genuine answers pass for the requests they were made for...
        assert replaying(client, match_all).compile(EVERYTHING)(b"org2", b"x") is True
        assert replaying(client, for_spec).compile(SPEC)(b"org1", b"eng/") is True
        # ...but a signed "match everything" replayed to a client asking for
        # org1 only is refused, as is the answer for a spec under another name
        # or for another spec of the same arity.
        with pytest.raises(keyfilter.CodeRejected, match="another request"):
            replaying(client, match_all).compile(SPEC)
        with pytest.raises(keyfilter.CodeRejected, match="another request"):
            replaying(client, for_spec).compile(SPEC, name="other")
        with pytest.raises(keyfilter.CodeRejected, match="another request"):
            replaying(client, for_spec).compile(keyfilter.Spec(arity=2).eq(0, b"org2").prefix(1, b"eng/"))
        # An answer that echoes another python_version is refused before its signature is looked at.
        code, _, magic, signature, key_id = for_spec
        with pytest.raises(keyfilter.CodeRejected, match=r"answered for python_version '3.11.9', but '3\.\d+' was asked"):
            replaying(client, (code, "3.11.9", magic, signature, key_id)).compile(SPEC)


def test_the_signature_covers_every_part_of_the_request_and_answer(signing):
    server, hex_key, _, _ = signing
    with keyfilter.Client(server.addr, timeout=30) as client:
        code, version, magic, signature, key_id = raw_compile(client, SPEC, "3.11", "keep")
    assert len(signature) == 64 and key_id == hex_key[:16]
    spec = _SpecBytes(SPEC).data

    def verify(key_id=key_id, spec=spec, version=version, name="keep", magic=magic, code=code, sig=signature):
        _native.verify_signature(hex_key, _native.compile_signed_message(key_id, spec, version, name, magic, code), sig)

    verify()
    other_spec = _SpecBytes(keyfilter.Spec(arity=2).eq(0, b"org1")).data
    altered = [
        dict(code=code[:-1] + bytes([code[-1] ^ 1])),
        dict(code=code + b"\0"),
        dict(magic=b"\x00\x00\r\n"),
        dict(version="3.12"),
        dict(version="3.11.0"),
        dict(name=""),
        dict(name="keepx"),
        dict(spec=other_spec),
        dict(key_id="other"),
        dict(sig=signature[:10] + bytes([signature[10] ^ 0x40]) + signature[11:]),
    ]
    for change in altered:
        with pytest.raises(ValueError, match="does not verify"):
            verify(**change)
    with pytest.raises(ValueError, match="64 bytes"):
        verify(sig=signature[:10])


def test_the_spec_digest_is_of_the_validated_spec():
    # The same spec sent two ways gives one digest; another spec another one.
    assert _native.spec_digest(_SpecBytes(SPEC).data) == _native.spec_digest(SPEC.to_proto().SerializeToString())
    assert _native.spec_digest(_SpecBytes(SPEC).data) != _native.spec_digest(_SpecBytes(EVERYTHING).data)
    # IN [b"ab"] and IN [b"a", b"b"] concatenate alike, but are different specs.
    one = keyfilter.Spec(arity=1).isin(0, [b"ab"])
    two = keyfilter.Spec(arity=1).isin(0, [b"a", b"b"])
    assert _native.spec_digest(_SpecBytes(one).data) != _native.spec_digest(_SpecBytes(two).data)
    assert len(_native.spec_digest(_SpecBytes(one).data)) == 32
    with pytest.raises(ValueError, match="out of range"):
        _native.spec_digest(_native.encode_spec(1, [(3, 1, b"x", [])]))
    with pytest.raises(ValueError, match="malformed FilterSpec"):
        _native.spec_digest(b"\xff")


def test_unsigned_code_is_refused_when_a_key_is_given(server, signing):
    _, hex_key, _, _ = signing
    # `server` is the plain session server: it signs nothing.
    with keyfilter.Client(server.addr, verify_key=hex_key, timeout=30) as client:
        with pytest.raises(keyfilter.CodeRejected, match="unsigned"):
            client.compile(SPEC)
    with keyfilter.Client(server.addr, verify_key=hex_key, require_signature=False, timeout=30) as client:
        assert client.compile(SPEC)(b"org1", b"eng/") is True


def test_bad_keys_and_settings_fail_at_construction(server):
    for bad in ["zz", "ab" * 31, b"short", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
                {"k": "zz"}, {}, {"": "ab" * 32}, {1: "ab" * 32}]:
        with pytest.raises(ValueError, match="verify_key"):
            keyfilter.Client(server.addr, verify_key=bad)
    with pytest.raises(ValueError, match="needs verify_key"):
        keyfilter.Client(server.addr, require_signature=True)
