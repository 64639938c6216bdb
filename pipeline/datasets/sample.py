"""``sample`` adapter: the embedded demo dataset written by ``python -m pipeline.demo_data``.

The videos are the ones named in ``<raw_dir>/sample.json``, in its order; each source carries
the clip's ``speaker`` (used by ``select`` for identity-disjoint splits), its ``purpose`` (what
ingest rule the clip exercises: clean, long, short, no_audio, corrupt, music, two_faces,
head_turn, vfr, offset) and the properties the generator intended (fps, sample_rate, yaw_deg...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets import DatasetError, SourceVideo

MANIFEST = "sample.json"


@dataclass(frozen=True)
class Options:
    pass


def list_sources(raw_dir: Path, options: Options) -> list[SourceVideo]:
    manifest = Path(raw_dir) / MANIFEST
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: not found; generate the sample dataset with `python -m pipeline.demo_data --out {raw_dir}`")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        clips = data["clips"]
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{manifest}: not a sample manifest ({type(e).__name__}: {e}); regenerate it with `python -m pipeline.demo_data`") from None
    out = []
    for i, clip in enumerate(clips):
        if not isinstance(clip, dict) or not isinstance(clip.get("file"), str):
            raise DatasetError(f"{manifest}: clips[{i}] has no 'file'")
        rel = clip["file"]
        path = Path(raw_dir) / rel
        if not path.is_file():
            raise DatasetError(f"{manifest}: clips[{i}] names {rel}, which is missing from {raw_dir}; regenerate the dataset")
        meta = {k: v for k, v in clip.items() if k != "file"}
        out.append(SourceVideo(path=path.resolve(), rel=Path(rel).as_posix(), meta=meta))
    return out
