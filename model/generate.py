"""``python -m model.generate``: a talking video from one reference image and a driving audio.

    python -m model.generate --image REF.png --audio DRIVING.wav --out OUT.mp4 [--caption TEXT]
        [--steps 40] [--guidance 3.5] [--seed 0] [--checkpoints checkpoints] [--prepared DIR] [--params FILE]

1. The inputs take the training data's own path: ``python -m pipeline.prepare`` (run as a subprocess:
   ``model`` never imports ``pipeline``; the shard format is the one interface between them) crops the
   face to the ingest crop with MediaPipe, resamples and normalises the audio, separates the vocals and
   extracts every condition feature with the training extractors; the caption is ``--caption``
   verbatim or generated from the image by the configured caption backend (the log says which).
2. :class:`model.inference.pipeline.TalkingFacePipeline` from the newest checkpoints generates every frame
   (DDIM, ``inference`` params; windows of the training length chained by motion latents, the first
   window's motion frames from the A2M prior).
3. The frames are written as H.264, 25 fps, with the driving audio muxed: ``round(seconds x 25)`` frames,
   so the video and the audio differ by less than one frame.

Exit status 2 with one line naming the file and the fix for an image without a usable face, an
unreadable or too short audio (< 0.5 s), or missing checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core import cli
from core import params as params_mod
from model.data.clips import ClipFrames, iter_clips
from model.inference.checkpoints import CheckpointsMissing, from_checkpoints
from model.inference.params import InferenceParams
from model.inference.video import write_video

log = logging.getLogger("model.generate")
SPLIT = "generate"  # pipeline.prepare's split name


class PrepareFailed(ValueError):
    """``pipeline.prepare`` refused the inputs (its message names the file and the fix)."""


def prepare(image: Path, audio: Path, out: Path, caption: str | None, params_file: Path | None, verbose: int) -> dict:
    """Run ``python -m pipeline.prepare``; its ``prepare.json``."""
    cmd = [sys.executable, "-m", "pipeline.prepare", "--image", str(image), "--audio", str(audio), "--out", str(out)]
    cmd += ["--caption", caption] if caption is not None else []
    cmd += ["--params", str(params_file)] if params_file else []
    cmd += ["-v"] * verbose if verbose else ["-q"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise PrepareFailed(lines[-1] if lines else f"pipeline.prepare exited {done.returncode}")
    return json.loads((out / "prepare.json").read_text())


def generate(image: Path, audio: Path, out: Path, caption: str | None = None, params_file: Path | None = None,
             steps: int | None = None, guidance: float | None = None, seed: int | None = None,
             checkpoints: str | None = None, prepared: Path | None = None, verbose: int = 0) -> dict:
    inf = params_mod.load(InferenceParams, "inference", params_file)
    changes = {k: v for k, v in (("steps", steps), ("seed", seed), ("checkpoints", checkpoints)) if v is not None}
    if guidance is not None:
        changes["guidance"] = dataclasses.replace(inf.guidance, scale=guidance, per_condition={})
    inf = dataclasses.replace(inf, **changes)
    for path, what in ((image, "--image"), (audio, "--audio")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = from_checkpoints(inf.checkpoints, device=device, dtype=inf.dtype)  # before the costly preparation
    with tempfile.TemporaryDirectory(prefix="generate-") as tmp:
        folder = Path(prepared) if prepared else Path(tmp)
        start = time.perf_counter()
        info = prepare(Path(image), Path(audio), folder, caption, params_file, verbose)
        prepared_s = time.perf_counter() - start
        source = info.get("caption", {})
        log.info("caption (%s): %s", source.get("source", "?"), ascii(source.get("text", "")))
        clip = next(iter_clips(loaded.data, SPLIT, folder))
        reference = torch.from_numpy(clip.decode_frames(loaded.data.size, 1)[0]).permute(2, 0, 1).contiguous()
        start = time.perf_counter()
        # round(seconds x fps) frames: the video ends within half a frame of the audio (the clip's last partial frame
        # or ingest's rounding may leave it a frame or two shorter; those frames repeat its last feature rows)
        frames = max(clip.frames, round(float(info["audio"]["seconds"]) * clip.fps))
        result = loaded.pipeline(ClipFrames(clip, frames), reference, inf, frames_per_clip=loaded.data.target_frames,
                                 motion_frames=loaded.data.motion_frames, progress=True)
        generated_s = time.perf_counter() - start
        write_video(out, result.frames, fps=round(clip.fps), audio=audio)
    summary = {"out": str(out), "frames": int(len(result.frames)), "seconds": len(result.frames) / clip.fps,
               "size": loaded.data.size, "steps": inf.steps, "guidance": inf.guidance.describe(),
               "first_motion": result.first_motion, "caption": source, "tiny": loaded.tiny,
               "prepare_s": round(prepared_s, 2), "generate_s": round(generated_s, 2),
               "generate_s_per_video_s": round(generated_s / max(1e-9, len(result.frames) / clip.fps), 2)}
    print(f"{out}: {summary['frames']} frames ({summary['seconds']:.2f} s) at {summary['size']}x{summary['size']}, "
          f"{inf.steps} DDIM steps, {summary['generate_s_per_video_s']} s per second of video"
          + (" [tiny stand-in weights: the video tests the code path only]" if loaded.tiny else ""))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m model.generate", __doc__)
    ap.add_argument("--image", type=Path, required=True, help="reference image with one clearly visible face")
    ap.add_argument("--audio", type=Path, required=True, help="driving audio (wav, mp3, m4a, or a video's audio), 0.5 s or more")
    ap.add_argument("--out", type=Path, required=True, help="output mp4")
    ap.add_argument("--caption", default=None, help="the caption (default: generated from the image by features.caption)")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default inference.steps, 40)")
    ap.add_argument("--guidance", type=float, default=None, help="two-branch guidance scale (default inference.guidance.scale)")
    ap.add_argument("--seed", type=int, default=None, help="noise seed (default inference.seed)")
    ap.add_argument("--checkpoints", default=None, help="the train stages' checkpoints folder (default inference.checkpoints)")
    ap.add_argument("--prepared", type=Path, default=None, help="keep the prepared one-clip dataset in this folder")
    return cli.run(ap, argv, lambda a: generate(a.image, a.audio, a.out, a.caption, a.params, a.steps, a.guidance, a.seed,
                                                a.checkpoints, a.prepared, a.verbose),
                   user_errors=(CheckpointsMissing, PrepareFailed))


if __name__ == "__main__":
    raise SystemExit(main())
