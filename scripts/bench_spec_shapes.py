"""How long the widest specs the default limits allow take to plan and compile.

Planning (normalization into a plan, building the matcher) and code generation
run on a CPU slot and cannot be interrupted, so their worst case must stay
small: this times one `Match` (plan + matcher, 100 keys) and one `Compile`
(plan + bytecode for 3.12) per adversarial spec shape, against a fresh
`keyfilter serve` with both caches off. Each shape is as wide as the default
limits let it be (100,000 nodes, 100,000 IN values, 4 MiB messages).

  python3 scripts/bench_spec_shapes.py target/release/keyfilter [SHAPE ...]

Needs grpcio and the keyfilter package (`.cache/venv` after
`scripts/setup-python-test-env.sh`). Prints one line per shape and call.
"""
import random
import re
import subprocess
import sys
import threading
import time

import grpc
from keyfilter._proto import keyfilter_pb2 as pb
from keyfilter._proto import keyfilter_pb2_grpc as pbg

Op = pb.Op
P = pb.Predicate
E = pb.Expr
L = pb.ExprList
rng = random.Random(1)


def vals(n, width=6):
    return [rng.randbytes(width) for _ in range(n)]


def leaf(field, op, value):
    return E(predicate=P(field=field, op=op, value=value))


def any_of(items):
    return E(any=L(items=items))


def all_of(items):
    return E(all=L(items=items))


def random_leaf(arity):
    op = rng.choice([Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.PREFIX, Op.IN, Op.SUFFIX, Op.CONTAINS])
    if op == Op.IN:
        return E(predicate=P(field=rng.randrange(arity), op=op, values=vals(3, 2)))
    return leaf(rng.randrange(arity), op, rng.randbytes(2))


def random_tree(depth, budget, arity):
    """Alternating groups down to `depth`, until `budget[0]` nodes are spent."""
    budget[0] -= 1
    if depth == 0 or budget[0] <= 0:
        return random_leaf(arity)
    kind = rng.choice(["all", "any", "not"])
    if kind == "not":
        return E(negate=random_tree(depth - 1, budget, arity))
    items = []
    for _ in range(rng.choice([2, 3, 4])):
        if budget[0] <= 0:
            break
        items.append(random_tree(depth - 1, budget, arity))
    return E(**{kind: L(items=items or [random_leaf(arity)])})


def in_set_with(other_op, n, width):
    values = vals(100_000)
    return pb.FilterSpec(arity=1, predicates=[P(field=0, op=Op.IN, values=values)]
                         + [P(field=0, op=other_op, value=v) for v in (values[:n] if width is None else vals(n, width))])


SHAPES = {
    # The per-field merge of one conjunction: an IN set cut by other tests of its field.
    "in-100k-and-ne-10k": lambda: in_set_with(Op.NE, 9_999, None),
    "in-100k-and-ranges-10k": lambda: pb.FilterSpec(
        arity=1,
        predicates=[P(field=0, op=Op.IN, values=vals(100_000))]
        + [P(field=0, op=rng.choice([Op.LT, Op.LE, Op.GT, Op.GE]), value=v) for v in vals(9_999)]),
    "in-100k-and-prefix-10k": lambda: in_set_with(Op.PREFIX, 9_999, 2),
    # EQ leaves of an `any`, spread over 1,024 fields, united into sets.
    "any-eq-99k-over-1024-fields": lambda: pb.FilterSpec(
        arity=1024, expr=any_of([leaf(rng.randrange(1024), Op.EQ, v) for v in vals(99_000)])),
    # A negated `any` of PREFIX leaves: 90,000 groups `k < p or k >= succ(p)`.
    "not-any-prefix-90k": lambda: pb.FilterSpec(
        arity=2, expr=E(negate=any_of([leaf(rng.randrange(2), Op.PREFIX, v) for v in vals(90_000, 4)]))),
    "all-of-30k-two-leaf-anys": lambda: pb.FilterSpec(arity=4, expr=all_of([
        any_of([leaf(rng.randrange(4), rng.choice([Op.EQ, Op.LT, Op.GE, Op.CONTAINS, Op.SUFFIX]), v)
                for v in vals(2, 3)]) for _ in range(30_000)])),
    "random-tree-99k-depth-31": lambda: pb.FilterSpec(arity=3, expr=random_tree(31, [99_000], 3)),
    "all-bounds-99k-one-field": lambda: pb.FilterSpec(arity=1, expr=all_of([
        leaf(0, rng.choice([Op.LT, Op.GT, Op.LE, Op.GE, Op.NE]), v) for v in vals(99_000)])),
    "any-ne-90k-one-field": lambda: pb.FilterSpec(arity=1, expr=any_of([leaf(0, Op.NE, v) for v in vals(90_000)])),
    "any-of-1900-in-sets": lambda: pb.FilterSpec(arity=1, expr=any_of([
        E(predicate=P(field=0, op=Op.IN, values=vals(50))) for _ in range(1_900)])),
}


def serve(binary):
    proc = subprocess.Popen(
        [binary, "serve", "--addr", "127.0.0.1:0", "--log-format", "json",
         "--compile-cache-bytes", "0", "--matcher-cache-bytes", "0"],
        stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        found = re.search(r'"addr":"([^"]+)"', line)
        if "keyfilter listening" in line and found:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, found.group(1)
    raise SystemExit("keyfilter serve did not start")


def main():
    binary, wanted = sys.argv[1], sys.argv[2:]
    unknown = [w for w in wanted if w not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    proc, addr = serve(binary)
    limit = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    stub = pbg.KeyFilterStub(grpc.insecure_channel(addr, options=limit))
    failed = False
    try:
        for name, make in SHAPES.items():
            if wanted and name not in wanted:
                continue
            spec = make()
            size = len(spec.SerializeToString())
            calls = {
                "Match": lambda: stub.Match(pb.MatchRequest(
                    spec=spec, keys=[pb.Key(fields=[b"ab"] * spec.arity)] * 100), timeout=120),
                "Compile": lambda: stub.Compile(pb.CompileRequest(spec=spec, python_version="3.12"), timeout=120),
            }
            for rpc, call in calls.items():
                started = time.perf_counter()
                try:
                    call()
                    outcome = "ok"
                except grpc.RpcError as e:
                    outcome, failed = f"{e.code().name}: {e.details()[:100]}", True
                took = time.perf_counter() - started
                print(f"{name:30s} {size / 1e6:5.2f} MB  {rpc:8s} {took:7.3f} s  {outcome}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
