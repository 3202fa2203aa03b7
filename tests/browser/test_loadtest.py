"""tools/loadtest.py still works: one student, one upload, a report with one clean row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The tool's own bound; the subprocess gets a little more, for its clean-up.
MAX_MINUTES = 1.5


def test_loadtest_reports_one_clean_row(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    report_path = tmp_path / "report.json"
    command = [
        sys.executable, "tools/loadtest.py",
        "--students", "1", "--uploads", "1", "--no-warmup",
        "--max-minutes", str(MAX_MINUTES),
        "--json", str(report_path),
        "--server-log", str(tmp_path / "server.log"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=MAX_MINUTES * 60 + 60)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"

    report = json.loads(report_path.read_text())
    assert len(report["rows"]) == 1, report
    row = report["rows"][0]
    assert (row["students"], row["uploads"], row["errors"]) == (1, 1, 0), row
    assert row["complete"] and row["open_p50_s"] > 0 and row["result_p50_s"] > 0
    assert row["peak_rss_mb"] > 0 and row["cpu_s_per_upload"] > 0
    assert "| 1 |" in done.stdout  # the Markdown table, one row
