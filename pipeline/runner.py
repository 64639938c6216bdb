"""Maps a step over clips: in-process, in local worker processes, or on Ray (DESIGN 4).

THE ONLY Ray-aware module. Everything above it (stages) and below it (steps) is plain Python.

Backends (``runner.backend``; ``runner.local: true`` or ``--local`` forces in-process):

* ``processes``: long-lived local worker processes (spawned, one per ``num_cpus / step cpus``,
  GPUs shared out by ``CUDA_VISIBLE_DEVICES`` when a step asks for them). Starts in well under a
  second; this is what a single machine wants.
* ``ray``: long-lived Ray actors, on the cluster at ``runner.address`` / ``$RAY_ADDRESS``, or on a
  local Ray started for the stage. Starting and stopping a local Ray costs 7-17 s per stage
  process on a 2-core machine (bench/README.md), more than a plain ffmpeg transcode of a small
  dataset, so a local Ray pays only for multi-node work or Ray's GPU packing.
* ``auto`` (default): ``ray`` when a cluster address is set, ``processes`` otherwise.

For each ``map(step, clips)``, and for ``chain(steps, clips)``, which streams every clip through
several steps with no barrier between them (ingest uses it):

1. every clip's cache key is computed and looked up in the driver: hits never reach a worker,
   so a fully cached stage starts no worker at all;
2. misses go to a pool of long-lived workers sized from the step's ``resources`` (``setup()``
   runs once per worker; batched steps get up to ``batch_size`` clips per call; one batch in
   flight per worker, so a crash is charged to the batch that caused it);
3. a worker writes each result straight into the cache (atomic rename), so a killed run resumes;
4. an exception on a clip becomes ``Drop("error:<Type>")`` (cached like any reject; set
   ``runner.retry_errors`` to recompute those); a worker process that dies (segfault, OOM kill)
   is restarted and its batch re-run up to ``max_retries`` times; then its clips are dropped as
   ``error:WorkerCrashed`` (not cached); an exception in ``setup()`` is a configuration error and
   stops the stage.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal, Sequence

from tqdm import tqdm

from pipeline.cache import Cache, Result
from pipeline.clip import Clip, Drop
from pipeline.steps import Resources, Step, as_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerParams:
    """``runner`` section of params.yaml."""

    backend: Literal["auto", "processes", "ray"] = "auto"  # auto: ray when a cluster address is set, else processes
    address: str | None = None  # join this Ray cluster ("auto", "ray://host:10001"); $RAY_ADDRESS also works
    num_cpus: int | None = None  # CPUs of the local workers / local Ray (default: all cores)
    num_gpus: float | None = None  # GPUs of the local workers / local Ray (default: detected)
    local: bool = False  # run in-process, no worker processes (debugging)
    max_retries: int = 2  # restarts of a crashed worker, and retries of its task
    retry_errors: bool = False  # recompute cached error:<Type> rejects instead of reusing them
    in_flight: int = 1  # tasks queued per actor; >1 hides latency of very short steps, but a crash then also costs the queued task a retry
    object_store_mb: int = 512  # local Ray object store (records are small; media stay on disk)
    temp_dir: str = ".ray"  # Ray session files for a local Ray (relative to the work tree)
    progress: bool = True


class StepSetupError(RuntimeError):
    """``setup()`` of a step failed: a configuration problem (e.g. missing weights), not bad input."""


@dataclass
class StepOutcome:
    """What ``Runner.map`` returns: one result per input clip, in input order, and counters."""

    step: str
    inputs: list[Clip]
    results: list[Result]
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0

    @property
    def kept(self) -> list[Clip]:
        return [c for r in self.results if not isinstance(r, Drop) for c in r]

    @property
    def drops(self) -> list[tuple[Clip, Drop]]:
        return [(c, r) for c, r in zip(self.inputs, self.results) if isinstance(r, Drop)]

    @property
    def reasons(self) -> Counter:
        return Counter(d.reason for _, d in self.drops)


def describe_exception(e: BaseException) -> str:
    """``Type: message (at file:line in func)`` for a rejects row."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    return f"{text}{where}"[:2000]


def execute_batch(step: Step, clips: Sequence[Clip], keys: Sequence[str], cache: Cache) -> list[Result]:
    """Run ``step`` on ``clips`` and commit every result to the cache. Used by local and Ray modes.

    A batch whose ``process`` raises is retried clip by clip, so one bad clip does not take its
    batch-mates down with it.
    """
    workdirs = [cache.new_workdir() for _ in clips]
    try:
        outputs = list(step.process(list(clips), workdirs))
        if len(outputs) != len(clips):
            raise RuntimeError(f"{step.name}.process returned {len(outputs)} results for {len(clips)} clips")
    except Exception as e:  # noqa: BLE001 - any failure on input data becomes a reject row
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
        results.append(cache.put(step.name, key, workdir, result))
    return results


def _setup_once(step: Step, ready: dict[str, Step]) -> Step:
    ident = step.identity()
    if ident not in ready:
        try:
            step.setup()
        except Exception as e:  # noqa: BLE001
            raise StepSetupError(f"{step.name}: setup failed: {describe_exception(e)}") from e
        ready[ident] = step
    return ready[ident]


class _Worker:
    """A long-lived Ray actor: keeps set-up steps (models loaded once) and runs batches."""

    def __init__(self, cache_root: str, env: dict[str, str]):
        os.environ.update(env)
        self.cache = Cache(cache_root)
        self.ready: dict[str, Step] = {}

    def run(self, step: Step, clips: list[Clip], keys: list[str]) -> list[Result]:
        return execute_batch(_setup_once(step, self.ready), clips, keys, self.cache)

    def pid(self) -> int:
        return os.getpid()


def _process_worker_main(conn: Connection, cache_root: str) -> None:
    """Body of one ``processes`` worker: set-up steps kept by identity, one batch at a time."""
    worker = _Worker(cache_root, {})
    steps: dict[str, Step] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        ident, step, clips, keys = msg
        if step is not None:
            steps[ident] = step
        try:
            reply: tuple[str, Any] = ("ok", worker.run(steps[ident], clips, keys))
        except StepSetupError as e:
            reply = ("setup", str(e))
        conn.send(reply)


class _Process:
    """One local worker process and the driver's end of its pipe."""

    def __init__(self, ctx: Any, cache_root: str, gpu: int | None):
        self.conn, child = ctx.Pipe()
        env_gpu = {"CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else {}
        saved = {k: os.environ.get(k) for k in env_gpu}
        os.environ.update(env_gpu)  # spawn copies the driver's environment at start()
        try:
            self.proc = ctx.Process(target=_process_worker_main, args=(child, cache_root), daemon=True)
            self.proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.idents: set[str] = set()  # steps this process has been sent

    def send(self, ident: str, step: Step, clips: list[Clip], keys: list[str]) -> None:
        self.conn.send((ident, None if ident in self.idents else step, clips, keys))
        self.idents.add(ident)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _local_gpus() -> int:
    """GPUs this machine shows (``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``), without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


ItemPath = tuple[int, ...]  # (source index, output index of step 1, output index of step 2, ...)


@dataclass
class _Task:
    """One call of ``step.process`` on up to ``batch_size`` clips waiting at the same step."""

    level: int  # index of the step in the chain
    step: Step
    ident: str
    paths: list[ItemPath]
    clips: list[Clip]
    keys: list[str]
    crashes: int = 0
    sent: float = 0.0


class _ChainRun:
    """Book-keeping of one ``Runner.chain``: what waits at which step, results by item path.

    Every item is identified by its path (source index, then the index of each output along the
    way), so sorting the paths of a step's items gives exactly the input order of mapping the
    steps one after another, and the outcomes are the same whichever worker finished first.
    """

    def __init__(self, runner: "Runner", steps: list[Step], clips: list[Clip], desc: str | None):
        self.steps, self.cache = steps, runner.cache
        self.retry_errors = runner.params.retry_errors
        self.idents = [s.identity() for s in steps]
        n = len(steps)
        self.inputs: list[dict[ItemPath, Clip]] = [{} for _ in range(n)]
        self.results: list[dict[ItemPath, Result]] = [{} for _ in range(n)]
        self.hits, self.misses, self.busy = [0] * n, [0] * n, [0.0] * n
        self.waiting: list[deque[tuple[ItemPath, Clip, str, int]]] = [deque() for _ in range(n)]
        self.open = [0] * len(clips)  # unresolved items per source: the bar counts finished sources
        self.counts: Counter = Counter()
        self.bar = tqdm(
            total=len(clips), desc=desc or f"{runner.stage}:{'+'.join(s.name for s in steps)}", unit="src" if n > 1 else "clip",
            disable=not runner.params.progress or not clips, mininterval=0.5, dynamic_ncols=True,
        )
        for i, clip in enumerate(clips):
            self._offer(0, (i,), clip)

    @property
    def queue(self) -> bool:
        """True while some item waits for a worker."""
        return any(self.waiting)

    def size_hint(self) -> int:
        """How many workers could be busy: one step's batches, or unbounded when steps can fan out."""
        if len(self.steps) > 1:
            return 1 << 30
        return -(-len(self.waiting[0]) // max(1, int(self.steps[0].batch_size)))

    def pop(self) -> _Task | None:
        """The next task: from the deepest step with waiting items, so started clips finish first."""
        level = next((lv for lv in range(len(self.steps) - 1, -1, -1) if self.waiting[lv]), None)
        if level is None:
            return None
        step, queue = self.steps[level], self.waiting[level]
        items = [queue.popleft() for _ in range(min(len(queue), max(1, int(step.batch_size))))]
        return _Task(level, step, self.idents[level], [i[0] for i in items], [i[1] for i in items],
                     [i[2] for i in items], crashes=max(i[3] for i in items), sent=time.perf_counter())

    def retry(self, task: _Task) -> None:
        """Put a crashed task's items back at the front of their step's queue."""
        for item in reversed(list(zip(task.paths, task.clips, task.keys))):
            self.waiting[task.level].appendleft((*item, task.crashes + 1))

    def done(self, task: _Task, results: Sequence[Result]) -> None:
        self.busy[task.level] += time.perf_counter() - task.sent
        for path, result in zip(task.paths, results):
            self._resolve(task.level, path, result)

    def _offer(self, level: int, path: ItemPath, clip: Clip) -> None:
        self.inputs[level][path] = clip
        self.open[path[0]] += 1
        name, key = self.steps[level].name, Cache.key(self.idents[level], clip)
        cached = self.cache.get(name, key)
        if cached is None or (self.retry_errors and isinstance(cached, Drop) and cached.reason.startswith("error:")):
            self.misses[level] += 1
            self.waiting[level].append((path, clip, key, 0))
        else:
            self.hits[level] += 1
            self._resolve(level, path, cached)

    def _resolve(self, level: int, path: ItemPath, result: Result) -> None:
        self.results[level][path] = result
        if isinstance(result, Drop):
            self.counts["dropped"] += 1
        elif level + 1 < len(self.steps):
            for j, child in enumerate(result):
                self._offer(level + 1, (*path, j), child)
        else:
            self.counts["kept"] += len(result)
        self.open[path[0]] -= 1
        if self.open[path[0]] == 0:
            self.bar.update(1)
            self.bar.set_postfix(self.counts, refresh=False)

    def outcomes(self, seconds: float) -> list[StepOutcome]:
        """Per step, in the order of mapping the steps one by one. ``seconds``: the wall time for a
        single step; in a chain, the step's summed worker time (steps overlap in time)."""
        out = []
        for level, step in enumerate(self.steps):
            paths = sorted(self.inputs[level])
            missing = [p for p in paths if p not in self.results[level]]
            if missing:
                raise RuntimeError(f"{step.name}: {len(missing)} items never finished")
            out.append(StepOutcome(
                step.name, [self.inputs[level][p] for p in paths], [self.results[level][p] for p in paths],
                hits=self.hits[level], misses=self.misses[level],
                seconds=seconds if len(self.steps) == 1 else self.busy[level],
            ))
        return out


#: Environment variables passed to Ray workers (a cluster's workers do not inherit the driver's).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS", "SYNCHRORAMA_PARAMS", "HF_HOME", "TORCH_HOME")


class Runner:
    """Maps steps over clips with caching; use as a context manager (shuts Ray down if it started it)."""

    def __init__(self, params: RunnerParams, cache: Cache, stage: str = ""):
        self.params = params
        self.cache = cache
        self.stage = stage
        self._ray: Any = None
        self._started_ray = False
        self._pools: dict[Resources, list[Any]] = {}
        self._ready: dict[str, Step] = {}  # in-process set-up steps
        self._procs: list[_Process] = []  # the processes backend's workers, kept across maps
        self._gpus: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._procs:
            proc.stop()
        self._procs.clear()
        if self._ray is not None:
            for pool in self._pools.values():
                for actor in pool:
                    self._ray.kill(actor)
            self._pools.clear()
            if self._started_ray:
                self._ray.shutdown()
            self._ray = None

    @property
    def mode(self) -> str:
        """``local`` (in-process), ``processes``, ``ray`` (a local Ray) or ``ray-cluster``."""
        if self.params.local:
            return "local"
        if self.params.backend == "processes" or (self.params.backend == "auto" and not self._address()):
            return "processes"
        return "ray-cluster" if self._address() else "ray"

    def _address(self) -> str | None:
        return self.params.address or os.environ.get("RAY_ADDRESS") or None

    def _ensure_ray(self) -> Any:
        if self._ray is not None:
            return self._ray
        import ray  # the only import of Ray in the project

        if not ray.is_initialized():
            address = self._address()
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": logging.WARNING}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(
                    num_cpus=self.params.num_cpus or os.cpu_count(),
                    num_gpus=self.params.num_gpus,
                    object_store_memory=self.params.object_store_mb * 1024 * 1024,
                    _temp_dir=_ray_temp_dir(self.params.temp_dir),
                    **kwargs,
                )
            self._started_ray = True
        self._ray = ray
        return ray

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
        run = _ChainRun(self, steps, list(clips), desc)
        try:
            if run.queue:
                if self.params.local:
                    self._run_local(run)
                elif self.mode == "processes":
                    self._run_processes(self._resources(steps[0]), run)
                else:
                    self._run_ray(self._resources(steps[0]), run)
        finally:
            run.bar.close()
        outcomes = run.outcomes(time.perf_counter() - t0)
        for o in outcomes:
            log.info("%s: %d kept, %d dropped (%d cached, %d computed) in %.1fs", o.step,
                     len(o.kept), len(o.drops), o.hits, o.misses, o.seconds)
        return outcomes

    def _resources(self, step: Step) -> Resources:
        """The step's resources, with its GPU dropped when it may run on CPU and none is here."""
        res = step.resources
        if res.gpus <= 0 or self.params.local:
            return res
        if self.mode == "processes":
            if self._gpus is None:
                self._gpus = int(self.params.num_gpus) if self.params.num_gpus is not None else _local_gpus()
            have = float(self._gpus)
        else:
            have = self._ensure_ray().cluster_resources().get("GPU", 0)
        if have >= res.gpus:
            return res
        if not getattr(step, "gpu_optional", False):
            raise StepSetupError(f"{step.name} needs {res.gpus} GPU per worker but this {'machine' if self.mode == 'processes' else 'Ray cluster'} has {have:g}")
        log.warning("%s: no GPU here; running its workers on CPU", step.name)
        return Resources(cpus=res.cpus, gpus=0.0)

    # -- in-process ---------------------------------------------------------------------------------
    def _run_local(self, run: "_ChainRun") -> None:
        while (task := run.pop()) is not None:
            ready = _setup_once(task.step, self._ready)
            run.done(task, execute_batch(ready, task.clips, task.keys, self.cache))

    # -- local worker processes ---------------------------------------------------------------------
    def _run_processes(self, res: Resources, run: "_ChainRun") -> None:
        cpus = self.params.num_cpus or os.cpu_count() or 1
        slots = max(1, int(cpus // res.cpus)) if res.cpus > 0 else 1 << 30
        if res.gpus > 0:
            slots = min(slots, max(1, int(self._gpus // res.gpus)))  # type: ignore[operator]
        ctx = multiprocessing.get_context("spawn")  # no fork: the driver may hold threads and model state

        def spawn(slot: int) -> _Process:
            gpu = slot % self._gpus if self._gpus and res.gpus > 0 else None
            return _Process(ctx, str(self.cache.root), gpu)

        busy: dict[int, _Task] = {}  # slot -> the task it runs
        try:
            while run.queue or busy:
                # Hand out queued work: idle workers first, then new workers up to the slot count.
                # Workers start only when there is work for them, so one clip starts one process.
                while run.queue:
                    slot = next((s for s in range(len(self._procs)) if s not in busy), None)
                    if slot is None and len(self._procs) < slots:
                        self._procs.append(spawn(len(self._procs)))
                        slot = len(self._procs) - 1
                    if slot is None:
                        break
                    task = run.pop()
                    if task is None:
                        break
                    self._procs[slot].send(task.ident, task.step, task.clips, task.keys)
                    busy[slot] = task
                conns = {self._procs[s].conn: s for s in busy}
                sentinels = {self._procs[s].proc.sentinel: s for s in busy}
                for ready in wait(list(conns) + list(sentinels)):
                    slot = conns.get(ready, sentinels.get(ready))  # type: ignore[arg-type]
                    if slot not in busy:
                        continue  # its pipe and its sentinel both fired
                    proc = self._procs[slot]
                    try:
                        status, payload = proc.conn.recv() if proc.conn.poll() else (None, None)
                    except (EOFError, OSError):
                        status, payload = None, None
                    if status is None and proc.proc.is_alive() and ready is proc.conn:
                        continue  # spurious wake-up
                    task = busy.pop(slot)
                    if status == "setup":
                        raise StepSetupError(payload)
                    if status == "ok":
                        run.done(task, payload)
                        continue
                    # The worker died with this task: restart it; retry the task or give up on it.
                    proc.proc.join(1)
                    code = proc.proc.exitcode
                    proc.stop(0)
                    self._procs[slot] = spawn(slot)
                    if task.crashes < self.params.max_retries:
                        run.retry(task)
                    else:
                        msg = f"worker process died {task.crashes + 1} times on this clip (exit code {code})"
                        run.done(task, [Drop("error:WorkerCrashed", msg)] * len(task.clips))  # not cached: may be transient
        except BaseException:
            for proc in self._procs:  # a half-sent pipe protocol cannot be resumed: start afresh next time
                proc.proc.kill()
                proc.stop(0)
            self._procs.clear()
            raise

    # -- Ray ----------------------------------------------------------------------------------------
    def _run_ray(self, res: Resources, run: "_ChainRun") -> None:
        ray = self._ensure_ray()
        pool = self._pool(res, run.size_hint())
        step_refs: dict[str, Any] = {}
        idle = deque(a for a in pool for _ in range(max(1, self.params.in_flight)))
        pending: dict[Any, tuple[_Task, Any]] = {}
        while run.queue or pending:
            while run.queue and idle:
                task = run.pop()
                if task is None:
                    break
                if task.ident not in step_refs:
                    step_refs[task.ident] = ray.put(task.step)
                actor = idle.popleft()
                pending[actor.run.remote(step_refs[task.ident], task.clips, task.keys)] = (task, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task, actor = pending.pop(ref)
                idle.append(actor)  # Ray restarts a dead actor behind the same handle
                try:
                    batch_results = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    if isinstance(cause, StepSetupError):
                        raise StepSetupError(str(cause)) from None
                    batch_results = [Drop(f"error:{type(cause).__name__}", describe_exception(cause))] * len(task.clips)
                except ray.exceptions.RayActorError as e:  # includes ActorUnavailableError
                    # Ray restarted the worker and re-ran the task max_retries times: it kills its worker.
                    msg = f"worker process died {self.params.max_retries + 1} times on this clip: {str(e).splitlines()[0][:300]}"
                    batch_results = [Drop("error:WorkerCrashed", msg)] * len(task.clips)  # not cached: may be transient
                run.done(task, batch_results)

    def _actor_class(self, res: Resources) -> Any:
        ray = self._ray
        return ray.remote(
            num_cpus=res.cpus, num_gpus=res.gpus or 0,
            # A dead worker comes back (restarts are unlimited) and Ray re-runs the task it was running,
            # max_retries times. One task per actor at a time, so a crash only costs its own batch.
            max_restarts=-1, max_task_retries=self.params.max_retries,
        )(_Worker)

    def _env(self) -> dict[str, str]:
        return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}

    def _pool(self, res: Resources, n_tasks: int) -> list[Any]:
        ray = self._ray
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
        cls = self._actor_class(res)
        while len(pool) < want:
            pool.append(cls.remote(str(self.cache.root), self._env()))
        return pool


def _ray_temp_dir(configured: str) -> str:
    """An absolute Ray temp dir; Unix socket paths are limited to ~107 bytes, so long ones move to /tmp."""
    path = Path(configured).resolve()
    if len(str(path)) > 40:
        path = Path("/tmp") / f"ray-{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)
