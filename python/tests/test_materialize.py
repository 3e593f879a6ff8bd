"""keyfilter.materialize: the verifier rejects every code object keyfilter would not generate."""

from __future__ import annotations

import dis
import marshal
import sys
import types

import pytest

import keyfilter
from keyfilter import Spec, _verify

MINOR = sys.version_info[1]
RUNNING = f"3.{MINOR}"
# Several checks: a shared `return False`, jumps, COMPARE_OP and CONTAINS_OP.
SPEC = Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"b", b"c"])
ARITY = 3


def fresh() -> types.CodeType:
    return marshal.loads(keyfilter.compile_code(SPEC))


def reject(code_or_bytes, fragment: str, arity: int = ARITY) -> str:
    data = marshal.dumps(code_or_bytes) if isinstance(code_or_bytes, types.CodeType) else code_or_bytes
    with pytest.raises(ValueError) as info:
        keyfilter.materialize(data, arity)
    message = str(info.value)
    assert fragment in message, message
    return message


def instructions(code: types.CodeType):
    return list(dis.get_instructions(code))


def find(code: types.CodeType, *names: str):
    for ins in instructions(code):
        if ins.opname in names:
            return ins
    raise AssertionError(f"no {names} in {[i.opname for i in instructions(code)]}")


def _swap(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replaces the bytes object `old` (type 's', with or without FLAG_REF) in
    marshal data by `new`."""
    for type_byte in (b"s", b"\xf3"):
        pattern = type_byte + len(old).to_bytes(4, "little") + old
        if data.count(pattern) == 1:
            return data.replace(pattern, type_byte + len(new).to_bytes(4, "little") + new)
    raise AssertionError(f"cannot find {old!r} once in the marshal data")


def with_code(code: types.CodeType, co_code: bytes) -> bytes:
    """The marshal bytes of `code` with other bytecode and the line table that
    matches it (so only the bytecode can be at fault). Edited in the bytes: a
    code object with broken bytecode is never created in this process."""
    data = marshal.dumps(code)
    old_table = code.co_lnotab if MINOR == 9 else code.co_linetable
    new_table = _verify.single_line_table(MINOR, len(co_code))
    if new_table != old_table:
        data = _swap(data, old_table, new_table)
    return _swap(data, code.co_code, co_code)


def patch(code: types.CodeType, offset: int, op=None, arg=None) -> bytes:
    raw = bytearray(code.co_code)
    if op is not None:
        raw[offset] = op
    if arg is not None:
        raw[offset + 1] = arg
    return with_code(code, bytes(raw))


def test_generated_code_is_accepted_and_works():
    f = keyfilter.materialize(keyfilter.compile_code(SPEC), ARITY)
    assert f(b"org1", b"2024-1", b"b") is True
    assert f(b"org1", b"2024-1", b"d") is False
    assert f.__globals__ == {"__builtins__": {}}
    # python_version naming the running interpreter is fine, with or without micro.
    keyfilter.materialize(keyfilter.compile_code(SPEC), ARITY, python_version=RUNNING)
    keyfilter.materialize(keyfilter.compile_code(SPEC), ARITY, python_version=RUNNING + ".1")
    # Untouched round trip through marshal is accepted too.
    keyfilter.materialize(marshal.dumps(fresh()), ARITY)


def test_an_extra_name():
    reject(fresh().replace(co_names=("x",)), "co_names is ('x',)")


def test_a_call_opcode():
    code = fresh()
    call = dis.opmap.get("CALL", dis.opmap.get("CALL_FUNCTION"))
    load = find(code, "LOAD_CONST")
    reject(patch(code, load.offset, op=call, arg=0), "is not allowed")


@pytest.mark.parametrize("name", ["LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "IMPORT_NAME", "NOP", "POP_TOP", "LOAD_DEREF"])
def test_other_opcodes(name):
    if name not in dis.opmap:
        pytest.skip(f"no {name} on this version")
    code = fresh()
    load = find(code, "LOAD_CONST")
    reject(patch(code, load.offset, op=dis.opmap[name], arg=0), "is not allowed")


def test_load_common_constant_is_rejected_where_it_exists():
    if "LOAD_COMMON_CONSTANT" not in dis.opmap:
        pytest.skip("no LOAD_COMMON_CONSTANT before 3.14")
    code = fresh()
    load = find(code, "LOAD_CONST")
    for arg in (2, 3, 7, 9):
        reject(patch(code, load.offset, op=dis.opmap["LOAD_COMMON_CONSTANT"], arg=arg), "is not allowed")


def test_a_nested_code_object():
    nested = compile("lambda: __import__('os')", "<x>", "eval")
    reject(fresh().replace(co_consts=fresh().co_consts + (nested,)), "nested code object")


@pytest.mark.parametrize("const", [1, 1.5, "s", (b"a",), frozenset({"a"}), frozenset({1}), Ellipsis, 2**70])
def test_constants_of_other_types(const):
    reject(fresh().replace(co_consts=fresh().co_consts + (const,)), "co_consts[")


def test_wrong_arity():
    data = keyfilter.compile_code(SPEC)
    reject(data, "co_argcount is 3, but the spec's arity is 2", arity=2)
    reject(data, "co_argcount is 3, but the spec's arity is 4", arity=4)


@pytest.mark.parametrize("version", [v for v in keyfilter.SUPPORTED_VERSIONS if v != RUNNING])
def test_bytes_for_another_version(version):
    data = keyfilter.compile_code(SPEC, python_version=version)
    with pytest.raises(ValueError):
        keyfilter.materialize(data, ARITY)
    with pytest.raises(ValueError, match=f"code for Python {version} cannot run on Python {RUNNING}"):
        keyfilter.materialize(data, ARITY, python_version=version)


def test_bytes_for_3_9_on_a_newer_host():
    if MINOR == 9:
        pytest.skip("this host is 3.9")
    reject(keyfilter.compile_code(SPEC, python_version="3.9"), "code object rejected")


def test_bad_python_version_argument():
    with pytest.raises(ValueError, match="python_version: unsupported"):
        keyfilter.materialize(keyfilter.compile_code(SPEC), ARITY, python_version="3.99")


def test_flags():
    code = fresh()
    reject(code.replace(co_flags=code.co_flags | 0x20), "GENERATOR")
    reject(code.replace(co_flags=code.co_flags | 0x80), "COROUTINE")
    reject(code.replace(co_flags=code.co_flags & ~0x2), "lacks OPTIMIZED|NEWLOCALS")
    # 3.11+ checks that co_nlocals agrees with the names: give both.
    varargs = code.replace(
        co_flags=code.co_flags | 0x4, co_varnames=code.co_varnames + ("rest",), co_nlocals=code.co_nlocals + 1
    )
    reject(varargs, "VARARGS")


def test_extra_locals_and_free_variables():
    code = fresh()
    more = code.replace(co_varnames=code.co_varnames + ("extra",), co_nlocals=code.co_nlocals + 1)
    reject(more, "locals")
    reject(code.replace(co_freevars=("x",)), "free or cell variables")


def test_posonly_and_kwonly():
    code = fresh()
    reject(code.replace(co_posonlyargcount=1), "positional-only")
    reject(code.replace(co_argcount=2, co_kwonlyargcount=1), "co_argcount is 2", arity=3)


def test_load_const_and_load_fast_out_of_range():
    code = fresh()
    reject(patch(code, find(code, "LOAD_CONST").offset, arg=200), "reads constant 200")
    reject(patch(code, find(code, "LOAD_FAST", "LOAD_FAST_BORROW").offset, arg=3), "reads local 3")


def test_bad_comparison_and_contains_arguments():
    code = fresh()
    reject(patch(code, find(code, "COMPARE_OP").offset, arg=6), "no comparison keyfilter emits")
    reject(patch(code, find(code, "COMPARE_OP").offset, arg=255), "no comparison keyfilter emits")
    reject(patch(code, find(code, "CONTAINS_OP").offset, arg=1), "expected 0")


def _jump(code):
    return find(code, "POP_JUMP_IF_FALSE", "POP_JUMP_FORWARD_IF_FALSE")


def test_jump_past_the_end():
    code = fresh()
    reject(patch(code, _jump(code).offset, arg=255), "which is not a later instruction")


def test_jump_backward_or_into_the_middle():
    code = fresh()
    jump = _jump(code)
    if MINOR <= 10:
        reject(patch(code, jump.offset, arg=0), "which is not a later instruction")
        # 3.9 jumps to byte offsets: an odd one lands inside an instruction.
        target = jump.offset + 5 if MINOR == 9 else None
        if target is not None:
            reject(patch(code, jump.offset, arg=target), "which is not a later instruction")
        return
    # 3.11+: aim at the inline cache of the next COMPARE_OP or CONTAINS_OP.
    after = [i for i in instructions(code) if i.offset > jump.offset and i.opname in ("COMPARE_OP", "CONTAINS_OP")]
    caches = _verify._cache_entries(jump.opcode, jump.opname)
    end = jump.offset + 2 + 2 * caches
    for ins in after:
        if _verify._cache_entries(ins.opcode, ins.opname):
            reject(patch(code, jump.offset, arg=(ins.offset + 2 - end) // 2), "which is not a later instruction")
            break
    else:
        pytest.fail("no instruction with a cache after the jump")


def test_stack_deeper_than_stacksize():
    reject(fresh().replace(co_stacksize=1), "co_stacksize is 1")
    reject(fresh().replace(co_stacksize=1000), "out of range")


def test_missing_return_runs_past_the_end():
    code = fresh()
    last = instructions(code)[-1]
    assert last.opname in ("RETURN_VALUE", "RETURN_CONST")
    message = reject(with_code(code, code.co_code[: last.offset]), "")
    # Falls off the end, or (3.12/3.13, whose last instruction is the shared
    # `RETURN_CONST False`) the jumps to it now lead nowhere.
    assert "past the end" in message or "not a later instruction" in message, message


def test_unreachable_code_after_return():
    code = fresh()
    extra = bytes([dis.opmap["LOAD_CONST"], 0, dis.opmap["RETURN_VALUE"], 0])
    reject(with_code(code, code.co_code + extra), "unreachable")


def test_return_with_a_bad_stack():
    code = fresh()
    ret = instructions(code)[-1]
    if ret.opname == "RETURN_CONST":
        # RETURN_CONST after POP_JUMP leaves nothing: make it a RETURN_VALUE of an empty stack.
        reject(patch(code, ret.offset, op=dis.opmap["RETURN_VALUE"], arg=0), "returns with 0 items")
    else:
        # Turn the final `LOAD_CONST False` into a no-op load of a parameter plus... a bare RETURN_VALUE.
        raw = bytearray(code.co_code)
        raw[ret.offset - 2 : ret.offset] = bytes([dis.opmap["RETURN_VALUE"], 0])
        reject(with_code(code, bytes(raw)), "returns with")


def test_extended_arg_chains():
    code = fresh()
    ext = dis.opmap["EXTENDED_ARG"]
    # Four prefixes (CPython never needs more than three).
    reject(with_code(code, bytes([ext, 1] + [ext, 0] * 3) + code.co_code), "more than 3 EXTENDED_ARG")
    # A prefix that raises the first instruction's argument (RESUME 256 / LOAD_FAST 256).
    reject(with_code(code, bytes([ext, 1]) + code.co_code), "")
    # A prefix with nothing after it.
    reject(with_code(code, code.co_code + bytes([ext, 1])), "ends with EXTENDED_ARG")


def test_a_redundant_extended_arg_is_rejected():
    # `EXTENDED_ARG 0; RESUME 0` computes the same argument, but on 3.11 it
    # hides the function from sys.settrace; the generator never emits it.
    code = fresh()
    ext = dis.opmap["EXTENDED_ARG"]
    reject(with_code(code, bytes([ext, 0]) + code.co_code), "EXTENDED_ARG 0 at offset 0")
    # Nor before any later instruction: here the last check's LOAD_CONST, after
    # every jump (3.11+ jumps are relative, so they still land right).
    last_load = [i for i in instructions(code) if i.opname == "LOAD_CONST"][-2 if MINOR not in (12, 13) else -1]
    raw = code.co_code[: last_load.offset] + bytes([ext, 0]) + code.co_code[last_load.offset :]
    message = reject(with_code(code, raw), "")
    if MINOR >= 11:
        assert "EXTENDED_ARG 0 at offset" in message, message


def test_cache_units_must_be_zero():
    if MINOR < 11:
        pytest.skip("inline caches exist from 3.11 on")
    code = fresh()
    ins = next(i for i in instructions(code) if _verify._cache_entries(i.opcode, i.opname))
    first_cache = ins.offset + 2
    for value in (1, 0x80, 0xFF):
        reject(patch(code, first_cache, arg=value), "is not zero")


def test_parameter_names_are_the_generators():
    code = fresh()
    for names in (("k0", "k0", "k2"), ("k0", "k1", "k1"), ("a", "b", "c"), ("k1", "k0", "k2")):
        reject(code.replace(co_varnames=names), "parameter names")


def test_resume_is_required_first():
    if MINOR < 11:
        pytest.skip("RESUME exists from 3.11 on")
    code = fresh()
    resume = find(code, "RESUME")
    caches = _verify._cache_entries(resume.opcode, "RESUME")
    reject(with_code(code, code.co_code[2 + 2 * caches :]), "RESUME")
    reject(patch(code, resume.offset, arg=1), "RESUME")


def test_line_table_and_exception_table():
    code = fresh()
    if MINOR == 9:
        reject(code.replace(co_lnotab=b"\x02\x01"), "line table")
    else:
        reject(code.replace(co_linetable=b"\xff"), "line table")
        reject(code.replace(co_linetable=code.co_linetable[:-2]), "line table")
    reject(code.replace(co_firstlineno=7), "line table")
    if MINOR >= 11:
        reject(code.replace(co_exceptiontable=b"\x80\x00\x02\x00"), "co_exceptiontable")


def test_not_a_code_object():
    reject(marshal.dumps(1), "not a marshalled code object")
    reject(marshal.dumps((1, 2)), "not a marshalled code object")
    reject(b"", "not a marshalled code object")
    reject(b"c\x01\x02", "malformed marshal data")
    reject(keyfilter.compile_code(SPEC) + b"\x00", "1 bytes follow the code object")
    reject(keyfilter.compile_code(SPEC)[:-3], "malformed marshal data")
    # A code object referring to itself, and a back-reference out of range.
    reject(b"\xe3" + keyfilter.compile_code(SPEC)[1:].replace(b")\x00", b"r\x00\x00\x00\x00", 1), "")
    header = 4 * (6 if MINOR <= 10 else 5)  # the int fields before co_code
    reject(b"c" + b"\x00" * header + b"r\x05\x00\x00\x00", "bad back-reference")
    with pytest.raises(TypeError):
        keyfilter.materialize("text", 3)
    with pytest.raises(TypeError):
        keyfilter.materialize(keyfilter.compile_code(SPEC), "3")


def test_line_table_port_matches_the_generator():
    from keyfilter import _native

    for version in keyfilter.SUPPORTED_VERSIONS:
        minor = int(version.split(".")[1])
        for n in (0, 2, 14, 16, 18, 254, 256, 508, 510, 2000, 4096):
            assert _verify.single_line_table(minor, n) == _native.line_table(version, n), (version, n)
