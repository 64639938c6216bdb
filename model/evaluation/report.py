"""The evaluation's files: ``metrics.json`` (DVC metrics: small, flat, numbers only), ``per_clip.parquet``,
``table.md`` (paper Table 1's shape with the paper's HDTF and MEAD rows beside ours) and ``index.html``
(the table, a few generated videos side by side with their ground truth and the training curves, embedded:
it opens offline).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

#: Table 1 columns: (header, our metrics key, higher is better)
COLUMNS = (("PSNR", "psnr", True), ("SSIM", "ssim", True), ("LPIPS", "lpips", False), ("FID", "fid", False),
           ("FVD", "fvd", False), ("E-FID", "efid", False), ("F1", "au_f1", True), ("Sync", "sync_conf", True),
           ("CCC_V", "ccc_v", True), ("CCC_A", "ccc_a", True))
#: the paper's Table 1 (HDTF top, MEAD bottom), as printed
PAPER = {
    "HDTF": {"Hallo": (30.63, 0.71, 0.18, 28.91, 156.32, 1.38, 0.68, 7.58, 0.53, 0.56),
             "EchoMimic": (28.90, 0.51, 0.44, 71.33, 153.84, 1.32, 0.63, 6.20, 0.51, 0.49),
             "VExpress": (29.41, 0.61, 0.36, 58.63, 350.18, 1.85, 0.46, 8.07, 0.32, 0.30),
             "AniPortrait": (30.64, 0.66, 0.23, 42.38, 449.51, 1.97, 0.41, 3.15, 0.11, 0.12),
             "SynchroRaMa (paper)": (32.97, 0.73, 0.17, 27.67, 149.67, 1.24, 0.71, 7.03, 0.56, 0.58)},
    "MEAD": {"Hallo": (31.69, 0.86, 0.11, 31.30, 147.27, 1.41, 0.65, 6.25, 0.54, 0.51),
             "EchoMimic": (29.07, 0.68, 0.42, 63.25, 164.75, 1.50, 0.61, 5.98, 0.53, 0.50),
             "VExpress": (29.34, 0.65, 0.39, 61.48, 443.96, 2.31, 0.42, 7.25, 0.34, 0.25),
             "AniPortrait": (30.36, 0.80, 0.16, 51.40, 508.36, 2.87, 0.31, 2.06, 0.13, 0.11),
             "SynchroRaMa (paper)": (32.21, 0.86, 0.09, 28.47, 147.87, 1.36, 0.67, 6.84, 0.57, 0.54)},
}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    _atomic_write(path, (json.dumps(_finite(value), indent=2, sort_keys=True, default=str) + "\n").encode())


def _finite(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def flat_metrics(report: dict, tiny: bool) -> dict[str, float]:
    """``metrics.json``: every computed metric (an unavailable one is absent: its reason is in
    ``protocol.json`` and ``table.md``), the clip and frame counts, and ``tiny`` as 0/1."""
    out = {k: round(float(v), 6) for k, v in sorted(report["metrics"].items()) if math.isfinite(float(v))}
    out.update(clips=int(report["counts"]["videos"]), frames=int(report["counts"]["frames"]), tiny=int(tiny))
    return out


def write_per_clip(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = sorted({k for r in rows for k in r})
    table = pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]) if rows else pa.table({"clip": pa.array([], pa.string())})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _cell(value: float | None) -> str:
    return "—" if value is None else (f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}".rstrip("0").rstrip(".") if value else "0")


def table_markdown(report: dict, per_dataset: dict[str, dict], label: str, tiny: bool) -> str:
    """Paper Table 1's columns: the paper's rows per dataset, then ours per dataset of the split (and all of
    them together when there are several); unavailable metrics as —, with their reasons below."""
    header = "| Method | " + " | ".join(f"{h} {'↑' if up else '↓'}" for h, _, up in COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    lines = [f"# Evaluation: {label}", ""]
    if tiny:
        lines += ["**Tiny stand-in weights: these numbers test the code path and mean nothing about the method.**", ""]
    for name, rows in PAPER.items():
        lines += [f"## {name} (paper Table 1)", "", header, rule]
        lines += [f"| {method} | " + " | ".join(_cell(v) for v in values) + " |" for method, values in rows.items()]
        lines.append("")
    ours = dict(per_dataset)
    if len(per_dataset) > 1:
        ours["all"] = report
    lines += [f"## This run{' (tiny)' if tiny else ''}", "", header, rule]
    for name, r in ours.items():
        lines.append(f"| SynchroRaMa, this run: {name}{', tiny' if tiny else ''} | "
                     + " | ".join(_cell(r["metrics"].get(key)) for _, key, _ in COLUMNS) + " |")
    lines.append("")
    for name, r in ours.items():
        c = r["counts"]
        lines.append(f"- {name}: {c['videos']} clips, {c['frames']} frames at {r['size']}x{r['size']}, {r['fps']} fps; "
                     f"FVD clips {c['fvd_clips']}; frames with face landmarks {c['face_frames']}.")
        lines += [f"  - {m} unavailable: {why}" for m, why in r["unavailable"].items()]
    if report.get("tiny"):
        lines += ["", "Computed with tiny stand-in judges: " + ", ".join(report["tiny"]) + "."]
    return "\n".join(lines) + "\n"


STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:3px 7px;font-size:14px;"
    "text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}"
    "li.sub{margin-left:1.5em;list-style:circle}figure{margin:0 0 1.5em}"
    "video{width:100%;max-width:640px;image-rendering:pixelated;background:#000}"
    ".tiny{background:#fff3cd;padding:.6em;border:1px solid #e0c96b}"
    ".curves{display:flex;flex-wrap:wrap;gap:6px 14px}.finals{font-size:13px;color:#333}"
    ".finals span{white-space:nowrap}.tiny-mark{color:#a05a00}</style>"
)


def _inline(text: str) -> str:
    """Markdown's **bold** of a table.md line, the rest escaped."""
    return "".join(f"<b>{html.escape(part)}</b>" if i % 2 else html.escape(part) for i, part in enumerate(text.split("**")))


def markdown_html(table_md: str) -> str:
    """``table.md`` as HTML (its headings, pipe tables, bullet lists and paragraphs: what table_markdown writes)."""
    out: list[str] = []
    lines = table_md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= {"-", ":"} for c in cells):
                    rows.append(cells)
                i += 1
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")
            continue
        if line.startswith(("- ", "  - ")):
            items = []
            while i < len(lines) and lines[i].startswith(("- ", "  - ")):
                items.append(f"<li{' class=sub' if lines[i].startswith('  ') else ''}>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level + 1}>{_inline(line[level:].strip())}</h{level + 1}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def index_html(table_md: str, videos: list[tuple[str, Path]], tiny: bool, training: str = "") -> str:
    """A self-contained page: the table, the side-by-side videos (base64) and ``training`` (the curves'
    HTML, :func:`model.evaluation.curves.curves_html`)."""
    parts = ["<!doctype html><html lang='en'><meta charset='utf-8'><title>SynchroRaMa evaluation</title>", STYLE,
             "<h1>SynchroRaMa evaluation</h1>"]
    if tiny:
        parts.append("<p class='tiny'><b>Tiny stand-in weights</b>: the numbers, videos and curves test the code path only.</p>")
    parts.append(markdown_html(table_md))
    if videos:
        parts.append("<h2>Generated (left) and ground truth (right)</h2>")
    for name, path in videos:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><video controls loop preload='auto' src='data:video/mp4;base64,{data}'></video>"
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append(training)
    return "\n".join(parts) + "\n"


def summary_lines(report: dict, out: Path, split: str, width: int = 120) -> list[str]:
    """What the stage prints: the counts, every metric on a few wrapped lines (``*``: measured with a tiny
    stand-in judge), the unavailable ones with their reason, and where the table and the page are."""
    import textwrap

    from model.metrics.cli import METRICS, reported_keys

    c, tiny = report["counts"], set(report["tiny"])
    head = (f"evaluate ({split}): {c['videos']} clips, {c['frames']} frames at {report['size']}x{report['size']}"
            + ("; * = tiny stand-in judge, the number means nothing" if tiny else ""))
    judged = {k: m for m in METRICS for k in reported_keys(m)}
    values = [f"{k} {v:.4g}{'*' if judged.get(k) in tiny else ''}" for k, v in report["metrics"].items() if k in judged]
    lines = [head, *textwrap.wrap("  ".join(values), width)]
    lines += [f"{m}: unavailable ({why})" for m, why in report["unavailable"].items()]
    lines.append(f"table: {out / 'table.md'}, page: {out / 'index.html'}")
    return lines


#: the per-clip metrics the evaluation plot shows (``dvc plots show``), those measured
PLOT_COLUMNS = ("psnr", "ssim", "lpips", "sync_conf", "sync_dist", "sync_offset")


def write_plot_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``clip,<metric>...``: one row per test clip with its per-video metrics (a DVC plot; the columns are
    fixed so the plot's declaration in dvc.yaml holds: a metric not measured is an empty cell)."""
    columns = list(PLOT_COLUMNS)
    lines = [",".join(["clip", *columns])]
    lines += [",".join([str(r["clip"]), *("" if r.get(c) is None else f"{float(r[c]):.6g}" for c in columns)]) for r in rows]
    _atomic_write(path, ("\n".join(lines) + "\n").encode())
