"""The evaluation's files: ``metrics.json`` (DVC metrics: small, flat, numbers only), ``per_clip.parquet``,
``table.md`` (paper Table 1's shape with the paper's HDTF and MEAD rows beside ours) and ``index.html``
(the table and a few generated videos side by side with their ground truth, embedded: it opens offline).
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


def index_html(table_md: str, videos: list[tuple[str, Path]], tiny: bool) -> str:
    """A self-contained page: the table (as preformatted text) and the side-by-side videos (base64)."""
    parts = ["<!doctype html><meta charset='utf-8'><title>Evaluation</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:70em}pre{background:#f6f6f6;padding:1em;"
             "overflow-x:auto}figure{display:inline-block;margin:0 1em 1em 0}.tiny{color:#a00;font-weight:bold}</style>",
             "<h1>Evaluation</h1>"]
    if tiny:
        parts.append("<p class='tiny'>Tiny stand-in weights: the numbers and videos test the code path only.</p>")
    parts.append(f"<pre>{html.escape(table_md)}</pre><h2>Generated (left) and ground truth (right)</h2>")
    for name, path in videos:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<figure><video controls loop src='data:video/mp4;base64,{data}'></video>"
                     f"<figcaption>{html.escape(name)}</figcaption></figure>")
    return "\n".join(parts) + "\n"
