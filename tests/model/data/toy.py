"""A toy shard tree for the loader tests.

Synthetic clips encode the frame index everywhere: frame i is a flat grey of level 8 + 3 i (H.264
keeps it within +-1), and every per-frame sidecar row i holds i, so a sample proves which frames
its tensors came from. The sidecars declare their members with the real extractors' ``MEMBERS``.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import wave

import numpy as np

from core.clip import Clip, canonical_json
from core.shards import ShardLayout, ShardParams, write_clip_shards, write_sidecars

SIDE = 32
FRAMES = {"c0": 14, "c1": 15, "c2": 40, "c3": 60, "c4": 33, "c5": 50, "c6": 20}
UNSELECTED = "c5"
DATASET = "toy"


def level(i):
    return 8 + 3 * i


def mp4(path, frames):
    raw = np.concatenate([np.full((1, SIDE, SIDE, 3), level(i), np.uint8) for i in range(frames)])
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{SIDE}x{SIDE}",
                    "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-g", "25",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)], input=raw.tobytes(), check=True)


def npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def ok(key, values=None):
    return ("json", canonical_json({"status": "ok", "key": key, "values": values or {}}).encode())


def members_of(feature):
    """The real extractor's member declaration (``pipeline.features.<feature>.MEMBERS``)."""
    return importlib.import_module(f"pipeline.features.{feature}").MEMBERS


#: Per-frame index i -> the members each stage-2 sidecar writes (as its extractor declares them).
PER_FEATURE = {
    "audio_embed": lambda k, i: [("npy", npy(np.repeat(i[:, None, None], 2, 1).repeat(3, 2).astype(np.float16)))],
    "emotion_text": lambda k, i: [("frames.npy", npy(np.stack([i / 100] + [np.zeros_like(i)] * 6, 1)))],
    "emotion_speech": lambda k, i: [("frames.npy", npy(np.stack([np.ones_like(i), i / 10, i, i], 1))),
                                    ("probs.npy", npy(np.zeros((2, 4), np.float32))), ("embed.npy", npy(np.zeros((2, 8), np.float16)))],
    "valence_arousal": lambda k, i: [("frames.npy", npy(np.stack([i / 100, -i / 100, i * 0], 1))),
                                     ("segments.npy", npy(np.zeros((2, 3), np.float32)))],
    "caption": lambda k, i: [("text_states.npy", npy(np.full((77, 8), len(k) % 7, np.float16))), ("sentence.npy", npy(np.zeros(4, np.float32)))],
    "clip_image": lambda k, i: [("frames.npy", npy(clip_rows(i)))],
}


def clip_rows(i):
    """The toy clip_image rows ``(F, 16)`` float16 of frame indices ``i``: row i says i (``cos(0.1 i (d + 1))``)."""
    return np.cos(0.1 * np.asarray(i, np.float32)[:, None] * (np.arange(16) + 1)).astype(np.float16)


def frame_rows(layout):
    """``{key: arange(frames)}`` of the clips of the toy dataset."""
    import pyarrow.parquet as pq

    rows = pq.read_table(layout.clips(DATASET) / "manifest.parquet").to_pylist()
    return {r["key"]: np.arange(r["frames"], dtype=np.float32) for r in rows}


def add_sidecar(layout, feature, members, write, dropped=None, check=True):
    """Write one feature's sidecar for every toy clip: ``write(key, frame_index)`` -> members."""
    declared = {m.name: m for m in members}
    samples = {}
    for key, i in frame_rows(layout).items():
        if dropped == key:
            samples[key] = [("json", canonical_json({"status": "dropped", "reason": "no_speech", "message": "x"}).encode())]
            continue
        samples[key] = [ok(key)] + write(key, i)
        for name, data in samples[key][1:] if check else ():  # the toy members match the declaration, as extract checks
            declared[name].check(data, len(i), f"{feature} {key}.{name}")
    write_sidecars(layout.feature(feature, DATASET), layout.clips(DATASET), samples, members=members, feature=feature)


def make_project(root, dropped=None):
    """Clip shards (3 tars) + the stage-1/stage-2 sidecars (PER_FEATURE) in the extractors' formats + a train split."""
    media = root / "media"
    media.mkdir(parents=True)
    layout = ShardLayout(root / "shards")
    clips = []
    for name, n in FRAMES.items():
        video, wav, lm = media / f"{name}.mp4", media / f"{name}.wav", media / f"{name}.landmarks.npy"
        mp4(video, n)
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(np.repeat(np.arange(n, dtype="<i2") * 100, 640).tobytes())  # frame i's samples say i
        landmarks = np.zeros((n, 478, 3), np.float16)
        landmarks[:, :, 0] = np.arange(n)[:, None]
        np.save(lm, landmarks)
        meta = {"encode": {"frames": n, "fps": 25, "sample_rate": 16000, "width": SIDE, "height": SIDE}, "source": {"speaker": name}}
        clips.append(Clip(key=f"{DATASET}__{name}__0000000", dataset=DATASET, source=f"{name}.mp4", source_rel=f"{name}.mp4",
                          source_hash=f"{len(clips):064d}", start=0.0, duration=n / 25, meta=meta,
                          files={"mp4": str(video), "wav": str(wav), "landmarks.npy": str(lm)}))
    write_clip_shards(layout.clips(DATASET), clips, [], ShardParams(max_count=3))
    for feature, write in PER_FEATURE.items():
        add_sidecar(layout, feature, members_of(feature), write, dropped=dropped[1] if dropped and dropped[0] == feature else None)
    layout.splits.mkdir(parents=True)
    with open(layout.split("train"), "w") as f:
        for i, c in enumerate(sorted(clips, key=lambda c: c.key)):
            if UNSELECTED not in c.key:
                f.write(json.dumps({"dataset": DATASET, "key": c.key, "shard": f"clips-{i // 3:06d}.tar",
                                    "frames": c.meta["encode"]["frames"], "speaker": c.key}) + "\n")
    return root
