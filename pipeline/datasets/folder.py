"""``folder`` adapter: any directory tree of videos (in-the-wild clips, a quick experiment).

Every video file under ``raw_dir`` is one source. With ``speaker_from_dir: true`` the first
directory level names the speaker (``<raw_dir>/<speaker>/.../clip.mp4``), so ``select`` keeps
that person's clips in one split; otherwise the source video itself is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets import VIDEO_SUFFIXES, SourceVideo, walk_videos


@dataclass(frozen=True)
class Options:
    suffixes: tuple[str, ...] = VIDEO_SUFFIXES
    speaker_from_dir: bool = False


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    out = []
    for path in walk_videos(raw_dir, tuple(s.lower() for s in options.suffixes)):
        rel = path.relative_to(raw_dir).as_posix()
        meta = {}
        if options.speaker_from_dir and "/" in rel:
            meta["speaker"] = rel.split("/", 1)[0]
        out.append(SourceVideo(path=path, rel=rel, meta=meta))
    return out
