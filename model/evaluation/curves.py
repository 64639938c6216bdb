"""The training curves of the evaluation page: each training stage's dvclive step tables
(``<train_dir>/<stage>/plots/metrics/**/*.tsv``: a ``step`` column and the metric's) drawn as small
inline SVG line charts, with the stage's final values (``<stage>/metrics.json``) and its tiny-weights mark.

Inline SVG, no JavaScript: the page stays one file that renders offline and prints. The model's losses
are the paper's (Sec. 3.3-3.5: the diffusion loss, Eq. 9's auxiliary terms, the A2M reconstruction + KL).
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: a series longer than this is thinned to each bucket's lowest and highest point (spikes stay visible)
MAX_POINTS = 600
#: a dot per point up to this many points (a short run reads as points, a long one as a line)
DOTS_UP_TO = 60


@dataclass(frozen=True)
class StageCurves:
    """One training stage: ``series`` metric name -> [(step, value)], ``final`` the flattened metrics.json."""

    name: str
    series: dict[str, list[tuple[float, float]]]
    final: dict[str, float] = field(default_factory=dict)
    tiny: bool = False


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_tsv(path: Path) -> list[tuple[float, float]]:
    """[(step, value)] of one dvclive table (its ``step`` column and the other one)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "step" not in rows[0]:
        return []
    value = next((k for k in rows[0] if k not in ("step", "timestamp")), None)
    return [(_number(r["step"]), _number(r[value] or "")) for r in rows] if value else []


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _order(name: str) -> tuple[int, str]:
    """loss/total first, then the loss terms, validation, lr and grad_norm, then the rest."""
    for rank, prefix in enumerate(("loss/total", "loss/", "val/", "lr", "grad_norm")):
        if name == prefix or name.startswith(prefix):
            return rank, name
    return 9, name


def read_stage(folder: Path) -> StageCurves:
    """A stage's curves from its dvclive folder (``reports/train/<stage>``)."""
    plots = folder / "plots" / "metrics"
    series = {tsv.relative_to(plots).with_suffix("").as_posix(): read_tsv(tsv) for tsv in plots.rglob("*.tsv")} if plots.is_dir() else {}
    metrics = folder / "metrics.json"
    raw = json.loads(metrics.read_text()) if metrics.is_file() else {}
    return StageCurves(folder.name, {k: series[k] for k in sorted(series, key=_order)}, _flatten(raw), bool(raw.get("tiny")))


def read_stages(train_dir: Path) -> list[StageCurves]:
    """Every stage folder of ``train_dir`` that holds dvclive output, by name (a2m, stage1, stage2)."""
    if not train_dir.is_dir():
        return []
    folders = sorted(p for p in train_dir.iterdir() if (p / "metrics.json").is_file() or (p / "plots" / "metrics").is_dir())
    return [read_stage(p) for p in folders]


def _fmt(v: float) -> str:
    return "—" if not math.isfinite(v) else f"{v:.4g}"


def _thin(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / (limit // 2))
    out = []
    for i in range(0, len(points), size):
        bucket = [p for p in points[i:i + size] if math.isfinite(p[1])] or points[i:i + 1]
        lo, hi = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        out += sorted({lo, hi})
    return out


def _labels(lo: float, hi: float) -> tuple[str, str]:
    """``lo`` and ``hi`` with the fewest significant digits (4 or more) that tell them apart."""
    for digits in range(4, 10):
        a, b = f"{lo:.{digits}g}", f"{hi:.{digits}g}"
        if a != b:
            return a, b
    return a, b


def line_svg(title: str, points: Sequence[tuple[float, float]], width: int = 330, height: int = 180,
             label: str | None = None, steps: tuple[float, float] | None = None) -> str:
    """One line chart of ``(step, value)`` points scaled into the plot box; a non-finite value breaks the line,
    a lone point is a dot; the y range and the first and last step are labelled, the last value in the title.
    ``label`` (default ``title``) names the chart for screen readers and tests; ``steps`` (default the points'
    own) is the x range, shared by a stage's charts so that the same step sits at the same place in each."""
    left, right, top, bottom = 62, 12, 24, 26
    x0, x1, y0, y1 = left, width - right, top, height - bottom
    finite = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    last = finite[-1] if finite else None
    head = f"{title} = {_fmt(last[1])} at step {last[0]:g}" if last else title
    parts = [(f"<svg xmlns='http://www.w3.org/2000/svg' class='curve' width='{width}' height='{height}' role='img' "
              f"aria-label='{html.escape(label or title, quote=True)}'>"),
             f"<text x='2' y='15' font-size='12' font-weight='bold'>{html.escape(head)}</text>",
             f"<rect x='{x0}' y='{y0}' width='{x1 - x0}' height='{y1 - y0}' fill='#fafafa' stroke='#ccc'/>"]
    if not finite:
        parts.append(f"<text x='{(x0 + x1) / 2}' y='{(y0 + y1) / 2}' font-size='12' fill='#888' text-anchor='middle'>"
                     "no finite values</text></svg>")
        return "".join(parts)
    # the data's own range fills the box less an inset (the extreme points stay clear of the frame); a flat
    # series or a lone point sits in the middle
    inset = 7
    xs_lo, xs_hi = steps or (min(x for x, _ in finite), max(x for x, _ in finite))
    ys_lo, ys_hi = min(y for _, y in finite), max(y for _, y in finite)

    def px(x: float) -> float:
        return (x0 + x1) / 2 if xs_hi == xs_lo else x0 + inset + (x - xs_lo) / (xs_hi - xs_lo) * (x1 - x0 - 2 * inset)

    def py(y: float) -> float:
        return (y0 + y1) / 2 if ys_hi == ys_lo else y1 - inset - (y - ys_lo) / (ys_hi - ys_lo) * (y1 - y0 - 2 * inset)

    lo_text, hi_text = _labels(ys_lo, ys_hi)
    for y, text in ((ys_lo, lo_text), (ys_hi, hi_text)) if ys_hi != ys_lo else ((ys_lo, _fmt(ys_lo)),):
        parts.append(f"<line x1='{x0}' x2='{x1}' y1='{py(y):.1f}' y2='{py(y):.1f}' stroke='#e4e4e4'/>"
                     f"<text x='{x0 - 4}' y='{py(y) + 4:.1f}' font-size='10' text-anchor='end' fill='#555'>{text}</text>")
    first_step, last_step = xs_lo, xs_hi
    parts.append(f"<text x='{px(first_step):.1f}' y='{y1 + 14}' font-size='10' text-anchor='{'start' if last_step != first_step else 'middle'}' "
                 f"fill='#555'>step {first_step:g}</text>")
    if last_step != first_step:
        parts.append(f"<text x='{px(last_step):.1f}' y='{y1 + 14}' font-size='10' text-anchor='end' fill='#555'>{last_step:g}</text>")
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if math.isfinite(x) and math.isfinite(y):
            segments[-1].append((x, y))
        elif segments[-1]:
            segments.append([])
    for seg in segments:
        seg = _thin(seg, MAX_POINTS)
        if len(seg) > 1:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
            parts.append(f"<polyline fill='none' stroke='#4c78a8' stroke-width='1.5' points='{coords}'/>")
    dots = finite if len(finite) <= DOTS_UP_TO else [s[0] for s in segments if len(s) == 1]
    parts += [f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='2.5' fill='#4c78a8'/>" for x, y in dots]
    parts.append("</svg>")
    return "".join(parts)


def curves_html(train_dir: Path) -> str:
    """The "Training" section: per stage its name, the tiny mark, its final values and one chart per metric."""
    stages = read_stages(train_dir)
    if not stages:
        return f"<h2>Training</h2><p>No training logs in <code>{html.escape(str(train_dir))}</code>.</p>"
    parts = ["<h2>Training</h2>", (f"<p>Each training stage's logged values by step (<code>{html.escape(str(train_dir))}</code>: "
                                   "the losses averaged over <code>train.*.log_every</code> steps, the validation loss, learning "
                                   "rate and gradient norm); the title of each chart holds the last value.</p>")]
    for s in stages:
        steps = s.final.get("step")
        what = ", ".join(([f"{steps:g} steps"] if steps is not None else []) + (["tiny stand-in weights"] if s.tiny else []))
        parts.append(f"<h3>{html.escape(s.name)}" + (f" <small{' class=tiny-mark' if s.tiny else ''}>({what})</small>" if what else "")
                     + "</h3>")
        finals = [(k, v) for k, v in sorted(s.final.items(), key=lambda kv: _order(kv[0])) if k != "step"]
        if finals:
            parts.append("<p class='finals'>Final: " + " &middot; ".join(
                f"<span>{html.escape(k)}&nbsp;=&nbsp;{_fmt(v)}</span>" for k, v in finals) + "</p>")
        xs = [x for v in s.series.values() for x, _ in v if math.isfinite(x)]
        if xs:
            span = (min(xs), max(xs))
            parts.append("<div class='curves'>" + "".join(line_svg(k, v, label=f"{s.name} {k}", steps=span)
                                                          for k, v in s.series.items()) + "</div>")
        else:
            parts.append("<p>No step tables logged.</p>")
    return "\n".join(parts)
