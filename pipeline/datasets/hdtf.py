"""``hdtf`` adapter: the HDTF dataset (github.com/MRzzm/HDTF), as downloaded and cut.

HDTF publishes ``<CAT>_video_url.txt``, ``<CAT>_annotion_time.txt`` (sic) and ``<CAT>_crop_wh.txt``
for three categories, ``RD`` (radio), ``WDA`` and ``WRA`` (White House Democratic/Republican
addresses). A video name may end in a digit that numbers one person's videos (``AmyKlobuchar0``,
``AmyKlobuchar1``). Accepted layouts, flat or in any subfolders::

    <raw_dir>/WDA_KatieHill_000.mp4           clip <NNN> of video KatieHill (HDTF's download.py)
    <raw_dir>/RD_Radio11_1.mp4                clip 1 of video Radio11
    <raw_dir>/_videos_raw/WRA_AdamKinzinger0.mp4   a full downloaded video (no clip index)
    <raw_dir>/WDA/KatieHill_0.mp4             category from a folder named RD/WDA/WRA
    <raw_dir>/WDA_annotion_time.txt           annotation files, anywhere under raw_dir

``meta``: ``category`` (RD|WDA|WRA), ``video`` (the HDTF video name, as in the annotation files),
``person`` (``video`` without its trailing digits for WDA/WRA; RD names say nothing about who
speaks, so each RD video is its own person), ``speaker`` (``<category>_<person>``, e.g.
``WDA_AmyKlobuchar``: the identity ``select`` keeps in one split), ``layout`` (``clip`` or
``full``) and ``clip`` (int, clips only).

A full video whose clips are also present is left out (the clips are the same material). With
``use_annotations: true`` a full video gets ``meta["segments"] = [[start_s, end_s], ...]`` from
its annotation line, in file order (segment i is HDTF's clip i), so ingest may cut only the
annotated talking-face ranges. A file name that fits no layout is skipped with a logged warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.datasets import DatasetError, SourceVideo, walk_videos

log = logging.getLogger(__name__)

CATEGORIES = ("RD", "WDA", "WRA")
_PREFIXED = re.compile(r"^(RD|WDA|WRA)_([^_]+?)(?:_([0-9]+))?$", re.IGNORECASE)
_BARE = re.compile(r"^([^_]+?)(?:_([0-9]+))?$")
_ANNOTATION_FILE = re.compile(r"^(RD|WDA|WRA)_annot(?:at)?ion_time\.txt$", re.IGNORECASE)


@dataclass(frozen=True)
class Options:
    categories: tuple[str, ...] = CATEGORIES  # which HDTF categories to include
    use_annotations: bool = False  # full videos: meta["segments"] from *_annotion_time.txt

    def __post_init__(self) -> None:
        bad = [repr(c) for c in self.categories if c not in CATEGORIES] or ([] if self.categories else ["(none)"])
        if bad:
            raise DatasetError(f"hdtf option categories: got {bad[0]}; allowed: {', '.join(CATEGORIES)}")


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    parsed = []
    for path in walk_videos(raw_dir):
        rel = path.relative_to(raw_dir).as_posix()
        meta = parse_name(path.relative_to(raw_dir))
        if meta is None:
            log.warning("hdtf: skipping %s: the name fits no HDTF layout (<RD|WDA|WRA>_<Video>[_<NNN>].mp4)", rel)
        elif meta["category"] in options.categories:
            parsed.append(SourceVideo(path=path, rel=rel, meta=meta))
    cut = {(s.meta["category"], s.meta["video"]) for s in parsed if s.meta["layout"] == "clip"}
    out = []
    for s in parsed:
        if s.meta["layout"] == "full" and (s.meta["category"], s.meta["video"]) in cut:
            log.info("hdtf: skipping full video %s: its clips are present", s.rel)
            continue
        out.append(s)
    if options.use_annotations and any(s.meta["layout"] == "full" for s in out):
        segments = read_annotations(raw_dir)
        for s in out:
            if s.meta["layout"] != "full":
                continue
            found = segments.get((s.meta["category"], s.meta["video"]))
            if found:
                s.meta["segments"] = found
            else:
                log.warning("hdtf: no annotated time ranges for %s: listed without segments", s.rel)
    return sorted(out, key=lambda s: s.rel)


def parse_name(rel: Path) -> dict[str, Any] | None:
    """The metadata of one video path (relative to raw_dir), or None when it fits no layout."""
    m = _PREFIXED.match(rel.stem)
    if m:
        category, video, clip = m.group(1).upper(), m.group(2), m.group(3)
    else:
        folders = [p.upper() for p in rel.parts[:-1] if p.upper() in CATEGORIES]
        m = _BARE.match(rel.stem)
        if not folders or not m:
            return None
        category, video, clip = folders[-1], m.group(1), m.group(2)
    person = video if category == "RD" else (re.sub(r"[0-9]+$", "", video) or video)
    meta: dict[str, Any] = {
        "speaker": f"{category}_{person}",
        "category": category,
        "person": person,
        "video": video,
        "layout": "full" if clip is None else "clip",
    }
    if clip is not None:
        meta["clip"] = int(clip)
    return meta


def read_annotations(raw_dir: Path) -> dict[tuple[str, str], list[list[float]]]:
    """``(category, video) -> [[start_s, end_s], ...]`` from every annotation file under raw_dir.

    A line is ``<Video>.mp4 MM:SS-MM:SS [MM:SS-MM:SS ...]``; a range that does not parse is
    skipped with a warning. Where two files list one video, the first (sorted by path) wins.
    """
    files = sorted(p for p in raw_dir.rglob("*.txt") if _ANNOTATION_FILE.match(p.name) and p.is_file())
    if not files:
        log.warning("hdtf: use_annotations is on but no <RD|WDA|WRA>_annotion_time.txt is under %s", raw_dir)
    out: dict[tuple[str, str], list[list[float]]] = {}
    for f in files:
        category = _ANNOTATION_FILE.match(f.name).group(1).upper()  # type: ignore[union-attr]
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            ranges = []
            for token in tokens[1:]:
                try:
                    start, end = (_seconds(t) for t in token.split("-"))
                except ValueError:
                    log.warning("hdtf: %s line %d: ignoring time range %r", f, n, token)
                    continue
                if end <= start:
                    log.warning("hdtf: %s line %d: ignoring empty time range %r", f, n, token)
                    continue
                ranges.append([start, end])
            key = (category, Path(tokens[0]).stem)
            if ranges and key not in out:
                out[key] = ranges
    return out


def _seconds(text: str) -> float:
    """``"01:30"`` -> 90.0; also ``"1:02:03"`` and ``"75.5"``."""
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total
