//! `spec_file`: bytes as the JSON spec file format (`keyfilter_core::spec::parse_spec_file`).
//!
//! Checks: parsing never panics (nor does validating what it returns); a
//! parsed spec rendered back with `spec_to_file_json` parses to the same wire
//! spec; error messages name a path.

#![no_main]

use keyfilter_core::spec::{parse_spec_file, spec_to_file_json, validate, Limits};
use libfuzzer_sys::fuzz_target;
// Links the capped allocator (see `keyfilter_fuzz::Capped`).
use keyfilter_fuzz as _;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_spec_file(text) {
        Ok(spec) => {
            let _ = validate(&spec, &Limits::default());
            let again = parse_spec_file(&spec_to_file_json(&spec)).expect("rendered spec parses");
            assert_eq!(again, spec);
        }
        Err(e) => assert!(!e.path.is_empty() && !e.message.is_empty(), "{e:?}"),
    }
});
