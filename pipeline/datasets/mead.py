"""``mead`` adapter: the MEAD dataset (wywu.github.io/projects/MEAD), per-speaker tarballs extracted.

Layout (``video.tar`` and ``audio.tar`` extracted in each speaker folder)::

    <raw_dir>/M003/video/front/angry/level_1/001.mp4     <speaker>/video/<view>/<emotion>/<level>/<NNN>.mp4
    <raw_dir>/M003/audio/angry/level_1/001.m4a           <speaker>/audio/<emotion>/<level>/<NNN>.m4a

Also accepted: the speaker folders one or more levels down (``<raw_dir>/MEAD/M003/...``), no
``video/`` level (``M003/front/angry/...``), a doubled one (``M003/video/video/front/...``) and a
speaker folder named after the tarball (``M003_video/video/front/...``, speaker ``M003``).

``meta``: ``speaker`` (``M003``; the identity ``select`` keeps in one split), ``view``,
``emotion``, ``level`` (int), ``utterance`` (int, from ``NNN``) and ``audio`` (the matching
``.m4a``/``.wav`` under ``<speaker>/audio/``, relative to raw_dir like ``SourceVideo.rel``; only
when it exists: the front-view videos carry sound too). A video whose path does not fit the layout
is skipped with a logged warning.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.datasets import DatasetError, SourceVideo, walk_videos

log = logging.getLogger(__name__)

VIEWS = ("front", "down", "left_30", "left_60", "right_30", "right_60", "top")
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
LEVELS = (1, 2, 3)  # neutral has level 1 only
AUDIO_SUFFIXES = (".m4a", ".wav")
LAYOUT = "<speaker>/video/<view>/<emotion>/level_<n>/<NNN>.mp4"
_LEVEL = re.compile(r"^level_?([0-9]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Options:
    views: tuple[str, ...] = ("front",)  # camera views to include
    emotions: tuple[str, ...] | None = None  # None: all
    levels: tuple[int, ...] | None = None  # intensity levels; None: all

    def __post_init__(self) -> None:
        _check("views", self.views, VIEWS)
        _check("emotions", self.emotions, EMOTIONS)
        _check("levels", self.levels, LEVELS)


def _check(name: str, values: tuple | None, allowed: tuple) -> None:
    if values is None:
        return
    bad = [repr(v) for v in values if v not in allowed] or ([] if values else ["an empty list"])
    if bad:
        raise DatasetError(f"mead option {name}: got {bad[0]}; allowed: {', '.join(map(str, allowed))}")


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    out = []
    for path in walk_videos(raw_dir):
        rel = PurePosixPath(path.relative_to(raw_dir).as_posix())
        parsed = parse_path(rel)
        if isinstance(parsed, str):
            log.warning("mead: skipping %s: %s (expected %s)", rel, parsed, LAYOUT)
            continue
        meta, speaker_dir = parsed
        if (
            meta["view"] not in options.views
            or (options.emotions is not None and meta["emotion"] not in options.emotions)
            or (options.levels is not None and meta["level"] not in options.levels)
        ):
            continue
        audio = _find_audio(raw_dir, speaker_dir, rel)
        if audio:
            meta["audio"] = audio
        out.append(SourceVideo(path=path, rel=rel.as_posix(), meta=meta))
    return sorted(out, key=lambda s: s.rel)


def parse_path(rel: PurePosixPath) -> tuple[dict[str, Any], str] | str:
    """``(meta, speaker folder)`` of one video path relative to raw_dir, or why it does not fit."""
    parts = rel.parts
    if len(parts) < 5:
        return "too few folders"
    view, emotion, level_dir, name = (p.lower() for p in parts[-4:])
    if view not in VIEWS:
        return f"unknown view {parts[-4]!r}"
    if emotion not in EMOTIONS:
        return f"unknown emotion {parts[-3]!r}"
    level = _LEVEL.match(level_dir)
    stem = PurePosixPath(name).stem
    if not level:
        return f"{parts[-2]!r} is not a level_<n> folder"
    if not re.fullmatch(r"[0-9]+", stem):
        return f"{parts[-1]!r} is not a numbered utterance"
    speaker_parts = list(parts[:-4])
    while speaker_parts and speaker_parts[-1].lower() == "video":
        speaker_parts.pop()
    if not speaker_parts:
        return "no speaker folder"
    speaker = re.sub(r"_video$", "", speaker_parts[-1], flags=re.IGNORECASE)
    meta = {"speaker": speaker, "view": view, "emotion": emotion, "level": int(level.group(1)), "utterance": int(stem)}
    return meta, "/".join(speaker_parts)


def _find_audio(raw_dir: Path, speaker_dir: str, rel: PurePosixPath) -> str | None:
    """``<speaker>/audio/<emotion>/<level>/<NNN>.m4a`` (or ``<speaker>_audio/audio/...``), if present."""
    roots = [speaker_dir]
    if re.search(r"_video$", speaker_dir, re.IGNORECASE):
        roots.append(speaker_dir[: -len("_video")] + "_audio")
    emotion, level, stem = rel.parts[-3], rel.parts[-2], rel.stem
    for root in roots:
        for suffix in AUDIO_SUFFIXES:
            audio = f"{root}/audio/{emotion}/{level}/{stem}{suffix}"
            if (raw_dir / audio).is_file():
                return audio
    return None
