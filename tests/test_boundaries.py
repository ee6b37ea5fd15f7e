"""The core runs on a server without a terminal library: it never imports Textual or the TUI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_linter_contract_is_kept() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " kept, 0 broken" in done.stdout


def test_importing_the_worker_runtime_loads_no_textual() -> None:
    code = (
        "import sys, core.runtime, core.worker, core.service, tui.cli; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'textual'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
