//! Transport security, caller authentication and signed matchers, end to end:
//! TLS and mutual TLS with certificates made at test time (rcgen), bearer
//! tokens, and Ed25519 signatures on `Compile` responses. Most tests run the
//! real `keyfilter::server::serve` in this process on a loopback port; the
//! ones about flags, files and logs run the `keyfilter` binary.
//!
//! Every wait is bounded (see [`STEP`]) and every child process is killed when
//! its guard drops, so a failure neither hangs the suite nor leaks a server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::time::timeout;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Code, Request, Status};

use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::{
    filter_request::Msg, CompileRequest, CompileResponse, FilterRequest, FilterSpec, Key, MatchRequest, Op, Predicate,
};
use keyfilter::server::{Security, ServerConfig, TokenAuth};
use keyfilter::service::signing::Signer;
use keyfilter_core::signing::{SignedCompile, SIGNATURE_CONTEXT};
use keyfilter_core::spec::{canonical_digest, validate, Limits};

mod support;

use support::binary::{write, Server};
use support::server::{plaintext_channel, TestServer};

/// Upper bound on any single step (a connection, a call, a process start or exit).
const STEP: Duration = Duration::from_secs(10);

const KEYFILTER: &str = "keyfilter.v1.KeyFilter";

// ---------------------------------------------------------------------------
// An in-process server
// ---------------------------------------------------------------------------

fn with_security(security: Security) -> ServerConfig {
    ServerConfig {
        security,
        shutdown_grace: Duration::from_secs(1),
        ..ServerConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

fn spec() -> FilterSpec {
    FilterSpec {
        arity: 2,
        predicates: vec![Predicate {
            field: 0,
            op: Op::Eq as i32,
            value: Bytes::from_static(b"org1"),
            values: vec![],
        }],
        expr: None,
    }
}

fn match_request() -> MatchRequest {
    let key = |a: &'static [u8], b: &'static [u8]| Key {
        fields: vec![Bytes::from_static(a), Bytes::from_static(b)],
    };
    MatchRequest {
        spec: Some(spec()),
        keys: vec![key(b"org1", b"x"), key(b"org2", b"y"), key(b"org1", b"z")],
        packed_keys: None,
        columnar_keys: None,
    }
}

const EXPECTED_MATCHES: [bool; 3] = [true, false, true];

fn compile_request(python_version: &str) -> CompileRequest {
    CompileRequest {
        spec: Some(spec()),
        python_version: python_version.into(),
        name: "keep".into(),
    }
}

/// `request` with `authorization: <value>` when `value` is given.
fn with_auth<T>(message: T, value: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = value {
        request
            .metadata_mut()
            .insert("authorization", MetadataValue::try_from(value).expect("ascii header"));
    }
    request
}

/// Connects (plaintext) and calls Match, with every failure folded into the `Status`.
async fn plaintext_match(addr: SocketAddr, auth: Option<&str>) -> Result<Vec<bool>, Status> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(STEP)
        .timeout(STEP);
    call_match(endpoint, auth).await
}

async fn call_match(endpoint: Endpoint, auth: Option<&str>) -> Result<Vec<bool>, Status> {
    let channel = timeout(STEP, endpoint.connect())
        .await
        .map_err(|_| Status::deadline_exceeded("connect timed out"))?
        .map_err(|e| Status::unavailable(format!("connect: {e:?}")))?;
    let mut client = KeyFilterClient::new(channel);
    let response = timeout(STEP, client.r#match(with_auth(match_request(), auth)))
        .await
        .map_err(|_| Status::deadline_exceeded("call timed out"))??;
    Ok(response.into_inner().matches)
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A certificate and its private key, both PEM.
#[derive(Clone)]
struct Pem {
    cert: String,
    key: String,
}

impl Pem {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

/// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate
/// it signed, and a second, unrelated CA with a client certificate of its own.
struct Pki {
    ca: String,
    server: Pem,
    client: Pem,
    other_ca: String,
    other_client: Pem,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "keyfilter test leaf");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &**issuer).expect("leaf certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let ca1 = ca("keyfilter test CA");
    let ca2 = ca("unrelated test CA");
    Pki {
        ca: ca1.pem(),
        server: leaf(&ca1, &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(&ca1, &[], ExtendedKeyUsagePurpose::ClientAuth),
        other_ca: ca2.pem(),
        other_client: leaf(&ca2, &[], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn server_tls(pki: &Pki, mutual: bool) -> ServerTlsConfig {
    let tls = ServerTlsConfig::new().identity(pki.server.identity());
    if mutual {
        tls.client_ca_root(Certificate::from_pem(&pki.ca))
    } else {
        tls
    }
}

/// An in-process server with [`server_tls`] and no bearer tokens.
async fn tls_server(pki: &Pki, mutual: bool) -> TestServer {
    TestServer::start(with_security(Security {
        tls: Some(server_tls(pki, mutual)),
        auth: TokenAuth::default(),
        client_certificates: mutual,
    }))
    .await
}

/// Connects over TLS (trusting `trusted_ca`, presenting `identity` if given) and calls Match.
async fn tls_match(addr: SocketAddr, trusted_ca: &str, identity: Option<&Pem>) -> Result<Vec<bool>, Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(trusted_ca))
        // The server certificate is checked against this name, while the
        // connection goes to the address the server listens on.
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity.identity());
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS config")
        .connect_timeout(STEP)
        .timeout(STEP);
    call_match(endpoint, None).await
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// Asserts that a call failed, and that its error (with its sources) mentions `reason`.
fn assert_failed_with(result: &Result<Vec<bool>, Status>, reason: &str) {
    match result {
        Ok(matches) => panic!("the call succeeded ({matches:?}); expected a failure with {reason}"),
        Err(status) => assert!(
            format!("{status:?}").contains(reason),
            "expected {reason}, got {status:?}"
        ),
    }
}

/// Asserts that the server refused the client's TLS handshake. With TLS 1.3 the
/// client finishes its side of the handshake before the server checks the
/// client certificate, so whether the client reads the server's alert (e.g.
/// `CertificateRequired`) or only sees the connection close is a race: accept
/// either, but only as a transport failure, never as a gRPC status.
fn assert_refused(result: &Result<Vec<bool>, Status>, alert: &str) {
    match result {
        Ok(matches) => panic!("the call succeeded ({matches:?}); expected the server to refuse the handshake"),
        Err(status) => {
            let text = format!("{status:?}");
            assert!(
                text.contains(alert)
                    || (matches!(status.code(), Code::Unknown | Code::Cancelled | Code::Unavailable)
                        && text.contains("tonic::transport::Error(Transport")),
                "expected a refused handshake ({alert}), got {status:?}"
            );
        }
    }
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_refuses_plaintext() {
    let pki = pki();
    let server = tls_server(&pki, false).await;

    // Without mutual TLS, a client needs no certificate of its own.
    assert_eq!(
        tls_match(server.addr, &pki.ca, None).await.expect("TLS call"),
        EXPECTED_MATCHES
    );
    // A client certificate is not refused either.
    assert_eq!(
        tls_match(server.addr, &pki.ca, Some(&pki.client))
            .await
            .expect("TLS call with a client cert"),
        EXPECTED_MATCHES
    );

    // A plaintext HTTP/2 client gets nowhere.
    let plaintext = plaintext_match(server.addr, None).await;
    assert!(
        plaintext.is_err(),
        "plaintext call to a TLS server succeeded: {plaintext:?}"
    );

    // A client that does not trust the server's CA refuses the server.
    let untrusted = tls_match(server.addr, &pki.other_ca, None).await;
    assert_failed_with(&untrusted, "UnknownIssuer");

    // The server is still healthy after the failed handshakes.
    assert_eq!(
        tls_match(server.addr, &pki.ca, None).await.expect("TLS call"),
        EXPECTED_MATCHES
    );
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let pki = pki();
    let server = tls_server(&pki, true).await;

    let no_cert = tls_match(server.addr, &pki.ca, None).await;
    assert_refused(&no_cert, "CertificateRequired");

    let wrong_ca = tls_match(server.addr, &pki.ca, Some(&pki.other_client)).await;
    assert_refused(&wrong_ca, "UnknownCA");

    let plaintext = plaintext_match(server.addr, None).await;
    assert!(plaintext.is_err(), "plaintext call to a mutual-TLS server succeeded");

    assert_eq!(
        tls_match(server.addr, &pki.ca, Some(&pki.client))
            .await
            .expect("mutual TLS call with the right cert"),
        EXPECTED_MATCHES
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Bearer tokens
// ---------------------------------------------------------------------------

fn token_config() -> ServerConfig {
    with_security(Security {
        tls: None,
        auth: TokenAuth::new(vec!["t1".into(), "t2".into()]),
        client_certificates: false,
    })
}

#[tokio::test]
async fn bearer_tokens_guard_every_keyfilter_rpc() {
    let server = TestServer::start(token_config()).await;
    let mut client = KeyFilterClient::new(plaintext_channel(server.addr).await);

    for (auth, expected) in [
        (None, Err(())),
        (Some("Bearer wrong"), Err(())),
        (Some("Bearer t1"), Ok(())),
        (Some("Bearer t2"), Ok(())),
        (Some("bearer t1"), Ok(())),
        // Neither a prefix, an extension, nor the concatenation of the tokens is a token.
        (Some("Bearer t"), Err(())),
        (Some("Bearer t1x"), Err(())),
        (Some("Bearer t1t2"), Err(())),
        (Some("Bearer "), Err(())),
        (Some("Bearer t1,t2"), Err(())),
        // The token alone, or under another scheme, is not a bearer token.
        (Some("t1"), Err(())),
        (Some("Basic t1"), Err(())),
    ] {
        let result = timeout(STEP, client.r#match(with_auth(match_request(), auth)))
            .await
            .expect("bounded");
        match (expected, result) {
            (Ok(()), Ok(response)) => assert_eq!(response.into_inner().matches, EXPECTED_MATCHES, "{auth:?}"),
            (Err(()), Err(status)) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{auth:?}: {status:?}");
                for secret in ["t1", "t2", "wrong"] {
                    assert!(
                        !status.message().contains(secret),
                        "{auth:?}: the status message echoes a token: {status:?}"
                    );
                }
            }
            (expected, result) => panic!("{auth:?}: expected {expected:?}, got {result:?}"),
        }
    }

    // A rejected call still gets its request id back, to find its log line.
    let mut request = with_auth(match_request(), Some("Bearer nope"));
    request
        .metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("auth-fail-1"));
    let status = timeout(STEP, client.r#match(request))
        .await
        .expect("bounded")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.metadata().get("x-request-id").map(|v| v.to_str().unwrap()),
        Some("auth-fail-1"),
        "{status:?}"
    );

    // Compile and Filter are guarded too.
    let status = client
        .compile(with_auth(compile_request("3.12"), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let compiled = client
        .compile(with_auth(compile_request("3.12"), Some("Bearer t2")))
        .await
        .expect("Compile with a token");
    assert!(!compiled.into_inner().code.is_empty());

    let spec_only = || {
        tokio_stream::iter(vec![FilterRequest {
            msg: Some(Msg::Spec(spec())),
        }])
    };
    let status = client
        .filter(with_auth(spec_only(), Some("Bearer nope")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut stream = client
        .filter(with_auth(spec_only(), Some("Bearer t1")))
        .await
        .expect("Filter with a token")
        .into_inner();
    // The stream had a spec and no batch: it ends cleanly with no response.
    assert!(timeout(STEP, stream.message())
        .await
        .expect("bounded")
        .expect("clean end")
        .is_none());

    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_stay_open_without_a_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start(token_config()).await;
    let channel = plaintext_channel(server.addr).await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", KEYFILTER] {
        let response = timeout(
            STEP,
            health.check(HealthCheckRequest {
                service: service.into(),
            }),
        )
        .await
        .expect("bounded")
        .expect("health check without a token");
        assert_eq!(response.into_inner().status(), ServingStatus::Serving, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = timeout(
        STEP,
        reflection.server_reflection_info(tokio_stream::iter(vec![request])),
    )
    .await
    .expect("bounded")
    .expect("reflection without a token")
    .into_inner();
    let response = timeout(STEP, responses.message())
        .await
        .expect("bounded")
        .expect("reflection response")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&KEYFILTER), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    // Meanwhile the KeyFilter RPCs on the same connection still need a token.
    let status = KeyFilterClient::new(channel)
        .r#match(match_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn no_tokens_configured_lets_every_call_through() {
    let server = TestServer::start(with_security(Security::default())).await;
    assert_eq!(
        plaintext_match(server.addr, None).await.expect("open server"),
        EXPECTED_MATCHES
    );
    assert_eq!(
        plaintext_match(server.addr, Some("Bearer anything"))
            .await
            .expect("open server ignores tokens"),
        EXPECTED_MATCHES
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Signed matchers
// ---------------------------------------------------------------------------

fn random_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verifies(public: &VerifyingKey, signed: &SignedCompile<'_>, signature: &[u8]) -> bool {
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    public.verify(&signed.message(), &signature).is_ok()
}

/// Whether `r` is signed by `public` as the answer to `compile_request(python_version)`.
fn verifies_answer(public: &VerifyingKey, r: &CompileResponse, python_version: &str) -> bool {
    let signed = SignedCompile {
        key_id: &r.key_id,
        spec_digest: &digest_of(&spec()),
        python_version,
        name: "keep",
        magic: &r.magic,
        code: &r.code,
    };
    verifies(public, &signed, &r.signature)
}

/// The digest a client computes for the spec it sent.
fn digest_of(spec: &FilterSpec) -> [u8; 32] {
    canonical_digest(&validate(&spec.to_input(), &Limits::default()).expect("valid spec"))
}

async fn compile_with(signer: Option<Arc<Signer>>, versions: &[&str]) -> Vec<CompileResponse> {
    compile_requests(signer, versions.iter().map(|v| compile_request(v)).collect()).await
}

async fn compile_requests(signer: Option<Arc<Signer>>, requests: Vec<CompileRequest>) -> Vec<CompileResponse> {
    let mut config = with_security(Security::default());
    config.service.signer = signer;
    let server = TestServer::start(config).await;
    let mut client = KeyFilterClient::new(plaintext_channel(server.addr).await);
    let mut responses = Vec::new();
    for request in requests {
        let response = timeout(STEP, client.compile(request))
            .await
            .expect("bounded")
            .expect("Compile");
        responses.push(response.into_inner());
    }
    server.stop().await;
    responses
}

#[test]
fn the_signed_message_is_the_documented_layout() {
    assert_eq!(SIGNATURE_CONTEXT, b"keyfilter-compile-v2\0");
    let digest = [7u8; 32];
    let signed = SignedCompile {
        key_id: "k1",
        spec_digest: &digest,
        python_version: "3.12.7",
        name: "f",
        magic: &[0xcb, 0x0d, 0x0d, 0x0a],
        code: b"\xe3code",
    };
    let mut expected = b"keyfilter-compile-v2\0".to_vec();
    expected.extend_from_slice(&2u64.to_be_bytes());
    expected.extend_from_slice(b"k1");
    expected.extend_from_slice(&digest);
    expected.extend_from_slice(&6u64.to_be_bytes());
    expected.extend_from_slice(b"3.12.7");
    expected.extend_from_slice(&1u64.to_be_bytes());
    expected.extend_from_slice(b"f");
    expected.extend_from_slice(&4u64.to_be_bytes());
    expected.extend_from_slice(&[0xcb, 0x0d, 0x0d, 0x0a]);
    expected.extend_from_slice(&5u64.to_be_bytes());
    expected.extend_from_slice(b"\xe3code");
    assert_eq!(signed.message(), expected);
    // Every part is length-prefixed, so moving bytes from one part to the
    // next changes the message.
    let moved = [
        SignedCompile {
            python_version: "3.1",
            name: "2f",
            ..signed
        },
        SignedCompile {
            name: "",
            magic: b"f\xcb\x0d\x0d\x0a",
            ..signed
        },
        SignedCompile {
            magic: &[0xcb, 0x0d, 0x0d],
            code: b"\x0a\xe3code",
            ..signed
        },
        SignedCompile {
            key_id: "k",
            python_version: "13.12.7",
            ..signed
        },
    ];
    for other in moved {
        assert_ne!(other.message(), signed.message(), "{other:?}");
    }
}

#[tokio::test]
async fn compile_responses_are_signed_and_verify_with_the_public_key() {
    let key = random_key();
    let public = key.verifying_key();
    let signer = Arc::new(Signer::new(key.clone(), None));
    assert_eq!(signer.public_key(), public.to_bytes());
    // "3.12" twice: the second answer comes from the compile cache and is signed too.
    let versions = ["3.12", "3.12", "3.12.7", "3.9", "3.15"];
    let responses = compile_with(Some(signer), &versions).await;

    let digest = digest_of(&spec());
    let mut other_spec = spec();
    other_spec.predicates[0].value = Bytes::from_static(b"org2");
    let other_digest = digest_of(&other_spec);
    let other = random_key().verifying_key();
    for (version, r) in versions.iter().zip(&responses) {
        assert_eq!(r.python_version, *version);
        assert_eq!(r.signature.len(), 64, "{version}: signature length");
        assert_eq!(r.key_id, hex(&public.as_bytes()[..8]), "{version}: default key id");
        // What the client asked: spec(), this version, the name "keep".
        let signed = SignedCompile {
            key_id: &r.key_id,
            spec_digest: &digest,
            python_version: version,
            name: "keep",
            magic: &r.magic,
            code: &r.code,
        };
        assert!(
            verifies(&public, &signed, &r.signature),
            "{version}: the signature does not verify"
        );
        // It is exactly the deterministic Ed25519 signature of the documented message.
        assert_eq!(
            r.signature.as_ref(),
            ed25519_dalek::Signer::sign(&key, &signed.message()).to_bytes()
        );

        assert!(!verifies(&other, &signed, &r.signature), "{version}: another key");
        let mut code = r.code.to_vec();
        let last = code.len() - 1;
        code[last] ^= 1;
        let altered_code = SignedCompile { code: &code, ..signed };
        assert!(
            !verifies(&public, &altered_code, &r.signature),
            "{version}: altered code"
        );
        let mut extended = r.code.to_vec();
        extended.push(0);
        let extended_code = SignedCompile {
            code: &extended,
            ..signed
        };
        assert!(
            !verifies(&public, &extended_code, &r.signature),
            "{version}: extended code"
        );
        let mut magic = r.magic.to_vec();
        magic[0] ^= 1;
        let altered_magic = SignedCompile {
            magic: &magic,
            ..signed
        };
        assert!(
            !verifies(&public, &altered_magic, &r.signature),
            "{version}: altered magic"
        );
        let altered_version = format!("{version}.0");
        let other_version = SignedCompile {
            python_version: &altered_version,
            ..signed
        };
        assert!(
            !verifies(&public, &other_version, &r.signature),
            "{version}: altered version"
        );
        // The answer is bound to the request: another spec, name or key id does not verify.
        let for_other_spec = SignedCompile {
            spec_digest: &other_digest,
            ..signed
        };
        assert!(
            !verifies(&public, &for_other_spec, &r.signature),
            "{version}: other spec"
        );
        for name in ["", "keyfilter_match", "keep2"] {
            let other_name = SignedCompile { name, ..signed };
            assert!(
                !verifies(&public, &other_name, &r.signature),
                "{version}: name {name:?}"
            );
        }
        let other_key_id = SignedCompile {
            key_id: "release-2024",
            ..signed
        };
        assert!(
            !verifies(&public, &other_key_id, &r.signature),
            "{version}: other key id"
        );
        let mut signature = r.signature.to_vec();
        signature[10] ^= 0x40;
        assert!(!verifies(&public, &signed, &signature), "{version}: altered signature");
    }
    // Same spec, same version: the cached answer is byte-identical.
    assert_eq!(responses[0], responses[1]);
    // The signature binds the version string as sent: "3.12.7" and "3.12" share
    // code and magic but are signed apart, and do not verify for each other.
    assert_eq!(responses[0].code, responses[2].code);
    assert_ne!(responses[0].signature, responses[2].signature);
    let as_312 = SignedCompile {
        key_id: &responses[2].key_id,
        spec_digest: &digest,
        python_version: "3.12",
        name: "keep",
        magic: &responses[2].magic,
        code: &responses[2].code,
    };
    assert!(!verifies(&public, &as_312, &responses[2].signature));
}

#[tokio::test]
async fn specs_that_share_code_are_signed_apart() {
    // "match everything" and "org1 only" are different requests; so are a spec
    // and the same spec with a duplicated predicate, although both plan alike
    // and share one generated code object.
    let key = random_key();
    let public = key.verifying_key();
    let signer = Arc::new(Signer::new(key, Some("k".into())));
    let everything = FilterSpec {
        arity: 2,
        predicates: vec![],
        expr: None,
    };
    let mut duplicated = spec();
    duplicated.predicates.push(duplicated.predicates[0].clone());
    let specs = [spec(), everything, duplicated];
    let requests = specs
        .iter()
        .map(|s| CompileRequest {
            spec: Some(s.clone()),
            python_version: "3.13".into(),
            name: "keep".into(),
        })
        .collect();
    let responses = compile_requests(Some(signer), requests).await;
    assert_eq!(responses[0].code, responses[2].code, "one plan, one code object");
    let digests: Vec<[u8; 32]> = specs.iter().map(digest_of).collect();
    for (i, r) in responses.iter().enumerate() {
        for (j, digest) in digests.iter().enumerate() {
            let signed = SignedCompile {
                key_id: "k",
                spec_digest: digest,
                python_version: "3.13",
                name: "keep",
                magic: &r.magic,
                code: &r.code,
            };
            assert_eq!(
                verifies(&public, &signed, &r.signature),
                i == j,
                "answer for spec {i}, checked as the answer for spec {j}"
            );
        }
    }
}

#[tokio::test]
async fn an_explicit_key_id_is_sent_and_no_signer_means_no_signature() {
    let signer = Arc::new(Signer::new(random_key(), Some("release-2024".into())));
    let signed = compile_with(Some(signer), &["3.13"]).await;
    assert_eq!(signed[0].key_id, "release-2024");
    assert_eq!(signed[0].signature.len(), 64);

    let unsigned = compile_with(None, &["3.13"]).await;
    assert!(unsigned[0].signature.is_empty(), "{:?}", unsigned[0].signature);
    assert!(unsigned[0].key_id.is_empty(), "{:?}", unsigned[0].key_id);
    // Signing changes nothing but the signature fields.
    assert_eq!(signed[0].code, unsigned[0].code);
    assert_eq!(signed[0].magic, unsigned[0].magic);
    assert_eq!(signed[0].python_version, unsigned[0].python_version);
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Runs `keyfilter serve ARGS` expecting it to fail at start; returns its stderr.
fn serve_fails(args: &[&str]) -> String {
    let (status, stderr) = Server::spawn(args).wait_exit();
    assert!(!status.success(), "keyfilter serve {args:?} started:\n{stderr}");
    stderr
}

#[tokio::test]
async fn rejected_calls_are_logged_without_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens_file = write(dir.path(), "tokens", "# deploy tokens\n\n  file-token  \n");
    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--auth-tokens",
        "s3cr3t-token",
        "--auth-tokens-file",
        &tokens_file,
        "--log-format",
        "json",
        "--shutdown-grace",
        "1s",
    ]);
    let addr = server.addr();

    let wrong = plaintext_match(addr, Some("Bearer wrong-token-xyz")).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let missing = plaintext_match(addr, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    // A comment line of the tokens file is not a token.
    let comment = plaintext_match(addr, Some("Bearer # deploy tokens")).await.unwrap_err();
    assert_eq!(comment.code(), Code::Unauthenticated, "{comment:?}");
    // Tokens from the flag and (trimmed) from the file are both accepted.
    assert_eq!(
        plaintext_match(addr, Some("Bearer s3cr3t-token"))
            .await
            .expect("flag token"),
        EXPECTED_MATCHES
    );
    assert_eq!(
        plaintext_match(addr, Some("Bearer file-token"))
            .await
            .expect("file token"),
        EXPECTED_MATCHES
    );

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
    let rejected: Vec<&str> = stderr.lines().filter(|l| l.contains("rejected")).collect();
    assert_eq!(rejected.len(), 3, "one log line per rejected call:\n{stderr}");
    for line in &rejected {
        let line: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(line["level"], "WARN", "{line}");
        // Logged inside the call's span, so it can be tied to the request id.
        assert_eq!(line["span"]["path"], "/keyfilter.v1.KeyFilter/Match", "{line}");
        assert!(
            line["span"]["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
    }
    let messages: Vec<&str> = rejected
        .iter()
        .filter(|l| l.contains("missing credentials"))
        .copied()
        .collect();
    assert_eq!(messages.len(), 1, "the missing-token call is told apart:\n{stderr}");
    for secret in ["s3cr3t-token", "wrong-token-xyz", "file-token"] {
        assert!(!stderr.contains(secret), "the log contains {secret:?}:\n{stderr}");
    }
}

/// Anyone who can reach the port can make the server log a rejected call:
/// a flood of them writes at most 10 lines a second, and the next line
/// written says how many were held back.
#[tokio::test]
async fn a_flood_of_rejected_calls_does_not_flood_the_log() {
    const CALLS: usize = 300;
    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--auth-tokens",
        "s3cr3t-token",
        "--log-format",
        "json",
        "--shutdown-grace",
        "1s",
    ]);
    let addr = server.addr();
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = KeyFilterClient::new(channel);
    let started = std::time::Instant::now();
    for _ in 0..CALLS {
        let status = timeout(STEP, client.r#match(with_auth(match_request(), Some("Bearer wrong"))))
            .await
            .expect("in time")
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let flood_secs = started.elapsed().as_secs();
    // A second later, one more: its line reports what was held back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = client.r#match(with_auth(match_request(), None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("rejected call"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let bound = 10 * (flood_secs as usize + 2);
    assert!(
        lines.len() <= bound && lines.len() < CALLS,
        "{} lines for {} rejected calls in {flood_secs} s (at most {bound}):\n{stderr}",
        lines.len(),
        CALLS + 1
    );
    let reported: u64 = lines
        .iter()
        .map(|l| {
            l["fields"]["suppressed"]
                .as_u64()
                .expect("every line says how many were held back")
        })
        .sum();
    assert_eq!(
        reported as usize + lines.len(),
        CALLS + 1,
        "the lines and the calls they report held back account for every rejected call:\n{stderr}"
    );
}

#[tokio::test]
async fn the_binary_serves_mutual_tls_from_pem_files() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = write(dir.path(), "server.pem", &pki.server.cert);
    let key = write(dir.path(), "server.key", &pki.server.key);
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
        "--shutdown-grace",
        "1s",
        "--log-format",
        "json",
        "--log",
        "keyfilter=debug",
    ]);
    let addr = server.addr();
    assert_refused(&tls_match(addr, &pki.ca, None).await, "CertificateRequired");
    assert_refused(&tls_match(addr, &pki.ca, Some(&pki.other_client)).await, "UnknownCA");
    // The server presents the certificate from --tls-cert.
    assert_failed_with(
        &tls_match(addr, &pki.other_ca, Some(&pki.client)).await,
        "UnknownIssuer",
    );
    assert!(plaintext_match(addr, None).await.is_err(), "plaintext");
    assert_eq!(
        tls_match(addr, &pki.ca, Some(&pki.client)).await.expect("mutual TLS"),
        EXPECTED_MATCHES
    );
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");
    // Over TLS too, each call's span knows the peer's address.
    let event = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "match")
        .unwrap_or_else(|| panic!("no `match` event:\n{stderr}"));
    let peer = event["span"]["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "peer {peer:?} in {event}");
}

#[test]
fn unreadable_tls_files_fail_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let cert = write(dir.path(), "server.pem", &pki.server.cert);
    let key = write(dir.path(), "server.key", &pki.server.key);
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();

    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", &key]);
    assert!(stderr.contains("tls_cert"), "{stderr}");
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--tls-cert", &cert, "--tls-key", missing]);
    assert!(stderr.contains("tls_key"), "{stderr}");
    let stderr = serve_fails(&[
        "--addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        missing,
    ]);
    assert!(stderr.contains("tls_client_ca"), "{stderr}");
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--auth-tokens-file", missing]);
    assert!(stderr.contains("auth_tokens_file"), "{stderr}");
    // A tokens file with nothing but comments would silently lock everyone out.
    let empty = write(dir.path(), "tokens", "# nothing here\n\n");
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--auth-tokens-file", &empty]);
    assert!(stderr.contains("auth_tokens"), "{stderr}");
}

/// Files that exist but hold no usable PEM: (flag values, the setting at fault).
fn bad_tls_pem_cases(dir: &Path, pki: &Pki) -> Vec<(Vec<String>, &'static str)> {
    let cert = write(dir, "server.pem", &pki.server.cert);
    let key = write(dir, "server.key", &pki.server.key);
    let junk = write(
        dir,
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let text = write(dir, "text.pem", "not PEM at all\n");
    let args = |cert: &str, key: &str, ca: Option<&str>| {
        let mut args = vec![
            "--tls-cert".to_string(),
            cert.to_string(),
            "--tls-key".into(),
            key.into(),
        ];
        if let Some(ca) = ca {
            args.extend(["--tls-client-ca".to_string(), ca.to_string()]);
        }
        args
    };
    vec![
        (args(&junk, &key, None), "tls_cert"),
        (args(&key, &key, None), "tls_cert"),
        (args(&cert, &text, None), "tls_key"),
        (args(&cert, &cert, None), "tls_key"),
        (args(&cert, &key, Some(&text)), "tls_client_ca"),
    ]
}

#[test]
fn unusable_tls_pem_contents_fail_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, _) in bad_tls_pem_cases(dir.path(), &pki()) {
        let mut full: Vec<&str> = vec!["--addr", "127.0.0.1:0"];
        full.extend(args.iter().map(String::as_str));
        serve_fails(&full);
    }
}

/// BUG (src/server/security.rs `Security::load`, src/server/mod.rs `serve`):
/// PEM files are only read at load time and parsed by `Server::tls_config` in
/// `serve`, after "keyfilter listening" is logged; the error is tonic's
/// ("transport error: invalid peer certificate: BadEncoding", "peer sent no
/// certificates", "no root trust anchors were provided") and names no setting,
/// against the README's "Invalid configuration fails at start with a message
/// naming the key". Enable once `Security::load` validates the PEM contents.
#[test]
fn unusable_tls_pem_contents_fail_naming_the_setting_before_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, setting) in bad_tls_pem_cases(dir.path(), &pki()) {
        let mut full: Vec<&str> = vec!["--addr", "127.0.0.1:0"];
        full.extend(args.iter().map(String::as_str));
        let stderr = serve_fails(&full);
        assert!(
            stderr.contains(setting),
            "{args:?}: the error does not name {setting}:\n{stderr}"
        );
        assert!(
            !stderr.contains("keyfilter listening"),
            "{args:?}: claimed to listen:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn the_binary_signs_with_a_pkcs8_pem_key() {
    let key = random_key();
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("PKCS#8 PEM");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "signing.pem", &pem);

    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--signing-key",
        &path,
        "--shutdown-grace",
        "1s",
    ]);
    let addr = server.addr();
    let mut client = KeyFilterClient::new(plaintext_channel(addr).await);
    let r = timeout(STEP, client.compile(compile_request("3.11")))
        .await
        .expect("bounded")
        .expect("Compile")
        .into_inner();
    let public = key.verifying_key();
    assert_eq!(r.signature.len(), 64);
    assert_eq!(r.key_id, hex(&public.as_bytes()[..8]));
    assert!(verifies_answer(&public, &r, "3.11"));
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "keyfilter exited with {status}:\n{stderr}");

    // --signing-key-id overrides the derived id.
    let mut server = Server::spawn(&[
        "--addr",
        "127.0.0.1:0",
        "--signing-key",
        &path,
        "--signing-key-id",
        "k-2024",
        "--shutdown-grace",
        "1s",
    ]);
    let addr = server.addr();
    let mut client = KeyFilterClient::new(plaintext_channel(addr).await);
    let r = client
        .compile(compile_request("3.11"))
        .await
        .expect("Compile")
        .into_inner();
    assert_eq!(r.key_id, "k-2024");
    assert!(verifies_answer(&public, &r, "3.11"));
    drop(server);
}

#[test]
fn a_bad_signing_key_fails_at_start_naming_signing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = write(
        dir.path(),
        "garbage.pem",
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--signing-key", &garbage]);
    assert!(stderr.contains("signing_key"), "{stderr}");

    let text = write(dir.path(), "text.pem", "hello\n");
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--signing-key", &text]);
    assert!(stderr.contains("signing_key"), "{stderr}");

    // A TLS (ECDSA P-256) key is PKCS#8 PEM too, but not Ed25519.
    let ecdsa = write(dir.path(), "ecdsa.pem", &KeyPair::generate().unwrap().serialize_pem());
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--signing-key", &ecdsa]);
    assert!(stderr.contains("signing_key"), "{stderr}");

    let missing = dir.path().join("missing.pem");
    let stderr = serve_fails(&["--addr", "127.0.0.1:0", "--signing-key", missing.to_str().unwrap()]);
    assert!(stderr.contains("signing_key"), "{stderr}");
}
