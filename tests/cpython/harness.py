# Runs inside a real CPython 3.9-3.15 (native, or Pyodide/WASM where the
# interpreter cannot read host files): the Rust test prepends `DATA = "..."`
# (JSON) to this file. Prints one JSON summary line, prefixed with RESULT.
#
# For every case: materialize the generated code object exactly as users do,
# call it on every key, and compare with the native evaluator's answer; the
# result must be a real bool. Per version, also: dis works (and reads the
# code exactly as `keyfilter dis` does, instruction by instruction), tracebacks format,
# wrong argument counts raise TypeError, and CPython's own compiled code for
# the golden examples agrees with ours.
import ast, base64, dis, io, json, marshal, sys, traceback, types

data = json.loads(DATA)
failures = []
calls = 0


def fail(case, message):
    if len(failures) < 50:
        failures.append({"case": case, "error": message})


def parse_listing(text):
    """(offset, opname, arg, argrepr) per instruction of a `keyfilter dis` listing."""
    out = []
    for line in text.splitlines()[1:]:
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2 and tokens[0].isdigit() and (tokens[1].isdigit() or tokens[1] == ">>"):
            tokens = tokens[1:]  # the line number column
        if tokens[0] == ">>":
            tokens = tokens[1:]
        offset, opname, rest = int(tokens[0]), tokens[1], tokens[2:]
        arg = None
        if rest and rest[0].lstrip("-").isdigit():
            arg, rest = int(rest[0]), rest[1:]
        argrepr = " ".join(rest)
        if argrepr.startswith("(") and argrepr.endswith(")"):
            argrepr = argrepr[1:-1]
        out.append((offset, opname, arg, argrepr))
    return out


def comparable_text(argrepr):
    """An argument's meaning as shown, with a frozenset as the set it is:
    CPython shows a set's elements in hash order, which varies per process."""
    if argrepr.startswith("frozenset({") and argrepr.endswith("})"):
        return frozenset(ast.literal_eval(argrepr[len("frozenset("):-1]))
    return argrepr


def comparable(ins):
    """`comparable_text` of an instruction's argrepr; a jump's target as an
    offset ("to 48"), where 3.13+ shows a label ("to L1")."""
    target = getattr(ins, "jump_target", None)
    if target is not None and ins.argrepr.startswith("to L"):
        return "to %d" % target
    return comparable_text(ins.argrepr)


def materialize(code_hex):
    code = marshal.loads(bytes.fromhex(code_hex))
    return code, types.FunctionType(code, {"__builtins__": {}})


for case in data["cases"]:
    cid = case["id"]
    # Progress marker: if the interpreter dies, the last one names the culprit.
    print("START", cid)
    try:
        code, fn = materialize(case["code"])
        if code.co_argcount != case["arity"] or code.co_names or code.co_freevars or code.co_cellvars:
            fail(cid, "code object shape: argcount=%r names=%r" % (code.co_argcount, code.co_names))
        if code.co_name != case["name"] or (sys.version_info >= (3, 11) and code.co_qualname != case["name"]):
            fail(cid, "co_name %r" % code.co_name)
        for key, expected in zip(case["keys"], case["expected"]):
            args = [bytes.fromhex(f) for f in key]
            got = fn(*args)
            calls += 1
            if type(got) is not bool:
                fail(cid, "key %r returned %r, not a bool" % (key, got))
                break
            if got != expected:
                fail(cid, "key %r: got %r, native evaluator says %r" % (key, got, expected))
                break
        # Every code unit has a line: co_lines covers all of co_code (3.10+;
        # on 3.9 an empty co_lnotab puts every instruction on co_firstlineno).
        if hasattr(code, "co_lines"):
            covered = sum(end - start for start, end, line in code.co_lines() if line is not None)
        else:
            covered = len(code.co_code) if code.co_lnotab == b"" else -1
        if covered != len(code.co_code):
            fail(cid, "co_lines covers %d of %d bytes" % (covered, len(code.co_code)))
        if case.get("dis"):
            out = io.StringIO()
            dis.dis(fn, file=out)
            if "RETURN" not in out.getvalue():
                fail(cid, "dis output lacks a return: %r" % out.getvalue()[:200])
            # `keyfilter dis` reads like this interpreter's own `dis`: the same
            # instructions at the same offsets, with the same arguments and
            # the same meaning shown for each.
            if case.get("listing"):
                theirs = [(i.offset, i.opname, i.arg, comparable(i)) for i in dis.get_instructions(code)]
                ours = [(o, n, a, comparable_text(r)) for o, n, a, r in parse_listing(case["listing"])]
                if ours != theirs:
                    diff = [(o, t) for o, t in zip(ours, theirs) if o != t][:3]
                    fail(cid, "keyfilter dis differs from dis.get_instructions: %d vs %d instructions, first differences %s"
                         % (len(ours), len(theirs), repr(diff)[:600]))
        if case.get("type_error"):
            # A str where bytes are ordered raises TypeError with a full traceback.
            args = ["a"] + [bytes.fromhex(f) for f in case["type_error"]]
            try:
                fn(*args)
                fail(cid, "ordering a str against bytes did not raise")
            except TypeError:
                text = traceback.format_exc()
                if "<keyfilter>" not in text or case["name"] not in text:
                    fail(cid, "traceback lacks the generated frame: %r" % text)
        if case.get("arg_count"):
            for wrong in ([b""] * (case["arity"] + 1), [b""] * max(case["arity"] - 1, 0) if case["arity"] else None):
                if wrong is None:
                    continue
                try:
                    fn(*wrong)
                    fail(cid, "called with %d arguments without TypeError" % len(wrong))
                except TypeError:
                    pass
    except Exception:
        fail(cid, traceback.format_exc())

# Golden: CPython's own compiled lambda and our function agree on every key.
for g in data["golden"]:
    gid = g["id"]
    print("START", gid)
    try:
        theirs = types.FunctionType(marshal.loads(bytes.fromhex(g["cpython"])), {"__builtins__": {}})
        _, ours = materialize(g["ours"])
        for key in g["keys"]:
            args = [bytes.fromhex(f) for f in key]
            a, b = theirs(*args), ours(*args)
            calls += 1
            if a is not b:
                fail(gid, "key %r: CPython's code says %r, ours %r" % (key, a, b))
                break
    except Exception:
        fail(gid, traceback.format_exc())

print("RESULT " + json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "magic": __import__("importlib.util").util.MAGIC_NUMBER.hex(),
    "cases": len(data["cases"]),
    "golden": len(data["golden"]),
    "calls": calls,
    "failures": failures,
}))
sys.stdout.flush()
