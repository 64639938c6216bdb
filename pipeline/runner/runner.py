"""``Runner``: the facade the stages use. Picks a backend by mode, adjusts a step's resources to
what is here, streams clips through steps via :class:`ChainRun`, and closes what it started."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, Sequence

from core.clip import Clip
from pipeline.cache import Cache
from pipeline.runner.execute import InProcessBackend, StepSetupError
from pipeline.runner.params import RunnerParams, cluster_address
from pipeline.runner.processes import ProcessBackend
from pipeline.runner.ray_backend import RayBackend
from pipeline.runner.schedule import ChainRun, StepOutcome
from pipeline.steps import Resources, Step

log = logging.getLogger("pipeline.runner")  # one logger name for the package, as in the stage logs


class Backend(Protocol):
    """Where a :class:`ChainRun`'s tasks run. Creating one starts nothing; ``run`` starts workers
    on first use and keeps them for the next run until ``close``."""

    where: str  # "machine" or "Ray cluster", for error messages

    @property
    def started(self) -> bool: ...  # whether it holds workers (or Ray)

    def available_gpus(self) -> float: ...

    def run(self, res: Resources, run: ChainRun) -> None: ...

    def close(self) -> None: ...


class Runner:
    """Maps steps over clips with caching; use as a context manager (stops the workers it started,
    and Ray if it started it)."""

    def __init__(self, params: RunnerParams, cache: Cache, stage: str = ""):
        self.params = params
        self.cache = cache
        self.stage = stage
        self._backends: dict[str, Backend] = {}  # by kind: local, processes, ray (both Ray modes)
        self._no_gpu_said = False

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()

    @property
    def mode(self) -> str:
        """``local`` (in-process), ``processes``, ``ray`` (a local Ray) or ``ray-cluster``."""
        if self.params.local:
            return "local"
        address = cluster_address(self.params)
        if self.params.backend == "processes" or (self.params.backend == "auto" and not address):
            return "processes"
        return "ray-cluster" if address else "ray"

    @property
    def backend(self) -> Backend:
        """The backend of the current mode (created on first use; creating it starts nothing)."""
        kind = "ray" if self.mode.startswith("ray") else self.mode
        if kind not in self._backends:
            if kind == "local":
                self._backends[kind] = InProcessBackend(self.cache, self.params.worker_env())
            elif kind == "processes":
                self._backends[kind] = ProcessBackend(self.params, self.cache)
            else:
                self._backends[kind] = RayBackend(self.params, self.cache)
        return self._backends[kind]

    # -- public operations ------------------------------------------------------------------------
    def map(self, step: Step, clips: Sequence[Clip], desc: str | None = None) -> StepOutcome:
        """Apply ``step`` to every clip (cached); one result per clip, in order."""
        return self.chain([step], clips, desc=desc)[0]

    def chain(self, steps: Sequence[Step], clips: Sequence[Clip], desc: str | None = None) -> list[StepOutcome]:
        """Stream every clip through ``steps`` in turn; one :class:`StepOutcome` per step.

        A clip goes on to step k+1 as soon as step k has finished it, so no worker waits at a step
        boundary for the slowest clip of the step (the second worker's idle time is what kept
        2-worker ingest at 1.56x of 1 worker, bench/README.md). Work closest to the end runs first,
        which finishes clips early and keeps few intermediate files in flight. The outcomes are
        exactly those of mapping the steps one after another: same inputs, results and order.

        All steps must declare the same ``resources`` (one worker pool serves them); otherwise the
        steps are mapped one after another.
        """
        steps = list(steps)
        if len({s.resources for s in steps}) > 1:
            outcomes = []
            for step in steps:
                outcomes.append(self.map(step, clips, desc=desc))
                clips = outcomes[-1].kept
            return outcomes
        t0 = time.perf_counter()
        run = ChainRun(steps, list(clips), self.cache, desc or f"{self.stage}:{'+'.join(s.name for s in steps)}",
                       retry_errors=self.params.retry_errors, progress=self.params.progress)
        try:
            if run.queue:  # all hits: no backend starts
                backend = self.backend
                backend.run(self._resources(steps[0], backend), run)
        finally:
            run.bar.close()
        outcomes = run.outcomes(time.perf_counter() - t0)
        for o in outcomes:  # a chain's caller logs one line for all its steps (-v: one per step)
            log.log(logging.WARNING if o.crashes else logging.DEBUG, "%s: %d kept, %d dropped (%d cached, %d computed) in %.1fs%s",
                    o.step, len(o.kept), len(o.drops), o.hits, o.misses, o.seconds,
                    f"; {o.crashes} worker crash(es), {o.retries} retried" if o.crashes else "")
        return outcomes

    def _resources(self, step: Step, backend: Backend) -> Resources:
        """The step's resources, with its GPU dropped when it may run on CPU and none is here."""
        res = step.resources
        if res.gpus <= 0 or self.params.local:
            return res
        have = backend.available_gpus()
        if have >= res.gpus:
            return res
        if not getattr(step, "gpu_optional", False):
            raise StepSetupError(f"{step.name} needs {res.gpus} GPU per worker but this {backend.where} has {have:g}")
        if not self._no_gpu_said:  # one line per stage, however many steps it maps
            log.warning("no GPU here: running %s on CPU", step.name)
            self._no_gpu_said = True
        else:
            log.debug("no GPU here: running %s on CPU", step.name)
        return Resources(cpus=res.cpus, gpus=0.0)
