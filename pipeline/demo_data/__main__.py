"""``python -m pipeline.demo_data [--out data/sample] [--jobs N]``: write the demo dataset."""

from __future__ import annotations

import argparse
import os
import sys
import time

import pipeline.demo_data as package
from core import params as params_mod
from pipeline.demo_data.dataset import SampleParams, generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.demo_data", description=package.__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/sample", help="output folder (replaced atomically)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="clips rendered at once (output does not depend on it)")
    args = ap.parse_args(argv)
    p = params_mod.load(SampleParams, "sample")
    t0 = time.perf_counter()
    manifest = generate(args.out, p, jobs=args.jobs)
    print(f"wrote {len(manifest['clips'])} clips to {args.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
