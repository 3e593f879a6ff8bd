//! Validation errors and every operator at the edges of the byte order.

use bytes::Bytes;
use keyfilter::proto::{FilterSpec, Op, Predicate};
use keyfilter_core::eval::Matcher;
use keyfilter_core::plan::{Body, Plan, Test};
use keyfilter_core::spec::{reference_matches, validate, At, Limits, SpecError};

fn p(field: u32, op: Op, value: &[u8]) -> Predicate {
    Predicate {
        field,
        op: op as i32,
        value: Bytes::copy_from_slice(value),
        values: vec![],
    }
}

fn isin(field: u32, values: &[&[u8]]) -> Predicate {
    Predicate {
        field,
        op: Op::In as i32,
        value: Bytes::new(),
        values: values.iter().map(|v| Bytes::copy_from_slice(v)).collect(),
    }
}

fn plan(arity: u32, predicates: Vec<Predicate>) -> Plan {
    Plan::new(
        &validate(
            &FilterSpec {
                arity,
                predicates,
                expr: None,
            }
            .to_input(),
            &Limits::default(),
        )
        .unwrap(),
    )
}

/// Asserts that `predicates` on one field accept exactly the keys in `yes` and none in `no`,
/// through the plan and through the reference evaluator.
fn accepts(predicates: Vec<Predicate>, yes: &[&[u8]], no: &[&[u8]]) {
    let spec = validate(
        &FilterSpec {
            arity: 1,
            predicates,
            expr: None,
        }
        .to_input(),
        &Limits::default(),
    )
    .unwrap();
    let matcher = Matcher::new(&Plan::new(&spec));
    for key in yes {
        assert!(
            reference_matches(&spec, &[key]),
            "reference rejects {key:?} for {spec:?}"
        );
        assert!(matcher.matches(&[key]), "plan rejects {key:?} for {spec:?}");
    }
    for key in no {
        assert!(
            !reference_matches(&spec, &[key]),
            "reference accepts {key:?} for {spec:?}"
        );
        assert!(!matcher.matches(&[key]), "plan accepts {key:?} for {spec:?}");
    }
}

#[test]
fn comparisons_follow_python_bytes_order() {
    accepts(vec![p(0, Op::Eq, b"")], &[b""], &[b"\x00", b"a"]);
    accepts(vec![p(0, Op::Ne, b"")], &[b"\x00", b"\xff"], &[b""]);
    accepts(vec![p(0, Op::Lt, b"")], &[], &[b"", b"\x00"]);
    accepts(vec![p(0, Op::Le, b"")], &[b""], &[b"\x00"]);
    accepts(vec![p(0, Op::Gt, b"")], &[b"\x00", b"\xff"], &[b""]);
    accepts(vec![p(0, Op::Ge, b"")], &[b"", b"\x00"], &[]);
    // A proper prefix sorts first; bytes compare unsigned.
    accepts(
        vec![p(0, Op::Lt, b"ab")],
        &[b"a", b"", b"aa\xff"],
        &[b"ab", b"ab\x00", b"b"],
    );
    accepts(
        vec![p(0, Op::Gt, b"\x7f")],
        &[b"\x80", b"\xff", b"\x7f\x00"],
        &[b"\x7f", b"\x00"],
    );
    accepts(vec![p(0, Op::Le, b"\xff")], &[b"\xff", b"\xfe\xff\xff"], &[b"\xff\x00"]);
}

#[test]
fn prefix_at_the_edges() {
    accepts(vec![p(0, Op::Prefix, b"")], &[b"", b"\xff"], &[]);
    accepts(
        vec![p(0, Op::Prefix, b"\x00")],
        &[b"\x00", b"\x00\xff"],
        &[b"", b"\x01"],
    );
    accepts(
        vec![p(0, Op::Prefix, b"\xff")],
        &[b"\xff", b"\xff\xff\x00"],
        &[b"\xfe\xff", b""],
    );
    accepts(
        vec![p(0, Op::Prefix, b"\xff\xff")],
        &[b"\xff\xff", b"\xff\xff\x00"],
        &[b"\xff", b"\xff\xfe"],
    );
    accepts(
        vec![p(0, Op::Prefix, b"a\xff")],
        &[b"a\xff", b"a\xff\xff"],
        &[b"a", b"b", b"a\xfe\xff"],
    );
    // Equal-then-longer keys.
    accepts(
        vec![p(0, Op::Prefix, b"ab")],
        &[b"ab", b"ab\x00", b"abc"],
        &[b"a", b"ac", b"aa\xff"],
    );
    let ranged = plan(1, vec![p(0, Op::Prefix, b"ab")]);
    assert_eq!(ranged.checks().len(), 2);
    assert!(matches!(&ranged.checks()[1].test, Test::Lt(v) if &v[..] == b"ac"));
    let open = plan(1, vec![p(0, Op::Prefix, b"\xff\xff")]);
    assert!(matches!(open.checks(), [c] if matches!(&c.test, Test::Ge(v) if &v[..] == b"\xff\xff")));
    assert_eq!(plan(1, vec![p(0, Op::Prefix, b"")]).body, Body::Checks(vec![]));
}

#[test]
fn membership() {
    accepts(vec![isin(0, &[])], &[], &[b"", b"a"]);
    accepts(vec![isin(0, &[b""])], &[b""], &[b"\x00"]);
    accepts(vec![isin(0, &[b"a", b"b", b"a"])], &[b"a", b"b"], &[b"ab", b""]);
    assert!(plan(1, vec![isin(0, &[])]).is_never());
    assert!(matches!(plan(1, vec![isin(0, &[b"x"])]).checks(), [c] if c.test == Test::Eq(Bytes::from("x"))));
}

#[test]
fn contradictions_fold_into_never() {
    for predicates in [
        vec![p(0, Op::Eq, b"a"), p(0, Op::Eq, b"b")],
        vec![p(0, Op::Eq, b"a"), p(0, Op::Ne, b"a")],
        vec![p(0, Op::Lt, b"a"), p(0, Op::Gt, b"a")],
        vec![p(0, Op::Lt, b"a"), p(0, Op::Ge, b"a")],
        vec![p(0, Op::Gt, b"a"), p(0, Op::Lt, b"a\x00")],
        vec![p(0, Op::Lt, b"")],
        vec![p(0, Op::Prefix, b"a"), p(0, Op::Prefix, b"b")],
        vec![isin(0, &[b"a", b"b"]), isin(0, &[b"c"])],
        vec![isin(0, &[b"a", b"b"]), p(0, Op::Gt, b"b")],
        vec![p(0, Op::Le, b"a"), p(0, Op::Ge, b"a"), p(0, Op::Ne, b"a")],
    ] {
        let spec = format!("{predicates:?}");
        assert!(plan(1, predicates).is_never(), "{spec}");
    }
}

#[test]
fn duplicates_and_implied_checks_are_dropped() {
    let dup = plan(
        2,
        vec![
            p(1, Op::Eq, b"x"),
            p(1, Op::Eq, b"x"),
            p(1, Op::Prefix, b"x"),
            p(1, Op::Ne, b"y"),
        ],
    );
    assert_eq!(dup.checks().len(), 1, "{dup:?}");
    let bounds = plan(
        1,
        vec![
            p(0, Op::Lt, b"m"),
            p(0, Op::Lt, b"z"),
            p(0, Op::Le, b"m"),
            p(0, Op::Ge, b"a"),
        ],
    );
    assert_eq!(bounds.checks().len(), 2, "{bounds:?}");
    assert!(bounds.checks().iter().any(|c| c.test == Test::Lt(Bytes::from("m"))));
    // A one-value range becomes equality.
    let single = plan(1, vec![p(0, Op::Ge, b"a"), p(0, Op::Lt, b"a\x00")]);
    assert_eq!(single.checks()[0].test, Test::Eq(Bytes::from("a")));
    // Equality first: it is the most selective check.
    let ordered = plan(2, vec![p(0, Op::Ne, b"q"), p(1, Op::Ge, b"k"), p(1, Op::Eq, b"z")]);
    assert!(matches!(ordered.checks()[0].test, Test::Eq(_)));
}

#[test]
fn arity_zero() {
    let always = plan(0, vec![]);
    assert_eq!(always.body, Body::Checks(vec![]));
    assert!(Matcher::new(&always).matches::<&[u8]>(&[]));
    let err = validate(
        &FilterSpec {
            arity: 0,
            predicates: vec![p(0, Op::Eq, b"")],
            expr: None,
        }
        .to_input(),
        &Limits::default(),
    );
    assert_eq!(
        err.unwrap_err(),
        SpecError::FieldOutOfRange {
            at: At::Predicate(0),
            field: 0,
            arity: 0
        }
    );
}

#[test]
fn validation_errors_name_predicate_and_field() {
    let limits = Limits {
        max_arity: 4,
        max_predicates: 3,
        max_value_bytes: 4,
        max_in_values: 2,
        max_total_value_bytes: 2 * (4 + keyfilter_core::spec::VALUE_OVERHEAD) + 1,
        ..Limits::default()
    };
    let check = |arity, predicates: Vec<Predicate>, expected: SpecError, text: &str| {
        let err = validate(
            &FilterSpec {
                arity,
                predicates,
                expr: None,
            }
            .to_input(),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err, expected);
        assert!(err.to_string().contains(text), "{err} lacks {text:?}");
    };
    check(5, vec![], SpecError::ArityTooLarge { arity: 5, max: 4 }, "arity is 5");
    let four = vec![p(0, Op::Eq, b""); 4];
    check(
        1,
        four,
        SpecError::TooManyPredicates { count: 4, max: 3 },
        "4 predicates",
    );
    check(
        2,
        vec![p(0, Op::Eq, b""), p(2, Op::Eq, b"")],
        SpecError::FieldOutOfRange {
            at: At::Predicate(1),
            field: 2,
            arity: 2,
        },
        "predicates[1]: field 2",
    );
    check(
        2,
        vec![p(1, Op::Unspecified, b"")],
        SpecError::OpUnspecified {
            at: At::Predicate(0),
            field: 1,
        },
        "OP_UNSPECIFIED",
    );
    let mut unknown = p(1, Op::Eq, b"");
    unknown.op = 42;
    check(
        2,
        vec![unknown],
        SpecError::UnknownOp {
            at: At::Predicate(0),
            field: 1,
            op: 42,
        },
        "unknown op 42",
    );
    let mut in_value = isin(0, &[b"a"]);
    in_value.value = Bytes::from("x");
    check(
        1,
        vec![in_value],
        SpecError::InWithValue {
            at: At::Predicate(0),
            field: 0,
        },
        "takes `values`",
    );
    let mut eq_values = p(0, Op::Eq, b"a");
    eq_values.values = vec![Bytes::from("x")];
    check(
        1,
        vec![eq_values],
        SpecError::ValuesWithoutIn {
            at: At::Predicate(0),
            field: 0,
            op: "eq",
        },
        "takes `value`",
    );
    check(
        1,
        vec![p(0, Op::Prefix, b"abcde")],
        SpecError::ValueTooLong {
            at: At::Predicate(0),
            field: 0,
            len: 5,
            max: 4,
        },
        "5 bytes",
    );
    check(
        1,
        vec![isin(0, &[b"a", b"b", b"c"])],
        SpecError::TooManyValues {
            at: At::Predicate(0),
            field: 0,
            count: 3,
            max: 2,
        },
        "3 values",
    );
    check(
        1,
        vec![p(0, Op::Eq, b"abcd"), p(0, Op::Eq, b"abcd"), p(0, Op::Eq, b"abcd")],
        SpecError::TotalTooLarge {
            at: At::Predicate(2),
            field: 0,
            max: 2 * (4 + keyfilter_core::spec::VALUE_OVERHEAD) + 1,
        },
        "predicates[2]",
    );
}
