"""python/README.md's recipes for columnar data (section "Arrow, Polars, pandas,
DuckDB, Dask") run as written, and each answer is checked against the tuple
path -- ``Matcher.mask`` on tuples of bytes -- on the same data.

Each ```python block of a ``### `` subsection runs in a fresh namespace, in a
temporary directory (the recipes write files such as events.parquet). The
libraries are part of the test environment (scripts/setup-python-test-env.sh
pins them): a missing one fails these tests, it never skips them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import pytest

try:
    import dask  # noqa: F401
    import dask.dataframe  # noqa: F401
    import distributed  # noqa: F401
    import duckdb  # noqa: F401
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # fail, do not skip: the recipes are part of the package's promise
    raise ImportError(
        f"{e}: the README recipe tests need pyarrow, polars, pandas, duckdb and dask[dataframe,distributed] "
        "(scripts/setup-python-test-env.sh installs the pinned versions)"
    ) from e

import keyfilter
from conftest import PYTHON_DIR

SECTION = "Arrow, Polars, pandas, DuckDB, Dask"
RECIPES = ["pyarrow", "Polars", "pandas", "DuckDB", "Dask: a partitioned Parquet dataset on several processes"]


def recipe(heading: str) -> str:
    """The one ```python block of ``### heading`` in the section."""
    text = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {SECTION}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    sub = section.index(f"\n### {heading}\n")
    sub_end = section.find("\n### ", sub + 1)
    body = section[sub : sub_end if sub_end >= 0 else len(section)]
    blocks = re.findall(r"^```python\n(.*?)^```$", body, flags=re.S | re.M)
    assert len(blocks) == 1, f"### {heading}: expected one python block, found {len(blocks)}"
    return blocks[0]


def run(heading: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    monkeypatch.chdir(where)
    namespace: Dict[str, Any] = {"__name__": "readme_recipe"}
    exec(compile(recipe(heading), f"python/README.md ({heading})", "exec"), namespace)
    return namespace


def as_table(data: Any) -> pa.Table:
    """A pyarrow Table of any of the recipes' objects (without pandas' index)."""
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pl.DataFrame):
        return data.to_arrow()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    assert isinstance(data, pa.Table), type(data)
    return data


def tuple_mask(matcher: keyfilter.Matcher, data: Any, keys: Sequence[str]) -> List[bool]:
    """The tuple path's answer for each row: the key columns as tuples of
    bytes (str encoded as UTF-8), a key with a null field never matching."""
    table = as_table(data)
    columns = [table.column(k).to_pylist() for k in keys]
    rows = [tuple(v.encode() if isinstance(v, str) else v for v in row) for row in zip(*columns)]
    reference = keyfilter.Matcher(matcher.spec)  # a fresh matcher: nothing shared with the recipe's
    complete = [i for i, row in enumerate(rows) if None not in row]
    answers = reference.mask([rows[i] for i in complete])
    out = [False] * len(rows)
    for i, hit in zip(complete, answers):
        out[i] = hit
    return out


def selected_rows(data: Any, mask: Sequence[bool]) -> List[Tuple[Any, ...]]:
    table = as_table(data)
    rows = list(zip(*(table.column(c).to_pylist() for c in table.column_names)))
    return [row for row, hit in zip(rows, mask) if hit]


def rows_of(data: Any, columns: Sequence[str]) -> List[Tuple[Any, ...]]:
    table = as_table(data)
    assert table.column_names == list(columns), (table.column_names, columns)
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


def check_mask_is_meaningful(expected: Sequence[bool]) -> None:
    """The recipe's data has rows on both sides, or the comparison proves little."""
    assert 0 < sum(expected) < len(expected), f"{sum(expected)} of {len(expected)} rows match"


def test_pyarrow_recipe(tmp_path, monkeypatch):
    ns = run("pyarrow", tmp_path, monkeypatch)
    m, keys, table = ns["m"], ns["keys"], ns["table"]
    assert pa.types.is_dictionary(table.schema.field("tenant").type)  # the recipe shows a dictionary column
    expected = tuple_mask(m, table, keys)
    check_mask_is_meaningful(expected)
    assert isinstance(ns["mask"], pa.BooleanArray)
    assert ns["mask"].to_pylist() == expected
    assert isinstance(ns["hits"], pa.Table)
    assert rows_of(ns["hits"], table.column_names) == selected_rows(table, expected)
    # The batch-by-batch read of the Parquet file it wrote: the same rows.
    written = pq.read_table(tmp_path / "events.parquet")
    assert rows_of(ns["streamed"], table.column_names) == selected_rows(written, tuple_mask(m, written, keys))


def test_polars_recipe(tmp_path, monkeypatch):
    ns = run("Polars", tmp_path, monkeypatch)
    m, keys, df = ns["m"], ns["keys"], ns["df"]
    expected = tuple_mask(m, df, keys)
    check_mask_is_meaningful(expected)
    assert isinstance(ns["hits"], pl.DataFrame)
    assert ns["hits"].schema == df.schema
    assert rows_of(ns["hits"], df.columns) == selected_rows(df, expected)


def test_pandas_recipe(tmp_path, monkeypatch):
    ns = run("pandas", tmp_path, monkeypatch)
    m, keys, df = ns["m"], ns["keys"], ns["df"]
    assert all(isinstance(df[k].dtype, pd.ArrowDtype) for k in keys)  # Arrow-backed, as the recipe says
    expected = tuple_mask(m, df, keys)
    check_mask_is_meaningful(expected)
    assert df["hit"].tolist() == expected  # the mask the recipe stored as a column
    data = df.drop(columns="hit")
    hits = ns["hits"]
    assert isinstance(hits, pd.DataFrame)
    assert list(hits.dtypes) == list(data.dtypes)
    assert rows_of(hits, list(data.columns)) == selected_rows(data, expected)
    assert hits.index.tolist() == [i for i, hit in enumerate(expected) if hit]


def test_duckdb_recipe(tmp_path, monkeypatch, capsys):
    ns = run("DuckDB", tmp_path, monkeypatch)
    m, keys, con = ns["m"], ns["keys"], ns["con"]
    events = con.sql("SELECT * FROM events").to_arrow_table()
    assert events.num_rows == 100_000
    expected = tuple_mask(m, events, keys)
    check_mask_is_meaningful(expected)
    assert isinstance(ns["hits"], pa.Table)
    assert rows_of(ns["hits"], events.column_names) == selected_rows(events, expected)
    assert ns["streamed"] == sum(expected)
    # What it printed: the matching days (from 2026-01-01) and their count, from SQL.
    days = [row[1] for row in selected_rows(events, expected)]
    assert capsys.readouterr().out.strip() == str((min(days), max(days), sum(expected)))


def test_dask_recipe(tmp_path, monkeypatch, capsys):
    ns = run("Dask: a partitioned Parquet dataset on several processes", tmp_path, monkeypatch)
    m, keys, n = ns["m"], ns["keys"], ns["n"]
    # The dataset it wrote, read back whole with pyarrow: the partition column
    # `month` comes back from the directory names.
    dataset = pq.read_table(tmp_path / "events")
    assert dataset.num_rows == n
    assert len(list((tmp_path / "events").glob("month=*"))) == 12
    expected = tuple_mask(m, dataset, keys)
    check_mask_is_meaningful(expected)
    hits = ns["hits"]
    assert isinstance(hits, pd.DataFrame)
    assert all(isinstance(hits[k].dtype, (pd.ArrowDtype, pd.StringDtype)) for k in keys)
    got = sorted(rows_of(hits[keys], keys))
    want = sorted(row[:3] for row in selected_rows(dataset.select(keys), expected))
    assert got == want
    assert capsys.readouterr().out.strip() == f"{sum(expected)} of {n} rows"


def test_every_recipe_is_tested():
    """A recipe added to the README without a test here fails this."""
    text = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {SECTION}\n")
    end = text.find("\n## ", start + 1)
    headings = re.findall(r"^### (.+)$", text[start:end], flags=re.M)
    assert headings == RECIPES
