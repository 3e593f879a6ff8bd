//! The Compile RPC end to end: bytes fetched over gRPC from a real server run
//! inside the real interpreter they were requested for, and agree with the
//! native evaluator; the response's magic is that interpreter's, and the
//! function is named as asked (non-ASCII identifiers included).

mod support;

use std::time::Duration;

use keyfilter::proto::key_filter_client::KeyFilterClient;
use keyfilter::proto::CompileRequest;
use keyfilter::server::{serve, ServerConfig};
use keyfilter_core::codegen::{PyVersion, SUPPORTED};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use support::cpython::{run_cases, Case};
use tokio::net::TcpListener;

async fn fetch_cases(client: &mut KeyFilterClient<tonic::transport::Channel>, version: PyVersion) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0xc0de + version.minor() as u64);
    let mut cases = Vec::new();
    for i in 0..60 {
        let arity = rng.random_range(0..=6);
        let n = if i == 59 { 400 } else { rng.random_range(0..8) };
        let wire = support::spec(&mut rng, arity, n);
        let keys = support::keys(&mut rng, &wire, 24);
        // Both spellings of the version select the same minor.
        let asked = if i % 2 == 0 {
            version.to_string()
        } else {
            format!("{version}.7")
        };
        // Names are Python identifiers, not only ASCII ones (marshalled as
        // short ASCII or as UTF-8 text): Cyrillic, CJK, and 200 characters
        // that are 400 bytes of UTF-8.
        let name = match i % 4 {
            1 => format!("ключ_{i}"),
            2 => format!("名前_{i}"),
            3 if i == 3 => "é".repeat(200),
            _ => format!("rpc_{i}"),
        };
        let reply = client
            .compile(CompileRequest {
                spec: Some(wire.clone()),
                python_version: asked.clone(),
                name: name.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("Compile for {asked}: {e}"))
            .into_inner();
        assert_eq!(reply.python_version, asked, "the version is echoed as sent");
        assert_eq!(&reply.magic[..], &version.magic(), "{asked}: magic");
        let extra = json!({"dis": i == 0, "arg_count": i == 1});
        cases.push(Case {
            id: format!("rpc-{i}"),
            wire,
            keys,
            name,
            extra,
            code: Some(reply.code.to_vec()),
        });
    }
    cases
}

#[test]
fn compile_rpc_output_runs_in_every_interpreter() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let per_version = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(ServerConfig::default(), listener, async {
            let _ = stop.await;
        }));
        let mut client = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(c) = KeyFilterClient::connect(format!("http://{addr}")).await {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("server starts");
        let mut out = Vec::new();
        for version in SUPPORTED {
            out.push((version, fetch_cases(&mut client, version).await));
        }
        out
    });
    let _ = shutdown.send(());
    // One interpreter process per version, two at a time (two cores).
    std::thread::scope(|scope| {
        for pair in per_version.chunks(2) {
            let handles: Vec<_> = pair
                .iter()
                .map(|(version, cases)| scope.spawn(move || run_cases(*version, cases, Vec::new())))
                .collect();
            for h in handles {
                h.join().expect("interpreter run");
            }
        }
    });
}
