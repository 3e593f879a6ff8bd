"""Per-call cost of three ways to run a filter spec in CPython, on this interpreter.

  (a) generic   -- a KeyInfo-style matcher: per field a NamedTuple with eq/ge/lt/ne/isin
                   bounds and a `matches` method, run as
                   all(ki.matches(k) for ki, k in zip(infos, key))
                   (copied in minimal form from ../shared/bench/python-peer/matchers.py;
                   nothing is imported from there at run time)
  (b) lambda    -- CPython's own code for the spec: eval(compile("lambda k0, ...: ... and ..."))
                   with globals {"__builtins__": {}}
  (c) keyfilter -- the marshal bytes `keyfilter compile --python 3.X` wrote beforehand,
                   materialized as types.FunctionType(marshal.loads(code), {"__builtins__": {}})

  (c') keyfilter, made by MAKE_FUNCTION -- the same code object turned into a function
                   by the MAKE_FUNCTION opcode (see materialize_mf: on 3.13+ this is what lets
                   call sites specialize)

plus an A/A control (a second compile of the same lambda: how far apart two
identical functions measure on this machine) and the one-time cost of materializing (marshal.loads + FunctionType) against
compile() of the generated lambda source.

Usage (scripts/bench-python.sh drives all of this):
  python3 bench_python.py --write-specs DIR            # the spec files, for keyfilter compile
  python3.X bench_python.py --marshal-dir DIR [--repeat N] [--json OUT]
  python3 bench_python.py --merge OUT.json IN.json...  # one document + a table

Runs on CPython 3.9 and later with the standard library only.
"""
import argparse
import json
import marshal
import os
import platform
import random
import sys
import timeit
import types
from typing import FrozenSet, NamedTuple, Optional

VERSION = "%d.%d" % sys.version_info[:2]
SYM = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

# name -> (arity, [(field, op, value or list of values)]), predicates in the order a
# person would write them.
TENANT = b"tenant-0042"
SPECS = {
    "p1": (3, [(0, "eq", TENANT)]),
    "p3": (3, [(0, "eq", TENANT), (1, "ge", b"2024-01-01"), (2, "prefix", b"user/")]),
    "p5": (5, [(0, "eq", TENANT), (1, "ge", b"2024-01-01"), (1, "lt", b"2024-07-01"),
               (2, "prefix", b"user/"), (3, "in", [b"admin", b"delete", b"read", b"write"])]),
}

# Expressions: name -> (arity, the lambda body CPython compiles, the spec
# file's "expr", candidate values per field). keyfilter's function must agree
# with CPython's own lambda on every key, and is timed against it.
EXPR_SPECS = {
    "x_or4": (3,
              "(b'2024-01' <= k1 < b'2024-02') or (b'2024-04' <= k1 < b'2024-05') or "
              "(b'2024-07' <= k1 < b'2024-08') or (b'2024-10' <= k1 < b'2024-11')",
              {"any": [{"all": [{"predicate": {"field": 1, "op": "ge", "value": lo}},
                                {"predicate": {"field": 1, "op": "lt", "value": hi}}]}
                       for lo, hi in (("2024-01", "2024-02"), ("2024-04", "2024-05"),
                                      ("2024-07", "2024-08"), ("2024-10", "2024-11"))]},
              [None, [b"2024-%02d-%02d" % (m, d) for m in range(1, 13) for d in (1, 15)], None]),
    "x_mixed": (3,
                "(k0 == b'tenant-0042' or k0 == b'tenant-0007') and not k2.endswith(b'.tmp') "
                "and (b'/db/' in k2 or k1 >= b'2024-06')",
                {"all": [{"any": [{"predicate": {"field": 0, "op": "eq", "value": "tenant-0042"}},
                                  {"predicate": {"field": 0, "op": "eq", "value": "tenant-0007"}}]},
                         {"not": {"predicate": {"field": 2, "op": "suffix", "value": ".tmp"}}},
                         {"any": [{"predicate": {"field": 2, "op": "contains", "value": "/db/"}},
                                  {"predicate": {"field": 1, "op": "ge", "value": "2024-06"}}]}]},
                [[b"tenant-0042", b"tenant-0007", b"tenant-0001", b"tenant-00420"],
                 [b"2024-01-01", b"2024-06-01", b"2024-12-31", b"2023-07-01"],
                 [b"user/db/a", b"user/db/a.tmp", b"user/web/b", b"user/web/b.tmp", b"/db/"]]),
}


def expr_keys(arity, pools, n, seed=1):
    """n keys of fresh bytes objects drawn from each field's candidates."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        key = []
        for f in range(arity):
            pool = pools[f] or [b"x%06d" % rng.randrange(10**6)]
            key.append(bytes(bytearray(rng.choice(pool))))
        out.append(tuple(key))
    return out


# ---------------------------------------------------------------------------
# Reference semantics
# ---------------------------------------------------------------------------
def ref_pred(x, op, v):
    if op == "eq": return x == v
    if op == "ne": return x != v
    if op == "lt": return x < v
    if op == "le": return x <= v
    if op == "gt": return x > v
    if op == "ge": return x >= v
    if op == "prefix": return x.startswith(v)
    if op == "in": return x in v
    raise ValueError(op)


def ref_match(preds, key):
    return all(ref_pred(key[f], op, v) for f, op, v in preds)


# ---------------------------------------------------------------------------
# (a) the generic matcher (KeyInfo style)
# ---------------------------------------------------------------------------
class KeyInfo(NamedTuple):
    eq: Optional[bytes] = None
    ge: Optional[bytes] = None
    lt: Optional[bytes] = None
    ne: Optional[bytes] = None
    isin: Optional[FrozenSet[bytes]] = None

    def matches(self, k):
        if self.eq is not None and k != self.eq:
            return False
        if self.ge is not None and k < self.ge:
            return False
        if self.lt is not None and k >= self.lt:
            return False
        if self.ne is not None and k == self.ne:
            return False
        if self.isin is not None and k not in self.isin:
            return False
        return True


def prefix_successor(p):
    p = p.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


def build_generic(arity, preds):
    fields = [dict() for _ in range(arity)]
    for f, op, v in preds:
        d = fields[f]
        if op == "eq":
            d["eq"] = v
        elif op in ("ge", "gt", "prefix"):
            lo = v + b"\x00" if op == "gt" else v
            d["ge"] = max(d.get("ge", lo), lo)
            if op == "prefix" and prefix_successor(v) is not None:
                hi = prefix_successor(v)
                d["lt"] = min(d.get("lt", hi), hi)
        elif op in ("lt", "le"):
            hi = v + b"\x00" if op == "le" else v
            d["lt"] = min(d.get("lt", hi), hi)
        elif op == "ne":
            d["ne"] = v
        elif op == "in":
            d["isin"] = frozenset(v)
    infos = tuple(KeyInfo(**d) for d in fields)

    def match(*key):
        return all(ki.matches(k) for ki, k in zip(infos, key))
    return match


# ---------------------------------------------------------------------------
# (b) CPython's own lambda
# ---------------------------------------------------------------------------
def lambda_source(arity, preds):
    terms = []
    for f, op, v in preds:
        if op == "prefix":
            terms.append("k%d.startswith(%r)" % (f, v))
        elif op == "in":
            # a set display of constants after `in` is folded into a frozenset constant
            terms.append("k%d in {%s}" % (f, ", ".join(repr(x) for x in sorted(set(v)))))
        else:
            terms.append("k%d %s %r" % (f, SYM[op], v))
    return "lambda %s: %s" % (", ".join("k%d" % i for i in range(arity)), " and ".join(terms) or "True")


def build_lambda(src):
    return eval(compile(src, "<keyfilter>", "eval"), {"__builtins__": {}})


def materialize(code):
    return types.FunctionType(marshal.loads(code), {"__builtins__": {}})


# `lambda: None` compiled once: its module code is LOAD_CONST <code>, MAKE_FUNCTION.
_TEMPLATE = compile("lambda: None", "<keyfilter>", "eval")


def materialize_mf(code):
    """The same function, made by the MAKE_FUNCTION opcode instead of types.FunctionType.
    On 3.13+ only MAKE_FUNCTION gives a function a version (func_version), and a call
    site specializes to CALL_PY_EXACT_ARGS only for a versioned function: one made by
    types.FunctionType is called through the generic CALL, a few ns slower per call."""
    co = marshal.loads(code)
    t = _TEMPLATE.replace(co_consts=tuple(co if isinstance(c, types.CodeType) else c for c in _TEMPLATE.co_consts))
    return eval(t, {"__builtins__": {}})


# ---------------------------------------------------------------------------
# Spec files for `keyfilter compile`
# ---------------------------------------------------------------------------
def spec_json(arity, preds):
    def text(b):
        return "".join(chr(c) if 0x20 <= c < 0x7F and c != 0x5C else "\\x%02x" % c for c in b)
    out = []
    for f, op, v in preds:
        p = {"field": f, "op": op}
        if op == "in":
            p["values"] = [text(x) for x in v]
        else:
            p["value"] = text(v)
        out.append(p)
    return json.dumps({"arity": arity, "predicates": out}, indent=1)


def expr_spec_json(arity, expr):
    return json.dumps({"arity": arity, "predicates": [], "expr": expr}, indent=1)


# ---------------------------------------------------------------------------
# Keys: a mix of matches and rejects at every depth
# ---------------------------------------------------------------------------
def gen_keys(arity, preds, n, match_frac=0.25, seed=1):
    """n keys of fresh bytes objects; about match_frac match, every other key fails
    exactly one constrained field (chosen uniformly), so evaluation stops at
    varied depths, from the first predicate (early reject) to the last."""
    rng = random.Random(seed)
    per = [[] for _ in range(arity)]
    for f, op, v in preds:
        per[f].append((op, v))

    def rand(lo=8, hi=16):
        return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(lo, hi)))

    def candidate(consts):
        if consts and rng.random() < 0.7:
            c = rng.choice(consts)
            kind = rng.randrange(4)
            if kind == 0:
                return c
            if kind == 1:
                return c + rand(1, max(1, 16 - len(c)))
            if kind == 2:
                return c[:-1] + bytes([(c[-1] + rng.choice((1, 255))) % 256])
            return c[:rng.randint(1, len(c) - 1)] + rand(2, 8)
        return rand()

    def pool(plist, want):
        consts = [x for op, v in plist for x in (sorted(v) if op == "in" else [v])]
        out = set()
        for _ in range(100000):
            c = candidate(consts)
            if all(ref_pred(c, op, v) for op, v in plist) == want:
                out.add(c)
                if len(out) >= 256:
                    break
        return sorted(out)

    constrained = [f for f in range(arity) if per[f]]
    sat = {f: pool(per[f], True) for f in constrained}
    unsat = {f: pool(per[f], False) for f in constrained}
    keys = []
    for _ in range(n):
        bad = rng.choice(constrained) if constrained and rng.random() >= match_frac else -1
        key = []
        for f in range(arity):
            v = rng.choice(unsat[f] if f == bad else sat[f]) if per[f] else rand()
            key.append(bytes(bytearray(v)))  # a fresh object, never the constant itself
        keys.append(tuple(key))
    return keys


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------
def timers(matchers, keys, arity, number):
    """One timeit.Timer per matcher (plus "loop": the bare loop), each doing `number`
    passes over keys: `for k0, k1, ... in keys: f(k0, k1, ...)`."""
    params = ", ".join("k%d" % i for i in range(arity))
    out = {"loop": timeit.Timer("for %s in keys: pass" % params, globals={"keys": keys})}
    for name, f in matchers.items():
        out[name] = timeit.Timer("for %s in keys: f(%s)" % (params, params), globals={"f": f, "keys": keys})
    return out


def measure_calls(matchers, keys, arity, number, repeat):
    """Per-call ns for every matcher: the minimum over `repeat` rounds, where a
    round times each matcher once, one after the other (so that all of them see
    the same machine conditions, and a short run is likely to fit between two
    preemptions on a busy machine). Also the median over rounds of the
    keyfilter/lambda ratio of the same round (paired)."""
    ts = timers(matchers, keys, arity, number)
    calls = number * len(keys)
    best = {name: float("inf") for name in ts}
    paired = []
    order = list(ts.items())
    shuffle = random.Random(7).shuffle
    for _ in range(repeat):
        this = {}
        shuffle(order)  # no matcher always runs first, or right after the slow generic one
        for name, t in order:
            this[name] = t.timeit(number) / calls * 1e9
            best[name] = min(best[name], this[name])
        if "lambda" in this and "keyfilter" in this:
            paired.append(this["keyfilter"] / this["lambda"])
    paired.sort()
    return best, paired[len(paired) // 2] if paired else None


def one_time_us(stmt, env, number, repeat):
    return min(timeit.repeat(stmt, globals=env, number=number, repeat=repeat)) / number * 1e6


def run(marshal_dir, n_keys, repeat, number):
    results = {"python": VERSION, "implementation": platform.python_implementation(),
               "full_version": sys.version.split()[0], "n_keys": n_keys, "repeat": repeat, "number": number,
               "specs": {}}
    for name, (arity, preds) in SPECS.items():
        path = os.path.join(marshal_dir, "%s-%s.marshal" % (name, VERSION))
        with open(path, "rb") as fh:
            code = fh.read()
        src = lambda_source(arity, preds)
        matchers = {
            "generic": build_generic(arity, preds),
            "lambda": build_lambda(src),
            "keyfilter": materialize(code),
            "keyfilter_mf": materialize_mf(code),
            # A/A control: a second, separately compiled copy of the same lambda. Its
            # ratio to "lambda" shows how far apart two identical functions measure.
            "lambda_aa": build_lambda(src),
        }
        keys = gen_keys(arity, preds, n_keys)
        expect = [ref_match(preds, k) for k in keys]
        for mname, f in matchers.items():
            got = [f(*k) for k in keys]
            if got != expect or not all(type(g) is bool for g in got):
                raise SystemExit("%s/%s disagrees with the reference semantics" % (name, mname))
        best, paired = measure_calls(matchers, keys, arity, number, repeat)
        loop = best.pop("loop")
        calls = best
        net = {m: max(t - loop, 0.0) for m, t in calls.items()}
        one = {
            "materialize_us": one_time_us("FunctionType(loads(code), {'__builtins__': {}})",
                                          {"FunctionType": types.FunctionType, "loads": marshal.loads,
                                           "code": code}, 20, repeat),
            "materialize_mf_us": one_time_us("mf(code)", {"mf": materialize_mf, "code": code}, 20, repeat),
            "compile_us": one_time_us("eval(compile(src, '<keyfilter>', 'eval'), {'__builtins__': {}})",
                                      {"src": src}, 20, repeat),
        }
        results["specs"][name] = {
            "arity": arity, "predicates": len(preds), "source": src, "code_bytes": len(code),
            "matched": sum(expect), "keys": len(keys),
            "loop_ns": loop, "call_ns": calls, "net_ns": net,
            "ratio_keyfilter_vs_lambda": calls["keyfilter"] / calls["lambda"],
            "ratio_keyfilter_vs_lambda_net": net["keyfilter"] / net["lambda"] if net["lambda"] else None,
            "ratio_keyfilter_vs_lambda_paired_median": paired,
            "ratio_keyfilter_mf_vs_lambda": calls["keyfilter_mf"] / calls["lambda"],
            "ratio_generic_vs_keyfilter": calls["generic"] / calls["keyfilter"],
            "ratio_aa_control": calls["lambda_aa"] / calls["lambda"],
            **one,
            "ratio_compile_vs_materialize": one["compile_us"] / one["materialize_us"],
        }
    for name, (arity, body, _expr, pools) in EXPR_SPECS.items():
        path = os.path.join(marshal_dir, "%s-%s.marshal" % (name, VERSION))
        with open(path, "rb") as fh:
            code = fh.read()
        src = "lambda %s: %s" % (", ".join("k%d" % i for i in range(arity)), body)
        matchers = {
            "lambda": build_lambda(src),
            "keyfilter": materialize(code),
            "keyfilter_mf": materialize_mf(code),
            "lambda_aa": build_lambda(src),
        }
        keys = expr_keys(arity, pools, n_keys)
        expect = [matchers["lambda"](*k) for k in keys]
        for mname, f in matchers.items():
            got = [f(*k) for k in keys]
            if got != expect or not all(type(g) is bool for g in got):
                raise SystemExit("%s/%s disagrees with CPython's lambda" % (name, mname))
        best, paired = measure_calls(matchers, keys, arity, number, repeat)
        loop = best.pop("loop")
        net = {m: max(t - loop, 0.0) for m, t in best.items()}
        results["specs"][name] = {
            "arity": arity, "source": src, "code_bytes": len(code),
            "matched": sum(expect), "keys": len(keys),
            "loop_ns": loop, "call_ns": best, "net_ns": net,
            "ratio_keyfilter_vs_lambda": best["keyfilter"] / best["lambda"],
            "ratio_keyfilter_vs_lambda_net": net["keyfilter"] / net["lambda"] if net["lambda"] else None,
            "ratio_keyfilter_vs_lambda_paired_median": paired,
            "ratio_keyfilter_mf_vs_lambda": best["keyfilter_mf"] / best["lambda"],
            "ratio_aa_control": best["lambda_aa"] / best["lambda"],
        }
    return results


def table(docs):
    lines = []
    head = ("python", "spec", "generic ns", "lambda ns", "keyfilter ns", "kf(MF) ns", "loop ns",
            "kf/lambda", "kf/lambda net", "paired med", "kf(MF)/lam", "A/A ctrl", "generic/kf", "materialize us",
            "compile us", "compile/mat")
    lines.append("  ".join("%-8s" % h if i < 2 else "%13s" % h for i, h in enumerate(head)))
    for doc in docs:
        for name, r in doc["specs"].items():
            c = r["call_ns"]
            net = r["ratio_keyfilter_vs_lambda_net"]
            opt = lambda key, fmt: fmt % r[key] if key in r else "-"  # noqa: E731
            row = [doc["python"], name, "%.1f" % c["generic"] if "generic" in c else "-", "%.1f" % c["lambda"],
                   "%.1f" % c["keyfilter"],
                   "%.1f" % c["keyfilter_mf"], "%.1f" % r["loop_ns"], "%.3f" % r["ratio_keyfilter_vs_lambda"],
                   "%.3f" % net if net is not None else "-",
                   "%.3f" % r["ratio_keyfilter_vs_lambda_paired_median"],
                   "%.3f" % r["ratio_keyfilter_mf_vs_lambda"], "%.3f" % r["ratio_aa_control"],
                   opt("ratio_generic_vs_keyfilter", "%.2f"),
                   opt("materialize_us", "%.2f"), opt("compile_us", "%.2f"),
                   opt("ratio_compile_vs_materialize", "%.1fx")]
            lines.append("  ".join("%-8s" % v if i < 2 else "%13s" % v for i, v in enumerate(row)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-specs", metavar="DIR")
    ap.add_argument("--marshal-dir", metavar="DIR")
    ap.add_argument("--keys", type=int, default=1000, help="keys per timing pass (default 1000)")
    ap.add_argument("--repeat", type=int, default=300,
                    help="timing rounds; the minimum is kept (default 300)")
    ap.add_argument("--number", type=int, default=1, help="passes over the keys per timing (default 1)")
    ap.add_argument("--json", metavar="OUT", help="write the results here")
    ap.add_argument("--merge", nargs="+", metavar="FILE", help="OUT IN...: merge per-interpreter results")
    args = ap.parse_args()
    if args.write_specs:
        os.makedirs(args.write_specs, exist_ok=True)
        for name, (arity, preds) in SPECS.items():
            with open(os.path.join(args.write_specs, name + ".json"), "w") as fh:
                fh.write(spec_json(arity, preds) + "\n")
        for name, (arity, _body, expr, _pools) in EXPR_SPECS.items():
            with open(os.path.join(args.write_specs, name + ".json"), "w") as fh:
                fh.write(expr_spec_json(arity, expr) + "\n")
        print(" ".join(sorted(SPECS) + sorted(EXPR_SPECS)))
        return
    if args.merge:
        out, ins = args.merge[0], args.merge[1:]
        docs = []
        for path in ins:
            with open(path) as fh:
                docs.append(json.load(fh))
        with open(out, "w") as fh:
            json.dump({"interpreters": docs}, fh, indent=1)
        print(table(docs))
        return
    if not args.marshal_dir:
        ap.error("--marshal-dir is required")
    doc = run(args.marshal_dir, args.keys, args.repeat, args.number)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1)
    print(table([doc]))


if __name__ == "__main__":
    main()
