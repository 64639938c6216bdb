"""Training loader throughput: stage-2 samples per second per CPU worker at 512x512, decode included.

    python -m bench.loader_throughput [--samples 60] [--clips 6] [--gpu-step-s 1.0] [--batch 4] [--reference keyframe|any] [--pixels float32|uint8] [--tune T]

Inputs: ``--clips`` clips of 6-10 s cut from a real 25 fps talking-head video (looped) in
``../shared/data/real`` (synthetic test pattern when absent), scaled to 512x512 and encoded as
ingest encodes (the x264 settings of ``steps.encode``, by default CRF 18, ``veryfast``, tune
``fastdecode``, GOP 25; ``--tune`` overrides the tune, ``--tune ''`` for none), written to clip
shards with landmarks, plus the five stage-2 sidecars with the paper models' sizes (wav2vec2-base 13 x 768
per frame, 7 text-emotion and 4 speech-emotion classes, VA, 77 x 768 CLIP text states), each with the
``members.json`` of its extractor's ``MEMBERS`` (``pipeline.features.<f>``), as the extract stage writes it.

Measured in one process (= one DataLoader worker, one core; OpenCV decodes with one thread):
``ClipWindows(stage2)`` yields ``--samples`` samples (14 target + 2 motion + 1 reference frame,
decoded and converted to tensors; ``--reference`` is ``data.stage2_reference``, ``--pixels`` ``data.pixels``); wall and CPU
seconds, and the decode share (the same frame requests timed through ``ClipVideo.decode`` alone, and
through OpenCV's seek path ``decode_frames`` for comparison).

Workers to feed one GPU at batch ``--batch``: ``ceil(batch / gpu_step_s / samples_per_s)``.
``--gpu-step-s`` is an assumption, not a measurement: the paper (section 4: A100, batch 4,
512x512, 14-frame clips) gives no step time; 1.0 s is the order of a stage-2 step of an SD 1.5
UNet with temporal and audio attention on 14 frames at 512x512 (about 4 x 14 latent frames of
64x64 through the UNet and the ReferenceNet, forward and backward). Pass a measured one when known.
Results: printed as JSON and written to ``bench/results/loader_throughput.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import time
import wave
from pathlib import Path

import numpy as np

from bench.common import REAL_VIDEOS, encode_params, finish, log, rnd, temp_folder

SIZE = 512
SOURCE = "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def make_inputs(root: Path, n_clips: int, tune: str) -> None:
    """Clip shards of ``n_clips`` clips and the five stage-2 sidecars, each declaring its members with
    the extractor's ``MEMBERS`` (the loader reads ``members.json``, as from a real extract stage)."""
    import importlib

    from core.clip import Clip, canonical_json
    from core.shards import ShardLayout, ShardParams, write_clip_shards, write_sidecars

    layout = ShardLayout(root / "shards")
    media = root / "media"
    media.mkdir(parents=True)
    enc = encode_params()
    x264 = ["-c:v", "libx264", "-crf", str(enc.get("crf", 18)), "-preset", str(enc.get("preset", "veryfast")),
            *(["-tune", tune] if tune else []), "-g", str(enc.get("gop", 25))]
    src = REAL_VIDEOS / SOURCE
    clips, rng = [], np.random.default_rng(0)
    for i in range(n_clips):
        seconds = 6.0 + (i % 5)
        frames = int(seconds * 25)
        mp4 = media / f"c{i}.mp4"
        inp = ["-stream_loop", "-1", "-ss", str(round(1.3 * i, 1)), "-i", str(src)] if src.is_file() else \
            ["-f", "lavfi", "-i", f"testsrc2=size=720x720:rate=25:duration={seconds}"]
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *inp, "-an", "-vf",
                        f"scale={SIZE}:{SIZE}:force_original_aspect_ratio=increase,crop={SIZE}:{SIZE},fps=25",
                        "-frames:v", str(frames), *x264, "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(mp4)], check=True)
        wav, lm = media / f"c{i}.wav", media / f"c{i}.landmarks.npy"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(b"\0\0" * frames * 640)
        np.save(lm, (rng.random((frames, 478, 3)) * SIZE).astype(np.float16))
        meta = {"encode": {"frames": frames, "fps": 25, "sample_rate": 16000, "width": SIZE, "height": SIZE}}
        clips.append(Clip(key=f"bench__c{i:02d}__0000000", dataset="bench", source=f"c{i}.mp4", source_rel=f"c{i}.mp4",
                          source_hash=f"{i:064d}", start=0.0, duration=seconds, meta=meta,
                          files={"mp4": str(mp4), "wav": str(wav), "landmarks.npy": str(lm)}))
    clip_dir = layout.clips("bench")
    write_clip_shards(clip_dir, clips, [], ShardParams())
    frames_of = {c.key: c.meta["encode"]["frames"] for c in clips}
    # the members a sample reads, at the paper models' sizes (wav2vec2-base 13 x 768, 7 / 4 classes, VA, CLIP 77 x 768)
    shapes = {"audio_embed": {"npy": ((13, 768), np.float16)}, "emotion_text": {"frames.npy": ((7,), np.float32)},
              "emotion_speech": {"frames.npy": ((4,), np.float32)}, "valence_arousal": {"frames.npy": ((3,), np.float32)},
              "caption": {"text_states.npy": ((77, 768), np.float16)}}
    for feature, arrays in shapes.items():
        declared = importlib.import_module(f"pipeline.features.{feature}").MEMBERS
        samples = {}
        for k, f in frames_of.items():
            members = [("json", canonical_json({"status": "ok", "key": k, "values": {}}).encode())]
            for m in declared:
                if m.name in arrays:  # members the loader does not read (probs.npy, sentence.npy, ...) are left out
                    shape, dtype = arrays[m.name]
                    data = _npy(rng.random((f, *shape) if m.per_frame else shape).astype(dtype))
                    m.check(data, f, f"{feature} {k}.{m.name}")
                    members.append((m.name, data))
            samples[k] = members
        write_sidecars(layout.feature(feature, "bench"), clip_dir, samples, members=declared, feature=feature)
    layout.splits.mkdir(parents=True)
    with open(layout.split("train"), "w") as f:
        for k, n in sorted(frames_of.items()):
            f.write(json.dumps({"dataset": "bench", "key": k, "shard": "clips-000000.tar", "frames": n, "speaker": k}) + "\n")


def measure(root: Path, n_samples: int, reference: str, pixels: str = "float32") -> dict:
    import cv2

    from model.data import ClipVideo, ClipWindows, DataParams, decode_frames

    cv2.setNumThreads(1)
    from core.shards import ShardLayout, iter_samples

    layout = ShardLayout(root / "shards")
    n_clips = len(layout.split("train").read_text().splitlines())
    p = DataParams(size=SIZE, samples_per_clip=max(1, math.ceil(n_samples / n_clips)), shuffle_buffer=4, stage2_reference=reference,
                   pixels=pixels)
    ds = ClipWindows(p, "stage2", shard_root=layout.root, rank=0, world_size=1)
    it = iter(ds)
    first = next(it)  # opens the shards; not timed
    requests, t0, c0 = [], time.perf_counter(), time.process_time()
    for _, s in zip(range(n_samples), it):
        requests.append((s["key"], [*s["frame_index"].tolist(), *s["motion_index"].tolist(), int(s["reference_index"])]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    mp4 = {}
    for sample in iter_samples(layout.clips("bench")):
        mp4[sample["__key__"]] = sample["mp4"]
    t1 = time.process_time()
    videos = {}
    for key, idx in requests:
        video = videos.get(key) or videos.setdefault(key, ClipVideo(mp4[key]))  # indexed once per clip, as the loader does
        video.decode(idx, SIZE)
    decode_cpu = time.process_time() - t1
    fed = sum(len(videos[key].plan(idx)[0]) for key, idx in requests)
    t2 = time.process_time()
    for key, idx in requests:
        decode_frames(mp4[key], idx, SIZE)
    seek_cpu = time.process_time() - t2
    n = len(requests)
    return {"samples": n, "wall_s": wall, "cpu_s": cpu, "samples_per_s_wall": n / wall, "samples_per_s_cpu": n / cpu,
            "cpu_s_per_sample": cpu / n, "decode_cpu_s_per_sample": decode_cpu / n, "decode_share_of_cpu": decode_cpu / cpu,
            "frames_decoded_per_sample": fed / n, "opencv_seek_decode_cpu_s_per_sample": seek_cpu / n,
            "sample_shapes": {k: list(v.shape) for k, v in first.items() if hasattr(v, "shape")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--gpu-step-s", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reference", choices=("keyframe", "any"), default="keyframe", help="data.stage2_reference")
    ap.add_argument("--pixels", choices=("float32", "uint8"), default="float32", help="data.pixels")
    ap.add_argument("--tune", default=None, help="x264 tune of the clips (default: steps.encode.tune; '' for none)")
    args = ap.parse_args(argv)
    with temp_folder("loader_throughput") as tmp:
        log("loader_throughput: encoding inputs")
        tune = encode_params().get("tune", "") if args.tune is None else args.tune
        make_inputs(tmp, args.clips, tune)
        log("loader_throughput: measuring")
        m = measure(tmp, args.samples, args.reference, args.pixels)
    per_worker = m["samples_per_s_cpu"]
    demand = args.batch / args.gpu_step_s
    result = {
        "size": SIZE, "reference": args.reference, "pixels": args.pixels, "tune": tune, "source": SOURCE if (REAL_VIDEOS / SOURCE).is_file() else "testsrc2",
        **{k: rnd(v) for k, v in m.items()},
        "assumed_gpu_step_s": args.gpu_step_s, "batch": args.batch, "gpu_samples_per_s": rnd(demand),
        "workers_per_gpu": math.ceil(demand / per_worker),
        "goal_samples_per_s_per_core": 8.0, "goal_met": per_worker >= 8.0,
    }
    finish("loader_throughput", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
