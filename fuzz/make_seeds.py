#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/wire_decode and fuzz/corpus/spec_file.

Wire seeds are encoded by hand (no protobuf dependency): canonical MatchRequest
and FilterRequest messages, plus legal-but-unusual encodings (unpacked
lengths, repeated oneof fields, unknown fields, multi-byte varints).
The seeds of the structured targets (spec_pipeline, marshal_writer) are raw
`arbitrary` inputs picked, by size, from the corpus a fuzzing run grew (plus
spec_pipeline/seed-bulk-ne: hundreds of NE predicates, so EXTENDED_ARG);
they are not generated here.

    python3 fuzz/make_seeds.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, body):
    return key(field, 2) + varint(len(body)) + body


def vint(field, n):
    return key(field, 0) + varint(n)


def predicate(field, op, value=b"", values=()):
    out = vint(1, field) if field else b""
    out += vint(2, op) if op else b""
    out += ld(3, value) if value else b""
    for v in values:
        out += ld(4, v)
    return out


def spec(arity, preds):
    return (vint(1, arity) if arity else b"") + b"".join(ld(2, p) for p in preds)


def row(fields):
    return b"".join(ld(1, f) for f in fields)


def le(values, width):
    return b"".join(v.to_bytes(width, "little") for v in values)


def column(values, width=4, first=0, validity=b"", fixed=0):
    """A Column: offsets of `width` bytes (0: fixed width `fixed`), values
    starting at `first` (a slice of a larger array), an optional bitmap."""
    data = b"." * first + b"".join(values)
    out = ld(1, data) if data else b""
    if width:
        offsets, at = [first], first
        for v in values:
            at += len(v)
            offsets.append(at)
        out += ld(2, le(offsets, width)) + vint(3, width)
    elif fixed:
        out += vint(4, fixed)
    return out + (ld(5, validity) if validity else b"")


def columnar(count, columns):
    return (vint(1, count) if count else b"") + b"".join(ld(2, c) for c in columns)


def packed(keys, count=None, unpacked=False):
    data = b"".join(f for k in keys for f in k)
    lengths = [len(f) for k in keys for f in k]
    out = ld(1, data) if data else b""
    if unpacked:
        out += b"".join(vint(2, n) for n in lengths)
    elif lengths:
        out += ld(2, b"".join(varint(n) for n in lengths))
    count = len(keys) if count is None else count
    return out + (vint(3, count) if count else b"")


SPEC2 = spec(2, [predicate(0, 1, b"org1"), predicate(1, 7, b"eng/"), predicate(1, 8, values=[b"a", b"eng/x"])])
KEYS2 = [[b"org1", b"eng/x"], [b"org2", b"eng/y"], [b"", b"\xff" * 130]]

WIRE = {
    # MatchRequest: spec = 1, keys = 2 (repeated Key), packed_keys = 3.
    "match_rows": ld(1, SPEC2) + b"".join(ld(2, row(k)) for k in KEYS2),
    "match_packed": ld(1, SPEC2) + ld(3, packed(KEYS2)),
    "match_packed_unpacked_lengths": ld(1, SPEC2) + ld(3, packed(KEYS2, unpacked=True)),
    "match_arity0_packed_count": ld(1, spec(0, [])) + ld(3, packed([[]] * 3, count=3)),
    "match_ragged_rows": ld(1, spec(2, [])) + ld(2, row([b"a", b"b"])) + ld(2, row([b"c"])),
    "match_unknown_fields": vint(9, 5) + ld(1, SPEC2) + key(10, 5) + b"\0\0\0\0" + ld(2, row([b"a", b"b"])),
    "match_both_forms": ld(1, SPEC2) + ld(2, row([b"a", b"b"])) + ld(3, packed([[b"a", b"b"]])),
    # FilterRequest: oneof spec = 1, batch = 2 (KeyBatch), packed_batch = 3.
    "filter_spec": ld(1, SPEC2),
    "filter_batch": ld(2, b"".join(ld(1, row(k)) for k in KEYS2)),
    "filter_packed_batch": ld(3, packed(KEYS2)),
    "filter_repeated_oneof": ld(2, ld(1, row([b"a", b"b"]))) + ld(2, ld(1, row([b"c", b"d"]))) + ld(3, packed([[b"x", b"y"]])),
    "filter_empty": b"",
    # ColumnarKeys: MatchRequest.columnar_keys = 4, FilterRequest.columnar_batch = 4.
    "match_columnar": ld(1, SPEC2) + ld(4, columnar(3, [
        column([k[0] for k in KEYS2]),
        column([k[1] for k in KEYS2], width=8, first=2, validity=b"\x05"),
    ])),
    "match_columnar_arity0": ld(1, spec(0, [])) + ld(4, columnar(4, [])),
    "match_columnar_count_2_pow_32": ld(1, spec(0, [])) + ld(4, vint(1, 0xFFFFFFFF)),
    "filter_columnar_batch": ld(4, columnar(2, [
        column([b"ab", b"cd"], width=0, fixed=2),
        column([b"", b"xyz"], first=1),
    ])),
    "filter_columnar_bad_offsets": ld(4, columnar(2, [ld(1, b"abc") + ld(2, le([0, 2, 1], 4)) + vint(3, 4)])),
    "filter_long_varints": ld(3, ld(1, b"abc") + key(2, 2) + b"\x02\x83\x00" + vint(3, 1)),
}

SPEC_FILES = {
    "readme.json": {
        "arity": 3,
        "predicates": [
            {"field": 0, "op": "eq", "value": "org1"},
            {"field": 1, "op": ">=", "value": "2024"},
            {"field": 2, "op": "prefix", "value": "eng/\\xff"},
            {"field": 2, "op": "in", "values": ["a", {"hex": "00ff"}]},
        ],
    },
    "every_op.json": {
        "arity": 2,
        "predicates": [
            {"field": i % 2, "op": op, "value": "a\\x00\\n\\t\\r\\0\\\\\\'\\\""}
            for i, op in enumerate(["==", "!=", "<", "<=", ">", ">=", "startswith", "NE", "lt"])
        ],
    },
    "empty.json": {"arity": 0},
    "errors_in_values.json": {"arity": 1, "predicates": [{"field": 0, "op": "in", "values": ["\\xZZ", {"hex": "0"}]}]},
}


def main():
    for name, body in WIRE.items():
        with open(os.path.join(HERE, "corpus", "wire_decode", name), "wb") as f:
            f.write(body)
    for name, doc in SPEC_FILES.items():
        with open(os.path.join(HERE, "corpus", "spec_file", name), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
