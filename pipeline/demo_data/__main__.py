"""``python -m pipeline.demo_data [--out data/sample] [--jobs N]``: write the demo dataset."""

from __future__ import annotations

import logging
import os
import time

import pipeline.demo_data as package
from core import cli
from core import params as params_mod
from pipeline.demo_data.dataset import SampleParams, generate

log = logging.getLogger("pipeline.demo_data")


def main(argv: list[str] | None = None) -> int:
    ap = cli.parser("python -m pipeline.demo_data", package.__doc__)
    ap.add_argument("--out", default="data/sample", help="output folder (replaced atomically)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="clips rendered at once (output does not depend on it)")

    def body(args):
        p = params_mod.load(SampleParams, "sample", args.params)
        t0 = time.perf_counter()
        manifest = generate(args.out, p, jobs=args.jobs)
        log.info("wrote %d clips to %s in %.1f s", len(manifest["clips"]), args.out, time.perf_counter() - t0)

    return cli.run(ap, argv, body)


if __name__ == "__main__":
    raise SystemExit(main())
