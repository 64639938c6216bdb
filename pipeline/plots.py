"""The data plots: small CSV files written by the stages that know the values (DESIGN 3.6).

``dvc.yaml`` declares them as ``plots:`` of those stages, so ``dvc plots show`` renders them (and
``dvc plots diff`` compares two runs); the HTML report embeds the same values. Every file holds
only deterministic values (no timings), so an unchanged input gives byte-identical plots.

==============================================  ====================  ============================
file                                            columns               written by
==============================================  ====================  ============================
``reports/plots/ingest/<dataset>/durations.csv``  ``seconds,clips``     ingest: kept clips per 1 s bin
``reports/plots/ingest/<dataset>/drops.csv``      ``reason,count``      ingest: dropped sources/clips
``reports/plots/select/drops.csv``                ``reason,count``      select: clips dropped by reason
``reports/plots/select/hours.csv``                ``split,hours``       select: kept hours per split
``reports/plots/select/scores/<ds>.<score>.csv``  ``quantile,value``    select: each stored score's
                                                                        distribution (21 quantiles)
==============================================  ====================  ============================
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

QUANTILES = 21  # 0, 0.05, ..., 1


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file written atomically (temp file + rename); floats with 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ",".join(header) + "\n" + "".join(",".join(_cell(v) for v in row) + "\n" for row in rows)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    s = str(v)
    return '"' + s.replace('"', '""') + '"' if "," in s or '"' in s or "\n" in s else s


def duration_histogram(durations: Iterable[float], bin_s: float = 1.0) -> list[tuple[float, int]]:
    """``(bin start in seconds, clips)`` for every bin from the shortest clip's to the longest's."""
    counts = Counter(int(math.floor(d / bin_s)) for d in durations)
    if not counts:
        return []
    return [(round(b * bin_s, 3), counts.get(b, 0)) for b in range(min(counts), max(counts) + 1)]


def quantiles(values: Sequence[float], n: int = QUANTILES) -> list[tuple[float, float]]:
    """``(q, value)`` at ``n`` evenly spaced ``q`` in [0, 1] (linear interpolation; NaNs left out)."""
    xs = sorted(float(v) for v in values if v is not None and not math.isnan(float(v)))
    if not xs:
        return []
    out = []
    for i in range(n):
        q = i / (n - 1)
        pos = q * (len(xs) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(xs) - 1)
        out.append((round(q, 4), xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)))
    return out


def write_ingest_plots(folder: Path, durations: Iterable[float], reasons: Mapping[str, int]) -> None:
    """``durations.csv`` and ``drops.csv`` of one dataset's ingest into ``folder``."""
    write_csv(folder / "durations.csv", ("seconds", "clips"), duration_histogram(durations))
    write_csv(folder / "drops.csv", ("reason", "count"), sorted(reasons.items()))


def collect_scores(into: dict[str, list[float]], dataset: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append every ``score_<name>`` value of manifest ``rows`` to ``into["<dataset>.<name>"]``."""
    for row in rows:
        for column, value in row.items():
            if column.startswith("score_") and isinstance(value, (int, float)) and not isinstance(value, bool):
                into.setdefault(f"{dataset}.{column[len('score_'):]}", []).append(float(value))


def write_select_plots(folder: Path, report: Mapping[str, Any], scores: Mapping[str, Sequence[float]]) -> None:
    """``drops.csv``, ``hours.csv`` and ``scores/<name>.csv`` (``scores``: name -> every clip's value) into
    ``folder``; stale score files of an earlier run are removed."""
    write_csv(folder / "drops.csv", ("reason", "count"), sorted(report.get("dropped_by_reason", {}).items()))
    write_csv(folder / "hours.csv", ("split", "hours"), [(s, float(v["hours"])) for s, v in report.get("splits", {}).items()])
    shutil.rmtree(folder / "scores", ignore_errors=True)
    (folder / "scores").mkdir(parents=True)
    for name, values in sorted(scores.items()):
        rows = quantiles(values)
        if rows:
            write_csv(folder / "scores" / f"{name}.csv", ("quantile", "value"), rows)
