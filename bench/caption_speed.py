"""Caption extractor speed: generated tokens/s and clips/s, and what overlapping frame decoding buys.

    python -m bench.caption_speed [--clips 12] [--frames 8] [--max-new-tokens 32] [--batch 4] [--device cpu|cuda]

Inputs: ``--clips`` 25 fps talking clips of 3-5 s, 512x512 (rendered with
``pipeline.demo_data.render.render_talking_clip``, the size ingest writes). The caption extractor with the
tiny stand-ins (a LLaVA-layout VLM, the tiny SD 1.5 text encoder, and the real all-MiniLM-L6-v2)
is set up once (not timed), then ``process`` runs over all clips in calls of ``--batch`` clips:

* ``caption``: as configured, every clip's ffmpeg decode started on the thread pool when its call
  begins, generation in ``generate_batch`` chunks while later clips still decode;
* ``decode_only``: the same decodes alone (how much of the time is ffmpeg);
* ``sequential``: ``decode_threads: 1`` and ``generate_batch: 1``: one clip decoded, then captioned.

Reported: seconds, clips/s, generated tokens/s (tokens counted up to each caption's end token).
With tiny weights the generation cost is far below a real 0.5-7 B model's; the figures measure
the machinery (decode, batching, embeddings), not a real model's throughput.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.common import finish, log, temp_folder


def make_clips(folder: Path, n: int):
    from core.clip import Clip
    from pipeline.demo_data.render import render_talking_clip

    lengths = [3.0, 4.0, 5.0, 3.6]
    clips = []
    for k in range(n):
        seconds = lengths[k % len(lengths)]
        path = folder / f"c{k:03d}.mp4"
        render_talking_clip(path, seconds=seconds, fps=25, size=512, seed=k, audio=False)
        frames = int(round(seconds * 25))
        clips.append(Clip(key=f"b__c{k:03d}__0", dataset="b", source=str(path), source_rel=path.name, source_hash=str(k),
                          duration=seconds, meta={"encode": {"frames": frames, "fps": 25, "width": 512, "height": 512}},
                          files={"mp4": str(path)}))
    return clips


def run_extractor(ext, clips, work: Path) -> dict:
    import torch

    size = max(1, ext.batch_size)
    tokens0 = ext.backend.tokens
    t0 = time.perf_counter()
    for b in range(0, len(clips), size):
        batch = clips[b: b + size]
        outs = [work / f"{time.monotonic_ns()}-{j}" for j in range(len(batch))]
        for o in outs:
            o.mkdir(parents=True)
        ext.process(batch, outs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = ext.backend.tokens - tokens0
    return {"seconds": seconds, "clips_per_s": len(clips) / seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from pipeline.features import caption
    from core.weights import WeightsParams

    torch.set_num_threads(args.threads)
    base = caption.Params(frames=args.frames, max_new_tokens=args.max_new_tokens, batch_size=args.batch,
                          generate_batch=args.batch, decode_threads=args.batch, device=args.device)
    result = {"clips": args.clips, "frames": args.frames, "max_new_tokens": args.max_new_tokens, "batch": args.batch,
              "device": args.device, "threads": args.threads, "weights": "tiny"}
    with temp_folder("caption") as tmp:
        (tmp / "clips").mkdir()
        log(f"rendering {args.clips} clips")
        clips = make_clips(tmp / "clips", args.clips)
        wp = WeightsParams(profile="tiny", dir=str(tmp / "weights"))
        rows, exts = {}, {}
        for name, params in [("caption", base), ("sequential", replace(base, decode_threads=1, generate_batch=1))]:
            ext = exts[name] = caption.Extractor(params, wp)
            ext.setup()
            run_extractor(ext, clips[:1], tmp / "warm")  # first-call costs (lazy imports) are not throughput
            rows[name] = run_extractor(ext, clips, tmp / "out")
            log(f"{name}: {rows[name]['seconds']:.2f} s, {rows[name]['clips_per_s']:.2f} clips/s, {rows[name]['tokens_per_s']:.1f} tokens/s")
        ext = exts["caption"]
        t0 = time.perf_counter()
        list(ext.pool.map(ext._frames, clips))
        rows["decode_only"] = {"seconds": time.perf_counter() - t0, "threads": ext.params.decode_threads}
        t0 = time.perf_counter()
        list(map(ext._frames, clips))
        rows["decode_only_1_thread"] = {"seconds": time.perf_counter() - t0}
        result["runs"] = rows
        result["overlap_speedup"] = rows["sequential"]["seconds"] / rows["caption"]["seconds"]
    finish("caption_speed", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
