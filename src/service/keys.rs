//! Reading keys out of requests: row form (`repeated Key`) and packed form.

use tonic::Status;

use crate::eval::{Matcher, PackedIndex};
use crate::proto::{Key, MatchRequest, PackedKeys};

/// Checks that every row has the matcher's arity; the error names the first bad key.
pub fn check_rows(matcher: &Matcher, keys: &[Key], what: &str) -> Result<(), Status> {
    match keys.iter().position(|k| k.fields.len() != matcher.arity()) {
        None => Ok(()),
        Some(i) => Err(Status::invalid_argument(format!(
            "{what}[{i}]: has {} fields, but the spec's arity is {}",
            keys[i].fields.len(),
            matcher.arity()
        ))),
    }
}

/// Indexes a packed batch, mapping malformed input to `INVALID_ARGUMENT`.
pub fn index_packed<'a>(
    index: &'a mut PackedIndex,
    packed: &'a PackedKeys,
    arity: usize,
    what: &str,
) -> Result<crate::eval::PackedKeys<'a>, Status> {
    index
        .index(&packed.data, &packed.lengths, arity as u32, packed.count)
        .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

/// Evaluates a `MatchRequest`'s keys (rows or packed, not both).
pub fn match_request(matcher: &Matcher, request: &MatchRequest) -> Result<Vec<bool>, Status> {
    match &request.packed_keys {
        Some(packed) => {
            if !request.keys.is_empty() {
                return Err(Status::invalid_argument("keys and packed_keys are both set; send one"));
            }
            let mut index = PackedIndex::default();
            let keys = index_packed(&mut index, packed, matcher.arity(), "packed_keys")?;
            let mut out = Vec::with_capacity(keys.len());
            matcher.mask_packed(&keys, &mut out);
            Ok(out)
        }
        None => {
            check_rows(matcher, &request.keys, "keys")?;
            Ok(request.keys.iter().map(|k| matcher.matches(&k.fields)).collect())
        }
    }
}
