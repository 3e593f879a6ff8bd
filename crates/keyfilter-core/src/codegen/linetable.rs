//! Line tables: every code unit on line `co_firstlineno`, in each version's format
//! (cpython-codegen.md §11). A table must cover every code unit: a short one
//! breaks tracebacks (`traceback.format_exc()` itself raises on 3.12+).

use super::version::{LineTableKind, PyVersion};

/// The line table for `code_len` bytes of `co_code`, all on the first line.
pub fn single_line(version: PyVersion, code_len: usize) -> Vec<u8> {
    match version.record().line_table {
        // co_lnotab: empty means every instruction is on co_firstlineno.
        LineTableKind::Lnotab => Vec::new(),
        // PEP 626: (byte delta <= 254, line delta) pairs.
        LineTableKind::Pep626 => {
            let mut out = Vec::new();
            let mut left = code_len;
            while left > 0 {
                let step = left.min(254);
                out.extend_from_slice(&[step as u8, 0]);
                left -= step;
            }
            out
        }
        // PEP 657: entries of 1-8 code units; code 13 = "no column", svarint line delta 0.
        LineTableKind::Pep657 => {
            let mut out = Vec::new();
            let mut left = code_len / 2;
            while left > 0 {
                let step = left.min(8);
                out.extend_from_slice(&[0x80 | (13 << 3) | (step as u8 - 1), 0]);
                left -= step;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cover_the_code() {
        assert_eq!(single_line(PyVersion::V3_13, 60), [0xef, 0, 0xef, 0, 0xef, 0, 0xed, 0]);
        assert_eq!(single_line(PyVersion::V3_10, 24), [24, 0]);
        assert_eq!(single_line(PyVersion::V3_10, 600), [254, 0, 254, 0, 92, 0]);
        assert!(single_line(PyVersion::V3_9, 600).is_empty());
    }
}
