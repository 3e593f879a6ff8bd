#!/usr/bin/env python3
"""Generates the protobuf/gRPC stubs shipped in keyfilter/_proto/ from proto/.

    python python/tools/generate_proto.py            # rewrite keyfilter/_proto/
    python python/tools/generate_proto.py --check    # exit 1 if they are stale
    python python/tools/generate_proto.py --out DIR  # write elsewhere

Runs grpcio-tools' protoc on proto/keyfilter/v1/keyfilter.proto (the descriptor
keeps that canonical file name), then makes the output live in the package:
the gRPC stub imports its messages package-relatively and the message classes
report `keyfilter._proto.keyfilter_pb2` as their module. The shipped files are
exactly this script's output for GRPCIO_TOOLS_VERSION.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

# The grpcio-tools release the shipped stubs come from (scripts/setup-python-test-env.sh pins it).
GRPCIO_TOOLS_VERSION = "1.85.1"

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO = PYTHON_DIR.parent
PROTO_ROOT = REPO / "proto"
PROTO_FILE = "keyfilter/v1/keyfilter.proto"
PACKAGE_DIR = PYTHON_DIR / "keyfilter" / "_proto"
FILES = ("keyfilter_pb2.py", "keyfilter_pb2.pyi", "keyfilter_pb2_grpc.py")

_REWRITES = {
    "keyfilter_pb2.py": [
        ("'keyfilter.v1.keyfilter_pb2'", "'keyfilter._proto.keyfilter_pb2'"),
    ],
    "keyfilter_pb2_grpc.py": [
        (
            "from keyfilter.v1 import keyfilter_pb2 as keyfilter_dot_v1_dot_keyfilter__pb2",
            "from . import keyfilter_pb2 as keyfilter_dot_v1_dot_keyfilter__pb2",
        ),
    ],
}


def installed_tools_version() -> str:
    from importlib.metadata import version

    return version("grpcio-tools")


def generate() -> dict:
    """Returns {file name: text} of the stubs as they should be shipped."""
    from grpc_tools import protoc

    import grpc_tools

    with tempfile.TemporaryDirectory() as tmp:
        include = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            PROTO_FILE,
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed: {' '.join(args)}")
        out = {}
        for name in FILES:
            text = (Path(tmp) / "keyfilter" / "v1" / name).read_text()
            for old, new in _REWRITES.get(name, []):
                if old not in text:
                    raise SystemExit(f"{name}: expected to find {old!r} in protoc's output")
                text = text.replace(old, new)
            out[name] = text
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the shipped stubs instead of writing")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output folder (default: the package's)")
    args = parser.parse_args()
    have = installed_tools_version()
    if have != GRPCIO_TOOLS_VERSION:
        print(
            f"warning: grpcio-tools {have} is installed; the shipped stubs come from {GRPCIO_TOOLS_VERSION}",
            file=sys.stderr,
        )
    files = generate()
    if args.check:
        stale = False
        for name, text in files.items():
            shipped = (args.out / name).read_text() if (args.out / name).exists() else ""
            if shipped != text:
                stale = True
                sys.stdout.writelines(
                    difflib.unified_diff(shipped.splitlines(True), text.splitlines(True), f"shipped/{name}", f"generated/{name}")
                )
        if stale:
            print("stubs are stale: run python python/tools/generate_proto.py", file=sys.stderr)
            return 1
        print("stubs are up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
