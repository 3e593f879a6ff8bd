"""The protobuf/gRPC stubs shipped in keyfilter/_proto are exactly what the generator makes."""

from __future__ import annotations

import importlib.util

import grpc_tools  # noqa: F401  (regenerates the stubs; the test environment installs it)

from conftest import PYTHON_DIR


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_proto", PYTHON_DIR / "tools" / "generate_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_stubs_are_up_to_date(tmp_path):
    gen = load_generator()
    have = gen.installed_tools_version()
    assert have == gen.GRPCIO_TOOLS_VERSION, (
        f"grpcio-tools {have} is installed, but the stubs are generated with {gen.GRPCIO_TOOLS_VERSION} "
        "(python/tools/generate_proto.py): install that version, or move the pin and regenerate"
    )
    files = gen.generate()
    assert sorted(files) == sorted(gen.FILES)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        shipped = (gen.PACKAGE_DIR / name).read_text()
        assert shipped == text, f"{name} is stale: run python python/tools/generate_proto.py"


def test_stubs_are_package_relative():
    from keyfilter._proto import keyfilter_pb2, keyfilter_pb2_grpc

    assert keyfilter_pb2.FilterSpec.__module__ == "keyfilter._proto.keyfilter_pb2"
    assert keyfilter_pb2.DESCRIPTOR.name == "keyfilter/v1/keyfilter.proto"
    assert keyfilter_pb2_grpc.keyfilter_dot_v1_dot_keyfilter__pb2 is keyfilter_pb2
    assert hasattr(keyfilter_pb2_grpc, "KeyFilterStub")
