"""The package itself: its sources compile without warnings (3.12+ turns an
invalid escape into a SyntaxWarning, and `-W error` into an import error), and
`from keyfilter import *` works without the grpc extra."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import keyfilter


def test_every_module_compiles_without_a_warning():
    sources = sorted(Path(keyfilter.__file__).parent.rglob("*.py"))
    assert len(sources) > 5, sources
    for path in sources:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_star_import_without_the_grpc_extra():
    script = (
        "import sys; sys.modules['grpc'] = None\n"
        "from keyfilter import *\n"
        "assert 'Client' not in dir() and 'Matcher' in dir() and 'CodeRejected' in dir()\n"
        "import keyfilter\n"
        "try:\n"
        "    keyfilter.Client\n"
        "except ImportError as e:\n"
        "    assert 'grpc extra' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('Client without grpc')\n"
    )
    done = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
