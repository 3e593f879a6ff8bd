"""``Client.match`` / ``Client.filter`` of Arrow data against a real server:
the columnar form agrees with the local matcher on random data (every
layout, nulls, slices, chunks), batches are cut by rows and bytes, and the
answers are Arrow objects."""

from __future__ import annotations

import random

import polars as pl
import pyarrow as pa
import pytest

import keyfilter
from keyfilter import Matcher, Spec, field

from test_arrow import TYPES, column, expected, random_expr, random_rows


@pytest.mark.parametrize("seed", range(12))
def test_match_and_filter_agree_with_the_local_matcher(client, seed):
    rng = random.Random(1000 + seed)
    spec = Spec(3, random_expr(rng))
    local = Matcher(spec)
    rows = random_rows(rng, rng.randrange(0, 400), rng.choice([0.0, 0.1]))
    types = [rng.choice(TYPES) for _ in range(3)]
    table = pa.table(
        {
            **{f"f{i}": column([r[i] for r in rows], types[i]) for i in range(3)},
            "row": pa.array(range(len(rows)), pa.int64()),
        }
    )
    keys = ["f0", "f1", "f2"]
    want = expected(local, rows)
    got = client.match(spec, table, columns=keys)
    assert isinstance(got, pa.BooleanArray)
    assert got.to_pylist() == want
    # Several record batches, cut again into messages of at most 7 rows.
    batches = table.to_batches(max_chunksize=rng.randrange(1, 50)) if rows else []
    reader = client.filter(spec, pa.RecordBatchReader.from_batches(table.schema, batches), columns=keys, batch_size=7)
    assert isinstance(reader, pa.RecordBatchReader)
    out = reader.read_all()
    assert out.schema == table.schema
    assert out.column("row").to_pylist() == [i for i, w in enumerate(want) if w]


def test_views_and_polars_input(client):
    spec = Spec(2, (field(0) == b"eu") & field(1).endswith(b".json"))
    df = pl.DataFrame({"region": ["eu", "us", "eu", None], "file": ["a.json", "b.json", "c" * 40 + ".csv", "d.json"]})
    assert client.match(spec, df).to_pylist() == [True, False, False, False]
    out = client.filter(spec, df).read_all()
    assert out.column("file").to_pylist() == ["a.json"]


def test_large_streams_are_cut_by_bytes(client):
    # 40,000 keys of ~100 bytes: about 4 MB, one message would pass the
    # server's 4 MiB limit; the stream sends ~1 MiB messages.
    spec = Spec(1, field(0).endswith(b"7"))
    values = [(b"%099d" % i) for i in range(40_000)]
    out = client.filter(spec, pa.table({"k": pa.array(values)})).read_all()
    assert out.column("k").to_pylist() == [v for v in values if v.endswith(b"7")]


def test_errors_name_the_column(client):
    spec = Spec(2, field(0) == b"a")
    table = pa.table({"a": [b"a"], "n": [1]})
    with pytest.raises(TypeError, match="column 'n' has type int64"):
        client.match(spec, table)
    with pytest.raises(TypeError, match="applies to Arrow data only"):
        client.match(spec, [(b"a", b"b")], columns=["a", "b"])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        client.filter(spec, table, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        client.filter(spec, [(b"a", b"b")], batch_size=0)


def test_the_encoder_cuts_where_asked():
    table = pa.table({"k": pa.array([b"x" * 10] * 100)})
    body, n = keyfilter._native.encode_columnar(table, 4, 1, None, 10, 25, None)
    assert n == 25
    body, n = keyfilter._native.encode_columnar(table, 4, 1, None, 90, None, None)
    assert n == 10
    # At most about 50 bytes: 14 bytes per key (10 + a 4-byte offset), so 3 keys.
    body, n = keyfilter._native.encode_columnar(table, 4, 1, None, 0, None, 50)
    assert n == 3
    # At least one key, however small the budget.
    assert keyfilter._native.encode_columnar(table, 4, 1, None, 0, None, 1)[1] == 1


def test_arity_zero_counts_rows(client):
    table = pa.table({"a": [b"x", b"y", b"z"]})
    assert Matcher(Spec(0)).mask(table, columns=[]).to_pylist() == [True] * 3
    assert client.match(Spec(0), table, columns=[]).to_pylist() == [True] * 3
    assert client.filter(Spec(0), table, columns=[], batch_size=2).read_all().num_rows == 3


def test_filter_of_an_iterable_of_batches_and_frames(client):
    spec = Spec(2, field(1).startswith(b"/api/"))
    table = pa.table({"t": [b"a", b"b", b"c", b"d"], "p": [b"/api/1", b"/web", b"/api/2", b"/api/3"]})
    produced = []

    def batches():
        for i, batch in enumerate(table.to_batches(max_chunksize=2)):
            produced.append(i)
            yield batch if i == 0 else pl.from_arrow(batch)  # a Polars frame works too

    out = client.filter(spec, batches())
    assert produced == []  # nothing is read before iteration
    got = list(out)
    assert all(isinstance(b, pa.RecordBatch) for b in got)
    # Each batch keeps its own schema (Polars sends binary_view).
    assert [v for b in got for v in b.column("t").to_pylist()] == [b"a", b"c", b"d"]
    with pytest.raises(TypeError, match="applies to Arrow data only"):
        list(client.filter(spec, [(b"a", b"/api/")], columns=["t", "p"]))


def test_without_pyarrow_the_mask_is_the_native_arrow_object(monkeypatch):
    from keyfilter import _arrow

    monkeypatch.setattr(_arrow, "_pyarrow", lambda: None)
    got = Matcher(Spec(1, field(0) == b"a")).mask(pa.array([b"a", b"b"]))
    assert isinstance(got, keyfilter._native.ArrowMask) and got.to_pylist() == [True, False]


def test_indices_past_the_batch_are_an_error_not_a_panic():
    # A Filter answer names rows of the batch sent; a server naming one past
    # it must not crash the client.
    batch = pa.record_batch({"k": [b"a", b"b"]})
    inside = keyfilter._native.decode_filter_response_indices(b"\x12\x02\x00\x01")[1]
    assert pa.record_batch(keyfilter._native.take_rows(batch, inside)).num_rows == 2
    past = keyfilter._native.decode_filter_response_indices(b"\x12\x01\x02")[1]
    with pytest.raises(ValueError, match="taking the matched rows"):
        keyfilter._native.take_rows(batch, past)
