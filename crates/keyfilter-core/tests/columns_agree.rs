//! The columnar evaluator agrees with the row evaluator: random specs
//! (conjunctions and expression trees over all ten operators) over random keys
//! laid out in every Arrow layout the columns accept, with nulls, slices and
//! dictionaries. A key with a null field must never match.

use keyfilter_core::eval::{Column, Columns, Matcher, Validity};
use keyfilter_core::plan::Plan;
use keyfilter_core::spec::{Limits, SpecInput};
use proptest::prelude::*;

mod support;

const ARITY: usize = 3;

// Values cross the 12 bytes a view keeps inline.
const MAX_VALUE_LEN: usize = 16;

fn value() -> BoxedStrategy<Vec<u8>> {
    support::value(MAX_VALUE_LEN)
}

fn spec() -> impl Strategy<Value = SpecInput> {
    support::spec(ARITY as u32, MAX_VALUE_LEN, 4)
}

/// One field of every row: its value, or `None` for null.
type Field = Vec<Option<Vec<u8>>>;

/// Arrow layouts of one column, built from its rows.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Offsets32,
    Offsets64,
    Views,
    Dictionary,
}

/// The buffers of one column, owned, so that a `Column` can borrow them.
struct Built {
    layout: Layout,
    /// offsets (or views, or dictionary keys)
    index: Vec<u8>,
    data: Vec<u8>,
    /// the dictionary's values as 32-bit offsets
    dict_offsets: Vec<u8>,
    dict_rows: usize,
    validity: Vec<u8>,
    /// the bitmap starts at this bit (as in a sliced Arrow array)
    bit_offset: usize,
}

fn build(layout: Layout, rows: &Field, bit_offset: usize) -> Built {
    let mut validity = vec![0u8; (bit_offset + rows.len()).div_ceil(8)];
    for (i, r) in rows.iter().enumerate() {
        if r.is_some() {
            validity[(bit_offset + i) / 8] |= 1 << ((bit_offset + i) % 8);
        }
    }
    // Null rows hold garbage where the layout allows it, to prove it is never read.
    let mut b = Built {
        layout,
        index: vec![],
        data: vec![],
        dict_offsets: vec![],
        dict_rows: 0,
        validity,
        bit_offset,
    };
    match layout {
        Layout::Offsets32 | Layout::Offsets64 => {
            // A leading unused value, so the first offset is not 0.
            b.data.extend_from_slice(b"junk");
            let push = |index: &mut Vec<u8>, at: usize| match layout {
                Layout::Offsets32 => index.extend_from_slice(&(at as u32).to_le_bytes()),
                _ => index.extend_from_slice(&(at as u64).to_le_bytes()),
            };
            push(&mut b.index, b.data.len());
            for r in rows {
                b.data.extend_from_slice(r.as_deref().unwrap_or(b"null!"));
                push(&mut b.index, b.data.len());
            }
        }
        Layout::Views => {
            for r in rows {
                let v = r.as_deref().unwrap_or(b"");
                if r.is_none() {
                    // A 100-byte view in a buffer that does not exist.
                    b.index.extend_from_slice(&100u32.to_le_bytes());
                    b.index.extend_from_slice(&[7; 12]);
                    continue;
                }
                b.index.extend_from_slice(&(v.len() as u32).to_le_bytes());
                if v.len() <= 12 {
                    let mut inline = [0u8; 12];
                    inline[..v.len()].copy_from_slice(v);
                    b.index.extend_from_slice(&inline);
                } else {
                    b.index.extend_from_slice(&v[..4]);
                    b.index.extend_from_slice(&0u32.to_le_bytes());
                    b.index.extend_from_slice(&(b.data.len() as u32).to_le_bytes());
                    b.data.extend_from_slice(v);
                }
            }
        }
        Layout::Dictionary => {
            let mut distinct: Vec<&[u8]> = vec![];
            b.dict_offsets.extend_from_slice(&0u32.to_le_bytes());
            for r in rows {
                let key = match r {
                    None => -5i32,
                    Some(v) => match distinct.iter().position(|d| *d == v.as_slice()) {
                        Some(k) => k as i32,
                        None => {
                            distinct.push(v);
                            b.data.extend_from_slice(v);
                            b.dict_offsets.extend_from_slice(&(b.data.len() as u32).to_le_bytes());
                            (distinct.len() - 1) as i32
                        }
                    },
                };
                b.index.extend_from_slice(&key.to_le_bytes());
            }
            b.dict_rows = distinct.len();
        }
    }
    b
}

/// `bitmap`: give the validity bitmap even when no row is null (as Arrow
/// producers may); without it, columns without nulls take the fast path.
fn column<'a>(b: &'a Built, rows: usize, bitmap: bool) -> Column<'a> {
    let no_nulls = (0..rows).all(|i| b.validity[(b.bit_offset + i) / 8] & (1 << ((b.bit_offset + i) % 8)) != 0);
    let validity = (bitmap || !no_nulls).then(|| Validity::new(&b.validity, b.bit_offset, rows).unwrap());
    match b.layout {
        Layout::Offsets32 => Column::offsets(4, &b.index, &b.data, rows, validity).unwrap(),
        Layout::Offsets64 => Column::offsets(8, &b.index, &b.data, rows, validity).unwrap(),
        Layout::Views => Column::views(&b.index, vec![&b.data], rows, validity).unwrap(),
        Layout::Dictionary => {
            let values = Column::offsets(4, &b.dict_offsets, &b.data, b.dict_rows, None).unwrap();
            Column::dictionary(4, true, &b.index, values, rows, validity).unwrap()
        }
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    prop::sample::select(vec![
        Layout::Offsets32,
        Layout::Offsets64,
        Layout::Views,
        Layout::Dictionary,
    ])
}

fn keys() -> impl Strategy<Value = Vec<[Option<Vec<u8>>; ARITY]>> {
    // Often no null at all, so that the fast path (no validity) runs too.
    let field = prop::option::weighted(0.97, value());
    prop::collection::vec([field.clone(), field.clone(), field], 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn columns_agree_with_rows(
        spec in spec(),
        keys in keys(),
        layouts in [layout(), layout(), layout()],
        bit_offset in 0usize..8,
        bitmaps in any::<[bool; ARITY]>(),
        start_byte in 0usize..3,
    ) {
        let Ok(spec) = keyfilter_core::validate(&spec, &Limits::default()) else { return Ok(()) };
        let matcher = Matcher::new(&Plan::new(&spec));
        let fields: Vec<Field> = (0..ARITY).map(|f| keys.iter().map(|k| k[f].clone()).collect()).collect();
        let built: Vec<Built> = (0..ARITY).map(|f| build(layouts[f], &fields[f], bit_offset)).collect();
        let columns = Columns::new(built.iter().zip(bitmaps).map(|(b, bitmap)| column(b, keys.len(), bitmap)).collect(), keys.len()).unwrap();

        let expected: Vec<bool> = keys
            .iter()
            .map(|k| k.iter().all(Option::is_some) && matcher.matches(&k.clone().map(|f| f.unwrap_or_default())))
            .collect();

        // The bitmap, filled from a start that is a multiple of 8.
        let start = (start_byte * 8).min(keys.len() / 8 * 8);
        let mut bits = vec![0xAAu8; (keys.len() - start).div_ceil(8) + 1];
        matcher.mask_columns(&columns, start, &mut bits);
        for (i, want) in expected.iter().enumerate().skip(start) {
            let got = bits[(i - start) / 8] & (1 << ((i - start) % 8)) != 0;
            prop_assert_eq!(got, *want, "row {}", i);
        }
        // Bits past the last key are cleared.
        let tail = keys.len() - start;
        for i in tail..bits.len() * 8 {
            prop_assert_eq!(bits[i / 8] & (1 << (i % 8)), 0);
        }

        let mut matched = vec![];
        matcher.matched_columns_range(&columns, 0..keys.len(), &mut matched);
        let want: Vec<u32> = (0..keys.len() as u32).filter(|&i| expected[i as usize]).collect();
        prop_assert_eq!(&matched, &want);
        prop_assert_eq!(matcher.count_columns_range(&columns, 0..keys.len()), want.len());

        let first_null = keys.iter().position(|k| k.iter().any(Option::is_none));
        prop_assert_eq!(columns.first_null().map(|(row, _)| row), first_null);
    }
}
