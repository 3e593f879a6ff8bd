"""Property: the verifier accepts nothing but the generator's code, for the expression shape too.

The code objects are refgen_expr's preset ``min`` (the spec of the generator's
boolean-expression shape, cpython-codegen.md §16.3) for the running
interpreter: fixed trees with every kind of leaf (comparison, IN, CONTAINS,
SUFFIX, a PREFIX range), negated or not, both jump senses, jumps to a later leaf
and to both terminal blocks, constant functions, and random trees. Every
single-byte change of their marshal bytes is given to ``keyfilter.materialize``
(each ``co_code`` byte replaced by every other value; each other byte by a
handful of values). A mutant that is accepted must be code the generator could
emit for *some* tree, and behave as that code says:

* if its instructions and constants read exactly as the original's (a changed
  ``co_name``, say), it behaves exactly like the original on keys that give
  every leaf both of its outcomes;
* otherwise its ``co_code`` differs from the original only in an operand: the
  argument of a ``LOAD_FAST``, ``LOAD_CONST``, ``COMPARE_OP`` or conditional
  jump, or the sense of a jump (``POP_JUMP_IF_TRUE`` <-> ``_FALSE``: the same
  leaf negated), never in a prefix, an inline cache, ``RESUME``, ``NOT_TAKEN``,
  the slicing or a return; or only a constant changed (another value of the
  same kind); and on every key it returns a real bool equal to what its own
  instructions, read with ``dis`` (not with the verifier), compute.

Broken bytecode is only ever edited in the marshal bytes: a code object is
created only for bytes the verifier has accepted.
"""

from __future__ import annotations

import dis
import random
import sys
import types
from typing import Set

from hypothesis import given, settings
from hypothesis import strategies as st

import keyfilter

import expr_support as E
from conftest import _JUMPS, _LOADS, interpret
from expr_support import AND, IN, K, NOT, OR, P, S, cmp

VER = sys.version_info[:2]
_OPERAND_OPS = _LOADS | _JUMPS | {"LOAD_CONST", "COMPARE_OP"}
def operand_bytes(code: types.CodeType) -> Set[int]:
    """Offsets in co_code of the bytes that choose a field, constant, comparison,
    jump target or jump sense (the byte of an unprefixed argument, or a jump's opcode)."""
    out: Set[int] = set()
    prefixed = False
    for ins in dis.get_instructions(code):
        if ins.opname == "EXTENDED_ARG":
            prefixed = True
            continue
        if ins.opname in _OPERAND_OPS and not prefixed:
            out.add(ins.offset + 1)
        if ins.opname in _JUMPS or ins.opname in _LOADS:
            out.add(ins.offset)  # the other sense (a negated leaf); the other load (3.14+)
        prefixed = False
    return out


def check_mutants(tree: tuple, nparams: int, rng: random.Random) -> int:
    """Mutates the bytes of the tree's code one at a time (see the module docstring);
    returns how many mutants were accepted."""
    data = E.RX.generate(VER, nparams, tree, preset="min")
    original = keyfilter.materialize(data, nparams)
    code = original.__code__
    keys = E.make_keys(rng, nparams, tree, 12)
    expected = [E.RX.evaluate(tree, k) for k in keys]
    assert [original(*k) for k in keys] == expected
    start = data.find(code.co_code)
    assert start > 0 and data.count(code.co_code) == 1
    end = start + len(code.co_code)
    operands = {start + i for i in operand_bytes(code)}
    accepted = 0
    for pos in range(len(data)):
        if start <= pos < end:
            values = range(256)
        else:
            b = data[pos]
            values = {0, 1, 0xFF, b ^ 1, b ^ 0x80, (b + 1) & 0xFF, (b - 1) & 0xFF, rng.randrange(256)}
        for value in values:
            if value == data[pos]:
                continue
            mutant = data[:pos] + bytes([value]) + data[pos + 1 :]
            try:
                fn = keyfilter.materialize(mutant, nparams)
            except ValueError:
                continue
            accepted += 1
            got = fn.__code__
            where = f"byte {pos} ({'co_code' if start <= pos < end else 'outside co_code'}) {data[pos]:#04x} -> {value:#04x}"
            if start <= pos < end:
                assert pos in operands, f"{where}: a structural byte of co_code was changed and accepted"
            else:
                assert got.co_code == code.co_code, where
            same = got.co_code == code.co_code and got.co_consts == code.co_consts
            for key, want in zip(keys, expected):
                result = fn(*key)
                assert type(result) is bool, f"{where}: returned {result!r}"
                assert result == interpret(got, key), f"{where}: {key!r}"
                if same:
                    assert result == want, f"{where}: reads like the original but differs on {key!r}"
    return accepted


# Every kind of leaf, negated or not, both jump senses, a jump to a later leaf,
# to TRUE and to FALSE; and the two constant functions.
FIXED_TREES = [
    (2, OR(cmp(0, "==", b"a"), AND(NOT((S, 1, b"yz")), (K, 0, b"q")))),
    (2, AND(NOT((IN, 0, [b"p", b"q"])), OR((P, 1, b"ab"), cmp(0, "<", b"m")))),
    (1, OR(NOT((K, 0, b"xyz")), (S, 0, b"\x00"))),
    (1, ("const", False)),
    (1, NOT((S, 0, b""))),
]


def test_mutants_of_fixed_expressions():
    rng = random.Random(11)
    accepted = sum(check_mutants(tree, n, rng) for n, tree in FIXED_TREES)
    # Some mutants are other trees' code (another constant, field, comparison or jump).
    assert accepted > 0


@settings(max_examples=8, deadline=None, database=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_mutants_of_random_expressions(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 3)
    tree = E.rand_tree(rng, n, rng.randint(1, 2))
    check_mutants(tree, n, rng)
