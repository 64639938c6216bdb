"""``vfhq`` adapter: VFHQ (Xie et al. 2022) from its published meta-info files over the downloaded videos.

VFHQ is distributed as ``meta_info`` (one text file per clip) plus the YouTube ids of the source
videos, which the user downloads. The layout is the one VFHQ's processing script reads (the script
and ``meta_info.zip`` are linked from https://liangbinxie.github.io/projects/vfhq/; the copies of it
this module follows: ``extract_clip_cropped_face`` in github.com/jinwonkim93/vfhq_processing
``extract_high_quality_faces_with_meta.py`` and github.com/yunyu/vfhq-downloader
``vfhq_dl/parse_meta_info.py``, which read ``meta_info/<train|test>/<clip name>.txt``)::

    <raw_dir>/meta_info/{train,test}/Clip+<video id>+P<person>+C<clip>+F<first>-<last>.txt
    <raw_dir>/<...>/<video id>.mp4|.webm|.mkv|...       the downloaded source video (any folder)

A meta file's name carries the video id (YouTube ids may contain ``-`` and ``_``, never ``+``),
the person id within the video, the clip index and the frame range; its header lines give
``Video ID:``, ``H:``, ``W:`` (the annotated frame size), ``FPS:``, ``PID:``, ``CLIP:`` and ``CROP: x0
y0 x1 y1`` (the clip's face crop box: those scripts read only these lines); the per-frame face boxes
follow, read here as any line that starts with a frame number and four box numbers (``<frame> x0 y0
x1 y1 [landmarks ...]``; a column-title line is skipped). VFHQ's script cuts frames ``first + 1`` to
``last - 1`` (its "NOTE": the name's bounds are exclusive), so the clip's time range is
``[(first + 1) / FPS, last / FPS)`` seconds of the source: one ``SourceVideo`` per meta file with that
``range``, which ingest cuts by seeking.

``meta``: ``speaker`` (``<video id>_P<person>``: VFHQ numbers people within a video and does not
link them across videos), ``video_id``, ``person``, ``clip``, ``first_frame``/``last_frame`` (as in
the name), ``fps``, ``annotated_size`` [W, H], ``crop`` [x0, y0, x1, y1], ``split`` (the meta folder:
train/test) and ``face_boxes`` (count, median box and median side in annotated pixels; every box with
``keep_boxes: true``). A clip whose video is not downloaded is listed at the expected path, so ingest
rejects it as ``missing_file``; a meta file that does not parse is skipped with a logged warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.datasets import DatasetError, SourceVideo, walk_videos

log = logging.getLogger(__name__)

_NAME = re.compile(r"^Clip\+(?P<video>[^+]+)\+P(?P<pid>[0-9]+)\+C(?P<clip>[0-9]+)\+F(?P<first>[0-9]+)-(?P<last>[0-9]+)$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True)
class Options:
    meta_dir: str = "meta_info"  # the unzipped meta_info folder; relative paths: to raw_dir
    splits: Optional[list[str]] = None  # meta_info subfolders to take (train, test); None: all
    keep_boxes: bool = False  # meta["face_boxes"]["boxes"]: every per-frame box (large for long clips)
    video_ext: str = ".mp4"  # the file name expected for a video that is not downloaded (missing_file reject)


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    meta_dir = Path(options.meta_dir) if Path(options.meta_dir).is_absolute() else raw_dir / options.meta_dir
    if not meta_dir.is_dir():
        raise DatasetError(f"{meta_dir}: VFHQ meta_info folder not found (unzip meta_info.zip there or set "
                           f"datasets.<name>.meta_dir)")
    videos = {}
    for p in walk_videos(raw_dir):
        if not p.is_relative_to(meta_dir):
            videos.setdefault(p.stem, p)  # first in path order wins
    out = []
    for meta_file in sorted(meta_dir.rglob("Clip+*.txt")):
        split = meta_file.parent.relative_to(meta_dir).as_posix()
        if options.splits is not None and split not in options.splits:
            continue
        try:
            meta = parse_meta(meta_file, options.keep_boxes)
        except ValueError as e:
            log.warning("vfhq: skipping %s: %s", meta_file, e)
            continue
        meta["split"] = "" if split == "." else split
        path = videos.get(meta["video_id"], raw_dir / f"{meta['video_id']}{options.video_ext}")
        span = ((meta["first_frame"] + 1) / meta["fps"], meta["last_frame"] / meta["fps"])
        out.append(SourceVideo(path=path, rel=path.relative_to(raw_dir).as_posix(), meta=meta, range=span))
    return out


def parse_meta(path: Path, keep_boxes: bool = False) -> dict[str, Any]:
    """The metadata of one VFHQ meta-info file (``ValueError`` naming what does not fit)."""
    m = _NAME.match(path.stem)
    if not m:
        raise ValueError("the name is not Clip+<video id>+P<n>+C<n>+F<first>-<last>.txt")
    header: dict[str, str] = {}
    boxes = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" in line and not line[0].isdigit():
            k, v = line.split(":", 1)
            header[k.strip().upper()] = v.strip()
            continue
        tokens = line.split()
        if len(tokens) >= 5 and tokens[0].isdigit() and all(_NUMBER.match(t) for t in tokens[1:5]):
            boxes.append([int(tokens[0])] + [float(t) for t in tokens[1:5]])
    try:
        fps = float(header["FPS"])
        width, height = int(header["W"]), int(header["H"])
    except (KeyError, ValueError):
        raise ValueError("the header lacks FPS, H or W") from None
    if fps <= 0:
        raise ValueError(f"FPS {fps} is not positive")
    first, last = int(m.group("first")), int(m.group("last"))
    if last - first < 2:
        raise ValueError(f"frame range F{first}-{last} holds no frame")
    if header.get("VIDEO ID") and header["VIDEO ID"] != m.group("video"):
        raise ValueError(f"Video ID {header['VIDEO ID']!r} differs from the file name's {m.group('video')!r}")
    crop = [int(float(t)) for t in header.get("CROP", "").split()[-4:]] if header.get("CROP") else None
    meta: dict[str, Any] = {
        "speaker": f"{m.group('video')}_P{int(m.group('pid'))}",
        "video_id": m.group("video"), "person": int(m.group("pid")), "clip": int(m.group("clip")),
        "first_frame": first, "last_frame": last, "fps": fps, "annotated_size": [width, height], "crop": crop,
    }
    if boxes:
        arr = np.asarray(boxes, dtype=np.float64)
        sides = np.minimum(arr[:, 3] - arr[:, 1], arr[:, 4] - arr[:, 2])
        meta["face_boxes"] = {"count": len(boxes), "median_box": [round(float(v), 1) for v in np.median(arr[:, 1:5], axis=0)],
                              "median_side": round(float(np.median(sides)), 1)}
        if keep_boxes:
            meta["face_boxes"]["boxes"] = [[int(b[0])] + [round(v, 1) for v in b[1:]] for b in boxes]
    return meta

