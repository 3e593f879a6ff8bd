//! The human-writable spec file format (JSON), used by the CLI and the Python package.
//!
//! ```json
//! {
//!   "arity": 3,
//!   "predicates": [
//!     {"field": 0, "op": "eq", "value": "org1"},
//!     {"field": 1, "op": ">=", "value": "2024"},
//!     {"field": 2, "op": "prefix", "value": "eng/\\xff"},
//!     {"field": 2, "op": "in", "values": ["a", {"hex": "00ff"}]}
//!   ],
//!   "expr": {"any": [
//!     {"predicate": {"field": 0, "op": "eq", "value": "org2"}},
//!     {"not": {"predicate": {"field": 2, "op": "suffix", "value": ".tmp"}}}
//!   ]}
//! }
//! ```
//!
//! A byte string is either a JSON string, read like the inside of a Python
//! `b"..."` literal (`\\xHH`, octal `\\0` to `\\377`, `\\n`, `\\r`, `\\t`, `\\a`,
//! `\\b`, `\\f`, `\\v`, `\\'`, `\\"`, `\\\\`; other characters stand for their UTF-8
//! bytes; an escape Python would warn about is an error), or an object
//! `{"hex": "..."}`. A key given twice in one object is an error (JSON
//! readers usually keep the last). Ops are named
//! `eq ne lt le gt ge prefix in suffix contains` or written `== != < <= > >=`
//! (`startswith`, `endswith` also name `prefix`, `suffix`). The optional
//! `expr` is one node: `{"predicate": {...}}`, `{"all": [...]}`,
//! `{"any": [...]}` or `{"not": {...}}` (`"negate"` is accepted for `"not"`).
//! The result is a [`SpecInput`]: validation (field ranges, limits) is the
//! same as for a spec received over gRPC.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{ExprInput, Op, PredicateInput, SpecInput};

/// A spec file that is not well-formed; the message names the JSON path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecFileError {
    /// Where in the document, e.g. `predicates[2].values[0]`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> SpecFileError {
    SpecFileError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses a spec file's text into a wire spec.
pub fn parse_spec_file(text: &str) -> Result<SpecInput, SpecFileError> {
    let doc = serde_json::from_str::<Strict>(text)
        .map_err(|e| err("$", format!("invalid JSON: {e}")))?
        .0;
    let obj = doc.as_object().ok_or_else(|| err("$", "expected an object"))?;
    reject_unknown(obj, "$", &["arity", "predicates", "expr"])?;
    let arity = match obj.get("arity") {
        Some(v) => as_u32(v, "arity")?,
        None => return Err(err("arity", "missing")),
    };
    let mut predicates = Vec::new();
    if let Some(list) = obj.get("predicates") {
        let list = list.as_array().ok_or_else(|| err("predicates", "expected a list"))?;
        for (i, p) in list.iter().enumerate() {
            predicates.push(parse_predicate(p, &format!("predicates[{i}]"))?);
        }
    }
    let expr = obj.get("expr").map(|e| parse_expr(e, "expr")).transpose()?;
    Ok(SpecInput {
        arity,
        predicates,
        expr,
    })
}

/// One expression node (serde_json bounds the nesting at 128 levels).
fn parse_expr(v: &Value, path: &str) -> Result<ExprInput, SpecFileError> {
    let obj = v.as_object().ok_or_else(|| err(path, "expected an object"))?;
    if obj.is_empty() {
        // A node with nothing set, as in the proto: validation names it.
        return Ok(ExprInput::Unset);
    }
    let mut keys = obj.keys();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(err(
            path,
            "expected exactly one of \"predicate\", \"all\", \"any\", \"not\"",
        ));
    };
    let inner = &obj[key];
    match key.as_str() {
        "predicate" => parse_predicate(inner, &format!("{path}.predicate")).map(ExprInput::Predicate),
        "all" | "any" => {
            let list = inner
                .as_array()
                .ok_or_else(|| err(format!("{path}.{key}"), "expected a list"))?;
            let items = list
                .iter()
                .enumerate()
                .map(|(i, item)| parse_expr(item, &format!("{path}.{key}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if key == "all" {
                ExprInput::All(items)
            } else {
                ExprInput::Any(items)
            })
        }
        "not" | "negate" => Ok(ExprInput::Negate(Box::new(parse_expr(
            inner,
            &format!("{path}.{key}"),
        )?))),
        other => Err(err(
            path,
            format!("unknown node {other:?} (expected predicate, all, any or not)"),
        )),
    }
}

fn parse_predicate(v: &Value, path: &str) -> Result<PredicateInput, SpecFileError> {
    let obj = v.as_object().ok_or_else(|| err(path, "expected an object"))?;
    reject_unknown(obj, path, &["field", "op", "value", "values"])?;
    let field = as_u32(
        obj.get("field").ok_or_else(|| err(path, "missing `field`"))?,
        &format!("{path}.field"),
    )?;
    let op_text = obj
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{path}.op"), "missing, or not a string"))?;
    let op = op_from_text(op_text).ok_or_else(|| {
        err(
            format!("{path}.op"),
            format!(
                "unknown op {op_text:?} (expected eq ne lt le gt ge prefix in suffix contains, or == != < <= > >=)"
            ),
        )
    })?;
    let value = match obj.get("value") {
        Some(v) => parse_bytes(v, &format!("{path}.value"))?,
        None => Bytes::new(),
    };
    let values = match obj.get("values") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| parse_bytes(item, &format!("{path}.values[{j}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err(format!("{path}.values"), "expected a list")),
        None => Vec::new(),
    };
    if op == Op::In && obj.contains_key("value") {
        return Err(err(path, "op `in` takes `values`, not `value`"));
    }
    if op != Op::In && obj.contains_key("values") {
        return Err(err(path, format!("op `{op_text}` takes `value`, not `values`")));
    }
    if op != Op::In && !obj.contains_key("value") {
        return Err(err(path, format!("op `{op_text}` needs a `value`")));
    }
    Ok(PredicateInput {
        field,
        op: op.number(),
        value,
        values,
    })
}

fn op_from_text(text: &str) -> Option<Op> {
    Some(match text.to_ascii_lowercase().as_str() {
        "eq" | "==" => Op::Eq,
        "ne" | "!=" => Op::Ne,
        "lt" | "<" => Op::Lt,
        "le" | "<=" => Op::Le,
        "gt" | ">" => Op::Gt,
        "ge" | ">=" => Op::Ge,
        "prefix" | "startswith" => Op::Prefix,
        "in" => Op::In,
        "suffix" | "endswith" => Op::Suffix,
        "contains" => Op::Contains,
        _ => return None,
    })
}

fn reject_unknown(obj: &Map<String, Value>, path: &str, known: &[&str]) -> Result<(), SpecFileError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(err(
            path,
            format!("unknown key {k:?} (expected one of {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn as_u32(v: &Value, path: &str) -> Result<u32, SpecFileError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| err(path, "expected an integer from 0 to 4294967295"))
}

fn parse_bytes(v: &Value, path: &str) -> Result<Bytes, SpecFileError> {
    match v {
        Value::String(s) => unescape(s).map(Bytes::from).map_err(|m| err(path, m)),
        Value::Object(o) if o.len() == 1 && o.contains_key("hex") => {
            let hex = o["hex"].as_str().ok_or_else(|| err(path, "`hex` must be a string"))?;
            decode_hex(hex).map(Bytes::from).map_err(|m| err(path, m))
        }
        _ => Err(err(path, "expected a string or {\"hex\": \"...\"}")),
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    // The first character that is not a digit is the fault to name, before any count.
    if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit() && !c.is_ascii_whitespace()) {
        return Err(format!("{bad:?} is not a hex digit"));
    }
    if digits.len() % 2 != 0 {
        return Err("hex has an odd number of digits".into());
    }
    // Only ASCII hex digits are left (checked above, which also keeps
    // `from_str_radix` from taking a sign: "+1").
    Ok(digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ASCII digits"), 16).expect("hex digits"))
        .collect())
}

/// A JSON value whose objects have no key twice: serde_json keeps the last
/// of repeated keys, so `{"arity": 1, "arity": 2}` would silently mean 2.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Reads the inside of a Python bytes literal: escapes as in Python (`\\xHH`,
/// octal `\\O` to `\\OOO` up to `\\377`, `\\n \\r \\t \\a \\b \\f \\v`, quotes and
/// backslash), other characters as their UTF-8 encoding. An escape Python
/// would warn about (unknown, or octal above `\\377`) is an error here.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                // Digits only: `from_str_radix` alone would take "+1" as a number.
                let byte = (hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("invalid escape \\x{hex}: expected two hex digits"))?;
                out.push(byte);
            }
            Some(first @ '0'..='7') => {
                let mut digits = String::from(first);
                while digits.len() < 3 {
                    match chars.peek() {
                        Some(&d @ '0'..='7') => {
                            digits.push(d);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                let value = u32::from_str_radix(&digits, 8).expect("octal digits");
                let byte = u8::try_from(value)
                    .map_err(|_| format!("invalid escape \\{digits}: an octal escape is at most \\377"))?;
                out.push(byte);
            }
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('a') => out.push(0x07),
            Some('b') => out.push(0x08),
            Some('f') => out.push(0x0c),
            Some('v') => out.push(0x0b),
            Some('\\') => out.push(b'\\'),
            Some('\'') => out.push(b'\''),
            Some('"') => out.push(b'"'),
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("trailing backslash".into()),
        }
    }
    Ok(out)
}

/// Writes bytes as spec-file text: printable ASCII as is, everything else escaped.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Renders a spec as stated in the spec file format (the inverse of
/// [`parse_spec_file`]); an operator number the contract does not define is
/// written as that number.
pub fn spec_to_file_json(spec: &SpecInput) -> String {
    let predicates: Vec<Value> = spec.predicates.iter().map(predicate_json).collect();
    let mut doc = serde_json::json!({ "arity": spec.arity, "predicates": predicates });
    if let Some(e) = &spec.expr {
        doc["expr"] = expr_json(e);
    }
    serde_json::to_string_pretty(&doc).expect("a JSON value always serializes")
}

fn predicate_json(p: &PredicateInput) -> Value {
    let op = match Op::from_number(p.op) {
        Some(op) => Some(op.name().to_string()),
        None if p.op == super::OP_UNSPECIFIED => Some("op_unspecified".to_string()),
        None => None,
    };
    let mut obj = Map::new();
    obj.insert("field".into(), p.field.into());
    obj.insert("op".into(), op.unwrap_or_else(|| p.op.to_string()).into());
    if p.op == Op::In.number() {
        obj.insert(
            "values".into(),
            p.values.iter().map(|v| Value::from(escape(v))).collect(),
        );
    } else {
        obj.insert("value".into(), escape(&p.value).into());
    }
    Value::Object(obj)
}

/// An empty object stands for an unset node (which validation refuses), both ways.
fn expr_json(e: &ExprInput) -> Value {
    match e {
        ExprInput::Unset => Value::Object(Map::new()),
        ExprInput::Predicate(p) => serde_json::json!({ "predicate": predicate_json(p) }),
        ExprInput::All(items) => serde_json::json!({ "all": items.iter().map(expr_json).collect::<Vec<_>>() }),
        ExprInput::Any(items) => serde_json::json!({ "any": items.iter().map(expr_json).collect::<Vec<_>>() }),
        ExprInput::Negate(item) => serde_json::json!({ "not": expr_json(item) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
    }

    #[test]
    fn parses_every_op_and_both_byte_forms() {
        let spec = parse_spec_file(
            r#"{"arity": 2, "predicates": [
                {"field": 0, "op": "==", "value": "a\\xff\\n"},
                {"field": 1, "op": "in", "values": [{"hex": "00 ff"}, "z"]},
                {"field": 1, "op": "prefix", "value": ""}]}"#,
        )
        .unwrap();
        assert_eq!(spec.arity, 2);
        assert_eq!(&spec.predicates[0].value[..], b"a\xff\n");
        assert_eq!(spec.predicates[1].op, Op::In.number());
        assert_eq!(
            spec.predicates[1].values,
            vec![Bytes::from_static(b"\x00\xff"), Bytes::from_static(b"z")]
        );
        assert_eq!(parse_spec_file(&spec_to_file_json(&spec)).unwrap(), spec);
    }

    #[test]
    fn errors_name_the_path() {
        let e =
            parse_spec_file(r#"{"arity": 1, "predicates": [{"field": 0, "op": "eq", "value": "\\xZZ"}]}"#).unwrap_err();
        assert_eq!(e.path, "predicates[0].value");
        let e = parse_spec_file(r#"{"arity": 1, "predicates": [{"field": 0, "op": "in", "value": "x"}]}"#).unwrap_err();
        assert!(
            e.to_string().contains("predicates[0]") && e.to_string().contains("`values`"),
            "{e}"
        );
        let e =
            parse_spec_file(r#"{"arity": 1, "predicates": [{"field": 0, "op": "like", "value": "x"}]}"#).unwrap_err();
        assert_eq!(e.path, "predicates[0].op");
        assert!(parse_spec_file(r#"{"predicates": []}"#)
            .unwrap_err()
            .to_string()
            .contains("arity"));
        assert!(parse_spec_file(r#"{"arity": 1, "extra": 1}"#).is_err());
    }

    #[test]
    fn a_key_given_twice_is_an_error_at_any_depth() {
        for text in [
            r#"{"arity": 1, "arity": 2, "predicates": []}"#,
            r#"{"arity": 1, "predicates": [{"field": 0, "op": "eq", "op": "ne", "value": "x"}]}"#,
            r#"{"arity": 1, "predicates": [], "expr": {"predicate": {"field": 0, "op": "eq", "value": "x", "value": "y"}}}"#,
        ] {
            let e = parse_spec_file(text).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
        // The same key in different objects is fine.
        let spec = parse_spec_file(
            r#"{"arity": 2, "predicates": [{"field": 0, "op": "eq", "value": "x"}, {"field": 1, "op": "eq", "value": "y"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.predicates.len(), 2);
    }
}
