"""Signed matchers: the client verifies Compile signatures before running code."""
import subprocess

import pytest

import keyfilter
from conftest import _server_binary, running_server

SPEC = keyfilter.Spec(arity=2).eq(0, b"org1").prefix(1, b"eng/")


def keygen(path):
    """`keyfilter keygen`: writes a private key, returns (hex public key, PEM public key)."""
    out = subprocess.run([str(_server_binary()), "keygen", "-o", str(path)], check=True, capture_output=True,
                         text=True).stdout
    hex_key = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("public key (hex)"))
    pem = out[out.index("-----BEGIN PUBLIC KEY-----"):]
    return hex_key, pem


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    hex_key, pem = keygen(d / "server.pem")
    other_hex, _ = keygen(d / "other.pem")
    with running_server("--signing-key", str(d / "server.pem")) as server:
        yield server, hex_key, pem, other_hex


def test_signed_code_verifies_with_the_servers_key(signing):
    server, hex_key, pem, _ = signing
    for key in (hex_key, pem, bytes.fromhex(hex_key)):
        with keyfilter.Client(server.addr, verify_key=key, timeout=30) as client:
            fn = client.compile(SPEC)
            assert fn(b"org1", b"eng/db") is True
            assert fn(b"org2", b"eng/db") is False


def test_a_signature_from_another_key_is_refused(signing):
    server, _, _, other_hex = signing
    with keyfilter.Client(server.addr, verify_key=other_hex, timeout=30) as client:
        with pytest.raises(ValueError, match="does not verify"):
            client.compile(SPEC)


def test_altered_bytes_do_not_verify(signing):
    server, hex_key, _, _ = signing
    with keyfilter.Client(server.addr, timeout=30) as client:
        request = keyfilter._client._compile_request(keyfilter._client._SpecBytes(SPEC), "3.11", "")
        code, version, magic, signature, key_id = client._compile(request)
    assert len(signature) == 64 and key_id == hex_key[:16]
    keyfilter._native.verify_compile_signature(hex_key, version, magic, code, signature)
    altered_code = code[:-1] + bytes([code[-1] ^ 1])
    for args in [(version, magic, altered_code), ("3.12", magic, code), (version, b"\x00\x00\r\n", code)]:
        with pytest.raises(ValueError, match="does not verify"):
            keyfilter._native.verify_compile_signature(hex_key, *args, signature)
    with pytest.raises(ValueError, match="64 bytes"):
        keyfilter._native.verify_compile_signature(hex_key, version, magic, code, signature[:10])


def test_unsigned_code_is_refused_when_a_key_is_given(server, signing):
    _, hex_key, _, _ = signing
    # `server` is the plain session server: it signs nothing.
    with keyfilter.Client(server.addr, verify_key=hex_key, timeout=30) as client:
        with pytest.raises(ValueError, match="unsigned"):
            client.compile(SPEC)
    with keyfilter.Client(server.addr, verify_key=hex_key, require_signature=False, timeout=30) as client:
        assert client.compile(SPEC)(b"org1", b"eng/") is True


def test_bad_keys_and_settings_fail_at_construction(server):
    for bad in ["zz", "ab" * 31, b"short", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"]:
        with pytest.raises(ValueError, match="verify_key"):
            keyfilter.Client(server.addr, verify_key=bad)
    with pytest.raises(ValueError, match="needs verify_key"):
        keyfilter.Client(server.addr, require_signature=True)
