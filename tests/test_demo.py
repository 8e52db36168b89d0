"""`quantrac demo` as a new user runs it: its own PostgreSQL and Mosquitto, six hours replayed,
then live. The board must open with the replayed history's COD exceedance already raised, not
an hour later when the first live hour completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_opens_with_the_exceedance_of_its_history(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUANTRAC_")}
    demo = [sys.executable, "-m", "quantrac.cli.main", "demo", "--duration", "60"]
    done = subprocess.run(
        [*demo, "--workdir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Said in Vietnamese, the default: "cảnh báo đang mở: 1 Vượt quy chuẩn (exceedance)".
    out = done.stdout.splitlines()
    summary = [line for line in out if line.startswith("cảnh báo đang mở:")]
    assert summary and "Vượt quy chuẩn (exceedance)" in summary[-1], done.stdout[-3000:]
    assert any(line.startswith("tổng ") and " giá trị, " in line for line in out)
    assert "Traceback" not in done.stderr
