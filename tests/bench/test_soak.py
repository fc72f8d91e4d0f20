"""The soak's short version: three sessions at once (WebRTC callers and bots in turn) churning every ten seconds or
so for 75 s against a child server; no session may fail or stall, and no resource of the server may grow with the
sessions that came and went."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.child_server import REPO
from bench.soak import LEAK_LIMITS

RUN_WAIT = 300
"""Seconds the run may take: 75 s of soak, the speech and the server's start, and a slow shared machine."""


@pytest.mark.slow
def test_sessions_coming_and_going_leave_nothing_behind_in_the_server() -> None:
    # Small frames: this checks what the server keeps, not how fast it draws; the full run uses the default size.
    command = [sys.executable, "-m", "bench.soak", "--sessions", "3", "--minutes", "1.25", "--churn-seconds", "10"]
    command += ["--interval", "15", "--seed", "1", "--size", "128", "--json"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_WAIT)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    print({key: summary[key] for key in ("sessions_run", "frames", "late", "stalls", "max_abs_drift_ms")})
    print(summary["verdicts"])
    assert summary["errors"] == []
    assert summary["by_transport"]["webrtc"] >= 3 and summary["by_transport"]["bot"] >= 3, "sessions churned"
    assert summary["frames"] > 0
    assert summary["stalls"] == 0, [report for report in summary["session_reports"] if report["stalls"]]
    for resource in LEAK_LIMITS:
        assert not summary["verdicts"][resource]["leaks"], (resource, summary["verdicts"][resource])
