"""Sections of the HTML data report beyond the per-dataset tables (``pipeline.report``, DESIGN 3.6).

* the splits table (``reports/select/select.json``: clips, hours, speakers per split);
* the data plots (``reports/plots/``, written by the stages that know them, see
  :mod:`pipeline.plots`) drawn as inline SVG horizontal bars: no JavaScript, no network, so the page
  renders offline and prints;
* the provenance of the weights (``weights/<profile>/manifest.json``: folder, repo and revision,
  licence, sha256, tiny or real).
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any, Sequence


def bars_svg(title: str, rows: Sequence[tuple[str, float]], unit: str = "", width: int = 520) -> str:
    """One horizontal bar per ``(label, value)`` from a zero line (left of the bars, or inside them when some
    value is negative), labelled with its value."""
    bar_h, label_w, top = 18, 170, 24
    height = top + bar_h * max(1, len(rows)) + 8
    vmin, vmax = min([0.0, *(v for _, v in rows)]), max([0.0, *(v for _, v in rows)])
    scale = (width - label_w - 70) / ((vmax - vmin) or 1.0)
    zero = label_w - vmin * scale
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='{html.escape(title)}'>",
             f"<text x='0' y='15' font-size='13' font-weight='bold'>{html.escape(title)}</text>"]
    if not rows:
        parts.append(f"<text x='0' y='{top + 13}' font-size='12' fill='#666'>none</text>")
    for i, (label, value) in enumerate(rows):
        y = top + i * bar_h
        w = abs(value) * scale
        parts.append(f"<text x='{label_w - 6}' y='{y + 13}' font-size='12' text-anchor='end'>{html.escape(str(label))[:28]}</text>"
                     f"<rect x='{min(zero, zero + value * scale):.1f}' y='{y + 3}' width='{w:.1f}' height='{bar_h - 6}' fill='#4c78a8'/>"
                     f"<text x='{zero + max(0.0, value) * scale + 4:.1f}' y='{y + 13}' font-size='11'>{value:g}{html.escape(unit)}</text>")
    if vmin < 0 and rows:
        parts.append(f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{top}' y2='{height - 8}' stroke='#333'/>")
    parts.append("</svg>")
    return "".join(parts)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plots_html(plots_dir: Path) -> str:
    """Every data plot under ``plots_dir`` (``reports/plots``) as SVG bars, grouped by stage."""
    out = []
    for folder in sorted(p for p in (plots_dir / "ingest").glob("*") if p.is_dir()) if (plots_dir / "ingest").is_dir() else []:
        if (folder / "durations.csv").is_file():
            rows = [(f"{float(r['seconds']):g}-{float(r['seconds']) + 1:g} s", float(r["clips"])) for r in _csv_rows(folder / "durations.csv")]
            out.append(bars_svg(f"{folder.name}: clips by duration", rows))
        if (folder / "drops.csv").is_file():
            out.append(bars_svg(f"{folder.name}: ingest drops by reason", [(r["reason"], float(r["count"])) for r in _csv_rows(folder / "drops.csv")]))
    sel = plots_dir / "select"
    if (sel / "hours.csv").is_file():
        out.append(bars_svg("hours per split", [(r["split"], float(r["hours"])) for r in _csv_rows(sel / "hours.csv")], " h"))
    if (sel / "drops.csv").is_file():
        out.append(bars_svg("select: clips dropped by reason", [(r["reason"], float(r["count"])) for r in _csv_rows(sel / "drops.csv")]))
    for path in sorted((sel / "scores").glob("*.csv")) if (sel / "scores").is_dir() else []:
        rows = _csv_rows(path)
        picks = [r for r in rows if r["quantile"] in ("0", "0.25", "0.5", "0.75", "1")]
        out.append(bars_svg(f"{path.stem} (quantiles)", [(f"q{float(r['quantile']):g}", float(r["value"])) for r in picks]))
    if not out:
        return ""
    return "<h2>Plots</h2><div class='plots'>" + "".join(f"<div class='plot'>{svg}</div>" for svg in out) + "</div>"


def splits_html(select_json: Path) -> str:
    """The splits table and select's drops, from ``reports/select/select.json``."""
    if not select_json.is_file():
        return ""
    r = json.loads(select_json.read_text())
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{s['clips']}</td><td>{s['hours']:.3f}</td><td>{s['speakers']}</td></tr>"
                   for name, s in r.get("splits", {}).items())
    drops = ", ".join(f"{html.escape(k)}: {v}" for k, v in r.get("dropped_by_reason", {}).items()) or "none"
    return ("<h2>Splits</h2><table><tr><th>split</th><th>clips</th><th>hours</th><th>speakers</th></tr>" + rows + "</table>"
            f"<p>Dropped by select: {drops}.</p>")


def provenance_html(manifests: Sequence[Path]) -> str:
    """A table of every model folder in the weights manifests: tiny or real, source, revision, licence, sha256."""
    rows = []
    for manifest in manifests:
        try:
            data: dict[str, Any] = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        for m in data.get("models", []):
            source = m.get("repo_id") or ("bundled" if m.get("bundled") else "-")
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                m.get("name"), "tiny stand-in" if m.get("tiny") else "real", source, m.get("revision") or "-", m.get("licence") or "-",
                (m.get("sha256") or "")[:16])) + "</tr>")
    if not rows:
        return ""
    return ("<h2>Weights</h2><table><tr><th>model</th><th>weights</th><th>source</th><th>revision</th><th>licence</th><th>sha256</th></tr>"
            + "".join(rows) + "</table>")
