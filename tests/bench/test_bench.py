"""`make bench` on a small history: every figure is produced next to its reference, and the
references quote what Promise quotes. Speeds are printed, never asserted (STYLE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import KEYS, main


@pytest.mark.bench
def test_the_benchmark_measures_every_figure_against_its_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    code = main(
        [
            "--orders", "30000", "--single", "2000", "--reference-single", "50",
            "--http-requests", "300", "--http-seconds", "4", "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    results = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert results["errors"] == {}
    assert all(results[key] is not None for key in KEYS)
    # The naive reference is a yardstick for the same work: the same hours and deadlines, but
    # for the rare order whose local hour pandas rounds to the other side of a split.
    for agreement in (results["reference_single_agreement"], results["reference_batch_agreement"]):
        assert min(agreement.values()) > 0.99
    assert "single quote p50" in printed
    # A fresh worker quotes without the training stack.
    assert results["worker_training_stack"] == []
    assert "worker start-up to first quote" in printed
