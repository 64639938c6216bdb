"""The scheduler of one ``Runner.map`` / ``Runner.chain``: what waits at which step, batches, results.

Backend-neutral: a backend takes :class:`Task` objects from :meth:`ChainRun.pop`, runs them
somewhere and hands the results to :meth:`ChainRun.done` (or :meth:`ChainRun.retry` after a crash).
Cache hits are resolved here, in the driver, so they never reach a worker.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Sequence

from tqdm import tqdm

from core.clip import Clip, Drop
from pipeline.cache import Cache, Result
from pipeline.steps import Step

log = logging.getLogger("pipeline.runner")  # one logger name for the package, as in the stage logs


@dataclass
class StepOutcome:
    """What ``Runner.map`` returns: one result per input clip, in input order, and counters."""

    step: str
    inputs: list[Clip]
    results: list[Result]
    hits: int = 0
    misses: int = 0
    seconds: float = 0.0
    crashes: int = 0  # worker processes that died on a batch of this step
    retries: int = 0  # ... of which the batch was run again
    startup_s: float = 0.0  # worker start-up charged to this step: spawn, imports and setup() (models), before any clip

    @property
    def kept(self) -> list[Clip]:
        return [c for r in self.results if not isinstance(r, Drop) for c in r]

    @property
    def drops(self) -> list[tuple[Clip, Drop]]:
        return [(c, r) for c, r in zip(self.inputs, self.results) if isinstance(r, Drop)]

    @property
    def reasons(self) -> Counter:
        return Counter(d.reason for _, d in self.drops)


ItemPath = tuple[int, ...]  # (source index, output index of step 1, output index of step 2, ...)


@dataclass
class Task:
    """One call of ``step.process`` on up to ``batch_size`` clips waiting at the same step."""

    level: int  # index of the step in the chain
    step: Step
    ident: str
    paths: list[ItemPath]
    clips: list[Clip]
    keys: list[str]
    crashes: int = 0
    sent: float = 0.0
    started: float = 0.0  # when a worker began running it (processes backend: the time limit counts from here)


class ChainRun:
    """Book-keeping of one ``Runner.chain``: what waits at which step, results by item path.

    Every item is identified by its path (source index, then the index of each output along the
    way), so sorting the paths of a step's items gives exactly the input order of mapping the
    steps one after another, and the outcomes are the same whichever worker finished first.
    """

    def __init__(self, steps: list[Step], clips: list[Clip], cache: Cache, desc: str,
                 retry_errors: bool = False, progress: bool = True):
        self.steps, self.cache = steps, cache
        self.retry_errors = retry_errors
        self.idents = [s.identity() for s in steps]
        n = len(steps)
        self.inputs: list[dict[ItemPath, Clip]] = [{} for _ in range(n)]
        self.results: list[dict[ItemPath, Result]] = [{} for _ in range(n)]
        self.hits, self.misses, self.busy = [0] * n, [0] * n, [0.0] * n
        self.crashes, self.retries = [0] * n, [0] * n
        self.startup = [0.0] * n  # seconds of worker start-up (spawn, imports, setup) per step
        self.waiting: list[deque[tuple[ItemPath, Clip, str, int]]] = [deque() for _ in range(n)]
        self.open = [0] * len(clips)  # unresolved items per source: the bar counts finished sources
        self.counts: Counter = Counter()
        self.bar = tqdm(
            total=len(clips), desc=desc, unit="src" if n > 1 else "clip",
            disable=not progress or not clips, mininterval=0.5, dynamic_ncols=True,
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

    def pop(self) -> Task | None:
        """The next task: from the deepest step with waiting items, so started clips finish first."""
        level = next((lv for lv in range(len(self.steps) - 1, -1, -1) if self.waiting[lv]), None)
        if level is None:
            return None
        step, queue = self.steps[level], self.waiting[level]
        items = [queue.popleft() for _ in range(min(len(queue), max(1, int(step.batch_size))))]
        return Task(level, step, self.idents[level], [i[0] for i in items], [i[1] for i in items],
                    [i[2] for i in items], crashes=max(i[3] for i in items), sent=time.perf_counter())

    def crashed(self, task: Task, why: str, retry: bool) -> None:
        """Count and log a worker that died running ``task`` (``retry``: it runs again)."""
        self.crashes[task.level] += 1
        self.retries[task.level] += int(retry)
        log.warning("%s: a worker died (%s) on %s%s", task.step.name, why, ", ".join(c.key for c in task.clips[:3]),
                    "; retrying" if retry else "; giving up (error:WorkerCrashed)")

    def retry(self, task: Task) -> None:
        """Put a crashed task's items back at the front of their step's queue."""
        for item in reversed(list(zip(task.paths, task.clips, task.keys))):
            self.waiting[task.level].appendleft((*item, task.crashes + 1))

    def requeue(self, task: Task) -> None:
        """Put a task that never ran (queued behind a killed worker) back at the front of its step's queue."""
        for item in reversed(list(zip(task.paths, task.clips, task.keys))):
            self.waiting[task.level].appendleft((*item, task.crashes))

    def started_up(self, task: Task, seconds: float) -> None:
        """A worker spent ``seconds`` starting up (or setting up ``task``'s step) before running ``task``."""
        self.startup[task.level] += seconds

    def done(self, task: Task, results: Sequence[Result]) -> None:
        self.busy[task.level] += time.perf_counter() - task.sent
        for path, result in zip(task.paths, results):
            self._resolve(task.level, path, result)

    def _offer(self, level: int, path: ItemPath, clip: Clip) -> None:
        self.inputs[level][path] = clip
        self.open[path[0]] += 1
        step = self.steps[level]
        name, key = step.name, Cache.key(self.idents[level], step.input_fingerprint(clip))
        cached = self.cache.get(name, key)
        if cached is None or (self.retry_errors and isinstance(cached, Drop) and cached.reason.startswith("error:")):
            self.misses[level] += 1
            self.waiting[level].append((path, clip, key, 0))
        else:
            self.hits[level] += 1
            self._resolve(level, path, cached)

    def _resolve(self, level: int, path: ItemPath, result: Result) -> None:
        result = self.steps[level].adopt(self.inputs[level][path], result)  # a hit may be another clip's entry
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
                hits=self.hits[level], misses=self.misses[level], crashes=self.crashes[level], retries=self.retries[level],
                startup_s=self.startup[level],
                seconds=seconds if len(self.steps) == 1 else self.busy[level],
            ))
        return out
