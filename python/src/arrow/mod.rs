//! Arrow in, Arrow out: keys held in Arrow arrays are evaluated where they
//! lie, with no Python object per row.
//!
//! Input comes through the Arrow PyCapsule interface (`__arrow_c_stream__`,
//! `__arrow_c_array__`), so one path serves pyarrow, Polars, pandas, DuckDB
//! and anything else that speaks it ([`import`]). The chosen columns of each
//! batch become the core's [`Columns`](keyfilter_core::eval::Columns) view
//! ([`columns`]), evaluated with the GIL released, split across threads
//! ([`run`]); a mask goes back out as an Arrow boolean array ([`export`]).
//! The client sends Arrow data as the contract's columnar form ([`encode`])
//! and takes the rows a `Filter` answer names from their batch ([`take`]).

pub(crate) mod columns;
pub(crate) mod encode;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod run;
pub(crate) mod take;
