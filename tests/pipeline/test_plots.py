"""The data plot files (pipeline/plots.py): values, and bytes that depend on nothing but the values."""

from __future__ import annotations

import pytest

from pipeline import plots


def test_duration_histogram_counts_every_clip_in_one_second_bins_with_empty_bins_kept():
    assert plots.duration_histogram([3.2, 3.9, 5.0, 19.99]) == [(3.0, 2), (4.0, 0), (5.0, 1)] + [(float(s), 0) for s in range(6, 19)] + [(19.0, 1)]
    assert plots.duration_histogram([]) == []


def test_quantiles_interpolate_and_ignore_missing_values():
    q = plots.quantiles([4.0, None, 0.0, float("nan"), 2.0], n=5)
    assert q == [(0.0, 0.0), (0.25, 1.0), (0.5, 2.0), (0.75, 3.0), (1.0, 4.0)]
    assert plots.quantiles([None]) == []


def test_collect_scores_and_write_select_plots(tmp_path):
    scores: dict[str, list[float]] = {}
    plots.collect_scores(scores, "ds", [{"key": "a", "score_speech_ratio": 0.5, "score_x": None, "status": "ok"},
                                        {"key": "b", "score_speech_ratio": 1.0, "score_flag": True}])
    assert scores == {"ds.speech_ratio": [0.5, 1.0]}
    (tmp_path / "scores").mkdir()
    (tmp_path / "scores" / "stale.csv").write_text("old")
    report = {"dropped_by_reason": {"too_short": 2, "music": 1}, "splits": {"train": {"hours": 0.5}, "val": {"hours": 0.125}}}
    plots.write_select_plots(tmp_path, report, scores)
    assert (tmp_path / "drops.csv").read_text() == "reason,count\nmusic,1\ntoo_short,2\n"
    assert (tmp_path / "hours.csv").read_text() == "split,hours\ntrain,0.5\nval,0.125\n"
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["ds.speech_ratio.csv"]  # the stale file is gone
    rows = (tmp_path / "scores" / "ds.speech_ratio.csv").read_text().splitlines()
    assert rows[0] == "quantile,value" and rows[1] == "0,0.5" and rows[-1] == "1,1" and len(rows) == 22


def test_csv_cells_are_quoted_when_needed(tmp_path):
    plots.write_csv(tmp_path / "a.csv", ("reason", "count"), [("feature:caption:error,x", 1), ("ok", 2.0)])
    assert (tmp_path / "a.csv").read_text() == 'reason,count\n"feature:caption:error,x",1\nok,2\n'
    with pytest.raises(TypeError):
        plots.write_csv(tmp_path / "b.csv", ("a",), 5)  # type: ignore[arg-type]
