//! Evaluating the keys of a request, sent as rows, packed or as columns.

use tonic::Status;

use super::wire::MatchRequest;
use super::work::{Cancel, SLICE_COST, SLICE_KEYS};
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

    /// Bytes of the keys (for columns, of their buffers).
    pub fn bytes(&self) -> usize {
        match self {
            Keys::Packed(keys) => keys.bytes(),
            Keys::Columns(keys) => keys.buffer_bytes(),
        }
    }
}

/// What evaluating `keys` keys of `bytes` bytes in all costs with `matcher`,
/// in the units of [`super::work::INLINE_COST`]: 8 per key and per check,
/// plus one per byte for every check that reads its whole field (a
/// substring search reads it all, however long: a key's own length, not
/// the number of keys, is what makes such a spec heavy).
pub fn eval_cost(keys: usize, bytes: usize, matcher: &Matcher) -> usize {
    keys.saturating_mul(8)
        .saturating_mul(matcher.checks_per_key().max(1))
        .saturating_add(bytes.saturating_mul(matcher.scans_per_key()))
}

/// Keys per slice of evaluation: about [`SLICE_COST`] of work, with the
/// keys' average length; at least one key, at most [`SLICE_KEYS`].
fn slice_keys(matcher: &Matcher, keys: &Keys<'_>) -> usize {
    let per_key = eval_cost(1, keys.bytes().div_ceil(keys.len().max(1)), matcher);
    (SLICE_COST / per_key.max(1)).clamp(1, SLICE_KEYS)
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

/// Runs `each` over the keys of `keys` in slices of about [`SLICE_COST`],
/// stopping early (with [`Cancel::status`]) once the call is cancelled; a
/// slice in progress then winds down too, even inside one long key.
fn in_slices(
    matcher: &Matcher,
    keys: &Keys<'_>,
    cancel: &Cancel,
    mut each: impl FnMut(std::ops::Range<usize>),
) -> Result<(), Status> {
    let (len, step) = (keys.len(), slice_keys(matcher, keys));
    cancel.watch(|| {
        for start in (0..len).step_by(step) {
            if cancel.is_cancelled() {
                return Err(Cancel::status());
            }
            each(start..(start + step).min(len));
        }
        // A slice cut short by the cancel has wrong results: never hand them out.
        if cancel.is_cancelled() {
            Err(Cancel::status())
        } else {
            Ok(())
        }
    })
}

/// One result per key, evaluated in slices so that a cancelled call stops
/// early. A key with a null field does not match.
pub fn mask(matcher: &Matcher, keys: &Keys<'_>, cancel: &Cancel) -> Result<Vec<bool>, Status> {
    match keys {
        Keys::Packed(rows) => {
            let mut out = Vec::with_capacity(rows.len());
            in_slices(matcher, keys, cancel, |range| {
                matcher.mask_packed_range(rows, range, &mut out)
            })?;
            Ok(out)
        }
        Keys::Columns(columns) => {
            // The columnar evaluator hands over the matching keys (a block at
            // a time, a conjunction check by check): mark them.
            let mut out = vec![false; columns.len()];
            let mut matched = Vec::new();
            in_slices(matcher, keys, cancel, |range| {
                matched.clear();
                matcher.matched_columns_range(columns, range, &mut matched);
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
        Keys::Packed(rows) => in_slices(matcher, keys, cancel, |range| {
            matcher.matched_packed_range(rows, range, &mut out)
        })?,
        Keys::Columns(columns) => in_slices(matcher, keys, cancel, |range| {
            matcher.matched_columns_range(columns, range, &mut out)
        })?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use keyfilter_core::eval::PackedIndex;
    use keyfilter_core::plan::{Body, Check, Plan, Test};

    /// `checks` checks on field 0: `NE` (a few bytes read), or substring
    /// searches (the whole field read).
    fn matcher(checks: usize, substring: bool) -> Matcher {
        let test = |i: usize| {
            let value = Bytes::from(format!("v{i}"));
            if substring {
                Test::NotContains(value)
            } else {
                Test::Ne(value)
            }
        };
        Matcher::new(&Plan {
            arity: 1,
            body: Body::Checks(
                (0..checks)
                    .map(|i| Check {
                        field: 0,
                        test: test(i),
                    })
                    .collect(),
            ),
        })
    }

    #[test]
    fn a_slice_is_about_the_same_work_whatever_the_spec_and_keys() {
        let short = vec![b'k'; 1_000];
        let mut index = PackedIndex::default();
        let keys = Keys::Packed(index.index(&short, &[1; 1_000], 1, 0).expect("packed"));
        assert_eq!(slice_keys(&matcher(3, false), &keys), SLICE_KEYS, "the usual spec");
        let many_checks = slice_keys(&matcher(10_000, false), &keys);
        assert_eq!(many_checks, SLICE_COST / 80_000, "10,000 checks a key");

        let long = vec![b'k'; 1 << 20];
        let mut index = PackedIndex::default();
        let keys = Keys::Packed(index.index(&long, &[1 << 19; 2], 1, 0).expect("packed"));
        assert_eq!(
            slice_keys(&matcher(3, false), &keys),
            SLICE_KEYS,
            "long keys, bounded checks"
        );
        assert_eq!(
            slice_keys(&matcher(100, true), &keys),
            1,
            "long keys, substring searches"
        );
        assert_eq!(
            eval_cost(2, 1 << 20, &matcher(100, true)),
            2 * 8 * 100 + (100 << 20),
            "each search reads every byte"
        );
    }

    #[test]
    fn a_cancelled_evaluation_hands_out_no_results() {
        let data = vec![b'k'; 4 << 10];
        let mut index = PackedIndex::default();
        let keys = Keys::Packed(index.index(&data, &[2 << 10; 2], 1, 0).expect("packed"));
        let matcher = matcher(2, true);
        let cancel = Cancel::default();
        assert_eq!(matched(&matcher, &keys, &cancel).expect("not cancelled"), [0, 1]);
        let stopped = Cancel::cancelled();
        assert_eq!(
            matched(&matcher, &keys, &stopped).unwrap_err().code(),
            tonic::Code::Cancelled
        );
        assert_eq!(
            mask(&matcher, &keys, &stopped).unwrap_err().code(),
            tonic::Code::Cancelled
        );
    }
}
