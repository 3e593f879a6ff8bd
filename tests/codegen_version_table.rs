//! The emitter's version table agrees with the opcode dumps taken from the real
//! interpreters (`../shared/data/cpython/<ver>.json`, or `KEYFILTER_CPYTHON_DATA`).

use std::path::PathBuf;

use keyfilter_core::codegen::{Opcode, SUPPORTED};
use serde_json::Value;

fn dump(version: &str) -> Value {
    let dir = std::env::var_os("KEYFILTER_CPYTHON_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cpython"));
    let path = dir.join(format!("{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("opcode dump {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn opcode_numbers_caches_and_magic_match_the_interpreters() {
    for version in SUPPORTED {
        let d = dump(&version.to_string());
        assert_eq!(
            d["magic_number_hex"].as_str().unwrap(),
            version.magic().map(|b| format!("{b:02x}")).concat()
        );
        let cmp: Vec<&str> = d["cmp_op"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(cmp, ["<", "<=", "==", "!=", ">", ">="], "{version}");
        for op in Opcode::ALL {
            let name = version.opname(op);
            let real = d["opmap"].get(name).and_then(Value::as_u64);
            match version.opcode(op) {
                Some((num, caches)) => {
                    assert_eq!(real, Some(num as u64), "{version} {name}");
                    let expected = d["inline_cache_entries"].get(name).and_then(Value::as_u64).unwrap_or(0);
                    assert_eq!(caches as u64, expected, "{version} {name} caches");
                }
                None => assert!(real.is_none(), "{version} has {name} but the table omits it"),
            }
        }
    }
}
