"""Property: the verifier (``materialize``) accepts nothing but the generator's code.

For the code objects generated for random specs, every single-byte change of
their marshal bytes is given to ``keyfilter.materialize``: each byte of
``co_code`` is replaced by every other value, each other byte (header, constants,
parameter names, name, line table...) by a handful of values. Most mutants are
refused. One that is accepted must still be the code of *some* spec:

* its ``co_code`` differs from the original at most in the argument byte of a
  ``LOAD_FAST``, ``LOAD_CONST``, ``COMPARE_OP`` or ``RETURN_CONST`` (which
  field, which constant, which comparison: what another spec compiles to), never
  in an opcode, a jump, a prefix, an inline cache, ``RESUME`` or ``NOT_TAKEN``;
* run on many keys, it returns a real bool equal to what its own instructions,
  as CPython's ``dis`` reads them, say it returns;
* and when its instructions and constants read exactly as the original's (a
  changed ``co_name``, say), it behaves exactly like the original.

Broken bytecode is only ever edited in the marshal bytes: a code object is
created only for bytes the verifier has accepted.
"""

from __future__ import annotations

import dis
import random
import types
from typing import Set

from hypothesis import given, settings
from hypothesis import strategies as st

import keyfilter

from conftest import AND_SHAPE_OPS, interpret, keys_for, random_spec

_OPERAND_OPS = {"LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_CONST", "COMPARE_OP", "RETURN_CONST"}
def operand_bytes(code: types.CodeType) -> Set[int]:
    """Offsets in co_code of argument bytes that select a field, constant or comparison."""
    out: Set[int] = set()
    prefixed = False
    for ins in dis.get_instructions(code):
        if ins.opname == "EXTENDED_ARG":
            prefixed = True
            continue
        if ins.opname in _OPERAND_OPS and not prefixed:
            out.add(ins.offset + 1)
        prefixed = False
    return out


def check_mutants(spec: keyfilter.Spec, rng: random.Random) -> int:
    data = keyfilter.compile_code(spec)
    original = keyfilter.materialize(data, spec.arity)
    code = original.__code__
    keys = keys_for(rng, spec, 40)
    expected = [original(*k) for k in keys]
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
                fn = keyfilter.materialize(mutant, spec.arity)
            except ValueError:
                continue
            accepted += 1
            got = fn.__code__
            where = f"byte {pos} ({'co_code' if start <= pos < end else 'outside co_code'}) {data[pos]:#04x} -> {value:#04x}"
            if start <= pos < end:
                assert pos in operands, f"{where}: a structural byte of co_code was changed and accepted"
            else:
                assert got.co_code == code.co_code, where
            for key, want in zip(keys, expected):
                result = fn(*key)
                assert type(result) is bool, f"{where}: returned {result!r}"
                assert result == interpret(got, key), f"{where}: {key!r}"
                if got.co_code == code.co_code and got.co_consts == code.co_consts:
                    assert result == want, f"{where}: reads like the original but differs on {key!r}"
    return accepted


@settings(max_examples=12, deadline=None, database=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_single_byte_mutants_are_refused_or_still_generator_code(seed):
    rng = random.Random(seed)
    # The AND shape: a changed jump sense or target is never another valid
    # program there (the expression shape has its own mutation test,
    # test_verifier_expr_properties.py, where it can be).
    spec = random_spec(rng, arity=rng.randint(1, 4), ops=AND_SHAPE_OPS)
    check_mutants(spec, rng)


def test_mutants_of_a_spec_with_every_instruction_kind():
    # Two checks and more (jumps, the shared return False), COMPARE_OP and CONTAINS_OP.
    spec = keyfilter.Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"b", b"c"])
    accepted = check_mutants(spec, random.Random(7))
    # Some mutants are other specs' code (another constant, field or comparison).
    assert accepted > 0


def test_mutants_of_specs_without_checks():
    for spec in (keyfilter.Spec(2), keyfilter.Spec(2).isin(0, [])):
        check_mutants(spec, random.Random(8))
