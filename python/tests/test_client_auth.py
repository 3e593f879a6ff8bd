"""Client(token=...) and metadata=, against a real server that requires bearer tokens
(plaintext, and TLS with a certificate made at test time)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Tuple

import pytest

import grpc  # the [grpc] extra: the test environment installs it, and its absence fails

import keyfilter  # noqa: E402
from keyfilter import RemoteError, Spec  # noqa: E402

from conftest import Server, running_server  # noqa: E402

SPEC = Spec(2).eq(0, b"a")
KEYS = [(b"a", b"x"), (b"b", b"x")]
TOKENS = ("s3cret", "other-token")


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Server]:
    # Debug logs: every call logs a line in its span, which has the request id.
    with running_server("--auth-tokens", ",".join(TOKENS), "--log", "keyfilter=debug") as s:
        yield s


def every_call(client: "keyfilter.Client", **kwargs) -> None:
    """Match, Filter and Compile through ``client``, each checked."""
    assert client.match(SPEC, KEYS, **kwargs) == [True, False]
    assert list(client.filter(SPEC, KEYS, **kwargs)) == [KEYS[0]]
    assert client.compile(SPEC, **kwargs)(b"a", b"y") is True


def unauthenticated(call) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        call()
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED, info.value
    return info.value


def test_without_a_token_every_call_is_refused(auth_server):
    with keyfilter.Client(auth_server.addr, timeout=30) as c:
        for call in (lambda: c.match(SPEC, KEYS), lambda: list(c.filter(SPEC, KEYS)), lambda: c.compile(SPEC)):
            e = unauthenticated(call)
            assert "send `authorization: Bearer <token>`" in e.message


def test_a_token_authenticates_every_call(auth_server):
    for token in TOKENS:
        with keyfilter.Client(auth_server.addr, timeout=30, token=token) as c:
            every_call(c)
    # The token never shows in the client's repr.
    assert "s3cret" not in repr(keyfilter.Client(auth_server.addr, token="s3cret"))


def test_a_wrong_token_is_refused(auth_server):
    with keyfilter.Client(auth_server.addr, timeout=30, token="not-it") as c:
        assert unauthenticated(lambda: c.match(SPEC, KEYS)).message == "invalid bearer token"
        assert unauthenticated(lambda: list(c.filter(SPEC, KEYS))).message == "invalid bearer token"


def test_call_metadata_reaches_the_server(auth_server):
    # Metadata given to the call alone authenticates it: so it is sent.
    with keyfilter.Client(auth_server.addr, timeout=30) as c:
        every_call(c, metadata=[("authorization", "Bearer other-token")])
        unauthenticated(lambda: c.match(SPEC, KEYS, metadata=[("authorization", "Bearer nope")]))
    # The client's metadata, its token and the call's are all sent together.
    with keyfilter.Client(auth_server.addr, timeout=30, metadata=[("x-tenant", "t1")]) as c:
        every_call(c, metadata=[("authorization", "Bearer s3cret")])
    with keyfilter.Client(auth_server.addr, timeout=30, token="s3cret", metadata=(("x-tenant", "t1"),)) as c:
        every_call(c, metadata=[("x-request-id", "ergo-metadata-7"), ("x-trace-bin", b"\x00\x01")])
    assert any("ergo-metadata-7" in line for line in auth_server.log), "the server never saw x-request-id"


def test_token_and_authorization_metadata_do_not_mix(auth_server):
    with pytest.raises(ValueError, match="'authorization' is already set by token="):
        keyfilter.Client(auth_server.addr, token="s3cret", metadata=[("authorization", "Bearer other-token")])
    with keyfilter.Client(auth_server.addr, token="s3cret") as c:
        with pytest.raises(ValueError, match="'authorization' is already set by the client's token="):
            c.match(SPEC, KEYS, metadata=[("authorization", "Bearer other-token")])
        with pytest.raises(ValueError, match="already set"):
            c.filter(SPEC, KEYS, metadata=[("authorization", "Bearer other-token")])  # before any iteration


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(token=""), ValueError, "token must be non-empty printable ASCII"),
        (dict(token=" s3cret"), ValueError, "token must be"),
        (dict(token="s3\ncret"), ValueError, "token must be"),
        (dict(token="sécret"), ValueError, "token must be"),
        (dict(token=b"s3cret"), TypeError, "token must be a str"),
        (dict(metadata={"x-a": "b"}), TypeError, "sequence of \\(key, value\\) pairs"),
        (dict(metadata=[("x-a",)]), TypeError, r"metadata\[0\]: expected a \(key, value\) pair"),
        (dict(metadata=[("X-Upper", "v")]), ValueError, r"metadata\[0\]: key 'X-Upper' is not a gRPC metadata key"),
        (dict(metadata=[("grpc-timeout", "1S")]), ValueError, "not starting with 'grpc-'"),
        (dict(metadata=[("x-a", "ok"), ("x-b", "é")]), ValueError, r"metadata\[1\]: the value of 'x-b' must be"),
        (dict(metadata=[("x-a-bin", "text")]), TypeError, "'-bin' key must be bytes"),
    ],
)
def test_bad_tokens_and_metadata_fail_before_any_call(kwargs, error, match):
    with pytest.raises(error, match=match):
        keyfilter.Client("127.0.0.1:1", **kwargs)
    if "metadata" in kwargs:
        with keyfilter.Client("127.0.0.1:1") as c:
            with pytest.raises(error, match=match):
                c.match(SPEC, KEYS, metadata=kwargs["metadata"])


# -- TLS ----------------------------------------------------------------------


def self_signed(directory: Path) -> Tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key (PEM), made by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the TLS test's certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_token_over_tls(tmp_path):
    cert, key = self_signed(tmp_path)
    with running_server("--tls-cert", str(cert), "--tls-key", str(key), "--auth-tokens", "s3cret") as server:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with keyfilter.Client(server.addr, credentials=credentials, timeout=30, token="s3cret") as c:
            every_call(c)
        with keyfilter.Client(server.addr, credentials=credentials, timeout=30) as c:
            unauthenticated(lambda: c.match(SPEC, KEYS))
        # The server speaks TLS only: a plaintext client with the right token gets nowhere.
        with keyfilter.Client(server.addr, timeout=5, token="s3cret") as c:
            with pytest.raises(RemoteError) as info:
                c.match(SPEC, KEYS)
            assert info.value.code != grpc.StatusCode.OK
