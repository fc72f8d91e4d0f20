"""`bench/gpu.py` stays runnable: its CPU smoke mode renders a window through every stage and prints a result row;
a case that fails is listed and the others still run."""

from __future__ import annotations

import pytest

from bench import gpu as bench_gpu
from bench.gpu import Case, cases_for, main
from echomimic.acceleration.backend_names import Backend
from echomimic.acceleration.profiles import QUALITY, REALTIME


def test_tiny_run_prints_a_row_per_case_and_survives_a_failing_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case = bench_gpu.run_case

    def out_of_memory_for_two_sessions(case: Case, *args: object) -> object:
        if case.batch == 2:
            raise RuntimeError("CUDA out of memory")
        return run_case(case, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_gpu, "run_case", out_of_memory_for_two_sessions)
    assert main(["--tiny", "--profiles", "realtime", "--windows", "1", "--batches", "2,1"]) == 0
    output = capsys.readouterr().out
    assert "matmul peak" in output
    assert "failed: realtime, eager, 2 session(s): RuntimeError('CUDA out of memory')" in output
    rows = [line for line in output.splitlines() if line.startswith("| CPU")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[2:5] == ["realtime", "eager", "1"]
    stages = cells[5].split("(")[1].rstrip(")").split(" / ")
    assert len(stages) == 4 and all(float(stage) > 0 for stage in stages)  # audio, sampling, decode, colour
    assert float(cells[6]) > 0 and float(cells[7]) > 0  # fps per session, UNet TFLOP/s


def test_cases_run_in_the_order_given_and_compiled_last() -> None:
    cases = cases_for([QUALITY, REALTIME], [Backend.EAGER, Backend.COMPILE], [1, 2])
    first = [Case(QUALITY, Backend.EAGER, 1), Case(REALTIME, Backend.EAGER, 1), Case(QUALITY, Backend.EAGER, 2)]
    assert cases[:3] == first
    assert [case.backend for case in cases] == [Backend.EAGER] * 4 + [Backend.COMPILE] * 4


def test_a_case_past_the_deadline_is_skipped_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tiny", "--profiles", "realtime", "--batches", "1", "--deadline", "0"]) == 0
    output = capsys.readouterr().out
    assert "skipped (deadline): realtime, eager, 1 session(s)" in output
    assert not [line for line in output.splitlines() if line.startswith("| CPU")]
