//! A tree plan as a flat program: each step is one check with the step to go
//! to when it holds and when it does not (or the verdict), so evaluation is a
//! loop over an array, with no recursion and no allocation per key.

use super::check::{self, Check};
use crate::plan::Node;

/// "The key matches" as a jump target.
const ACCEPT: u32 = u32::MAX;
/// "The key does not match" as a jump target.
const REJECT: u32 = u32::MAX - 1;

#[derive(Debug, Clone)]
struct Step {
    check: Check,
    on_true: u32,
    on_false: u32,
}

/// The program of one tree.
#[derive(Debug, Clone)]
pub(super) struct Program {
    steps: Box<[Step]>,
    entry: u32,
}

impl Program {
    /// Lays out `root`: a group's items are chained so that each item's
    /// outcome either decides the group (jumps to the group's own targets) or
    /// falls to the next item, exactly the short circuit of `and`/`or`.
    pub(super) fn new(root: &Node) -> Program {
        let mut steps = Vec::new();
        let entry = lay_out(root, ACCEPT, REJECT, &mut steps);
        Program {
            steps: steps.into(),
            entry,
        }
    }

    /// Number of checks (an upper bound on those one key costs).
    pub(super) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Its checks, each once.
    pub(super) fn checks(&self) -> impl Iterator<Item = &Check> {
        self.steps.iter().map(|step| &step.check)
    }

    /// Whether the key whose field `i` is `field(i)` satisfies the tree.
    #[inline]
    pub(super) fn run<'k>(&self, field: impl Fn(usize) -> &'k [u8]) -> bool {
        let mut at = self.entry;
        // Every jump goes to a step laid out earlier (see `lay_out`), so the
        // loop ends after at most `len` steps.
        while at < REJECT {
            let step = &self.steps[at as usize];
            at = if step.check.holds(field(step.check.field)) {
                step.on_true
            } else {
                step.on_false
            };
        }
        at == ACCEPT
    }
}

/// Appends the steps of `node` (going to `on_true` / `on_false` once decided)
/// and returns its first step. Items are laid out last first, so every target
/// already exists and has a smaller index than the step that jumps to it.
fn lay_out(node: &Node, on_true: u32, on_false: u32, steps: &mut Vec<Step>) -> u32 {
    match node {
        Node::Check(c) => {
            steps.push(Step {
                check: check::compile_one(c),
                on_true,
                on_false,
            });
            (steps.len() - 1) as u32
        }
        Node::All(items) => items
            .iter()
            .rev()
            .fold(on_true, |next, item| lay_out(item, next, on_false, steps)),
        Node::Any(items) => items
            .iter()
            .rev()
            .fold(on_false, |next, item| lay_out(item, on_true, next, steps)),
    }
}
