"""Speed of the ``face`` step at source resolution, and its share of ingest time (goal: adds <= 50%).

    python -m bench.face_speed [--videos v01 v02 v04 v05 v06] [--mesh-every 2]

For each real clip of ``../shared/data/real/videos`` (the source resolutions: 512x512 ... 1080x1920
HEVC), in one process with one thread per library (``OMP_NUM_THREADS=1``, in-process runner,
fresh cache), the ingest steps with ``params.yaml``'s settings are timed one by one, twice:

* ``face on``: probe, audio, segment, face, face_filter, encode (the 512x512 crop);
* ``face off``: probe, audio, segment, encode of the whole frame (``steps.encode.max_side``).

Reported per clip and in total: face frames per second (wall) and per CPU-second (CPU time of the
process, MediaPipe's threads included, plus its ffmpeg children: frames per second per core), the
face step's share of ingest time, and how much the face steps add to ingest (``on / off - 1``,
summed over the sources the face steps keep: a dropped source also skips its encode). Results go to ``bench/results/face_speed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {"OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_k, _v)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import params  # noqa: E402
from pipeline.cache import Cache  # noqa: E402
from core.clip import Clip  # noqa: E402
from pipeline.ingest import IngestSteps  # noqa: E402
from pipeline.runner import Runner, RunnerParams  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "real" / "videos"


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the ffmpeg decoders and encoders)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_steps(path: Path, steps, cache: Cache) -> dict:
    """Run ``steps`` in-process on one source; wall and CPU seconds per step."""
    item = [Clip(key=f"b__{path.stem}", dataset="b", source=str(path), source_rel=path.name, source_hash=cache.source_hash(path))]
    out = {}
    with Runner(RunnerParams(local=True, progress=False), cache) as runner:
        for step in steps:
            frames = sum(int(c.meta.get("segment", {}).get("frames", 0)) for c in item)  # frames entering the step
            c0, t0 = _cpu(), time.perf_counter()
            outcome = runner.map(step, item)
            out[step.name] = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0, "in_frames": frames,
                              "dropped": [d.reason for _, d in outcome.drops]}
            item = outcome.kept
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", nargs="*", default=["v01", "v02", "v04", "v05", "v06"])
    ap.add_argument("--mesh-every", type=int, default=None, help="override steps.face.mesh_every")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "face_speed.json")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        print(f"real clips not found at {REAL}", file=sys.stderr)
        return 2
    cfg = params.load(IngestSteps, "steps", REPO / "params.yaml")
    if args.mesh_every:
        cfg = dataclasses.replace(cfg, face=dataclasses.replace(cfg.face, mesh_every=args.mesh_every))
    on = cfg.build()
    off = dataclasses.replace(cfg, face=dataclasses.replace(cfg.face, enabled=False)).build()
    for step in on:  # model loading is per worker, not per clip: keep it out of the figures
        step.setup()
    rows = []
    for name in args.videos:
        path = next(REAL.glob(f"{name}_*"))
        with tempfile.TemporaryDirectory() as tmp:
            a = time_steps(path, on, Cache(Path(tmp) / "on"))
            b = time_steps(path, off, Cache(Path(tmp) / "off"))
        face = a["face"]
        wall_on = sum(s["wall_s"] for s in a.values())
        wall_off = sum(s["wall_s"] for s in b.values())
        r = {
            "video": path.name, "face_on": a, "face_off": b, "face_frames": face["in_frames"],
            "face_wall_s": round(face["wall_s"], 3), "face_cpu_s": round(face["cpu_s"], 3),
            "face_fps_wall": round(face["in_frames"] / face["wall_s"], 1), "face_fps_per_cpu_s": round(face["in_frames"] / face["cpu_s"], 1),
            "ingest_on_s": round(wall_on, 3), "ingest_off_s": round(wall_off, 3),
            "face_share_of_ingest": round(face["wall_s"] / wall_on, 3), "added_by_face": round(wall_on / wall_off - 1, 3),
        }
        rows.append(r)
        print(f"{r['video']}: face {r['face_frames']} frames in {r['face_wall_s']:.2f} s ({r['face_fps_wall']} fps, "
              f"{r['face_fps_per_cpu_s']} per CPU-s), {r['face_share_of_ingest']:.0%} of ingest, adds {r['added_by_face']:+.0%} "
              f"(ingest {r['ingest_on_s']:.2f} s vs {r['ingest_off_s']:.2f} s without face)", flush=True)
    total = {k: sum(r[k] for r in rows) for k in ("face_frames", "face_wall_s", "face_cpu_s", "ingest_on_s", "ingest_off_s")}
    # "adds" compares like with like: only sources the face steps keep (a dropped one skips its encode).
    kept = [r for r in rows if not any(s["dropped"] for s in r["face_on"].values())]
    on, off = sum(r["ingest_on_s"] for r in kept), sum(r["ingest_off_s"] for r in kept)
    summary = {
        "face_fps_wall": round(total["face_frames"] / total["face_wall_s"], 1),
        "face_fps_per_cpu_s": round(total["face_frames"] / total["face_cpu_s"], 1),
        "face_share_of_ingest": round(total["face_wall_s"] / total["ingest_on_s"], 3),
        "added_by_face_on_kept_sources": round(on / off - 1, 3) if off else None,
        "kept_sources": [r["video"] for r in kept],
        **{k: round(v, 3) for k, v in total.items()},
    }
    print("total:", json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"params": dataclasses.asdict(cfg.face), "cpus": os.cpu_count(), "summary": summary, "clips": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
