"""Ingest on real footage vs plain ffmpeg doing the same media work, in CPU-seconds per second of video.

    python -m bench.ingest_real [FOLDER ...] [--reps 1] [--keep DIR] [--compare DIR]

Inputs: the videos of ``../shared/data/real/videos`` and of any ``FOLDER`` given (copied into a
temporary raw folder). Side by side in each repetition, each in a fresh process, one after another:

* ``ffmpeg_crop``: one ffmpeg per file, one at a time, ``-threads 1``: 25 fps, a centred square of
  half the shorter side cropped and scaled to ``steps.face.size`` (512), yuv420p, x264 with the
  settings of ``steps.encode``, and the 16 kHz mono wav, both outputs from one process: the media
  work of the ingest with the face steps on;
* ``ffmpeg_frame``: the same with the whole frame (``steps.encode.max_side`` cap): the media work of
  the ingest with the face steps off;
* ``ingest_face`` / ``ingest``: ``pipeline.ingest.run`` in-process (``--local``: no worker start-up
  in the figure) with the face steps on / off; every step's ``__call__`` and ``setup`` is wrapped
  with a CPU meter (this process's CPU time plus that of the ffmpeg processes it waited for), so
  the report gives CPU-seconds per second of video per step;
* ``ingest_face_workers``: the ingest as a stage runs it (local worker processes, 2 CPUs), total only.

CPU is measured as ``getrusage(RUSAGE_CHILDREN)`` of the benchmark around each fresh process (the
whole process tree, ffmpeg included). The ratios ``ingest_face / ffmpeg_crop`` and ``ingest /
ffmpeg_frame`` are taken within one repetition, so load from other users of the machine cancels
to first order; wall times are reported too but are noisier.

``--keep DIR`` copies the face-on run's clip shards to ``DIR``; ``--compare DIR`` decodes every
clip found in both ``DIR`` and this run's shards and reports the PSNR (dB, ffmpeg ``psnr``) of the
old vs the new face crop, to measure a change that alters pixels.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REAL_VIDEOS,
    REPO,
    child_env,
    encode_params,
    finish,
    log,
    median,
    repo_params,
    temp_folder,
    write_params,
)

NAME = "ingest_real"
VIDEO_EXT = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=False)
    try:
        return float(out.stdout.strip())
    except ValueError:
        return 0.0


def _size(path: Path) -> tuple[int, int]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=False)
    w, h = (int(v) for v in out.stdout.strip().split(",")[:2])
    return w, h


def ffmpeg_cmd(src: Path, out_dir: Path, crop: bool) -> list[str]:
    """Plain ffmpeg doing the ingest's media work on ``src`` (see the module docstring)."""
    p = encode_params()
    fps, crf, preset, gop, max_side = p.get("fps", 25), p.get("crf", 18), p.get("preset", "fast"), p.get("gop", 25), p.get("max_side", 0)
    size = int(repo_params().get("steps", {}).get("face", {}).get("size", 512))
    vf = [f"fps={fps}"]
    if crop:
        w, h = _size(src)
        side = min(w, h) // 4 * 2
        vf += [f"crop={side}:{side}", f"scale={size}:{size}"]
    else:
        if max_side:
            vf.append(f"scale='if(gte(iw,ih),min({max_side},iw),-2)':'if(gte(iw,ih),-2,min({max_side},ih))'")
        vf.append("scale=trunc(iw/2)*2:trunc(ih/2)*2")
    vf.append("format=yuv420p")
    tune = ["-tune", str(p["tune"])] if p.get("tune") else []
    # the clip mp4 carries the 16 kHz audio as AAC too when the encode step muxes it in (steps.encode.audio_kbps)
    aac = (["-map", "0:a:0", "-af", "aresample=16000:resampler=soxr", "-ac", "1", "-c:a", "aac", "-b:a", f"{p['audio_kbps']}k"]
           if p.get("audio_kbps") else ["-an"])
    return ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", "-threads", "1", "-filter_threads", "1", "-i", str(src),
            "-map", "0:v:0", *aac, "-vf", ",".join(vf), "-c:v", "libx264", "-preset", str(preset), *tune, "-crf", str(crf),
            "-g", str(gop), "-threads", "1", "-x264-params", "threads=1", "-movflags", "+faststart", str(out_dir / f"{src.stem}.mp4"),
            "-map", "0:a:0", "-vn", "-af", "aresample=16000:resampler=soxr", "-ac", "1", "-c:a", "pcm_s16le",
            str(out_dir / f"{src.stem}.wav")]


def run_ffmpeg(files: list[Path], out_dir: Path, crop: bool) -> dict[str, float]:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    c0, t0 = _children_cpu(), time.perf_counter()
    per_file = {}
    for f in files:
        c1 = _children_cpu()
        subprocess.run(ffmpeg_cmd(f, out_dir, crop), check=True, capture_output=True)
        per_file[f.name] = _children_cpu() - c1
    return {"cpu_s": _children_cpu() - c0, "wall_s": time.perf_counter() - t0, "per_file_cpu_s": per_file}


def run_ingest(root: Path, raw: Path, face: bool, local: bool) -> dict[str, Any]:
    """One ingest in a fresh process (this module's ``--child``), ``root`` as its project root."""
    root.mkdir(parents=True)
    params = write_params(root, raw, num_cpus=2, local=local, face=face, backend="processes")
    cmd = [sys.executable, "-m", "bench.ingest_real", "--child", str(params)] + (["--local"] if local else [])
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=child_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, check=False)
    cpu, wall = _children_cpu() - c0, time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"cpu_s": cpu, "wall_s": wall, **out}


def child(params_file: str, local: bool) -> None:
    """In the ingest process: wrap every step's ``__call__``/``setup`` with a CPU meter, run, print JSON."""
    t0 = time.perf_counter()
    from pipeline import ingest
    from pipeline.steps import Step

    import_s = time.perf_counter() - t0
    cpu: dict[str, dict[str, float]] = {}
    per_file: dict[str, float] = {}  # source file -> CPU-seconds of every step call on it (set-up excluded)

    def meter(cls: type, attr: str, key: str) -> None:
        fn = getattr(cls, attr)

        def wrapped(self, *a, **kw):  # type: ignore[no-untyped-def]
            p0, c0 = time.process_time(), _children_cpu()
            try:
                return fn(self, *a, **kw)
            finally:
                row = cpu.setdefault(self.name, {"python_s": 0.0, "ffmpeg_s": 0.0, "setup_s": 0.0, "calls": 0})
                dp, dc = time.process_time() - p0, _children_cpu() - c0
                if key == "setup":
                    row["setup_s"] += dp + dc
                else:
                    src = Path(a[0].source_rel).name
                    per_file[src] = per_file.get(src, 0.0) + dp + dc
                    row["python_s"] += dp
                    row["ffmpeg_s"] += dc
                    row["calls"] += 1

        setattr(cls, attr, wrapped)

    for cls in {type(s) for s in ingest.IngestSteps().build()}:  # the defaults build every step (face on)
        meter(cls, "__call__", "call")
        if cls.setup is not Step.setup:
            meter(cls, "setup", "setup")
    t = time.perf_counter()
    report = ingest.run("bench", local=local, params_file=Path(params_file))
    print(json.dumps({"import_s": import_s, "run_s": time.perf_counter() - t, "steps_cpu": cpu, "per_file_cpu_s": per_file, "kept": report["kept"],
                      "dropped_by_reason": report["dropped_by_reason"], "hours_kept": report["hours_kept"]}))


def psnr(old: Path, new: Path) -> float:
    """Average PSNR (dB, all planes) of two videos of the same frames (ffmpeg ``psnr`` filter)."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(old), "-i", str(new), "-lavfi", "psnr", "-f", "null", "-"],
                         capture_output=True, text=True, check=False)
    for line in out.stderr.splitlines():
        if "PSNR" in line and "average:" in line:
            value = line.split("average:")[1].split()[0]
            return float("inf") if value == "inf" else float(value)
    raise RuntimeError(f"no PSNR from ffmpeg for {old} vs {new}: {out.stderr[-500:]}")


def _mp4s(shards: Path, dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    found = {}
    for tar_path in sorted(shards.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".mp4"):
                    path = dest / m.name
                    path.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
                    found[m.name[: -len(".mp4")]] = path
    return found


def compare(old_shards: Path, new_shards: Path, tmp: Path) -> dict[str, Any]:
    old, new = _mp4s(old_shards, tmp / "old"), _mp4s(new_shards, tmp / "new")
    same = sorted(set(old) & set(new))
    values = {k: psnr(old[k], new[k]) for k in same}
    identical = [k for k in same if old[k].read_bytes() == new[k].read_bytes()]
    finite = [v for v in values.values() if v != float("inf")]
    return {"clips": len(same), "byte_identical": len(identical), "psnr_db": values,
            "psnr_db_min": min(finite) if finite else None, "psnr_db_median": median(finite) if finite else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="more folders of videos (besides ../shared/data/real/videos)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--no-default", action="store_true", help="leave out ../shared/data/real/videos")
    ap.add_argument("--no-workers", action="store_true", help="leave out the worker-process ingest (face steps on)")
    ap.add_argument("--keep", type=Path, help="copy the face-on run's clip shards here")
    ap.add_argument("--compare", type=Path, help="PSNR of these (older) clip shards' videos vs this run's")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--local", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.local)
        return {}
    folders = ([] if args.no_default else [REAL_VIDEOS]) + list(args.folders)
    files = sorted(p for d in folders if d.is_dir() for p in d.iterdir() if p.suffix.lower() in VIDEO_EXT)
    if not files:
        raise SystemExit(f"{NAME}: no videos in {', '.join(map(str, folders))}")
    with temp_folder("real") as tmp:
        raw = tmp / "raw"
        raw.mkdir()
        for f in files:
            shutil.copyfile(f, raw / f.name)
        durations = {f.name: _duration(f) for f in files}
        seconds = sum(durations.values())
        log(f"{NAME}: {len(files)} videos, {seconds:.1f} s")
        variants = ["ffmpeg_crop", "ingest_face", "ffmpeg_frame", "ingest"] + ([] if args.no_workers else ["ingest_face_workers"])
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for rep in range(args.reps):
            for v in variants:
                if v.startswith("ffmpeg"):
                    out = run_ffmpeg(sorted(raw.iterdir()), tmp / "ff", crop=(v == "ffmpeg_crop"))
                else:
                    root = tmp / f"{v}-{rep}"
                    out = run_ingest(root, raw, face=v != "ingest", local=v != "ingest_face_workers")
                    shards = root / "shards" / "clips" / "bench"
                    if v == "ingest_face" and rep == 0 and args.keep:
                        shutil.rmtree(args.keep, ignore_errors=True)
                        shutil.copytree(shards, args.keep)
                    if v == "ingest_face" and rep == 0 and args.compare:
                        out["compare"] = compare(args.compare, shards, tmp / "cmp")
                    shutil.rmtree(root / "cache", ignore_errors=True)
                runs[v].append(out)
                log(f"{NAME}: rep {rep + 1}/{args.reps} {v}: {out['cpu_s']:.2f} CPU-s, {out['wall_s']:.2f} s wall")
    per_s = {v: median([r["cpu_s"] for r in rs]) / seconds for v, rs in runs.items()}
    ratio = {
        "ingest_face_vs_ffmpeg_crop_cpu": median([f["cpu_s"] / c["cpu_s"] for f, c in zip(runs["ingest_face"], runs["ffmpeg_crop"])]),
        "ingest_vs_ffmpeg_frame_cpu": median([f["cpu_s"] / c["cpu_s"] for f, c in zip(runs["ingest"], runs["ffmpeg_frame"])]),
        "ingest_face_vs_ffmpeg_crop_wall": median([f["wall_s"] / c["wall_s"] for f, c in zip(runs["ingest_face"], runs["ffmpeg_crop"])]),
        "ingest_vs_ffmpeg_frame_wall": median([f["wall_s"] / c["wall_s"] for f, c in zip(runs["ingest"], runs["ffmpeg_frame"])]),
    }
    if "ingest_face_workers" in runs:
        ratio["ingest_face_workers_vs_ffmpeg_crop_cpu"] = median(
            [f["cpu_s"] / c["cpu_s"] for f, c in zip(runs["ingest_face_workers"], runs["ffmpeg_crop"])])
    steps = {}
    for v in ("ingest_face", "ingest"):
        first = runs[v][0]["steps_cpu"]
        steps[v] = {k: {kk: (vv / seconds if kk.endswith("_s") else vv) for kk, vv in row.items()} for k, row in first.items()}
        steps[v]["import"] = {"python_s": runs[v][0]["import_s"] / seconds}
    # Per file: CPU-seconds per second of video of each variant (the projection's rates by resolution).
    per_file = {}
    for f in files:
        row = {"size": "x".join(map(str, _size(f))), "seconds": durations[f.name]}
        for v in ("ffmpeg_crop", "ingest_face", "ffmpeg_frame", "ingest"):
            vals = [r["per_file_cpu_s"].get(f.name) for r in runs[v] if r.get("per_file_cpu_s")]
            vals = [x for x in vals if x is not None]
            row[v] = median(vals) / durations[f.name] if vals and durations[f.name] else None
        per_file[f.name] = row
    result = {
        "goal": "CPU per second of video <= 1.3x plain ffmpeg with the face steps on, <= 1.1x with them off",
        "goal_met": {"face": ratio["ingest_face_vs_ffmpeg_crop_cpu"] <= 1.3, "no_face": ratio["ingest_vs_ffmpeg_frame_cpu"] <= 1.1},
        "inputs": {"files": len(files), "seconds": seconds, "folders": [str(d) for d in folders]},
        "cpu_s_per_video_s": per_s,
        "ratio": ratio,
        "steps_cpu_s_per_video_s": steps,
        "per_file_cpu_s_per_video_s": per_file,
        "runs": runs,
    }
    return finish(NAME, result)


if __name__ == "__main__":
    main()
