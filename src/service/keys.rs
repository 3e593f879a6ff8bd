//! Evaluating the keys of a `MatchRequest`, sent as rows or packed.

use tonic::Status;

use super::wire::MatchRequest;
use crate::eval::Matcher;

/// Evaluates a `MatchRequest`'s keys (rows or packed, not both).
pub fn match_request(matcher: &Matcher, request: &MatchRequest) -> Result<Vec<bool>, Status> {
    let keys = match &request.packed_keys {
        Some(packed) => {
            if !request.keys.is_empty() {
                return Err(Status::invalid_argument("keys and packed_keys are both set; send one"));
            }
            packed.view(matcher.arity(), "packed_keys")?
        }
        None => request.keys.view(matcher.arity(), "keys")?,
    };
    let mut out = Vec::with_capacity(keys.len());
    matcher.mask_packed(&keys, &mut out);
    Ok(out)
}
