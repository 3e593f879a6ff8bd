"""Arrow data in ``Matcher.mask/filter/count``: every layout, nulls, chunks,
slices and column selection agree with the tuple path on random data; bad
input gets a precise error; the GIL is released while evaluating."""

from __future__ import annotations

import random
import threading

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import keyfilter
from keyfilter import Matcher, Spec, field

ALPHABET = [b"", b"a", b"ab", b"b", b"\x00", b"\xff", b"abcdefghijklm", b"aab"]


def random_value(rng: random.Random) -> bytes:
    return b"".join(rng.choice(ALPHABET) for _ in range(rng.randrange(3)))


def random_expr(rng: random.Random, depth: int = 0):
    if depth > 2 or rng.random() < 0.4:
        f, v = field(rng.randrange(3)), random_value(rng)
        op = rng.randrange(10)
        return [
            f == v,
            f != v,
            f < v,
            f <= v,
            f > v,
            f >= v,
            f.startswith(v),
            f.endswith(v),
            f.contains(v),
            f.isin([random_value(rng) for _ in range(rng.randrange(3))]),
        ][op]
    items = [random_expr(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
    kind = rng.randrange(3)
    if kind == 0:
        return keyfilter.all_of(*items)
    if kind == 1:
        return keyfilter.any_of(*items)
    return ~items[0]


def random_rows(rng: random.Random, n: int, null_rate: float):
    return [
        tuple(None if rng.random() < null_rate else random_value(rng) for _ in range(3)) for _ in range(n)
    ]


def expected(m: Matcher, rows) -> list:
    return [all(f is not None for f in r) and m(*r) for r in rows]


TYPES = [
    pa.binary(),
    pa.large_binary(),
    pa.binary_view(),
    pa.dictionary(pa.int8(), pa.binary()),
    pa.dictionary(pa.uint32(), pa.large_binary()),
]


def column(values, type_):
    if pa.types.is_dictionary(type_):
        return pa.array(values, type_.value_type).dictionary_encode().cast(type_)
    return pa.array(values, type_)


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_agree_with_tuples(seed):
    rng = random.Random(seed)
    m = Matcher(Spec(3, random_expr(rng)))
    rows = random_rows(rng, rng.randrange(0, 300), rng.choice([0.0, 0.0, 0.1]))
    types = [rng.choice(TYPES) for _ in range(3)]
    table = pa.table({f"f{i}": column([r[i] for r in rows], types[i]) for i in range(3)})
    want = expected(m, rows)
    assert m.mask(table).to_pylist() == want
    assert m.count(table) == sum(want)
    if pa.binary_view() not in types:  # pyarrow's own filter has no binary_view kernel
        assert m.filter(table).num_rows == sum(want)
    # Chunked into unaligned pieces (bit positions not multiples of 8), sliced.
    cuts = sorted(rng.sample(range(len(rows) + 1), k=min(3, len(rows) + 1)))
    pieces = [table.slice(a, b - a) for a, b in zip([0] + cuts, cuts + [len(rows)])]
    chunked = pa.concat_tables(pieces)
    assert chunked.num_rows == len(rows)
    assert m.mask(chunked).to_pylist() == want
    assert m.mask(chunked, threads=1).to_pylist() == want
    if rows:
        start = rng.randrange(len(rows))
        assert m.mask(table.slice(start)).to_pylist() == want[start:]


def test_strings_fixed_size_and_views():
    m = Matcher(Spec(2, (field(0) == b"caf\xc3\xa9") & field(1).startswith(b"\x01")))
    rows = [("café", b"\x01\x02"), ("cafe", b"\x01\x03"), ("café", b"\x02\x01")]
    for text in (pa.string(), pa.large_string(), pa.string_view()):
        table = pa.table(
            {"name": pa.array([r[0] for r in rows], text), "code": pa.array([r[1] for r in rows], pa.binary(2))}
        )
        assert m.mask(table).to_pylist() == [True, False, False]


def test_long_views_and_many_rows_in_parallel():
    rng = random.Random(7)
    m = Matcher(Spec(1, field(0).contains(b"needle")))
    values = [
        b"x" * rng.randrange(30) + (b"needle" if rng.random() < 0.3 else b"hay") + b"y" * rng.randrange(30)
        for _ in range(200_003)
    ]
    want = [b"needle" in v for v in values]
    for type_ in (pa.binary(), pa.binary_view(), pa.dictionary(pa.int32(), pa.binary())):
        arr = column(values, type_)
        assert m.mask(arr, threads=3).to_pylist() == want
        assert m.count(pa.chunked_array([arr.slice(0, 77_777), arr.slice(77_777)])) == sum(want)
    # Nulls spread over every piece a thread takes.
    with_nulls = [None if i % 1_001 == 0 else v for i, v in enumerate(values)]
    want = [v is not None and b"needle" in v for v in with_nulls]
    for type_ in (pa.binary(), pa.large_binary(), pa.binary_view()):
        arr = pa.array(with_nulls, type_)
        assert m.mask(arr, threads=3).to_pylist() == want
        assert m.mask(arr.slice(5), threads=2).to_pylist() == want[5:]


def test_nulls_do_not_match_or_raise():
    m = Matcher(Spec(2, field(0) != b"x"))
    table = pa.table({"a": [b"a", None, b"c"], "b": [b"1", b"2", None]})
    assert m.mask(table).to_pylist() == [True, False, False]
    with pytest.raises(ValueError, match=r"key 1 has a null in column 'a' \(nulls=\"error\"\)"):
        m.mask(table, nulls="error")
    with pytest.raises(ValueError, match="nulls must be"):
        m.mask(table, nulls="skip")
    # A dictionary whose value is null makes the key null too.
    d = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array([b"v", None]))
    assert Matcher(Spec(1, field(0) != b"x")).mask(d).to_pylist() == [True, False]


def test_columns_by_name_and_position():
    m = Matcher(Spec(2, (field(0) == b"k") & (field(1) == b"v")))
    table = pa.table({"x": [1, 2], "key": [b"k", b"k"], "val": [b"v", b"w"]})
    assert m.mask(table, columns=["key", "val"]).to_pylist() == [True, False]
    assert m.mask(table, columns=[1, -1]).to_pylist() == [True, False]
    assert m.mask(table, columns=["val", "key"]).to_pylist() == [False, False]
    with pytest.raises(ValueError, match=r"the data has 3 columns \(x, key, val\), the spec's arity is 2"):
        m.mask(table)
    with pytest.raises(ValueError, match="no column named 'nope'"):
        m.mask(table, columns=["key", "nope"])
    with pytest.raises(IndexError, match="position 5 is out of range for 3 columns"):
        m.mask(table, columns=["key", 5])
    with pytest.raises(TypeError, match=r"column 'x' has type int64; keyfilter reads binary"):
        m.mask(table, columns=["x", "val"])
    with pytest.raises(ValueError, match="2 columns picked|1 columns picked"):
        m.mask(table, columns=["key"])
    with pytest.raises(TypeError, match="not a str"):
        m.mask(table, columns="key")
    with pytest.raises(TypeError, match="apply to Arrow data only"):
        m.mask([(b"k", b"v")], columns=["key", "val"])


def test_filter_returns_the_input_kind():
    m = Matcher(Spec(2, field(1).startswith(b"/api/")))
    table = pa.table({"tenant": [b"a", b"b", b"c"], "path": [b"/api/1", b"/web", b"/api/2"]})
    out = m.filter(table)
    assert isinstance(out, pa.Table) and out.column("tenant").to_pylist() == [b"a", b"c"]
    batch = table.to_batches()[0]
    assert isinstance(m.filter(batch), pa.RecordBatch) and m.filter(batch).num_rows == 2
    reader = m.filter(pa.RecordBatchReader.from_batches(table.schema, [batch, batch]))
    assert isinstance(reader, pa.RecordBatchReader) and reader.read_all().num_rows == 4
    df = pl.from_arrow(table)
    out_pl = m.filter(df)
    assert isinstance(out_pl, pl.DataFrame) and out_pl["tenant"].to_list() == [b"a", b"c"]
    pdf = table.to_pandas(types_mapper=pd.ArrowDtype)
    out_pd = m.filter(pdf)
    assert isinstance(out_pd, pd.DataFrame) and list(out_pd["tenant"]) == [b"a", b"c"]
    assert isinstance(m.mask(df), pa.BooleanArray)


def test_polars_string_views_and_categoricals():
    m = Matcher(Spec(2, (field(0) == b"eu") & field(1).endswith(b".json")))
    df = pl.DataFrame({"region": ["eu", "us", "eu"], "file": ["a.json", "b.json", "c" * 40 + ".csv"]})
    assert m.mask(df).to_pylist() == [True, False, False]
    cat = df.with_columns(pl.col("region").cast(pl.Categorical))
    assert m.mask(cat).to_pylist() == [True, False, False]


def test_the_mask_object_exports_arrow():
    m = Matcher(Spec(1, field(0) == b"a"))
    native = m._arrow_eval(pa.array([b"a", b"b", b"a"]), None, "no_match", None, True)
    assert isinstance(native, keyfilter._native.ArrowMask)
    assert len(native) == 3 and native.true_count == 2 and native.to_pylist() == [True, False, True]
    assert pa.array(native).to_pylist() == [True, False, True]
    assert pl.Series(pa.array(native)).to_list() == [True, False, True]


def test_bad_producers_get_errors_not_crashes():
    class NotAStream:
        def __arrow_c_stream__(self, requested_schema=None):
            return 42

    with pytest.raises(TypeError, match="did not return a PyCapsule"):
        Matcher(Spec(1)).mask(NotAStream())

    class WrongCapsule:
        def __arrow_c_array__(self, requested_schema=None):
            return pa.array([b"a"]).__arrow_c_array__()[::-1]

    with pytest.raises(ValueError):
        Matcher(Spec(1)).mask(WrongCapsule())


def test_the_gil_is_released_while_evaluating():
    m = Matcher(Spec(1, field(0).contains(b"zz")))
    arr = pa.array([b"abcdefgh" * 4] * 3_000_000)
    ticks = 0
    done = threading.Event()

    def run():
        for _ in range(5):
            m.mask(arr, threads=1)
        done.set()

    worker = threading.Thread(target=run)
    worker.start()
    while not done.is_set():
        ticks += 1
    worker.join()
    # Holding the GIL, the evaluation would let this loop run only between
    # calls (a handful of switch intervals); released, it spins throughout.
    assert ticks > 100_000, ticks


def test_many_small_batches_are_evaluated_together_in_order():
    # 300 batches of 1,001 keys: more keys than one thread's share, none
    # large enough to split; results must come back in order.
    rng = random.Random(3)
    m = Matcher(Spec(1, field(0).endswith(b"7") | field(0).startswith(b"9")))
    values = [b"%d" % rng.randrange(10**6) for _ in range(300 * 1001)]
    want = [v.endswith(b"7") or v.startswith(b"9") for v in values]
    arr = pa.array(values)
    chunked = pa.chunked_array([arr.slice(i * 1001, 1001) for i in range(300)])
    for threads in (None, 1, 2, 5):
        assert m.mask(chunked, threads=threads).to_pylist() == want
        assert m.count(chunked, threads=threads) == sum(want)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="threads must be at least 1"):
            m.mask(chunked, threads=bad)
    # A null far into the stream is reported with its position in the whole input.
    values[250_000] = None
    with pytest.raises(ValueError, match="key 250000 has a null"):
        m.mask(pa.chunked_array([pa.array(values[i : i + 1001]) for i in range(0, len(values), 1001)]), nulls="error")
