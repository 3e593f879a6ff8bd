"""Boolean-expression code objects for the verifier tests, from the executable spec.

The spec of the expression shape is ``refgen_expr.py`` (with ``refgen.py``) in
the shared CPython data (``../shared/data/cpython/tools`` beside the project's
root, or ``$KEYFILTER_REFGEN_DIR``): ``refgen_expr.generate(ver, n, tree,
preset="min")`` writes the marshal bytes the generator emits, without any
interpreter of that version. This module gives the tests:

* the trees: the fixed ones of ``tools/verify_refgen_expr.py`` and random ones;
* keys that give every leaf both of its outcomes, with the expected results;
* the other variants of §16.3 with an instruction the verifier must refuse;
* hand-made hostile code (a comparison of a frozenset, a slice of the wrong
  length, a jump to the next leaf, ...) beside a control that is accepted.

Trees are tuples: ``("cmp", f, op, v)``, ``("in", f, [v, ...])``,
``("prefix", f, v)``, ``("suffix", f, v)``, ``("contains", f, v)``,
``("and", [t, ...])``, ``("or", [t, ...])``, ``("not", t)``, ``("const", b)``.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from conftest import REPO

Tree = tuple
Key = List[bytes]


def refgen_dir() -> Path:
    """Where refgen.py and refgen_expr.py are (their opcode tables are in its parent)."""
    env = os.environ.get("KEYFILTER_REFGEN_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "cpython" / "tools"


def load_refgen_expr():
    """The refgen_expr module; fails (never skips) when the shared data is missing."""
    where = refgen_dir()
    if not (where / "refgen_expr.py").exists():
        raise AssertionError(f"refgen_expr.py not found in {where} (set $KEYFILTER_REFGEN_DIR)")
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
    return importlib.import_module("refgen_expr")


RX = load_refgen_expr()
refgen = importlib.import_module("refgen")

VERSIONS = [(3, m) for m in range(9, 16)]


# --------------------------------------------------------------------- trees

def cmp(f: int, op: str, v: bytes) -> Tree:
    return ("cmp", f, op, v)


def NOT(x: Tree) -> Tree:
    return ("not", x)


def AND(*x: Tree) -> Tree:
    return ("and", list(x))


def OR(*x: Tree) -> Tree:
    return ("or", list(x))


C, IN, P, S, K = "cmp", "in", "prefix", "suffix", "contains"

# The fixed trees of tools/verify_refgen_expr.py (§16.6), with their arity.
FIXED: List[Tuple[str, int, Tree]] = [
    ("a_or", 1, OR(cmp(0, "==", b"a"), cmp(0, "==", b"b"))),
    ("b_or_and", 2, AND(OR(cmp(0, "==", b"a"), cmp(1, "==", b"b")), cmp(0, "!=", b"c"))),
    ("c1_not", 1, NOT(cmp(0, "==", b"a"))),
    ("c2_not_and", 2, NOT(AND(cmp(0, "==", b"a"), cmp(1, "<", b"b")))),
    ("d_mixed", 1, AND(OR(cmp(0, "==", b"a"), cmp(0, "==", b"b")), NOT(OR(cmp(0, ">=", b"c"), cmp(0, "<", b"d"))))),
    ("e1_contains", 1, (K, 0, b"xyz")),
    ("e2_not_contains", 1, NOT((K, 0, b"xyz"))),
    ("f1_suffix", 1, (S, 0, b"xyz")),
    ("not_prefix", 1, NOT((P, 0, b"ab"))),
    ("not_prefix_ff", 2, OR(NOT((P, 0, b"a\xff")), NOT((P, 1, b"\xff")))),
    ("not_suffix", 1, NOT((S, 0, b"yz"))),
    ("not_in", 1, NOT((IN, 0, [b"p", b"q"]))),
    ("not_in_or_not_contains", 2, OR(NOT((IN, 0, [b"p", b"q"])), NOT((K, 1, b"z")))),
    ("all_ops_negated", 3, NOT(OR(cmp(0, "==", b"x"), cmp(0, "!=", b"y"), cmp(1, "<", b"k"), cmp(1, "<=", b"m"),
                                  cmp(2, ">", b"p"), cmp(2, ">=", b"q")))),
    ("suffix_lengths", 2, OR((S, 0, b"z"), (S, 1, b"\x00\xff"), AND((S, 0, b"abcde"), NOT((S, 1, b"q"))))),
    ("suffix_or_contains", 2, AND(OR((S, 0, b"xyz"), (K, 1, b"\x00")), NOT(AND((K, 0, b"q"), (S, 1, b"q"))))),
    ("contains_1byte_not", 1, AND((K, 0, b"a"), NOT((K, 0, b"b")))),
    ("fold_suffix_empty", 1, AND((S, 0, b""), cmp(0, "==", b"a"))),
    ("fold_not_suffix_empty", 1, OR(NOT((S, 0, b"")), cmp(0, "==", b"a"))),
    ("fold_contains_empty_or", 1, OR((K, 0, b""), cmp(0, "==", b"a"))),
    ("fold_prefix_empty_not", 1, NOT((P, 0, b""))),
    ("fold_in_empty", 2, OR((IN, 0, []), cmp(1, "==", b"a"))),
    ("fold_not_in_empty", 1, NOT((IN, 0, []))),
    ("deep6", 3, NOT(AND(OR(cmp(0, "==", b"a"), NOT(AND((S, 1, b"yz"), OR((K, 2, b"q"), NOT(cmp(0, "<", b"m")))))),
                         OR(NOT((P, 2, b"k")), AND((IN, 1, [b"xyz", b"ab"]),
                                                   NOT(OR(cmp(2, ">", b"z"), (K, 0, b"b")))))))),
]


def big_tree() -> Tree:
    """~300 distinct constants and long jumps: EXTENDED_ARG on LOAD_CONST and POP_JUMP_IF_TRUE."""
    return OR(*[AND(cmp(0, "==", b"c%03d" % i), NOT((S, 1, b"s%03d" % i)), (K, 1, b"t%03d" % i)) for i in range(100)])


def big_tree_and() -> Tree:
    """The dual: long POP_JUMP_IF_FALSE jumps to the FALSE block."""
    return AND(*[OR(cmp(0, "!=", b"d%03d" % i), NOT((S, 1, b"u%03d" % i)), (K, 1, b"w%03d" % i)) for i in range(100)])


_VALUES = [b"", b"a", b"b", b"k", b"m", b"q", b"x", b"yz", b"xyz", b"\x00", b"\xff", b"ab", b"a\xff",
           b"abcd", b"wxyz", b"\x00\xff\x00", b"qrstu"]


def _value(rng: random.Random, kind: str) -> bytes:
    """A leaf value; SUFFIX and CONTAINS get every length 0-5 (0 folds to a constant)."""
    if kind in (S, K) and rng.random() < 0.5:
        return bytes(rng.choice(b"axyz\x00\xff") for _ in range(rng.randint(0, 5)))
    return rng.choice(_VALUES)


def rand_leaf(rng: random.Random, nparams: int) -> Tree:
    """A random leaf of any kind (a constant now and then), negated with probability 0.3."""
    kind = rng.choice([C, C, IN, P, S, S, K, K, "const"] if rng.random() < 0.1 else [C, C, IN, P, S, S, K, K])
    f = rng.randrange(nparams)
    if kind == "const":
        t: Tree = ("const", rng.random() < 0.5)
    elif kind == C:
        t = cmp(f, rng.choice(["==", "!=", "<", "<=", ">", ">="]), _value(rng, C))
    elif kind == IN:
        t = (IN, f, [_value(rng, IN) for _ in range(rng.randint(0, 3))])
    else:
        t = (kind, f, _value(rng, kind))
    return NOT(t) if rng.random() < 0.3 else t


def rand_tree(rng: random.Random, nparams: int, depth: int) -> Tree:
    """A random and/or/not tree of at most ``depth`` group levels."""
    if depth == 0 or rng.random() < 0.3:
        return rand_leaf(rng, nparams)
    t = (rng.choice(["and", "or"]), [rand_tree(rng, nparams, depth - 1) for _ in range(rng.randint(2, 3))])
    return NOT(t) if rng.random() < 0.3 else t


def random_trees(seed: int, count: int) -> List[Tuple[str, int, Tree]]:
    """``count`` random trees of depth 1-6 over 1-3 fields."""
    rng = random.Random(seed)
    out = []
    for j in range(count):
        n = rng.randint(1, 3)
        out.append((f"rand{j}", n, rand_tree(rng, n, rng.randint(1, 6))))
    return out


# ---------------------------------------------------------------------- keys

def leaves(tree: Tree) -> List[Tree]:
    """The leaves of ``tree`` (constants excluded)."""
    return RX.leaves(tree)


def _field_pool(tree: Tree, f: int) -> List[bytes]:
    """Values for field ``f`` near every value a leaf on it tests."""
    pool = {b"", b"\x00", b"\xff", b"a", b"zz"}
    for leaf in leaves(tree):
        if leaf[1] != f:
            continue
        vs = [leaf[3]] if leaf[0] == C else (list(leaf[2]) if leaf[0] == IN else [leaf[2]])
        for v in vs:
            pool.update([v, v + b"a", b"a" + v, v[:-1], v[1:], v + b"\x00", b"q" + v, b"a" + v + b"b", v + v])
            if v:
                pool.add(v[:-1] + bytes([(v[-1] + 1) % 256]))
                pool.add(v[:-1] + bytes([(v[-1] - 1) % 256]))
    return sorted(pool)


def make_keys(rng: random.Random, nparams: int, tree: Tree, n: int = 24) -> List[Key]:
    """``n`` random keys plus, for every leaf that can take both outcomes, keys
    that give it each one, and keys for both results of the whole tree when possible."""
    pools = [_field_pool(tree, f) for f in range(nparams)]
    keys = [[rng.choice(pools[f]) for f in range(nparams)] for _ in range(n)]
    for leaf in leaves(tree):
        seen = {RX.evaluate(leaf, k) for k in keys}
        for want in (True, False):
            if want in seen:
                continue
            for v in pools[leaf[1]]:
                k = [rng.choice(pools[f]) for f in range(nparams)]
                k[leaf[1]] = v
                if RX.evaluate(leaf, k) == want:
                    keys.append(k)
                    break
    for want in (True, False):
        if want not in {RX.evaluate(tree, k) for k in keys}:
            for _ in range(500):
                k = [rng.choice(pools[f]) for f in range(nparams)]
                if RX.evaluate(tree, k) == want:
                    keys.append(k)
                    break
    return keys


def leaf_coverage(tree: Tree, keys: Sequence[Key]) -> Tuple[int, int]:
    """(leaves given both outcomes by ``keys``, leaves that can have both over their field's pool)."""
    full = possible = 0
    nparams = len(keys[0])
    for leaf in leaves(tree):
        pool = _field_pool(tree, leaf[1])
        if len({RX.evaluate(leaf, [v] * nparams) for v in pool}) < 2:
            continue  # b'' suffix/contains/prefix, empty IN, `k < b''`: constant leaves
        possible += 1
        full += len({RX.evaluate(leaf, k) for k in keys}) == 2
    return full, possible


# ------------------------------------------------------- reading refgen output

def co_code_of(ver: Tuple[int, int], data: bytes) -> bytes:
    """co_code of refgen's marshal bytes (its fixed layout: the int fields, then 's' + size + code)."""
    at = 1 + 4 * (6 if ver <= (3, 10) else 5)
    assert data[at : at + 1] == b"s", data[:40]
    size = int.from_bytes(data[at + 1 : at + 5], "little")
    return data[at + 5 : at + 5 + size]


def instructions(ver: Tuple[int, int], data: bytes) -> List[Tuple[str, int]]:
    """(opname, argument with EXTENDED_ARG folded in) of refgen's bytes, read with
    the version's own opcode table (shared data), not with the running interpreter."""
    opmap, caches = refgen.facts(ver)
    names = {v: k for k, v in opmap.items() if v < 256}
    code = co_code_of(ver, data)
    out, arg, i = [], 0, 0
    while i < len(code):
        name = names[code[i]]
        arg = (arg << 8) | code[i + 1]
        i += 2
        if name == "EXTENDED_ARG":
            continue
        out.append((name, arg))
        arg = 0
        i += 2 * caches.get(name, 0)
    return out


# Instructions the expression shape must never contain (§16.5), plus the slicing
# forms of other versions and the membership negation.
_ALWAYS_FORBIDDEN = {"UNARY_NOT", "COPY", "POP_TOP", "TO_BOOL", "JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP",
                     "JUMP_FORWARD", "BINARY_OP", "LOAD_SMALL_INT", "LOAD_COMMON_CONSTANT"}


def forbidden_instruction(ver: Tuple[int, int], data: bytes) -> Optional[str]:
    """The first instruction of refgen's bytes that the verifier must refuse, if any."""
    for name, arg in instructions(ver, data):
        if name in _ALWAYS_FORBIDDEN:
            return name
        if name == "CONTAINS_OP" and arg != 0:
            return "CONTAINS_OP 1"
        if name == "BUILD_SLICE" and (arg != 2 or ver >= (3, 12)):
            return f"BUILD_SLICE {arg}"
        if name == "BINARY_SUBSCR" and ver >= (3, 12):
            return name
    return None


def refused_variants(ver: Tuple[int, int]) -> Dict[str, dict]:
    """The refgen_expr options of §16.3 other than preset ``min`` that put a
    forbidden instruction in the code (for the trees where they do)."""
    v = {
        "value-tail": dict(preset="min", tail="value"),
        "neg-op": dict(preset="min", neg="op"),
        "join-return": dict(preset="min", join_return=True),
        "cpython": dict(preset="cpython"),
    }
    if ver >= (3, 12):
        v["build-slice"] = dict(preset="min", suffix="build_slice")
    if ver >= (3, 13):
        v["to-bool"] = dict(preset="min", to_bool=True, cmp_bool=False)
    if ver >= (3, 14):
        v["const-slice"] = dict(preset="min", suffix="const_slice")
    return v


def other_refused_variants(ver: Tuple[int, int]) -> Dict[str, dict]:
    """Variants with only allowed instructions that are still not the generator's
    shape: an empty IN kept, no bool flag on 3.13+, no NOT_TAKEN on 3.14+."""
    v = {"keep-empty-in": dict(preset="min", fold_empty_in=False)}
    if ver >= (3, 13):
        v["no-bool-bit"] = dict(preset="min", to_bool=False, cmp_bool=False)
    if ver >= (3, 14):
        v["no-not-taken"] = dict(preset="min", not_taken=False)
    return v


# ------------------------------------------------------------- hostile code

class Builder:
    """Emits the expression shape's pieces for one version into refgen's assembler,
    so that a hostile variant differs from an accepted control in one place."""

    def __init__(self, ver: Tuple[int, int], asm, label_factory) -> None:
        self.ver = ver
        self.a = asm
        self.Label = label_factory
        self.load_name = "LOAD_FAST"

    def emit(self, name: str, arg=0) -> None:
        self.a.emit(name, arg)

    def load(self, f: int) -> None:
        self.emit(self.load_name, f)

    def const(self, i: int) -> None:
        self.emit("LOAD_CONST", i)

    def compare(self, op: str, bool_flag: bool = True) -> None:
        self.emit("COMPARE_OP", refgen.compare_oparg(self.ver, op, bool_flag and self.ver >= (3, 13)))

    def slice(self) -> None:
        if self.ver <= (3, 11):
            self.emit("BUILD_SLICE", 2)
            self.emit("BINARY_SUBSCR")
        else:
            self.emit("BINARY_SLICE")

    def jump(self, if_true: bool, label) -> None:
        name = ("POP_JUMP_IF_TRUE" if if_true else "POP_JUMP_IF_FALSE")
        if self.ver == (3, 11):
            name = name.replace("POP_JUMP_IF", "POP_JUMP_FORWARD_IF")
        self.emit(name, label)
        if self.ver >= (3, 14):
            self.emit("NOT_TAKEN")

    def ret(self, i: int) -> None:
        self.const(i)
        self.emit("RETURN_VALUE")


# co_consts of the hand-made programs.
HOSTILE_CONSTS = [None, b"a", frozenset([b"p"]), b"xyz", -3, True, False, b"", frozenset(), -2, b"yz"]
I_NONE, I_A, I_SET, I_XYZ, I_M3, I_TRUE, I_FALSE, I_EMPTY, I_EMPTYSET, I_M2, I_YZ = range(len(HOSTILE_CONSTS))


def control_reference(k0: bytes, k1: bytes) -> bool:
    """What the control program computes: (k1 == b'a' or b'xyz' in k1) and
    k0.endswith(b'xyz') and not k1 in {b'p'}."""
    return (k1 == b"a" or b"xyz" in k1) and k0.endswith(b"xyz") and k1 not in {b"p"}


def emit_program(b: Builder, change: str) -> None:
    """The control program with ``change`` applied ("" for none; see HOSTILE)."""
    L = b.Label
    leaf2, leaf3, leaf3_mid, leaf4, true_, true_mid, false_, true2 = (L() for _ in range(8))
    if change == "borrow":
        b.load_name = "LOAD_FAST_BORROW"
    # leaf 1: k1 == b'a' (true: skip leaf 2)
    if change == "mixed_loads":
        b.emit("LOAD_FAST_BORROW", 1)
    else:
        b.load(1)
    b.const({"cmp_frozenset": I_SET, "cmp_negint": I_M3, "cmp_none": I_NONE, "cmp_bool": I_TRUE}.get(change, I_A))
    b.compare("==", bool_flag=change != "cmp_no_bool_flag")
    extra = {"unary_not": ["UNARY_NOT"], "nop": ["NOP"], "to_bool": ["TO_BOOL"], "copy_pop": ["COPY", "POP_TOP"]}
    for name in extra.get(change, []):
        b.emit(name, 1 if name == "COPY" else 0)
    targets = {"jump_to_next_leaf": leaf2, "jump_into_a_leaf": leaf3_mid, "jump_into_a_return": true_mid,
               "three_terminals": true2}
    b.jump(True, targets.get(change, leaf3))
    # leaf 2: b'xyz' in k1 (false: FALSE)
    b.a.place(leaf2)
    if change == "contains_reversed":  # k1 in b'xyz': "k1 is a substring of b'xyz'"
        b.load(1)
        b.const(I_XYZ)
    else:
        b.const({"contains_frozenset": I_SET, "contains_empty": I_EMPTY}.get(change, I_XYZ))
        b.load(1)
    b.emit("CONTAINS_OP", 1 if change == "contains_not_in" else 0)
    b.jump(False, false_)
    # leaf 3: k0[-3:] == b'xyz' (false: FALSE)
    b.a.place(leaf3)
    b.load(0)
    b.a.place(leaf3_mid)
    if change == "subscr_without_slice":  # k0[-3]
        b.const(I_M3)
        b.emit("BINARY_SUBSCR")
    elif change == "build_slice_3":
        b.const(I_M3)
        b.const(I_NONE)
        b.const(I_NONE)
        b.emit("BUILD_SLICE", 3)
        b.emit("BINARY_SUBSCR")
    elif change == "build_slice_then_subscr":  # CPython's <=3.11 form on 3.12/3.13
        b.const(I_M3)
        b.const(I_NONE)
        b.emit("BUILD_SLICE", 2)
        b.emit("BINARY_SUBSCR")
    else:
        b.const({"suffix_start_bytes": I_A, "suffix_len_mismatch": I_M2}.get(change, I_M3))
        b.const({"suffix_stop_not_none": I_M3, "suffix_stop_bytes": I_EMPTY}.get(change, I_NONE))
        b.slice()
    b.const({"suffix_value_frozenset": I_SET}.get(change, I_XYZ))
    b.compare({"suffix_ne": "!=", "suffix_lt": "<"}.get(change, "=="))
    b.jump(False, false_)
    # leaf 4: not (k1 in {b'p'}) (true: FALSE)
    b.a.place(leaf4)
    b.load(1)
    b.const({"in_empty_set": I_EMPTYSET, "in_bytes": I_XYZ}.get(change, I_SET))
    b.emit("CONTAINS_OP")
    back = {"last_jump_to_true": true_, "backward_jump": leaf3}
    b.jump(True, back.get(change, false_))
    if change == "terminals_swapped":
        b.a.place(false_)
        b.ret(I_FALSE)
        b.a.place(true_)
        b.ret(I_TRUE)
        return
    b.a.place(true_)
    if change == "return_const":
        b.emit("RETURN_CONST", I_TRUE)
    elif change == "load_common_constant":
        b.emit("LOAD_COMMON_CONSTANT", 9)
        b.emit("RETURN_VALUE")
    else:
        b.const({"true_returns_bytes": I_A, "true_returns_none": I_NONE, "true_returns_false": I_FALSE}.get(change, I_TRUE))
        b.a.place(true_mid)
        b.emit("RETURN_VALUE")
    b.a.place(false_)
    b.ret(I_FALSE)
    if change == "three_terminals":
        b.a.place(true2)
        b.ret(I_TRUE)


# Changes of the control program that the verifier must refuse, with the
# co_stacksize to write (default 3: the control has a SUFFIX leaf).
HOSTILE: Dict[str, int] = {
    "cmp_frozenset": 3, "cmp_negint": 3, "cmp_none": 3, "cmp_bool": 3, "cmp_no_bool_flag": 3,
    "unary_not": 3, "nop": 3, "to_bool": 3, "copy_pop": 3, "mixed_loads": 3,
    "jump_to_next_leaf": 3, "jump_into_a_leaf": 3, "jump_into_a_return": 3, "three_terminals": 3,
    "last_jump_to_true": 3, "backward_jump": 3, "terminals_swapped": 3,
    "contains_reversed": 3, "contains_frozenset": 3, "contains_empty": 3, "contains_not_in": 3,
    "subscr_without_slice": 3, "build_slice_3": 4, "build_slice_then_subscr": 3,
    "suffix_start_bytes": 3, "suffix_len_mismatch": 3, "suffix_stop_not_none": 3, "suffix_stop_bytes": 3,
    "suffix_value_frozenset": 3, "suffix_ne": 3, "suffix_lt": 3,
    "in_empty_set": 3, "in_bytes": 3,
    "return_const": 3, "load_common_constant": 3,
    "true_returns_bytes": 3, "true_returns_none": 3, "true_returns_false": 3,
    "stacksize_2": 2, "stacksize_4": 4,
}
# The part of the refusal that names the reason, per change of the control
# (or one of several, where an opcode exists only on some versions).
REASONS: Dict[str, object] = {
    "cmp_frozenset": "emits CONTAINS_OP here",
    "cmp_negint": "emits LOAD_CONST here",  # -n starts a SUFFIX: LOAD_CONST None must follow
    "cmp_none": "LOAD_CONST of a bytes, a frozenset or a suffix start -n",
    "cmp_bool": "LOAD_CONST of a bytes, a frozenset or a suffix start -n",
    "cmp_no_bool_flag": "does not test the bool of a comparison",
    "unary_not": "UNARY_NOT",
    "nop": "NOP",
    "to_bool": "TO_BOOL",
    "copy_pop": "COPY",
    "mixed_loads": "two different opcodes",
    "jump_to_next_leaf": "the generator jumps to a later leaf but the next",
    "jump_into_a_leaf": "the stack differs between the paths",
    "jump_into_a_return": "the stack differs between the paths",
    "three_terminals": "nothing after the return False",
    "last_jump_to_true": "the generator jumps to a later leaf but the next",
    "backward_jump": "which is not a later instruction",
    "terminals_swapped": "unreachable",
    "contains_reversed": "emits COMPARE_OP here",
    "contains_frozenset": "LOAD_CONST of a non-empty bytes before LOAD_FAST",
    "contains_empty": "`b'' in k` is folded to True",
    "contains_not_in": "has argument 1, expected 0",
    "subscr_without_slice": ("does not subscript with a slice", "opcode BINARY_SUBSCR"),  # 3.12+: not allowed
    "build_slice_3": ("has argument 3, expected 2", "opcode BUILD_SLICE"),
    "build_slice_then_subscr": "is not allowed",
    "suffix_start_bytes": "emits COMPARE_OP here",
    "suffix_len_mismatch": "a suffix of 2 bytes",
    "suffix_stop_not_none": "None (the slice's stop)",
    "suffix_stop_bytes": "None (the slice's stop)",
    "suffix_value_frozenset": "the suffix (bytes)",
    "suffix_ne": "COMPARE_OP == with the bool flag",
    "suffix_lt": "COMPARE_OP == with the bool flag",
    "in_empty_set": "`k in {}` is folded to False",
    "in_bytes": "emits COMPARE_OP here",
    "return_const": "the generator emits POP_JUMP_IF_FALSE here",  # RETURN_CONST: held to the AND chain
    "load_common_constant": "LOAD_COMMON_CONSTANT",
    "true_returns_bytes": "return True",
    "true_returns_none": "return True",
    "true_returns_false": "return True",
    "stacksize_2": "the stack reaches 3 items, but co_stacksize is 2",
    "stacksize_4": "co_stacksize is 4; the generator writes 3",
}


def refused_for_its_reason(change: str, message: str) -> bool:
    """Whether ``message`` gives (one of) the reason(s) REASONS names for ``change``."""
    reason = REASONS[change]
    return any(r in message for r in (reason if isinstance(reason, tuple) else (reason,)))


# Accepted controls: the program as is, and (3.14+) with every load a LOAD_FAST_BORROW.
CONTROLS = ["", "borrow"]


def writable(ver: Tuple[int, int], change: str) -> bool:
    """Whether ``change`` can be written on ``ver`` (its opcodes exist there)."""
    since = {"to_bool": (3, 13), "copy_pop": (3, 11), "mixed_loads": (3, 14), "borrow": (3, 14),
             "cmp_no_bool_flag": (3, 13), "load_common_constant": (3, 14), "return_const": (3, 12)}
    until = {"return_const": (3, 13), "subscr_without_slice": (3, 13), "build_slice_3": (3, 13),
             "build_slice_then_subscr": (3, 13), "backward_jump": (3, 10)}  # 3.11+ jumps cannot go back
    if change in since and ver < since[change]:
        return False
    if change in until and ver > until[change]:
        return False
    if change == "build_slice_then_subscr" and ver <= (3, 11):
        return False  # that is the generator's own form there
    return True


def hostile_program(ver: Tuple[int, int], change: str) -> bytes:
    """Marshal bytes of the control program with ``change``, for 2 parameters."""
    stacksize = HOSTILE.get(change, 3)

    def build(asm, label_factory) -> None:
        emit_program(Builder(ver, asm, label_factory), change)

    return RX.generate_raw(ver, 2, build, HOSTILE_CONSTS, stacksize, name="keyfilter", filename="<keyfilter>")


def constant_program(ver: Tuple[int, int], value_index: int, stacksize: int = 1) -> bytes:
    """``[RESUME] LOAD_CONST consts[value_index]; RETURN_VALUE`` for 1 parameter."""

    def build(asm, label_factory) -> None:
        asm.emit("LOAD_CONST", value_index)
        asm.emit("RETURN_VALUE")

    return RX.generate_raw(ver, 1, build, HOSTILE_CONSTS, stacksize, name="keyfilter", filename="<keyfilter>")


# Constant functions: (name, constant index, stacksize, accepted?).
CONSTANTS = [
    ("const_true", I_TRUE, 1, True), ("const_false", I_FALSE, 1, True), ("const_bytes", I_A, 1, False),
    ("const_none", I_NONE, 1, False), ("const_negint", I_M3, 1, False), ("const_stack2", I_FALSE, 2, False),
]
