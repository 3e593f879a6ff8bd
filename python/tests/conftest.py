"""Shared fixtures: the reference semantics, random specs and keys, and a real server."""

from __future__ import annotations

import contextlib
import dis
import json
import os
import random
import subprocess
import threading
import time
import types
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import pytest

try:
    import keyfilter
except ImportError as e:  # e.g. the source tree shadows the installed package
    raise ImportError(f"the keyfilter package is not installed (pip install ./python): {e}") from e
from keyfilter import Op, Spec

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent


def reference_match(spec: Spec, key: Sequence[bytes]) -> bool:
    """The predicates' meaning, straight from the definition (like
    spec::reference_matches); specs with an expression: see test_expr.reference_match."""
    assert spec.expr is None, "use test_expr.reference_match for a spec with an expression"
    for p in spec.predicates:
        x = key[p.field]
        op = p.op
        if op == Op.EQ:
            ok = x == p.value
        elif op == Op.NE:
            ok = x != p.value
        elif op == Op.LT:
            ok = x < p.value
        elif op == Op.LE:
            ok = x <= p.value
        elif op == Op.GT:
            ok = x > p.value
        elif op == Op.GE:
            ok = x >= p.value
        elif op == Op.PREFIX:
            ok = x.startswith(p.value)
        elif op == Op.IN:
            ok = x in p.values
        elif op == Op.SUFFIX:
            ok = x.endswith(p.value)
        elif op == Op.CONTAINS:
            ok = p.value in x
        else:
            raise AssertionError(op)
        if not ok:
            return False
    return True


# Values chosen to hit the edges: empty, NUL, 0xFF, all-0xFF prefixes (whose
# "successor" does not exist), common prefixes and near neighbours.
EDGE_VALUES: List[bytes] = [
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x01",
    b"\xff",
    b"\xff\xff",
    b"\xff\xff\xff",
    b"a",
    b"a\x00",
    b"a\xff",
    b"ab",
    b"abc",
    b"abd",
    b"b",
    b"\x7f",
    b"\x80",
]


def random_value(rng: random.Random) -> bytes:
    if rng.random() < 0.6:
        return rng.choice(EDGE_VALUES)
    return bytes(rng.choice(b"ab\x00\xff") for _ in range(rng.randint(0, 4)))


# The operators a conjunction compiles to the AND shape with (SUFFIX and
# CONTAINS make the expression shape).
AND_SHAPE_OPS = [op for op in Op if op not in (Op.SUFFIX, Op.CONTAINS)]


def random_spec(rng: random.Random, arity: int = -1, ops: Sequence[Op] = tuple(Op)) -> Spec:
    if arity < 0:
        arity = rng.randint(0, 4)
    spec = Spec(arity)
    if arity == 0:
        return spec
    for _ in range(rng.randint(0, 6)):
        field = rng.randrange(arity)
        op = rng.choice(list(ops))
        if op == Op.IN:
            spec.isin(field, [random_value(rng) for _ in range(rng.randint(0, 12))])
        else:
            spec.add(keyfilter.Predicate(field, op, random_value(rng)))
    return spec


def random_key(rng: random.Random, arity: int) -> Tuple[bytes, ...]:
    return tuple(random_value(rng) for _ in range(arity))


def keys_for(rng: random.Random, spec: Spec, n: int = 200) -> List[Tuple[bytes, ...]]:
    """Random keys, plus keys built from the spec's own values (so some match)."""
    keys = [random_key(rng, spec.arity) for _ in range(n)]
    values = [p.value for p in spec.predicates] + [v for p in spec.predicates for v in p.values]
    for _ in range(n):
        key = list(random_key(rng, spec.arity))
        for f in range(spec.arity):
            if values and rng.random() < 0.8:
                v = rng.choice(values)
                key[f] = v + random_value(rng) if rng.random() < 0.3 else v
        keys.append(tuple(key))
    return keys


# ---------------------------------------------------------------------------
# A real server


def _server_binary() -> Path:
    return Path(os.environ.get("KEYFILTER_BIN") or REPO / "target" / "debug" / "keyfilter")


class Server:
    def __init__(self, proc: subprocess.Popen, addr: str, log: List[str]) -> None:
        self.proc = proc
        self.addr = addr
        self.log = log


@contextlib.contextmanager
def running_server(*extra_args: str) -> Iterator[Server]:
    """`keyfilter serve --addr 127.0.0.1:0 --log-format json EXTRA...`, stopped on exit."""
    binary = _server_binary()
    if not binary.exists():
        pytest.fail(f"server binary {binary} is missing: run `cargo build` (or set KEYFILTER_BIN)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFILTER_")}
    proc = subprocess.Popen(
        [str(binary), "serve", "--addr", "127.0.0.1:0", "--log-format", "json", "--shutdown-grace", "1s",
         *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    log: List[str] = []
    found = threading.Event()
    addr: List[str] = []

    def drain() -> None:
        # Reads the log for the whole run: a full pipe would block the server.
        assert proc.stderr is not None
        for line in proc.stderr:
            if len(log) < 10_000:
                log.append(line)
            if not found.is_set():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                fields = event.get("fields", event)
                if fields.get("message") == "keyfilter listening" and "addr" in fields:
                    addr.append(fields["addr"])
                    found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 60
    while not found.wait(0.1):
        if proc.poll() is not None or time.monotonic() > deadline:
            break
    if not addr:
        proc.kill()
        proc.wait()
        pytest.fail(f"the server did not log its address; log:\n{''.join(log)}")
    try:
        yield Server(proc, addr[0], log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One plain server for the whole session."""
    with running_server() as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator["keyfilter.Client"]:
    with keyfilter.Client(server.addr, timeout=60) as c:
        yield c

# ---------------------------------------------------------------------------
# A reading of generated code that does not trust the verifier: the mutation
# tests compare what an accepted mutant returns with what `dis` says it does.
# ---------------------------------------------------------------------------
_LOADS = {"LOAD_FAST", "LOAD_FAST_BORROW"}
_JUMPS = {"POP_JUMP_IF_TRUE", "POP_JUMP_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE"}
_CMP = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def interpret(code: types.CodeType, key: Sequence[bytes]) -> object:
    """What ``code`` returns for ``key``, read from ``dis`` (not from the verifier)."""
    instrs = list(dis.get_instructions(code))
    at = {ins.offset: k for k, ins in enumerate(instrs)}
    stack: List[object] = []
    k = 0
    for _ in range(len(instrs) + 1):
        ins = instrs[k]
        k += 1
        name = ins.opname
        if name in ("RESUME", "NOT_TAKEN", "EXTENDED_ARG", "CACHE"):
            continue
        if name in _LOADS:
            stack.append(key[ins.arg])
        elif name == "LOAD_CONST":
            stack.append(code.co_consts[ins.arg])
        elif name == "COMPARE_OP":
            b, a = stack.pop(), stack.pop()
            op = str(ins.argval)
            if op.startswith("bool(") and op.endswith(")"):
                op = op[5:-1]
            stack.append(_CMP[op](a, b))
        elif name == "CONTAINS_OP":
            b, a = stack.pop(), stack.pop()
            stack.append((a in b) if ins.arg == 0 else (a not in b))  # type: ignore[operator]
        elif name == "BUILD_SLICE":
            stop, start = stack.pop(), stack.pop()
            stack.append(slice(start, stop))
        elif name == "BINARY_SUBSCR":
            index, seq = stack.pop(), stack.pop()
            stack.append(seq[index])  # type: ignore[index]
        elif name == "BINARY_SLICE":
            stop, start, seq = stack.pop(), stack.pop(), stack.pop()
            stack.append(seq[start:stop])  # type: ignore[index]
        elif name in _JUMPS:
            if bool(stack.pop()) == ("TRUE" in name):
                k = at[ins.argval]
        elif name == "RETURN_VALUE":
            return stack.pop()
        elif name == "RETURN_CONST":
            return code.co_consts[ins.arg]
        else:
            raise AssertionError(f"the verifier accepted {name}")
    raise AssertionError("no return")
