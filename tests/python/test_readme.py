"""The README's quickstart runs as written and prints what the README says."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KEYFILTER_BIN", REPO / "target" / "debug" / "keyfilter"))


def readme_blocks():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Quickstart"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = re.search(r"It prints:\n\n```text\n(.*?)```", section, re.S).group(1)
    return code, expected


def start_server():
    assert BIN.exists(), f"{BIN} is missing: run `cargo build` first"
    proc = subprocess.Popen(
        [str(BIN), "serve", "--addr", "127.0.0.1:0", "--log-format", "json"],
        stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        event = json.loads(line)
        if event.get("fields", {}).get("message") == "keyfilter listening":
            return proc, event["fields"]["addr"]
    proc.kill()
    raise AssertionError("the server exited before listening")


def test_quickstart_runs_as_written(tmp_path):
    code, expected = readme_blocks()
    gen = tmp_path / "gen"
    gen.mkdir()
    subprocess.run(
        # The README's command, from the repository root.
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto/keyfilter/v1", f"--python_out={gen}",
         f"--grpc_python_out={gen}", "proto/keyfilter/v1/keyfilter.proto"],
        check=True, cwd=REPO,
    )
    proc, addr = start_server()
    try:
        script = tmp_path / "quickstart.py"
        # Only the address differs: the test server listens on a free port.
        script.write_text(code.replace("127.0.0.1:50051", addr))
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == expected
    finally:
        proc.terminate()
        proc.wait(timeout=15)
