"""The demo dataset: what it contains, and writing it.

Every clip has a purpose (``clean``, ``long``, ``short``, ``no_audio``, ``corrupt``, ``music``,
``two_faces``, ``head_turn``, ``vfr``, ``offset``) so that each ingest rule meets a case; the
manifest ``sample.json`` says what each one is for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from core import params as params_mod
from pipeline.demo_data.render import Renderer, render_talking_clip

VERSION = 1
MANIFEST = "sample.json"
GENERATOR = "pipeline.sample"  # the manifest's "generator" (kept from the module's old name: the manifest bytes stay the same)


@dataclass(frozen=True)
class SampleParams:
    """The ``sample`` section of params.yaml."""

    seed: int = 0  # every random choice (speech, blinks, music, VFR jitter) derives from it
    size: int = 384  # frame height in pixels (single-face clips are square)
    crf: int = 20  # libx264 quality
    long_seconds: float = 26.0  # the clip that ingest must split (> 20 s)


@dataclass(frozen=True)
class ClipSpec:
    """One planned clip (a row of :func:`clip_plan`)."""

    file: str
    purpose: str
    speaker: str
    seconds: float
    fps: str = "25"
    sample_rate: int = 44100
    yaw_deg: float = 0.0
    music: bool = False
    audio: bool = True
    faces: int = 1
    audio_offset: float = 0.0
    vfr: bool = False
    truncate: float = 0.0  # keep only this fraction of the bytes (a broken download)


def clip_plan(p: SampleParams) -> list[ClipSpec]:
    """What the dataset contains, each clip on purpose."""
    return [
        ClipSpec("clean_24fps_44k.mp4", "clean", "spk_a", 6.0, "24", 44100),
        ClipSpec("clean_2997fps_48k.mp4", "clean", "spk_b", 5.0, "30000/1001", 48000),
        ClipSpec("clean_30fps_44k.mp4", "clean", "spk_c", 5.0, "30", 44100),
        ClipSpec("clean_50fps_48k.mp4", "clean", "spk_a", 4.0, "50", 48000),
        ClipSpec(f"long_{format(p.long_seconds, 'g').replace('.', 'p')}s.mp4", "long", "spk_b", p.long_seconds, "25", 44100),
        ClipSpec("short_2s.mp4", "short", "spk_c", 2.0, "25", 44100),
        ClipSpec("no_audio.mp4", "no_audio", "spk_a", 4.0, "25", audio=False),
        ClipSpec("corrupt_truncated.mp4", "corrupt", "spk_b", 4.0, "25", 44100, truncate=0.4),
        ClipSpec("music_under_speech.mp4", "music", "spk_c", 6.0, "25", 44100, music=True),
        ClipSpec("two_faces.mp4", "two_faces", "spk_a", 5.0, "25", 44100, faces=2),
        ClipSpec("head_turn_60.mp4", "head_turn", "spk_b", 6.0, "25", 48000, yaw_deg=60.0),
        ClipSpec("vfr_jitter.mkv", "vfr", "spk_c", 5.0, "25", 48000, vfr=True),
        ClipSpec("audio_offset_500ms.mp4", "offset", "spk_a", 5.0, "25", 44100, audio_offset=0.5),
    ]


def _clip_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] % (2**31))


def build_clip(spec: ClipSpec, index: int, out_dir: Path, p: SampleParams, renderer: Renderer) -> dict:
    """Render one planned clip into ``out_dir``; returns its sample.json entry."""
    target = out_dir / spec.file
    path = target.with_name(f".full-{spec.file}") if spec.truncate else target
    info = render_talking_clip(
        path,
        spec.seconds,
        spec.fps,
        sample_rate=spec.sample_rate,
        yaw_deg=spec.yaw_deg,
        seed=_clip_seed(p.seed, index),
        size=p.size,
        music=spec.music,
        audio=spec.audio,
        faces=spec.faces,
        speaker=spec.speaker,
        audio_offset=spec.audio_offset,
        vfr=spec.vfr,
        crf=p.crf,
        renderer=renderer,
    )
    if spec.truncate:
        data = path.read_bytes()
        target.write_bytes(data[: int(len(data) * spec.truncate)])
        path.unlink()
        info["file"] = spec.file
        info["truncated_fraction"] = spec.truncate
    return {"file": info.pop("file"), "speaker": info.pop("speaker"), "purpose": spec.purpose, **info}


def generate(out: Path | str, p: SampleParams = SampleParams(), jobs: int = 1, renderer: Renderer | None = None) -> dict:
    """Build the dataset into ``out`` atomically (temp folder beside it, then swap).

    ``renderer`` (default: one made here, which detects the face) goes to every clip; worker
    processes (``jobs > 1``) receive its face with each clip and rebuild the rigs they need.
    """
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        plan = clip_plan(p)
        if renderer is None:
            renderer = Renderer()  # detect the face once
        if jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Longest clips first so that the workers finish together; results in plan order.
            order = sorted(range(len(plan)), key=lambda i: -plan[i].seconds * float(Fraction(plan[i].fps)) * plan[i].faces)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                futures = {i: pool.submit(build_clip, plan[i], i, tmp, p, renderer) for i in order}
                clips = [futures[i].result() for i in range(len(plan))]
        else:
            clips = [build_clip(spec, i, tmp, p, renderer) for i, spec in enumerate(plan)]
        manifest = {
            "generator": GENERATOR,
            "version": VERSION,
            "params": params_mod.as_dict(p),
            "clips": clips,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
