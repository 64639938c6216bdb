"""The ``ray`` backend: long-lived Ray actors. THE ONLY module of the project that imports Ray
(``tests/pipeline/runner/test_layering.py`` checks it), and only when a Ray run starts, so
importing the runner stays cheap.

The actors run on the cluster at ``runner.address`` / ``$RAY_ADDRESS``, or on a local Ray started
for the stage (and shut down by :meth:`RayBackend.close`). Starting and stopping a local Ray costs
7-17 s per stage process on a 2-core machine (bench/README.md), more than a plain ffmpeg transcode
of a small dataset, so a local Ray pays only for multi-node work or Ray's GPU packing.

A dead actor comes back (restarts are unlimited) and Ray re-runs the task it was running
``max_retries`` times; then its clips are dropped as ``error:WorkerCrashed`` (not cached).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

from core.clip import Drop
from core.storage import StorageError
from pipeline.cache import Cache
from pipeline.runner.execute import StepSetupError, Worker, describe_exception
from pipeline.runner.params import RunnerParams, cluster_address
from pipeline.runner.schedule import ChainRun, Task
from pipeline.steps import Resources

#: Environment variables passed to Ray workers (a cluster's workers do not inherit the driver's).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS", "SYNCHRORAMA_PARAMS", "HF_HOME", "TORCH_HOME")


def import_ray() -> Any:
    """The ``ray`` module (imported on first use: ``import ray`` alone takes seconds)."""
    import ray  # the only import of Ray in the project

    return ray


def forwarded_env() -> dict[str, str]:
    """The driver's values of :data:`FORWARDED_ENV`, for the actors."""
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def ray_temp_dir(configured: str) -> str:
    """An absolute Ray temp dir; Unix socket paths are limited to ~107 bytes, so long ones move to /tmp."""
    path = Path(configured).resolve()
    if len(str(path)) > 40:
        path = Path("/tmp") / f"ray-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class RayBackend:
    """Ray actors in pools by resource shape; joins or starts Ray on first use."""

    where = "Ray cluster"

    def __init__(self, params: RunnerParams, cache: Cache):
        self.params = params
        self.cache = cache
        self._ray: Any = None
        self._started_ray = False  # this backend called ray.init, so it shuts Ray down
        self._pools: dict[Resources, list[Any]] = {}

    @property
    def started(self) -> bool:
        return self._ray is not None

    def start(self) -> Any:
        """The ``ray`` module, with Ray initialised: the cluster's, or a local Ray started here."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            address = cluster_address(self.params)
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": logging.WARNING}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(
                    num_cpus=self.params.num_cpus or os.cpu_count(),
                    num_gpus=self.params.num_gpus,
                    object_store_memory=self.params.object_store_mb * 1024 * 1024,
                    _temp_dir=ray_temp_dir(self.params.temp_dir),
                    **kwargs,
                )
            self._started_ray = True
        self._ray = ray
        return ray

    def available_gpus(self) -> float:
        return self.start().cluster_resources().get("GPU", 0)

    def close(self) -> None:
        """Kill the actors; shut Ray down if this backend started it."""
        if self._ray is None:
            return
        for pool in self._pools.values():
            for actor in pool:
                self._ray.kill(actor)
        self._pools.clear()
        if self._started_ray:
            self._ray.shutdown()
        self._ray = None

    def run(self, res: Resources, run: ChainRun) -> None:
        ray = self.start()
        pool = self.pool(res, run.size_hint())
        step_refs: dict[str, Any] = {}
        idle = deque(a for a in pool for _ in range(max(1, self.params.in_flight)))
        pending: dict[Any, tuple[Task, Any]] = {}
        submitted: dict[Any, float] = {}
        limit = self.params.task_timeout_s
        while run.queue or pending:
            while run.queue and idle:
                task = run.pop()
                if task is None:
                    break
                if task.ident not in step_refs:
                    step_refs[task.ident] = ray.put(task.step)
                actor = idle.popleft()
                ref = actor.run.remote(step_refs[task.ident], task.clips, task.keys)
                pending[ref], submitted[ref] = (task, actor), time.perf_counter()
            left = min(submitted[r] + limit for r in pending) - time.perf_counter() if limit and pending else None
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if left is None else max(0.0, left))
            if not ready and left is not None:
                self._kill_overdue(run, pool, res, pending, submitted, idle, limit)
                continue
            for ref in ready:
                submitted.pop(ref, None)
                task, actor = pending.pop(ref)
                idle.append(actor)  # Ray restarts a dead actor behind the same handle
                try:
                    batch_results = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, StepSetupError):
                        raise StepSetupError(str(cause)) from None
                    if isinstance(cause, StorageError):
                        raise StorageError(str(cause)) from None
                    batch_results = [Drop(f"error:{type(cause).__name__}", describe_exception(cause))] * len(task.clips)
                except ray.exceptions.RayActorError as e:  # includes ActorUnavailableError
                    # Ray restarted the worker and re-ran the task max_retries times: it kills its worker.
                    msg = f"worker process died {self.params.max_retries + 1} times on this clip: {str(e).splitlines()[0][:300]}"
                    run.crashed(task, str(e).splitlines()[0][:200], retry=False)
                    batch_results = [Drop("error:WorkerCrashed", msg)] * len(task.clips)  # not cached: may be transient
                run.done(task, batch_results)

    def _kill_overdue(self, run: ChainRun, pool: list[Any], res: Resources, pending: dict[Any, tuple[Task, Any]],
                      submitted: dict[Any, float], idle: deque, limit: float) -> None:
        """Batches past ``runner.task_timeout_s`` (counted from their submission to the actor: with ``in_flight``
        > 1 that includes the time queued behind the actor's earlier batches): the actor is killed without
        restart (a restart would re-run the hung batch), a fresh one takes its place, and the batch's clips
        become ``error:Timeout`` rejects, as with the local worker processes."""
        from .execute import timed_out

        now = time.perf_counter()
        for ref in [r for r in pending if now - submitted[r] > limit]:
            task, actor = pending.pop(ref)
            submitted.pop(ref)
            self._ray.kill(actor, no_restart=True)
            fresh = self.actor_class(res).remote(str(self.cache.root), {**forwarded_env(), **self.params.worker_env()})
            pool[pool.index(actor)] = fresh
            while actor in idle:  # its free in-flight slots go to the new actor
                idle.remove(actor)
                idle.append(fresh)
            for other in [r for r, (_, a) in pending.items() if a is actor]:  # batches queued behind it: re-run
                queued, _ = pending.pop(other)
                submitted.pop(other)
                run.requeue(queued)
            idle.append(fresh)
            run.done(task, timed_out(task, limit, self.cache))

    def actor_class(self, res: Resources) -> Any:
        """:class:`Worker` as a Ray actor class of the resource shape ``res``."""
        return self.start().remote(
            num_cpus=res.cpus, num_gpus=res.gpus or 0,
            # A dead worker comes back (restarts are unlimited) and Ray re-runs the task it was running,
            # max_retries times. One task per actor at a time, so a crash only costs its own batch.
            max_restarts=-1, max_task_retries=self.params.max_retries,
        )(Worker)

    def pool(self, res: Resources, n_tasks: int) -> list[Any]:
        """Actors of shape ``res``, as many as the cluster fits and ``n_tasks`` can use (at least one);
        actors of other shapes are killed first to free their resources."""
        ray = self.start()
        for other in [r for r in self._pools if r != res]:  # free resources held by other shapes
            for actor in self._pools.pop(other):
                ray.kill(actor)
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 1) // res.cpus) if res.cpus > 0 else n_tasks
        if res.gpus > 0:
            gpus = total.get("GPU", 0)
            if gpus < res.gpus:
                raise StepSetupError(f"step needs {res.gpus} GPU per worker but the Ray cluster has {gpus}")
            slots = min(slots, int(gpus // res.gpus)) if res.cpus > 0 else int(gpus // res.gpus)
        want = max(1, min(slots, n_tasks))
        pool = self._pools.setdefault(res, [])
        cls = self.actor_class(res)
        while len(pool) < want:
            pool.append(cls.remote(str(self.cache.root), {**forwarded_env(), **self.params.worker_env()}))
        return pool

    def ping(self, actors: Sequence[Any]) -> list[int]:
        """The process ids of ``actors``, once every one of them is up (a round trip to each)."""
        return self.start().get([a.pid.remote() for a in actors])
