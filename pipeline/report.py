"""``report``: one page a person can read about the data (DESIGN 3.6).

    python -m pipeline.report

Reads every ``shards/clips/<dataset>/`` (manifest, rejects, a few clips), the stage details under
``reports/``, the plot files under ``reports/plots/`` and the weights manifest, and writes
``reports/data.md`` (tables: clips, hours, drops by reason, the rejects with their messages) and
``reports/index.html``: per-dataset summary, the splits table, the data plots as inline SVG bar
charts, a strip of kept clips and a strip of rejected ones (a frame of the source at the rejected
span, with its reason), and the weights' provenance. Images are embedded, so the page is one
self-contained file that renders offline. Results computed with tiny stand-in weights are marked.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from core import cli, params
from core.media import run_media
from core.shards import MANIFEST, REJECTS, ShardLayout, ShardParams, read_manifest, read_tar
from pipeline import report_sections

log = logging.getLogger("pipeline.report")


@dataclass(frozen=True)
class ReportParams:
    """``report`` section of params.yaml."""

    frames_per_dataset: int = 4  # example clips shown per dataset (one frame each, mid-clip)
    rejected_per_dataset: int = 6  # rejected sources/clips shown per dataset (a frame of the source, with the reason)
    max_reject_rows: int = 50  # rejects listed per dataset (all are in rejects.parquet)


def middle_frame_jpeg(mp4: bytes, width: int = 256) -> bytes:
    """One JPEG of the middle of an mp4 given as bytes (decoded from a pipe: needs +faststart)."""
    proc = run_media(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", "pipe:0", "-vf",
         f"select=eq(n\\,12),scale={width}:-2", "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", "pipe:1"],
        "an example clip", input=mp4,
    )
    return proc.stdout if proc.returncode == 0 else b""


def source_frame_jpeg(path: Path, at_s: float, width: int = 192) -> bytes:
    """One JPEG of a raw source at ``at_s`` seconds (b"" when it cannot be decoded: a corrupt file)."""
    proc = run_media(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-ss", f"{max(at_s, 0.0):.3f}", "-i", str(path), "-map", "0:v:0?",
         "-vf", f"scale={width}:-2", "-frames:v", "1", "-f", "image2", "-c:v", "mjpeg", "pipe:1"],
        f"a rejected source {path.name}",
    )
    return proc.stdout if proc.returncode == 0 else b""


def rejected_frames(raw_dir: Path | None, rejects: list[dict[str, Any]], n: int) -> list[tuple[dict[str, Any], bytes]]:
    """Up to ``n`` rejects, one per reason first, each with a frame of its source (mid-clip for a clip
    key ``..__<start_ms>``, else 1 s in)."""
    picked: list[dict[str, Any]] = []
    for r in sorted(rejects, key=lambda r: (r["reason"], r["source"], r["key"] or "")):
        if len(picked) < n and r["reason"] not in {p["reason"] for p in picked}:
            picked.append(r)
    picked += [r for r in rejects if r not in picked][: max(0, n - len(picked))]
    out = []
    for r in picked:
        start = int(r["key"].rsplit("__", 1)[-1]) / 1000 if r["key"] and r["key"].rsplit("__", 1)[-1].isdigit() else 0.0
        path = (raw_dir / r["source"]) if raw_dir is not None else None
        jpg = source_frame_jpeg(path, start + 1.0) if path is not None and path.is_file() else b""
        out.append((r, jpg))
    return out


def example_frames(folder: Path, keys: list[str]) -> dict[str, bytes]:
    want, out = set(keys), {}
    for tar_path in sorted(folder.glob("*.tar")):
        for sample in read_tar(tar_path, keep=lambda ext: ext == "mp4"):
            if sample["__key__"] in want and "mp4" in sample:
                out[sample["__key__"]] = middle_frame_jpeg(sample["mp4"])
        if len(out) == len(want):
            break
    return out


def dataset_summary(layout: ShardLayout, dataset: str, rp: ReportParams, raw_dir: Path | None = None) -> dict[str, Any]:
    folder = layout.clips(dataset)
    manifest = pq.read_table(folder / MANIFEST).to_pylist() if (folder / MANIFEST).exists() else []
    rejects = pq.read_table(folder / REJECTS).to_pylist() if (folder / REJECTS).exists() else []
    n = max(rp.frames_per_dataset, 0)
    step = max(1, len(manifest) // n) if n and manifest else 1
    picks = [r["key"] for r in manifest[::step][:n]]
    return {
        "name": folder.name,
        "clips": len(manifest),
        "hours": sum(r.get("duration", 0.0) for r in manifest) / 3600,
        "sources": len({r["source"] for r in manifest} | {r["source"] for r in rejects}),
        "speakers": len({r.get("speaker") for r in manifest}),
        "reasons": Counter(r["reason"] for r in rejects),
        "rejects": rejects,
        "frames": example_frames(folder, picks),
        "rejected": rejected_frames(raw_dir, rejects, max(rp.rejected_per_dataset, 0)),
        "manifest": {r["key"]: r for r in manifest},
        "features": feature_summary(layout, dataset),
    }


def feature_summary(layout: ShardLayout, dataset: str) -> dict[str, dict[str, Any]]:
    """Per feature sidecar of a dataset: clip counts by status and the mean of each score column."""
    out = {}
    for feature, side in layout.sidecars(dataset).items():
        rows = read_manifest(side).to_pylist()
        scores = sorted({k for r in rows for k in r if k.startswith("score_")})
        means = {k[len("score_"):]: sum(r[k] for r in rows if r.get(k) is not None) / max(1, sum(r.get(k) is not None for r in rows)) for k in scores}
        out[feature] = {"status": Counter(str(r.get("status")) for r in rows), "means": means}
    return out


def _feature_lines(s: dict[str, Any]) -> list[str]:
    lines = []
    for name, f in s.get("features", {}).items():
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(f["status"].items()))
        means = "; ".join(f"mean {k} {v:.3f}" for k, v in f["means"].items())
        lines.append(f"{name}: {counts}" + (f" ({means})" if means else ""))
    return lines


def _tiny_models(root: Path) -> list[str]:
    names = []
    for manifest in sorted((root / "weights").glob("*/manifest.json")):
        try:
            names += [m["name"] for m in json.loads(manifest.read_text()).get("models", []) if m.get("tiny")]
        except ValueError:
            continue
    return names


def render(summaries: list[dict[str, Any]], metrics: dict[str, Any], tiny: list[str], rp: ReportParams) -> tuple[str, str]:
    """(markdown, html) of the data report."""
    md = ["# SynchroRaMa data report", "",
          ("Evaluation report: [eval/index.html](eval/index.html) (paper Table 1, generated videos, training curves; "
           "stage `evaluate`)."), ""]
    if tiny:
        md += [f"> **Tiny stand-in weights** ({', '.join(tiny)}): model outputs on this page prove the machinery, not quality.", ""]
    md += ["| dataset | sources | clips | hours | speakers | dropped (by reason) |", "|---|---|---|---|---|---|"]
    for s in summaries:
        reasons = ", ".join(f"{r}: {c}" for r, c in sorted(s["reasons"].items())) or "none"
        md.append(f"| {s['name']} | {s['sources']} | {s['clips']} | {s['hours']:.3f} | {s['speakers']} | {reasons} |")
    for s in summaries:
        md += ["", f"## {s['name']}", ""]
        m = metrics.get(s["name"])
        if m:
            steps = ", ".join(f"{k} {v.get('in')} -> {v.get('out')}" for k, v in (m.get("steps") or {}).items())
            md.append(f"ingest: {m.get('kept')} kept, {m.get('dropped')} dropped ({steps or 'no steps'})")
            md.append("")
        if s["rejects"]:
            md += ["| source | clip | step | reason | message |", "|---|---|---|---|---|"]
            for r in s["rejects"][: rp.max_reject_rows]:
                msg = r["message"].replace("|", "\\|").replace("\n", " ")[:160]
                md.append(f"| {r['source']} | {r['key'] or '-'} | {r['step']} | `{r['reason']}` | {msg} |")
            if len(s["rejects"]) > rp.max_reject_rows:
                md.append(f"| ... {len(s['rejects']) - rp.max_reject_rows} more in rejects.parquet | | | | |")
        if s.get("features"):
            md += ["", "Features (clips by status):", ""] + [f"- {line}" for line in _feature_lines(s)]
        md += ["", "Example frames: " + ", ".join(f"`{k}`" for k in s["frames"]) if s["frames"] else "No clips."]

    h = ["<!doctype html><html><head><meta charset='utf-8'><title>SynchroRaMa data report</title>",
         "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left}.tiny{background:#fff3cd;padding:.6em;border:1px solid #e0c96b}"
         "figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:12px;max-width:256px;word-break:break-all}code{font-size:13px}"
         "figure.rejected img{outline:3px solid #d62728}.noframe{width:192px;height:108px;background:#eee;color:#888;text-align:center;line-height:108px}"
         ".plot{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}</style></head><body>",
         "<h1>SynchroRaMa data report</h1>",
         # a link only: the evaluation is written by the evaluate stage, after training (this page never waits for it)
         ("<p class='eval'>The evaluation report, <a href='eval/index.html'>eval/index.html</a>, holds paper Table 1 on the "
          "test split, generated videos beside their ground truth and the training curves (the <code>evaluate</code> stage "
          "writes it after training).</p>")]
    if tiny:
        h.append(f"<p class='tiny'><b>Tiny stand-in weights</b> ({html.escape(', '.join(tiny))}): model outputs on this page prove the machinery, not quality.</p>")
    h.append("<table><tr><th>dataset</th><th>sources</th><th>clips</th><th>hours</th><th>speakers</th><th>dropped (by reason)</th></tr>")
    for s in summaries:
        reasons = ", ".join(f"{html.escape(r)}: {c}" for r, c in sorted(s["reasons"].items())) or "none"
        h.append(f"<tr><td>{html.escape(s['name'])}</td><td>{s['sources']}</td><td>{s['clips']}</td><td>{s['hours']:.3f}</td><td>{s['speakers']}</td><td>{reasons}</td></tr>")
    h.append("</table>")
    for s in summaries:
        h.append(f"<h2>{html.escape(s['name'])}</h2>")
        if s.get("features"):
            h.append("<p>Features (clips by status):</p><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in _feature_lines(s)) + "</ul>")
        for key, jpg in s["frames"].items():
            row = s["manifest"].get(key, {})
            cap = f"{key} ({row.get('duration', 0):.2f} s, {row.get('width')}x{row.get('height')})"
            img = f"<img src='data:image/jpeg;base64,{base64.b64encode(jpg).decode()}' width='256'>" if jpg else "(no frame)"
            h.append(f"<figure>{img}<figcaption>{html.escape(cap)}</figcaption></figure>")
        if s.get("rejected"):
            h.append("<p>Rejected (a frame of the source, with the reason):</p><div>")
            for r, jpg in s["rejected"]:
                img = f"<img src='data:image/jpeg;base64,{base64.b64encode(jpg).decode()}' width='192'>" if jpg else "<div class='noframe'>no frame</div>"
                cap = f"{r['reason']}: {r['key'] or r['source']} ({r['step']})"
                h.append(f"<figure class='rejected'>{img}<figcaption>{html.escape(cap)}</figcaption></figure>")
            h.append("</div>")
        if s["rejects"]:
            h.append("<table><tr><th>source</th><th>clip</th><th>step</th><th>reason</th><th>message</th></tr>")
            for r in s["rejects"][: rp.max_reject_rows]:
                h.append("<tr>" + "".join(f"<td>{html.escape(str(r[c] or '-'))[:300]}</td>" for c in ("source", "key", "step")) +
                         f"<td><code>{html.escape(r['reason'])}</code></td><td>{html.escape(r['message'])[:300]}</td></tr>")
            h.append("</table>")
    h.append("</body></html>")
    return "\n".join(md) + "\n", "\n".join(h) + "\n"


def _select_markdown(path: Path) -> str:
    """The ``select`` section of data.md: clips, hours and speakers per split, drops by reason."""
    if not path.is_file():
        return ""
    r = json.loads(path.read_text())
    md = ["", "## Splits (select)", "", "| split | clips | hours | speakers |", "|---|---|---|---|"]
    md += [f"| {name} | {s['clips']} | {s['hours']:.3f} | {s['speakers']} |" for name, s in r.get("splits", {}).items()]
    reasons = ", ".join(f"{k}: {v}" for k, v in r.get("dropped_by_reason", {}).items()) or "none"
    md += ["", f"Dropped by select: {reasons}."]
    if r.get("unchecked"):
        md.append(f"Thresholds without scores (not applied): {', '.join(r['unchecked'])}.")
    return "\n".join(md) + "\n"


def run(root: Path = Path("."), params_file: Path | None = None) -> dict[str, Any]:
    data = params.read_yaml(params_file)
    where = str(params_file or params.params_path())
    rp = params.load(ReportParams, "report", where, data)
    layout = ShardLayout.from_params(params.load(ShardParams, "shards", where, data), root)
    raw_dirs = {name: root / str(entry["raw_dir"]) for name, entry in (data.get("datasets") or {}).items()
                if isinstance(entry, dict) and entry.get("raw_dir")}
    summaries = [dataset_summary(layout, d, rp, raw_dirs.get(d)) for d in layout.datasets()]
    metrics = {}
    for f in sorted((root / "reports" / "ingest").glob("*.json")):
        metrics[f.stem] = json.loads(f.read_text())
    md, page = render(summaries, metrics, _tiny_models(root), rp)
    # the splits right under the summary table; the plots and the weights' provenance at the end
    page = page.replace("</table>", "</table>" + report_sections.splits_html(root / "reports" / "select" / "select.json"), 1)
    extra = report_sections.plots_html(root / "reports" / "plots") + report_sections.provenance_html(sorted((root / "weights").glob("*/manifest.json")))
    page = page.replace("</body></html>", extra + "\n</body></html>")
    md += _select_markdown(root / "reports" / "select" / "select.json")
    for name, text in (("data.md", md), ("index.html", page)):
        out = root / "reports" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    return {"datasets": [s["name"] for s in summaries]}


def main(argv: list[str] | None = None) -> int:
    def body(args):
        run(params_file=args.params)
        log.info("wrote reports/data.md and reports/index.html")

    return cli.run(cli.parser("python -m pipeline.report", __doc__), argv, body)


if __name__ == "__main__":
    sys.exit(main())
