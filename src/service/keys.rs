//! Evaluating the keys of a `MatchRequest`, sent as rows or packed.

use tonic::Status;

use super::wire::MatchRequest;
use super::work::{Cancel, SLICE_KEYS};
use keyfilter_core::eval::{Matcher, PackedKeys};

/// The keys of a `MatchRequest` (rows or packed, not both), at most `max_keys` of them.
pub fn match_keys(request: &MatchRequest, arity: usize, max_keys: usize) -> Result<PackedKeys<'_>, Status> {
    match &request.packed_keys {
        Some(packed) => {
            if !request.keys.is_empty() {
                return Err(Status::invalid_argument("keys and packed_keys are both set; send one"));
            }
            packed.view(arity, max_keys, "packed_keys")
        }
        None => request.keys.view(arity, max_keys, "keys"),
    }
}

/// Runs `each` over the keys in slices of [`SLICE_KEYS`], stopping early (with
/// [`Cancel::status`]) once the call is cancelled.
fn in_slices(
    keys: &PackedKeys<'_>,
    cancel: &Cancel,
    mut each: impl FnMut(std::ops::Range<usize>),
) -> Result<(), Status> {
    for start in (0..keys.len()).step_by(SLICE_KEYS) {
        if cancel.is_cancelled() {
            return Err(Cancel::status());
        }
        each(start..(start + SLICE_KEYS).min(keys.len()));
    }
    Ok(())
}

/// One result per key, evaluated in slices so that a cancelled call stops early.
pub fn mask(matcher: &Matcher, keys: &PackedKeys<'_>, cancel: &Cancel) -> Result<Vec<bool>, Status> {
    let mut out = Vec::with_capacity(keys.len());
    in_slices(keys, cancel, |range| matcher.mask_packed_range(keys, range, &mut out))?;
    Ok(out)
}

/// The indices of the matching keys, evaluated in slices like [`mask`].
pub fn matched(matcher: &Matcher, keys: &PackedKeys<'_>, cancel: &Cancel) -> Result<Vec<u32>, Status> {
    let mut out = Vec::new();
    in_slices(keys, cancel, |range| {
        matcher.matched_packed_range(keys, range, &mut out)
    })?;
    Ok(out)
}
