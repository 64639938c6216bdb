"""Running one batch of a step inside a worker: set-up once, results committed to the cache.

Shared by every backend: the in-process one (:class:`InProcessBackend`, here), the local worker
processes (``processes.py``) and the Ray actors (``ray_backend.py``, whose actor class is
:class:`Worker`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from core.clip import Clip, Drop
from core.storage import is_transient, storage_error
from pipeline.cache import Cache, Result
from pipeline.steps import Resources, Step, as_result

if TYPE_CHECKING:
    from pipeline.runner.schedule import ChainRun, Task

log = logging.getLogger("pipeline.runner")  # one logger name for the package, as in the stage logs


class StepSetupError(RuntimeError):
    """``setup()`` of a step failed: a configuration problem (e.g. missing weights), not bad input."""


def describe_exception(e: BaseException) -> str:
    """``Type: message (at file:line in func)`` for a rejects row."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    return f"{text}{where}"[:2000]


def execute_batch(step: Step, clips: Sequence[Clip], keys: Sequence[str], cache: Cache) -> list[Result]:
    """Run ``step`` on ``clips`` and commit every result to the cache. Used by every backend.

    A batch whose ``process`` raises is retried clip by clip, so one bad clip does not take its
    batch-mates down with it. A storage failure (full disk, I/O error, permission:
    :func:`core.storage.is_transient`) is never a reject: it raises :class:`~core.storage.StorageError`
    naming the path, and nothing is cached for the batch.
    """
    try:
        workdirs = [cache.new_workdir() for _ in clips]
    except OSError as e:
        raise storage_error(e, f"{step.name}: cannot write to the cache", cache.tmp) from e
    try:
        outputs = list(step.process(list(clips), workdirs))
        if len(outputs) != len(clips):
            raise RuntimeError(f"{step.name}.process returned {len(outputs)} results for {len(clips)} clips")
    except Exception as e:  # noqa: BLE001 - any failure on input data becomes a reject row
        if is_transient(e, [n for c in clips for n in (c.source, c.source_rel)]):  # never a (cached) reject
            for w in workdirs:
                cache.discard(w)
            raise storage_error(e, f"{step.name} on {clips[0].source_rel}", workdirs[0]) from e
        if len(clips) > 1:
            for w in workdirs:
                cache.discard(w)
            return [r for c, k in zip(clips, keys) for r in execute_batch(step, [c], [k], cache)]
        log.debug("step %s failed on %s", step.name, clips[0].key, exc_info=True)
        outputs = [Drop(f"error:{type(e).__name__}", describe_exception(e))]
    results = []
    for clip, key, workdir, output in zip(clips, keys, workdirs, outputs):
        try:
            result = as_result(output)
        except TypeError as e:
            result = Drop("error:TypeError", str(e))
        if isinstance(result, Drop):
            # Files of a rejected clip are not kept, and its message names the source relative to the
            # dataset, so rejects tables are identical on every machine.
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir()
            if clip.source and clip.source != clip.source_rel:
                result = Drop(result.reason, result.message.replace(clip.source, clip.source_rel))
        try:
            results.append(cache.put(step.name, key, workdir, result))
        except OSError as e:
            raise storage_error(e, f"{step.name}: cannot write to the cache", cache.root) from e
    return results


def timed_out(task: "Task", limit: float, cache: Cache) -> list[Result]:
    """``error:Timeout`` results for a task whose batch ran longer than ``limit`` seconds (cached like any
    error reject; ``runner.retry_errors`` recomputes them)."""
    log.warning("%s: a batch of %d clip(s) ran longer than runner.task_timeout_s = %g s (%s); its worker was killed",
                task.step.name, len(task.clips), limit, task.clips[0].source_rel)
    drop = Drop("error:Timeout", f"{task.step.name} ran longer than runner.task_timeout_s = {limit:g} s on this batch; its worker was killed")
    return [cache.put(task.step.name, key, cache.new_workdir(), drop) for key in task.keys]


def setup_once(step: Step, ready: dict[str, Step]) -> Step:
    """The set-up copy of ``step`` in ``ready`` (by identity), calling ``setup()`` the first time."""
    ident = step.identity()
    if ident not in ready:
        try:
            step.setup()
        except Exception as e:  # noqa: BLE001
            raise StepSetupError(f"{step.name}: setup failed: {describe_exception(e)}") from e
        ready[ident] = step
    return ready[ident]


class Worker:
    """A long-lived worker (a Ray actor, or the body of a local worker process): keeps set-up
    steps (models loaded once) and runs batches."""

    def __init__(self, cache_root: str, env: dict[str, str]):
        os.environ.update(env)
        self.cache = Cache(cache_root)
        self.ready: dict[str, Step] = {}

    def run(self, step: Step, clips: list[Clip], keys: list[str]) -> list[Result]:
        return execute_batch(setup_once(step, self.ready), clips, keys, self.cache)

    def pid(self) -> int:
        return os.getpid()


class InProcessBackend:
    """``runner.local``: every batch runs in the driver, one after another (debugging)."""

    where = "machine"

    def __init__(self, cache: Cache, env: dict[str, str] | None = None):
        self.cache = cache
        self.ready: dict[str, Step] = {}  # set-up steps, kept across maps
        os.environ.update(env or {})  # the driver is the worker here (ffmpeg time limit)

    @property
    def started(self) -> bool:
        return False  # nothing to start

    def available_gpus(self) -> float:  # never asked: in-process steps keep their resources
        return 0.0

    def run(self, res: Resources, run: "ChainRun") -> None:
        while (task := run.pop()) is not None:
            t = time.perf_counter()
            ready = setup_once(task.step, self.ready)
            run.started_up(task, time.perf_counter() - t)
            run.done(task, execute_batch(ready, task.clips, task.keys, self.cache))

    def close(self) -> None:
        pass
