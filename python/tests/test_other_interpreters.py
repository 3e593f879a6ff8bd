"""The verifier on every CPython that can be found here, not only the one running pytest.

keyfilter/_verify.py uses only the standard library, so its source runs as is
inside another interpreter (even one that cannot import this package, such as
a Pyodide build): it must accept and correctly run the code generated for that
version, and reject the code generated for every other version.

Interpreters are looked up as $KEYFILTER_PYTHONS/bin/python3.X (default
<repo>/.cache/pythons, as for the Rust matrix test), then pyenv's
~/.pyenv/versions/3.X.*/bin/python3.X, then python3.X on PATH. A version that
is not found fails the test (scripts/fetch-pythons.sh provides all seven).
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

import keyfilter
from keyfilter import _verify

from conftest import REPO, keys_for, random_spec, reference_match

HARNESS = r'''

def _run_cases():
    import json, sys, types
    data = json.load(open(sys.argv[1]))
    out = {"minor": sys.version_info[1], "calls": 0, "failures": [], "accepted_foreign": [], "accepted_tampered": []}
    for case in data["cases"]:
        try:
            code = load_code(bytes.fromhex(case["code"]), case["arity"])
        except ValueError as e:
            out["failures"].append("case %d rejected: %s" % (case["id"], e))
            continue
        f = types.FunctionType(code, {"__builtins__": {}}, code.co_name)
        for key, expected in zip(case["keys"], case["expected"]):
            got = f(*[bytes.fromhex(x) for x in key])
            out["calls"] += 1
            if got is not expected:
                out["failures"].append("case %d key %r: got %r" % (case["id"], key, got))
                break
    for case in data["foreign"]:
        try:
            load_code(bytes.fromhex(case["code"]), case["arity"])
        except ValueError:
            continue
        out["accepted_foreign"].append(case["version"])
    own = bytes.fromhex(data["own"]["code"])
    arity = data["own"]["arity"]
    code = load_code(own, arity)
    tampered = _tampered(code, own, arity)
    out["tampered"] = len(tampered)
    for what, n, bad in tampered:
        try:
            load_code(bad, n)
        except ValueError:
            continue
        out["accepted_tampered"].append(what)
    print("RESULT " + json.dumps(out))


def _tampered(code, data, arity):
    # Broken bytecode is only ever edited in the marshal bytes: creating such a
    # code object could itself crash some interpreters.
    import dis, marshal
    cases = [("wrong arity", arity + 1, data)]
    def build(what, make):
        try:
            cases.append((what, arity, marshal.dumps(make())))
        except (ValueError, TypeError):
            pass
    build("a name", lambda: code.replace(co_names=("x",)))
    build("nested code", lambda: code.replace(co_consts=code.co_consts + (compile("1", "x", "eval"),)))
    build("an int constant", lambda: code.replace(co_consts=code.co_consts + (1,)))
    build("a str in a set", lambda: code.replace(co_consts=code.co_consts + (frozenset(["s"]),)))
    build("stacksize 1", lambda: code.replace(co_stacksize=1))
    build("generator flag", lambda: code.replace(co_flags=code.co_flags | 0x20))
    build("duplicate parameter names", lambda: code.replace(co_varnames=("k0",) * arity))
    co_code = code.co_code
    field = b"s" + len(co_code).to_bytes(4, "little") + co_code
    assert data.count(field) == 1
    def with_code(what, new):
        out = data.replace(field, b"s" + len(new).to_bytes(4, "little") + new)
        # The line table must match the new length, or it alone gets the code refused.
        old_table, new_table = single_line_table(_MINOR, len(co_code)), single_line_table(_MINOR, len(new))
        if old_table != new_table:
            for t in (b"s", b"\xf3"):
                pattern = t + len(old_table).to_bytes(4, "little") + old_table
                if out.count(pattern) == 1:
                    out = out.replace(pattern, t + len(new_table).to_bytes(4, "little") + new_table)
                    break
            else:
                raise AssertionError("cannot find the line table")
        cases.append((what, arity, out))
    ext = dis.opmap["EXTENDED_ARG"]
    with_code("EXTENDED_ARG 0 first", bytes([ext, 0]) + co_code)
    for ins in dis.get_instructions(code):
        if _cache_entries(ins.opcode, ins.opname):
            raw = bytearray(co_code)
            raw[ins.offset + 3] = 1
            with_code("a non-zero cache", bytes(raw))
            break
    call = dis.opmap.get("CALL", dis.opmap.get("CALL_FUNCTION"))
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_CONST":
            raw = bytearray(co_code)
            raw[ins.offset] = call
            with_code("a call", bytes(raw))
            raw = bytearray(co_code)
            raw[ins.offset + 1] = 250
            with_code("const index", bytes(raw))
            break
    with_code("no return", co_code[:-2])
    return cases


_run_cases()
'''


def find_interpreter(minor: int) -> Optional[str]:
    name = f"python3.{minor}"
    pythons = Path(os.environ.get("KEYFILTER_PYTHONS") or REPO / ".cache" / "pythons")
    candidates = [str(pythons / "bin" / name)]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/3.{minor}.*/bin/{name}")))
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    for c in candidates:
        if not os.path.exists(c):
            continue
        try:
            probe = subprocess.run(
                [c, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.split() == ["3", str(minor)]:
            return c
    return None


@pytest.mark.parametrize("version", keyfilter.SUPPORTED_VERSIONS)
def test_verifier_on_real_interpreter(version, tmp_path):
    minor = int(version.split(".")[1])
    if minor == sys.version_info[1]:
        python: Optional[str] = sys.executable
    else:
        python = find_interpreter(minor)
    if python is None:
        # Never skipped: the proof needs every supported interpreter.
        pytest.fail(f"CPython {version} not found: run `bash scripts/fetch-pythons.sh` first")
    rng = random.Random(1000 + minor)
    cases = []
    for i in range(150):
        spec = random_spec(rng)
        keys = keys_for(rng, spec, 15)
        cases.append(
            {
                "id": i,
                "arity": spec.arity,
                "code": keyfilter.compile_code(spec, python_version=version).hex(),
                "keys": [[f.hex() for f in k] for k in keys],
                "expected": [reference_match(spec, k) for k in keys],
            }
        )
    # Big enough for EXTENDED_ARG on parameters, constants and jumps.
    big = keyfilter.Spec(300)
    for i in range(300):
        big.eq(i, b"v%d" % i).ne(i, b"w%d" % i)
    hit = tuple(b"v%d" % i for i in range(300))
    big_keys = [hit, hit[:-1] + (b"x",), (b"x",) + hit[1:]]
    cases.append(
        {
            "id": len(cases),
            "arity": 300,
            "code": keyfilter.compile_code(big, python_version=version).hex(),
            "keys": [[f.hex() for f in k] for k in big_keys],
            "expected": [True, False, False],
        }
    )
    spec = foreign_spec()
    foreign = [
        {"version": v, "arity": spec.arity, "code": keyfilter.compile_code(spec, python_version=v).hex()}
        for v in keyfilter.SUPPORTED_VERSIONS
        if v != version
    ]
    data = tmp_path / "cases.json"
    own = {"arity": spec.arity, "code": keyfilter.compile_code(spec, python_version=version).hex()}
    data.write_text(json.dumps({"cases": cases, "foreign": foreign, "own": own}))
    script = tmp_path / "verify_run.py"
    script.write_text(Path(_verify.__file__).read_text() + HARNESS)
    run = subprocess.run([python, str(script), str(data)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"{python} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["minor"] == minor
    assert result["failures"] == []
    assert result["calls"] > 1000
    assert result["accepted_foreign"] == [], "code for another version passed the verifier"
    assert result["accepted_tampered"] == [], "a tampered code object passed the verifier"
    # 11 on every version, 12 where there are inline caches (3.11+).
    assert result["tampered"] >= (12 if minor >= 11 else 11)


def foreign_spec():
    return keyfilter.Spec(3).eq(0, b"org1").range(1, ge=b"2024", lt=b"2025").isin(2, [b"a", b"b", b"c"])


# ---------------------------------------------------------------------------
# The boolean-expression shape (refgen_expr preset `min`, cpython-codegen.md
# §16.3), on every interpreter: its code is accepted and computes the tree; the
# other variants and hand-made hostile code are refused.

EXPR_HARNESS = r'''

def _run_expr_cases():
    import json, sys, types
    data = json.load(open(sys.argv[1]))
    out = {"minor": sys.version_info[1], "accepted": 0, "calls": 0, "refused": 0, "failures": [], "accepted_bad": []}
    for case in data["accept"]:
        try:
            code = load_code(bytes.fromhex(case["code"]), case["arity"])
        except ValueError as e:
            out["failures"].append("%s rejected: %s" % (case["id"], e))
            continue
        out["accepted"] += 1
        f = types.FunctionType(code, {"__builtins__": {}}, code.co_name)
        for key, expected in zip(case["keys"], case["expected"]):
            got = f(*[bytes.fromhex(x) for x in key])
            out["calls"] += 1
            if got is not expected:
                out["failures"].append("%s key %r: got %r" % (case["id"], key, got))
                break
    for case in data["refuse"]:
        try:
            load_code(bytes.fromhex(case["code"]), case["arity"])
        except ValueError as e:
            out["refused"] += 1
            if case.get("reasons") and not any(r in str(e) for r in case["reasons"]):
                out["failures"].append("%s refused for another reason: %s" % (case["id"], e))
            continue
        out["accepted_bad"].append(case["id"])
    print("RESULT " + json.dumps(out))


_run_expr_cases()
'''


def _python_for(version: str) -> str:
    """The interpreter of ``version`` (pytest's own for the running one); fails if none."""
    minor = int(version.split(".")[1])
    python = sys.executable if minor == sys.version_info[1] else find_interpreter(minor)
    if python is None:
        pytest.fail(f"CPython {version} not found: run `bash scripts/fetch-pythons.sh` first")
    return python


def _reasons(change):
    """The reasons (any one will do) for refusing a hostile change, as a list."""
    import expr_support as E

    reason = E.REASONS[change]
    return list(reason) if isinstance(reason, tuple) else [reason]


def _expr_cases(ver):
    """The accepted cases (refgen_expr preset `min`: fixed, big and random trees,
    the hand-made control) and the refused ones (forbidden variants, hostile
    changes, other versions' code) for CPython ``ver``; and the counts per kind."""
    import expr_support as E

    rng = random.Random(2000 + ver[1])
    trees = list(E.FIXED) + [("big300", 2, E.big_tree()), ("big300and", 2, E.big_tree_and())]
    trees += E.random_trees(3000 + ver[1], 120)
    accept, refuse = [], []
    counts = {"trees": len(trees), "leaves_both_outcomes": 0, "leaves_possible": 0}
    min_code = {}
    for eid, n, tree in trees:
        data = E.RX.generate(ver, n, tree, preset="min")
        min_code[eid] = data
        keys = E.make_keys(rng, n, tree)
        full, possible = E.leaf_coverage(tree, keys)
        counts["leaves_both_outcomes"] += full
        counts["leaves_possible"] += possible
        accept.append({"id": eid, "arity": n, "code": data.hex(), "keys": [[x.hex() for x in k] for k in keys],
                       "expected": [E.RX.evaluate(tree, k) for k in keys]})
    # The hand-made control, as is and (3.14+) with LOAD_FAST_BORROW loads.
    control_keys = [[x, y] for x in (b"", b"xyz", b"axyz", b"xy") for y in (b"a", b"p", b"qxyz", b"", b"xyz")]
    for change in E.CONTROLS:
        if E.writable(ver, change):
            accept.append({"id": "control " + change, "arity": 2, "code": E.hostile_program(ver, change).hex(),
                           "keys": [[x.hex() for x in k] for k in control_keys],
                           "expected": [E.control_reference(*k) for k in control_keys]})
    for name, index, stacksize, ok in E.CONSTANTS:
        case = {"id": name, "arity": 1, "code": E.constant_program(ver, index, stacksize).hex()}
        if ok:
            accept.append(dict(case, keys=[["61"]], expected=[index == E.I_TRUE]))
        else:
            refuse.append(case)
    # Variants with a forbidden instruction, on the trees where they put one.
    for vname, options in E.refused_variants(ver).items():
        hits = 0
        for eid, n, tree in trees[:90]:
            data = E.RX.generate(ver, n, tree, **options)
            why = E.forbidden_instruction(ver, data)
            if why:
                hits += 1
                refuse.append({"id": f"{vname} {eid} ({why})", "arity": n, "code": data.hex()})
        counts[vname] = hits
        # CPython's own options on 3.14 are `min` with LOAD_FAST_BORROW, which is accepted (below).
        assert hits >= 5 or (vname == "cpython" and ver == (3, 14)), (vname, hits)
    if ver == (3, 14):
        for case in accept[:40]:
            tree = next(t for eid, n, t in trees if eid == case["id"])
            data = E.RX.generate(ver, case["arity"], tree, preset="cpython")
            accept.append(dict(case, id=case["id"] + " (preset cpython)", code=data.hex()))
    # Variants of allowed instructions that are still not the shape: refused wherever they differ.
    for vname, options in E.other_refused_variants(ver).items():
        hits = 0
        for eid, n, tree in trees[:90]:
            data = E.RX.generate(ver, n, tree, **options)
            if data != min_code[eid]:
                hits += 1
                refuse.append({"id": f"{vname} {eid}", "arity": n, "code": data.hex()})
        counts[vname] = hits
        assert hits >= 2, (vname, hits)
    hostile = [c for c in E.HOSTILE if E.writable(ver, c)]
    refuse += [{"id": f"hostile {c}", "arity": 2, "code": E.hostile_program(ver, c).hex(), "reasons": _reasons(c)}
               for c in hostile]
    counts["hostile"] = len(hostile)
    # Another version's code for the same trees (where it differs: a single
    # CONTAINS leaf, say, is the same bytes on 3.11 and 3.12).
    for other in E.VERSIONS:
        for eid, n, tree in trees[:25:6]:
            data = E.RX.generate(other, n, tree, preset="min")
            if data != min_code[eid]:
                refuse.append({"id": f"{other} {eid}", "arity": n, "code": data.hex()})
    return accept, refuse, counts


@pytest.mark.parametrize("version", keyfilter.SUPPORTED_VERSIONS)
def test_expression_shape_on_real_interpreter(version, tmp_path):
    python = _python_for(version)
    ver = tuple(int(x) for x in version.split("."))
    accept, refuse, counts = _expr_cases(ver)
    data = tmp_path / "expr_cases.json"
    data.write_text(json.dumps({"accept": accept, "refuse": refuse}))
    script = tmp_path / "verify_expr_run.py"
    script.write_text(Path(_verify.__file__).read_text() + EXPR_HARNESS)
    run = subprocess.run([python, str(script), str(data)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"{python} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    print(f"\n{version}: {counts}; accepted {result['accepted']}, calls {result['calls']}, refused {result['refused']}")
    assert result["minor"] == ver[1]
    assert result["failures"] == []
    assert result["accepted"] == len(accept)
    assert result["accepted_bad"] == [], "code that is not the generator's passed the verifier"
    assert result["refused"] == len(refuse)
    # Every leaf that can take both outcomes was given both by some key.
    assert counts["leaves_both_outcomes"] == counts["leaves_possible"]
    assert result["calls"] > 3000


MUTANT_HARNESS = r'''

def _run_mutants():
    import json, sys, types
    data = json.load(open(sys.argv[1]))
    out = {"minor": sys.version_info[1], "mutants": 0, "accepted": 0, "failures": []}
    for case in data["cases"]:
        raw, n = bytes.fromhex(case["code"]), case["arity"]
        code = load_code(raw, n)
        keys = [[bytes.fromhex(x) for x in k] for k in case["keys"]]
        start = raw.find(code.co_code)
        operands = {start + i for i in operand_bytes(code)}
        for pos in range(start, start + len(code.co_code)):
            for value in range(256):
                if value == raw[pos]:
                    continue
                out["mutants"] += 1
                try:
                    got = load_code(raw[:pos] + bytes([value]) + raw[pos + 1 :], n)
                except ValueError:
                    continue
                out["accepted"] += 1
                where = "%s byte %d %#04x -> %#04x" % (case["id"], pos, raw[pos], value)
                if pos not in operands:
                    out["failures"].append(where + ": a structural byte was changed and accepted")
                    continue
                f = types.FunctionType(got, {"__builtins__": {}}, got.co_name)
                same = got.co_code == code.co_code and got.co_consts == code.co_consts
                for key, want in zip(keys, case["expected"]):
                    result = f(*key)
                    if type(result) is not bool or result != interpret(got, key) or (same and result != want):
                        out["failures"].append("%s: %r on %r" % (where, result, key))
                        break
    print("RESULT " + json.dumps(out))


_run_mutants()
'''


@pytest.mark.parametrize("version", keyfilter.SUPPORTED_VERSIONS)
def test_expression_mutants_on_real_interpreter(version, tmp_path):
    """test_verifier_expr_properties' co_code mutants, run by each interpreter on its own code."""
    import inspect

    import expr_support as E
    import test_verifier_expr_properties as props

    python = _python_for(version)
    ver = tuple(int(x) for x in version.split("."))
    rng = random.Random(4000 + ver[1])
    cases = []
    for i, (n, tree) in enumerate(props.FIXED_TREES[:2]):
        keys = E.make_keys(rng, n, tree, 8)
        cases.append({"id": f"tree{i}", "arity": n, "code": E.RX.generate(ver, n, tree, preset="min").hex(),
                      "keys": [[x.hex() for x in k] for k in keys], "expected": [E.RX.evaluate(tree, k) for k in keys]})
    data = tmp_path / "mutant_cases.json"
    data.write_text(json.dumps({"cases": cases}))
    helpers = "\n".join(
        ["import dis", "from typing import List, Sequence, Set"]
        + [f"{name} = {getattr(props, name)!r}" for name in ("_LOADS", "_JUMPS", "_OPERAND_OPS")]
        + ["import operator", "_CMP = {'<': operator.lt, '<=': operator.le, '==': operator.eq, '!=': operator.ne, "
           "'>': operator.gt, '>=': operator.ge}"]
        + [inspect.getsource(props.interpret), inspect.getsource(props.operand_bytes)]
    )
    script = tmp_path / "verify_mutants_run.py"
    script.write_text(Path(_verify.__file__).read_text() + "\n" + helpers + MUTANT_HARNESS)
    run = subprocess.run([python, str(script), str(data)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, f"{python} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    print(f"\n{version}: {result['mutants']} co_code mutants, {result['accepted']} accepted")
    assert result["minor"] == ver[1]
    assert result["failures"] == []
    assert result["mutants"] > 10000 and result["accepted"] > 0
