"""The ``processes`` backend: long-lived local worker processes (``runner.backend: processes``).

Workers are spawned (no fork: the driver may hold threads and model state), one per
``num_cpus / step cpus``, GPUs shared out by ``CUDA_VISIBLE_DEVICES`` when a step asks for them.
Starts in well under a second; this is what a single machine wants. One batch in flight per
worker, so a crash is charged to the batch that caused it: a worker that dies (segfault, OOM kill)
is restarted and its batch re-run up to ``max_retries`` times, then its clips are dropped as
``error:WorkerCrashed`` (not cached). A batch running longer than ``task_timeout_s`` has its worker
killed and its clips rejected as ``error:Timeout``.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from core.clip import Clip, Drop
from pipeline.cache import Cache
from core.storage import StorageError
from pipeline.runner.execute import StepSetupError, Worker, setup_once, timed_out
from pipeline.runner.params import RunnerParams
from pipeline.runner.schedule import ChainRun, Task
from pipeline.steps import Resources, Step


def _process_worker_main(conn: Connection, cache_root: str, env: dict[str, str]) -> None:
    """Body of one ``processes`` worker: set-up steps kept by identity, one batch at a time."""
    worker = Worker(cache_root, env)
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
        t = time.perf_counter()
        try:
            setup_once(steps[ident], worker.ready)  # models load once per worker, before its first clip of the step
        except StepSetupError as e:
            conn.send(("setup", str(e)))
            continue
        conn.send(("start", time.perf_counter() - t))  # the task's time limit counts from here (not from the worker's own start)
        try:
            reply: tuple[str, Any] = ("ok", worker.run(steps[ident], clips, keys))
        except StepSetupError as e:
            reply = ("setup", str(e))
        except StorageError as e:
            reply = ("storage", str(e))
        conn.send(reply)


class _Process:
    """One local worker process and the driver's end of its pipe."""

    def __init__(self, ctx: Any, cache_root: str, gpu: int | None, env: dict[str, str]):
        self.conn, child = ctx.Pipe()
        env_gpu = {"CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else {}
        saved = {k: os.environ.get(k) for k in env_gpu}
        os.environ.update(env_gpu)  # spawn copies the driver's environment at start()
        try:
            self.proc = ctx.Process(target=_process_worker_main, args=(child, cache_root, env), daemon=True)
            self.proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.idents: set[str] = set()  # steps this process has been sent
        self.born: float | None = time.perf_counter()  # until its first task starts: spawn + imports count as start-up

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


def local_gpus() -> int:
    """GPUs this machine shows (``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``), without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


class ProcessBackend:
    """A pool of local worker processes, kept across maps until :meth:`close`."""

    where = "machine"

    def __init__(self, params: RunnerParams, cache: Cache):
        self.params = params
        self.cache = cache
        self.procs: list[_Process] = []  # the workers, by slot
        self._gpus: int | None = None

    @property
    def started(self) -> bool:
        return bool(self.procs)

    def available_gpus(self) -> float:
        """``runner.num_gpus``, else the GPUs this machine shows (looked up once)."""
        if self._gpus is None:
            self._gpus = int(self.params.num_gpus) if self.params.num_gpus is not None else local_gpus()
        return float(self._gpus)

    def run(self, res: Resources, run: ChainRun) -> None:
        cpus = self.params.num_cpus or os.cpu_count() or 1
        slots = max(1, int(cpus // res.cpus)) if res.cpus > 0 else 1 << 30
        gpus = int(self.available_gpus()) if res.gpus > 0 else 0
        if res.gpus > 0:
            slots = min(slots, max(1, int(gpus // res.gpus)))
        ctx = multiprocessing.get_context("spawn")  # no fork: the driver may hold threads and model state

        def spawn(slot: int) -> _Process:
            gpu = slot % gpus if gpus and res.gpus > 0 else None
            return _Process(ctx, str(self.cache.root), gpu, self.params.worker_env())

        procs = self.procs
        busy: dict[int, Task] = {}  # slot -> the task it runs
        try:
            while run.queue or busy:
                # Hand out queued work: idle workers first, then new workers up to the slot count.
                # Workers start only when there is work for them, so one clip starts one process.
                while run.queue:
                    slot = next((s for s in range(len(procs)) if s not in busy), None)
                    if slot is None and len(procs) < slots:
                        procs.append(spawn(len(procs)))
                        slot = len(procs) - 1
                    if slot is None:
                        break
                    task = run.pop()
                    if task is None:
                        break
                    procs[slot].send(task.ident, task.step, task.clips, task.keys)
                    busy[slot] = task
                conns = {procs[s].conn: s for s in busy}
                sentinels = {procs[s].proc.sentinel: s for s in busy}
                limit = self.params.task_timeout_s
                running = [t for t in busy.values() if t.started]
                left = min(t.started + limit - time.perf_counter() for t in running) if limit and running else None
                for slot in [s for s, t in busy.items() if left is not None and t.started and time.perf_counter() - t.started > limit]:
                    task = busy.pop(slot)  # hung: kill its worker, reject its clips (cached, like any error)
                    procs[slot].proc.kill()
                    procs[slot].stop(0)
                    procs[slot] = spawn(slot)
                    run.done(task, timed_out(task, limit, self.cache))
                if left is not None and left <= 0:
                    continue
                for ready in wait(list(conns) + list(sentinels), timeout=left):
                    slot = conns.get(ready, sentinels.get(ready))  # type: ignore[arg-type]
                    if slot not in busy:
                        continue  # its pipe and its sentinel both fired
                    proc = procs[slot]
                    try:
                        status, payload = proc.conn.recv() if proc.conn.poll() else (None, None)
                    except (EOFError, OSError):
                        status, payload = None, None
                    if status is None and proc.proc.is_alive() and ready is proc.conn:
                        continue  # spurious wake-up
                    if status == "start":
                        busy[slot].started = now = time.perf_counter()
                        # start-up: the process's own (spawn, imports, unpickling the step) the first time, and setup()
                        run.started_up(busy[slot], now - proc.born if proc.born is not None else float(payload or 0.0))
                        proc.born = None
                        continue
                    task = busy.pop(slot)
                    if status == "setup":
                        raise StepSetupError(payload)
                    if status == "storage":
                        raise StorageError(payload)
                    if status == "ok":
                        run.done(task, payload)
                        continue
                    # The worker died with this task: restart it; retry the task or give up on it.
                    proc.proc.join(1)
                    code = proc.proc.exitcode
                    proc.stop(0)
                    procs[slot] = spawn(slot)
                    run.crashed(task, f"exit code {code}", retry=task.crashes < self.params.max_retries)
                    if task.crashes < self.params.max_retries:
                        run.retry(task)
                    else:
                        msg = f"worker process died {task.crashes + 1} times on this clip (exit code {code})"
                        run.done(task, [Drop("error:WorkerCrashed", msg)] * len(task.clips))  # not cached: may be transient
        except BaseException:
            for proc in procs:  # a half-sent pipe protocol cannot be resumed: start afresh next time
                proc.proc.kill()
                proc.stop(0)
            procs.clear()
            raise

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        self.procs.clear()
