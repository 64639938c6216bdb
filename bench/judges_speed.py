"""Frames per second of every frame judge, at tiny size and at the real architecture's size (random weights).

    python -m bench.judges_speed [--frames 32] [--only sync face_va ...] [--arch tiny paper] [--device cpu|cuda]

Each judge is built in a temporary folder in its native format (the tiny stand-in, or the published
architecture with seeded random weights: the speed of a real checkpoint without having it) and
loaded through its own ``load``, then timed on ``--frames`` real frames: the first seconds of the
real clip v01 (512x512, 25 fps; ../shared/data/real), with a fixed face-landmark track for the crops.
Every judge runs its extraction path (``predict`` / ``embed`` / ``encode``) as the feature stages and
the metrics call it, preprocessing included; the first call is a warm-up and not timed. Figures are
frames (or frame pairs, for LPIPS; 16-frame clips count 16 frames, for I3D: give it ``--frames 16`` or more) per
second on one thread, the default of the pipeline's workers: per wall second (``*_frames_per_s``) and per CPU
second of the process (``*_frames_per_cpu_s``, the figure to quote from a shared, loaded machine).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.common import finish, log, rnd

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "videos" / "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"
JUDGES = ("sync", "face_va", "action_units", "clip_image", "face_3d", "lpips", "inception", "i3d")


def real_frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB frames (n, 512, 512, 3) of v01 and its 16 kHz mono audio (n * 640 samples)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(REAL), "-frames:v", str(n), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    audio = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(REAL), "-t", f"{n / 25}", "-ac", "1", "-ar", "16000",
                            "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(n, 512, 512, 3), np.frombuffer(audio, np.float32)


def face_track(n: int) -> np.ndarray:
    """The canonical MediaPipe face over v01's face (x 150..360, y 110..420), ``(n, 478, 3)`` pixels."""
    from pipeline.face_geometry import canonical_face

    face = canonical_face()[:, :3].astype(np.float64)
    lo, hi = face[:, :2].min(0), face[:, :2].max(0)
    unit = (face[:, :2] - lo) / (hi - lo)
    one = np.concatenate([150 + unit[:, :1] * 210, 110 + unit[:, 1:2] * 310, face[:, 2:3]], axis=1)
    return np.repeat(one[None], n, axis=0).astype(np.float32)


def _paper_sync(folder: Path, seed: int) -> None:
    import torch

    from judges import sync

    torch.manual_seed(seed)
    torch.save(sync.S().state_dict(), folder / sync.FILE)


def _paper_clip(folder: Path, seed: int) -> None:
    """A full openai/clip-vit-large-patch14 CLIPModel (both towers, as the published folder) with random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                     "projection_dim": 768},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
                       "patch_size": 14, "image_size": 224, "projection_dim": 768}, projection_dim=768)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)


def build(name: str, arch: str, root: Path, device: str) -> Any:
    """The loaded judge ``name`` from a folder written in its native format."""
    import importlib

    from core.weights import MARKER

    module = importlib.import_module(f"judges.{name}")
    folder = root / f"{name}-{arch}"
    folder.mkdir(parents=True)
    if arch == "tiny":
        module.SPEC.make_tiny(folder, 0)
        (folder / MARKER).write_text('{"tiny": true}')
    else:
        writer = {"sync": _paper_sync, "clip_image": _paper_clip}.get(name) or module.make_paper_random
        writer(folder, 0)
    return module.load(folder, device)


def runner(name: str, judge: Any, frames: np.ndarray, audio: np.ndarray, landmarks: np.ndarray) -> Callable[[], int]:
    """A call of the judge's extraction path on the frames; returns the number of frames it covered."""
    import importlib

    module = importlib.import_module(f"judges.{name}")
    n = len(frames)
    if name == "sync":
        crops = module.face_crops(frames, landmarks)
        return lambda: (judge.embed(crops, audio), n)[1]
    if name in ("face_va", "action_units"):
        boxes = module.crop_box_from_landmarks(landmarks)
        return lambda: (judge.predict(frames, boxes), n)[1]
    if name == "clip_image":
        return lambda: (judge.encode(list(frames)), n)[1]
    if name == "face_3d":
        return lambda: (judge.predict(list(frames), list(landmarks)), n)[1]
    if name == "lpips":
        other = frames[::-1].copy()
        return lambda: (judge.predict(frames, other), n)[1]
    if name == "inception":
        return lambda: (judge.predict(frames), n)[1]
    if name == "i3d":
        clips = module.clips(frames, length=16, stride=16)
        return lambda: (judge.encode(clips), clips.shape[0] * 16)[1]
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--only", nargs="*", choices=JUDGES, default=list(JUDGES))
    ap.add_argument("--arch", nargs="*", choices=["tiny", "paper"], default=["tiny", "paper"])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    if not REAL.is_file():
        log(f"real clip not found: {REAL}")
        return 2
    import torch

    torch.set_num_threads(args.threads)
    frames, audio = real_frames(args.frames)
    landmarks = face_track(args.frames)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            for arch in args.arch:
                log(f"judges_speed: {name} ({arch})")
                judge = build(name, arch, Path(tmp), args.device)
                call = runner(name, judge, frames, audio, landmarks)
                call()  # warm-up
                times, cpu = [], []
                for _ in range(args.reps):
                    t0, c0 = time.perf_counter(), time.process_time()
                    covered = call()
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                rows[f"{name}_{arch}_frames_per_s"] = rnd(covered / min(times), 2)
                # per CPU-second of this process: what a loaded (shared) machine does not skew
                rows[f"{name}_{arch}_frames_per_cpu_s"] = rnd(covered / max(min(cpu), 1e-9), 2)
                del judge
    finish("judges_speed", {"frames": args.frames, "device": args.device, "threads": args.threads, "reps": args.reps, **rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
