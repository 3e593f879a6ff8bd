"""The native extension on every CPython here that can load it, not only the
one running pytest.

The package ships one abi3 extension for every CPython from 3.9. To read
keys without a call into the interpreter per field, it measures, on the
running interpreter, where an exact bytes object's data and an exact tuple's
items start (`_native._layout()`), instead of assuming a layout; these
layouts differ between versions (3.14 added a cached hash to tuples). This
runs the installed package under each native interpreter: the measurement
must succeed there, and `Matcher` must agree with Python's own bytes
operators on keys of every shape (empty, one byte, long, bytes subclasses,
lists and tuple subclasses, which take the calls).

3.10 and 3.12 come as Pyodide here (WebAssembly under Node), which loads no
native extension: they are not in the list. An interpreter in the list that
is missing fails the test (scripts/fetch-pythons.sh provides them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import keyfilter
from test_other_interpreters import find_interpreter

NATIVE_MINORS = (9, 11, 13, 14, 15)

SCRIPT = r'''
import random, sys
sys.path.insert(0, sys.argv[1])  # the installed package (keyfilter imports nothing else from there)
import keyfilter
from keyfilter import Spec, field, _native

bytes_offset, tuple_offset = _native._layout()
assert bytes_offset > 0 and tuple_offset > 0, ("layout not measured", bytes_offset, tuple_offset)

class B(bytes):
    pass

class T(tuple):
    pass

r = random.Random(5)
def value():
    k = r.random()
    if k < 0.2: return b""
    if k < 0.5: return bytes([r.randrange(256)])
    if k < 0.8: return bytes(r.randrange(256) for _ in range(r.randrange(2, 12)))
    return bytes(r.randrange(256) for _ in range(r.randrange(100, 400)))

keys = [(value(), value()) for _ in range(5000)]
keys += [(B(a), b) for a, b in keys[:300]] + [[a, b] for a, b in keys[:300]] + [T(k) for k in keys[:300]]
checked = 0
for v in [b"", b"\x00", b"a", bytes([200]), b"ab", b"\xff" * 5]:
    for spec, ref in [
        (Spec(2, field(0) == v), lambda k: k[0] == v),
        (Spec(2, field(0) >= v), lambda k: k[0] >= v),
        (Spec(2, field(1).startswith(v) | (field(0) < v)), lambda k: k[1].startswith(v) or k[0] < v),
        (Spec(2, field(1).endswith(v) & ~field(0).contains(v)), lambda k: k[1].endswith(v) and v not in k[0]),
    ]:
        m = keyfilter.Matcher(spec)
        want = [ref(k) for k in keys]
        assert m.mask(keys) == want, spec
        assert m.count(keys) == sum(want), spec
        assert m.filter(keys) == [k for k in keys if ref(k)], spec
        assert [m(*k) for k in keys[:1000]] == want[:1000], spec
        checked += len(keys)
print(sys.version_info[1], checked, bytes_offset, tuple_offset)
'''


@pytest.mark.parametrize("minor", NATIVE_MINORS)
def test_the_extension_agrees_with_python_on_every_native_interpreter(minor, tmp_path):
    python = sys.executable if minor == sys.version_info[1] else find_interpreter(minor)
    assert python, f"python3.{minor} not found: run scripts/fetch-pythons.sh"
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    site = str(Path(keyfilter.__file__).parent.parent)
    done = subprocess.run(
        [python, "-I", str(script), site],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got_minor, checked, bytes_offset, tuple_offset = map(int, done.stdout.split())
    assert got_minor == minor
    assert checked > 100_000
    # 3.14 caches a tuple's hash in its header: one word more before the items.
    assert tuple_offset == (32 if minor >= 14 else 24)
    assert bytes_offset > 0
