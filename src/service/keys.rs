//! Evaluating the keys of a request, sent as rows, packed or as columns.

use tonic::Status;

use super::wire::MatchRequest;
use super::work::{Cancel, SLICE_KEYS};
use keyfilter_core::eval::{Columns, Matcher, PackedKeys};

/// Keys ready for evaluation, borrowing the request: rows and packed keys as
/// one flat batch, columnar keys as columns.
pub enum Keys<'a> {
    /// Rows or packed keys.
    Packed(PackedKeys<'a>),
    /// Columnar keys.
    Columns(Columns<'a>),
}

impl Keys<'_> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            Keys::Packed(keys) => keys.len(),
            Keys::Columns(keys) => keys.len(),
        }
    }
}

/// The keys of a `MatchRequest` (one form: rows, packed or columnar), at most
/// `max_keys` of them. Validating columns reads every offset: call it where
/// the evaluation runs.
pub fn match_keys(request: &MatchRequest, arity: usize, max_keys: usize) -> Result<Keys<'_>, Status> {
    let forms = [
        ("keys", !request.keys.is_empty()),
        ("packed_keys", request.packed_keys.is_some()),
        ("columnar_keys", request.columnar_keys.is_some()),
    ];
    let mut sent = forms.iter().filter(|(_, set)| *set).map(|(name, _)| name);
    if let (Some(first), Some(second)) = (sent.next(), sent.next()) {
        return Err(Status::invalid_argument(format!(
            "{first} and {second} are both set; send one"
        )));
    }
    if let Some(columnar) = &request.columnar_keys {
        return columnar.view(arity, max_keys, "columnar_keys").map(Keys::Columns);
    }
    match &request.packed_keys {
        Some(packed) => packed.view(arity, max_keys, "packed_keys").map(Keys::Packed),
        None => request.keys.view(arity, max_keys, "keys").map(Keys::Packed),
    }
}

/// Runs `each` over `0..len` in slices of [`SLICE_KEYS`], stopping early
/// (with [`Cancel::status`]) once the call is cancelled.
fn in_slices(len: usize, cancel: &Cancel, mut each: impl FnMut(std::ops::Range<usize>)) -> Result<(), Status> {
    for start in (0..len).step_by(SLICE_KEYS) {
        if cancel.is_cancelled() {
            return Err(Cancel::status());
        }
        each(start..(start + SLICE_KEYS).min(len));
    }
    Ok(())
}

/// One result per key, evaluated in slices so that a cancelled call stops
/// early. A key with a null field does not match.
pub fn mask(matcher: &Matcher, keys: &Keys<'_>, cancel: &Cancel) -> Result<Vec<bool>, Status> {
    match keys {
        Keys::Packed(keys) => {
            let mut out = Vec::with_capacity(keys.len());
            in_slices(keys.len(), cancel, |range| {
                matcher.mask_packed_range(keys, range, &mut out)
            })?;
            Ok(out)
        }
        Keys::Columns(keys) => {
            // The columnar evaluator hands over the matching keys (a block at
            // a time, a conjunction check by check): mark them.
            let mut out = vec![false; keys.len()];
            let mut matched = Vec::new();
            in_slices(keys.len(), cancel, |range| {
                matched.clear();
                matcher.matched_columns_range(keys, range, &mut matched);
                for &row in &matched {
                    out[row as usize] = true;
                }
            })?;
            Ok(out)
        }
    }
}

/// The indices of the matching keys, evaluated in slices like [`mask`].
pub fn matched(matcher: &Matcher, keys: &Keys<'_>, cancel: &Cancel) -> Result<Vec<u32>, Status> {
    let mut out = Vec::new();
    match keys {
        Keys::Packed(keys) => in_slices(keys.len(), cancel, |range| {
            matcher.matched_packed_range(keys, range, &mut out)
        })?,
        Keys::Columns(keys) => in_slices(keys.len(), cancel, |range| {
            matcher.matched_columns_range(keys, range, &mut out)
        })?,
    }
    Ok(out)
}
