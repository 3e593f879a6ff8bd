//! A plan as text, for `keyfilter explain` and `Spec.explain()`: the checks
//! in evaluation order, written as the Python expression each one is.

use std::fmt;

use super::{Body, Check, Node, Plan, Test};
use crate::codegen::dis::bytes_repr;

fn set_repr(values: &[bytes::Bytes]) -> String {
    const SHOWN: usize = 8;
    let mut parts: Vec<String> = values.iter().take(SHOWN).map(|v| bytes_repr(v)).collect();
    if values.len() > SHOWN {
        parts.push(format!("... {} values in all", values.len()));
    }
    format!("{{{}}}", parts.join(", "))
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = format!("k{}", self.field);
        match &self.test {
            Test::Eq(v) => write!(f, "{k} == {}", bytes_repr(v)),
            Test::Ne(v) => write!(f, "{k} != {}", bytes_repr(v)),
            Test::Lt(v) => write!(f, "{k} < {}", bytes_repr(v)),
            Test::Le(v) => write!(f, "{k} <= {}", bytes_repr(v)),
            Test::Gt(v) => write!(f, "{k} > {}", bytes_repr(v)),
            Test::Ge(v) => write!(f, "{k} >= {}", bytes_repr(v)),
            Test::In(vs) => write!(f, "{k} in {}", set_repr(vs)),
            Test::NotIn(vs) => write!(f, "{k} not in {}", set_repr(vs)),
            Test::Suffix(v) => write!(f, "{k}.endswith({})", bytes_repr(v)),
            Test::NotSuffix(v) => write!(f, "not {k}.endswith({})", bytes_repr(v)),
            Test::Contains(v) => write!(f, "{} in {k}", bytes_repr(v)),
            Test::NotContains(v) => write!(f, "{} not in {k}", bytes_repr(v)),
        }
    }
}

fn write_node(f: &mut fmt::Formatter<'_>, node: &Node, indent: usize) -> fmt::Result {
    let pad = "  ".repeat(indent);
    match node {
        Node::Check(c) => writeln!(f, "{pad}{c}"),
        Node::All(items) | Node::Any(items) => {
            let kind = if matches!(node, Node::All(_)) {
                "all of (stop at the first that fails):"
            } else {
                "any of (stop at the first that holds):"
            };
            writeln!(f, "{pad}{kind}")?;
            items.iter().try_for_each(|n| write_node(f, n, indent + 1))
        }
    }
}

impl fmt::Display for Plan {
    /// One line per check, in evaluation order, groups indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = (0..self.arity).map(|i| format!("k{i}")).collect();
        writeln!(f, "plan for keys ({}):", params.join(", "))?;
        match &self.body {
            Body::Never => writeln!(f, "  never matches: the conditions contradict each other"),
            Body::Checks(checks) if checks.is_empty() => writeln!(f, "  always matches: nothing to check"),
            Body::Checks(checks) => {
                writeln!(f, "  all of (stop at the first that fails):")?;
                checks.iter().try_for_each(|c| writeln!(f, "    {c}"))
            }
            Body::Tree(node) => write_node(f, node, 1),
        }
    }
}
