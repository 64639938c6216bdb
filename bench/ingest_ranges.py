"""Ingest of listed time ranges of a long source costs the ranges, not the source (issue "datasets at scale").

    python -m bench.ingest_ranges [--minutes 30] [--ranges 10] [--range-s 10] [--reps 3] [--num-cpus 2]

Inputs (generated with ffmpeg, not timed): one ``--minutes`` source (``testsrc2`` 128x96 at 25 fps,
x264 ultrafast with a keyframe every 4 s, a 220 Hz tone gated 1.5 s on / 0.5 s off as 44.1 kHz
stereo AAC) and a source as long as the ranges together (``--ranges * --range-s`` seconds, 100 s by
default) made the same way. Two ingests, each in a fresh process with a fresh cache, the default
runner (local worker processes, ``--num-cpus``), ``steps.face.enabled: false`` (the test pattern has
no face: with the face step every clip would stop at the face filter before encode), the other
steps as in params.yaml:

* ``ranges``: a ``table`` dataset listing ``--ranges`` ranges of ``--range-s`` seconds spread over the
  long source (ingest seeks to each: probe, audio decode, segment, encode read only the range);
* ``short_ranges``: the same number of ranges of the same length tiling the short source (the same
  work item for item, from a source 18x shorter);
* ``short``: a ``folder`` dataset holding the short source whole (the same seconds of media, one item).

Reported: medians of the wall times and their ratios: ``ranges`` / ``short_ranges`` (1.0: the cost
follows the ranges, not the source length; a pipeline that decoded the whole source would be about
``minutes * 60 / seconds of ranges`` = 18x slower on the audio alone) and ``ranges`` / ``short`` (what
ten listed items cost against one whole file of the same seconds), per-step worker seconds and the
clips kept; and, in this process, the
seconds of the probe and audio steps (the ones that read a whole source when it has no range) over
the ten ranges against the whole long source once (``probe_audio``). ``--full`` also ingests the
whole long source once (about 18x the work: minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import finish, log, median, run_ingest, step_summary, temp_folder, write_params

NAME = "ingest_ranges"


def make_source(path: Path, seconds: float) -> None:
    """A test-pattern source with a gated tone (silences for the segment step to cut at)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size=128x96:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"aevalsrc=0.3*sin(2*PI*220*t)*gt(mod(t\\,2)\\,0.5):s=44100:c=stereo:d={seconds}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "100", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "64k", "-fflags", "+bitexact", "-map_metadata", "-1", str(path)], check=True)


def project(tmp: Path, name: str, raw: Path, table: Path | None, num_cpus: int) -> Path:
    """A project folder (params.yaml, cache inside) whose dataset ``bench`` is ``raw`` (a table when given)."""
    root = tmp / name
    root.mkdir(parents=True)
    params = write_params(root, raw, num_cpus=num_cpus, face=False)
    if table is not None:
        data = yaml.safe_load(params.read_text())
        data["datasets"]["bench"] = {"adapter": "table", "raw_dir": str(raw), "table": str(table),
                                     "columns": {"path": "path", "start": "start", "end": "end"}}
        params.write_text(yaml.safe_dump(data, sort_keys=False))
    return params


def read_cost(source: Path, spans: list[tuple[float, float]]) -> dict[str, float]:
    """Seconds of the probe and audio steps (the two that read a whole source when it has no range),
    in this process, one after the other: for every listed range, and for the whole source once."""
    import tempfile

    from core.clip import Clip
    from pipeline.steps.audio import DecodeAudio
    from pipeline.steps.probe import Probe

    def cost(span: tuple[float, float] | None) -> float:
        meta = {"range": {"start": span[0], "end": span[1]}} if span else {}
        clip = Clip(key="k", dataset="bench", source=str(source), source_rel=source.name, source_hash="-", meta=meta)
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            DecodeAudio()(Probe()(clip, Path(out)), Path(out))  # type: ignore[arg-type]
            return time.perf_counter() - t

    return {"ranges_s": sum(cost(s) for s in spans), "whole_source_s": cost(None)}


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    steps = step_summary(out["report"])
    return {"wall_s": out["wall_s"], "run_s": out["run_s"], "kept": out["report"]["kept"],
            "hours_kept": out["report"].get("hours_kept"), "steps": steps,
            "step_worker_s": sum(s["s"] for s in steps.values()), "other_load_cpus": out["cpu"].get("other_cpus"),
            "dropped_by_reason": out["report"]["dropped_by_reason"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--ranges", type=int, default=10)
    ap.add_argument("--range-s", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also ingest the whole long source once")
    args = ap.parse_args(argv)
    long_s, ranged_s = args.minutes * 60, args.ranges * args.range_s
    with temp_folder("ranges") as tmp:
        t = time.perf_counter()
        make_source(tmp / "long" / "long.mp4", long_s)
        make_source(tmp / "short" / "short.mp4", ranged_s)
        log(f"{NAME}: generated {long_s:.0f} s + {ranged_s:.0f} s of media in {time.perf_counter() - t:.1f} s")
        step = long_s / args.ranges
        spans = [(round(k * step + step / 3, 3), round(k * step + step / 3 + args.range_s, 3)) for k in range(args.ranges)]
        tiles = [(round(k * args.range_s, 3), round((k + 1) * args.range_s, 3)) for k in range(args.ranges)]
        (tmp / "ranges.csv").write_text("path,start,end\n" + "".join(f"long.mp4,{a},{b}\n" for a, b in spans))
        (tmp / "tiles.csv").write_text("path,start,end\n" + "".join(f"short.mp4,{a},{b}\n" for a, b in tiles))
        inputs = {"ranges": (tmp / "long", tmp / "ranges.csv"), "short_ranges": (tmp / "short", tmp / "tiles.csv"),
                  "short": (tmp / "short", None)}
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in inputs}
        for rep in range(args.reps):
            order = list(inputs)[rep % 3:] + list(inputs)[: rep % 3]  # rotate the order between repetitions
            for variant in order:
                raw, tbl = inputs[variant]
                params = project(tmp, f"{variant}{rep}", raw, tbl, args.num_cpus)
                out = _summary(run_ingest(params.parent, params))
                runs[variant].append(out)
                log(f"{NAME}: rep {rep} {variant}: {out['wall_s']:.2f} s wall, {out['kept']} clips")
        result: dict[str, Any] = {
            "inputs": {"long_s": long_s, "ranges": spans, "ranged_s": ranged_s, "short_s": ranged_s, "size": "128x96", "gop_s": 4.0},
            **{f"{v}_wall_s": median([r["wall_s"] for r in runs[v]]) for v in runs},
            "runs": runs,
        }
        result["ratio_ranges_vs_short_ranges"] = result["ranges_wall_s"] / result["short_ranges_wall_s"]
        result["ratio_ranges_vs_short"] = result["ranges_wall_s"] / result["short_wall_s"]
        result["probe_audio"] = read_cost(tmp / "long" / "long.mp4", spans)
        result["probe_audio"]["ratio_whole_vs_ranges"] = result["probe_audio"]["whole_source_s"] / result["probe_audio"]["ranges_s"]
        result["source_vs_ranges_length"] = long_s / ranged_s
        if args.full:
            params = project(tmp, "full", tmp / "long", None, args.num_cpus)
            result["full_source"] = _summary(run_ingest(params.parent, params))
    return finish(NAME, result)


if __name__ == "__main__":
    main()
