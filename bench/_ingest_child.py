"""Runs one ingest in a fresh process and reports where its time went (used by the benchmarks).

    python -m bench._ingest_child <dataset> --params <file> [--local]

Run with the working directory as the project root of the run (``root=.``). Prints one JSON line:
``import_s`` (importing the pipeline), ``run_s`` (``pipeline.ingest.run``), the stage report,
and the Ray phases seen from the driver: ``ray_init_s`` (``ray.init``), ``ray_first_result_s``
(from Ray being up to the first result: actor start-up plus one task) and
``ray_close_s`` (killing the actors and ``ray.shutdown``). The pipeline code is not modified; its
Runner and Ray backend methods are wrapped with timers in this process only.
"""

from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()

import pipeline.ingest as ingest  # noqa: E402
from pipeline import runner as runner_mod  # noqa: E402
from pipeline.runner.ray_backend import RayBackend  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def _instrument() -> dict[str, float]:
    seen = {"ray_init_s": 0.0, "ray_first_result_s": 0.0, "ray_close_s": 0.0}
    ready_at: list[float] = []
    Runner = runner_mod.Runner
    orig_ensure, orig_close, orig_run_ray = RayBackend.start, Runner.close, RayBackend.run

    def ensure(self):  # type: ignore[no-untyped-def]
        fresh = not self.started
        t = time.perf_counter()
        out = orig_ensure(self)
        if fresh:
            seen["ray_init_s"] += time.perf_counter() - t
            ready_at.append(time.perf_counter())
        return out

    def close(self):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        out = orig_close(self)
        seen["ray_close_s"] += time.perf_counter() - t
        return out

    def run_ray(self, res, run):  # type: ignore[no-untyped-def]
        orig_done = run.done

        def timed_done(task, results):  # type: ignore[no-untyped-def]
            if ready_at and not seen["ray_first_result_s"]:
                seen["ray_first_result_s"] = time.perf_counter() - ready_at[0]
            return orig_done(task, results)

        run.done = timed_done
        return orig_run_ray(self, res, run)

    RayBackend.start, Runner.close, RayBackend.run = ensure, close, run_ray  # type: ignore[method-assign]

    def timer(fn, key):  # type: ignore[no-untyped-def]
        def wrapped(*a, **kw):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seen[key] = seen.get(key, 0.0) + time.perf_counter() - t

        return wrapped

    seen["hash_s"] = seen["shards_s"] = 0.0
    ingest.source_records = timer(ingest.source_records, "hash_s")
    ingest.write_clip_shards = timer(ingest.write_clip_shards, "shards_s")
    return seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--params", required=True)
    ap.add_argument("--local", action="store_true", default=None)
    args = ap.parse_args()
    seen = _instrument()
    t = time.perf_counter()
    report = ingest.run(args.dataset, local=args.local, params_file=ingest.Path(args.params))
    run_s = time.perf_counter() - t
    shards = ingest.Path("shards") / "clips" / args.dataset
    shard_bytes = sum(p.stat().st_size for p in shards.glob("*.tar")) if shards.is_dir() else 0
    print(json.dumps({"import_s": IMPORT_S, "run_s": run_s, **seen, "shard_bytes": shard_bytes, "report": report}))


if __name__ == "__main__":
    main()
