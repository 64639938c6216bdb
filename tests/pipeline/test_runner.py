"""The runner: cache hits never reach workers, errors become rejects, crashed workers are retried."""

import os
from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.clip import Clip, Drop
from pipeline.runner import Runner, RunnerParams, StepSetupError
from pipeline.steps import Resources, Step


class Double(Step):
    """Writes a file with the clip's number doubled; counts its calls in a folder."""

    name = "double"
    resources = Resources(cpus=1)

    def __init__(self, log_dir: str, fail_on: int = -1):
        super().__init__({"fail_on": fail_on})
        self.log_dir, self.fail_on = log_dir, fail_on

    def setup(self):
        Path(self.log_dir, f"setup-{os.getpid()}").touch()

    def __call__(self, clip, out):
        n = int(clip.key)
        Path(self.log_dir, f"call-{n}").touch()
        if n == self.fail_on:
            raise ValueError(f"bad clip {n}")
        (out / "x.txt").write_text(str(2 * n))
        return clip.evolve(files={"x": str(out / "x.txt")}, scores={"n2": 2 * n})


class CrashOnce(Step):
    """Kills its worker process the first time it sees each clip (a segfault, an OOM kill)."""

    name = "crash_once"

    def __init__(self, log_dir: str, always: bool = False):
        super().__init__({"always": always})
        self.log_dir, self.always = log_dir, always

    def __call__(self, clip, out):
        marker = Path(self.log_dir, f"crashed-{clip.key}")
        if self.always or not marker.exists():
            marker.touch()
            os._exit(1)
        return clip


class BrokenSetup(Step):
    name = "broken"

    def setup(self):
        raise FileNotFoundError("weights/tiny/x/config.json missing")

    def __call__(self, clip, out):
        return clip


def clips(n):
    return [Clip(key=str(i), dataset="d", source=f"/s/{i}", source_rel=f"{i}", source_hash=str(i)) for i in range(n)]


def calls(log_dir, prefix="call-"):
    return sorted(p.name for p in Path(log_dir).iterdir() if p.name.startswith(prefix))


@pytest.fixture
def env(tmp_path):
    (tmp_path / "log").mkdir()
    return Cache(tmp_path / "cache"), str(tmp_path / "log")


def test_local_results_in_order_errors_become_rejects_and_are_cached(env):
    cache, log = env
    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        out = r.map(Double(log, fail_on=3), clips(5))
        assert [c.scores["n2"] for c in out.kept] == [0, 2, 4, 8]
        (bad, drop), = out.drops
        assert bad.key == "3" and drop.reason == "error:ValueError" and "bad clip 3" in drop.message and "test_runner.py" in drop.message
        assert (out.hits, out.misses) == (0, 5)
        assert len(calls(log, "setup-")) == 1  # once per worker, not per clip
        again = r.map(Double(log, fail_on=3), clips(6))
    assert (again.hits, again.misses) == (5, 1)
    assert again.results[:5] == out.results
    assert calls(log).count("call-5") == 1 and len(calls(log)) == 6


def test_retry_errors_recomputes_only_error_rejects(env):
    cache, log = env
    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        r.map(Double(log, fail_on=3), clips(5))
    with Runner(RunnerParams(local=True, progress=False, retry_errors=True), cache) as r:
        out = r.map(Double(log, fail_on=3), clips(5))
    assert (out.hits, out.misses) == (4, 1)


def test_setup_failure_stops_the_stage(env):
    cache, _ = env
    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        with pytest.raises(StepSetupError, match="config.json missing"):
            r.map(BrokenSetup(), clips(2))


def test_all_hits_never_start_ray(env):
    cache, log = env
    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        r.map(Double(log), clips(3))
    for backend in ("ray", "processes"):
        with Runner(RunnerParams(backend=backend, progress=False), cache) as r:  # nothing to compute
            out = r.map(Double(log), clips(3))
            assert r._ray is None and not r._procs and out.hits == 3


def test_backend_choice(monkeypatch, env):
    cache, _ = env
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert Runner(RunnerParams(), cache).mode == "processes"
    assert Runner(RunnerParams(backend="ray"), cache).mode == "ray"
    assert Runner(RunnerParams(address="ray://head:10001"), cache).mode == "ray-cluster"
    assert Runner(RunnerParams(local=True, address="auto"), cache).mode == "local"
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert Runner(RunnerParams(), cache).mode == "ray-cluster"
    assert Runner(RunnerParams(backend="processes"), cache).mode == "processes"


def test_processes_two_workers_crash_retry_and_setup_errors(env):
    """The default local backend: same contract as Ray's (see the Ray test below)."""
    cache, log = env
    with Runner(RunnerParams(backend="processes", num_cpus=2, max_retries=1, progress=False), cache) as r:
        out = r.map(Double(log, fail_on=2), clips(6))
        assert [c.key for c in out.kept] == ["0", "1", "3", "4", "5"]
        assert [c.scores["n2"] for c in out.kept] == [0, 2, 6, 8, 10]
        assert out.drops[0][1].reason == "error:ValueError" and "bad clip 2" in out.drops[0][1].message
        assert len(calls(log, "setup-")) == 2  # two workers, each set up once
        pids = {p.proc.pid for p in r._procs}

        crash = r.map(CrashOnce(log), clips(3))  # each clip kills its worker once, then succeeds
        assert [c.key for c in crash.kept] == ["0", "1", "2"]
        assert not {p.proc.pid for p in r._procs} & pids  # both workers were replaced

        dead = r.map(CrashOnce(log, always=True), clips(1)[:1])
        assert dead.drops[0][1].reason == "error:WorkerCrashed" and "2 times" in dead.drops[0][1].message
        assert cache.get("crash_once", Cache.key(CrashOnce(log, always=True).identity(), clips(1)[0])) is None  # not cached

        again = r.map(Double(log), clips(8))  # the restarted workers serve the next step
        assert [c.scores["n2"] for c in again.kept] == [2 * i for i in range(8)]

        with pytest.raises(StepSetupError, match="config.json missing"):
            r.map(BrokenSetup(), clips(1))
        assert not r._procs


@pytest.mark.slow
def test_ray_two_workers_crash_retry_and_setup_errors(env):
    cache, log = env
    params = RunnerParams(backend="ray", num_cpus=2, max_retries=1, progress=False, temp_dir=str(Path(log).parent / "ray"))
    with Runner(params, cache) as r:
        out = r.map(Double(log, fail_on=2), clips(6))
        assert [c.key for c in out.kept] == ["0", "1", "3", "4", "5"]
        assert out.drops[0][1].reason == "error:ValueError"
        assert len(calls(log, "setup-")) == 2  # two actors, each set up once

        crash = r.map(CrashOnce(log), clips(2))  # each clip kills its worker once, then succeeds
        assert [c.key for c in crash.kept] == ["0", "1"]

        dead = r.map(CrashOnce(log, always=True), clips(1)[:1])
        assert dead.drops[0][1].reason == "error:WorkerCrashed"
        assert cache.get("crash_once", Cache.key(CrashOnce(log, always=True).identity(), clips(1)[0])) is None  # not cached

        chained = r.chain([Split(2), Mark(log)], clips(2))  # two steps on the same actors
        assert [c.key for c in chained[1].kept] == ["0_0", "0_1", "1_0", "1_1"]

        with pytest.raises(StepSetupError):
            r.map(BrokenSetup(), clips(1))


class Split(Step):
    """Fans a clip out into ``n`` clips (like segment); drops clips whose number is in ``drop``."""

    name = "split"
    resources = Resources(cpus=1)

    def __init__(self, n: int, drop: tuple = ()):
        super().__init__({"n": n, "drop": list(drop)})
        self.n, self.drop = n, drop

    def __call__(self, clip, out):
        if int(clip.key.split("_")[0]) in self.drop:
            return Drop("too_short", f"clip {clip.key}")
        return [clip.evolve(key=f"{clip.key}_{j}") for j in range(self.n)]


class Slow(Step):
    """Sleeps longer on the first source, so a barrier between steps would hold the other worker."""

    name = "slow"
    resources = Resources(cpus=1)

    def __init__(self, log_dir: str):
        super().__init__({})
        self.log_dir = log_dir

    def __call__(self, clip, out):
        import time

        time.sleep(0.6 if clip.key.startswith("0") else 0.05)
        Path(self.log_dir, f"slow-{clip.key}-{time.monotonic():.6f}").touch()
        return clip.evolve(scores={"slow": 1})


class Mark(Slow):
    """Records when it saw each clip."""

    name = "mark"

    def __call__(self, clip, out):
        import time

        Path(self.log_dir, f"mark-{clip.key}-{time.monotonic():.6f}").touch()
        return clip


def _sequential(runner, steps, items):
    outcomes = []
    for step in steps:
        outcomes.append(runner.map(step, items))
        items = outcomes[-1].kept
    return outcomes


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_chain_gives_the_outcomes_of_step_by_step_maps(tmp_path, backend):
    log = tmp_path / "log"
    log.mkdir()
    steps = [Split(3, drop=(1,)), Split(2), Slow(str(log))]
    params = RunnerParams(local=backend == "local", backend="processes", num_cpus=2, progress=False)
    with Runner(RunnerParams(local=True, progress=False), Cache(tmp_path / "ref")) as r:
        expected = _sequential(r, steps, clips(4))
    with Runner(params, Cache(tmp_path / "cache")) as r:
        got = r.chain(steps, clips(4))
        assert [o.step for o in got] == ["split", "split", "slow"]
        for e, g in zip(expected, got):
            assert [c.key for c in g.inputs] == [c.key for c in e.inputs]
            assert [c.key for c in g.kept] == [c.key for c in e.kept]
            assert [d.reason for _, d in g.drops] == [d.reason for _, d in e.drops]
            assert (g.hits, g.misses) == (0, len(e.inputs))
        assert [c.key for c in got[-1].kept][:3] == ["0_0_0", "0_0_1", "0_1_0"]
        assert got[0].drops[0][0].key == "1"
        again = r.chain(steps, clips(5))  # only the new source is computed, at every step
    assert [(o.hits, o.misses) for o in again] == [(4, 1), (9, 3), (18, 6)]
    assert [c.key for c in again[-1].kept] == [c.key for c in got[-1].kept] + [f"4_{i}_{j}" for i in range(3) for j in range(2)]


def test_chain_has_no_barrier_between_steps(env):
    """While the slow source is in step 1, the other worker already runs step 2 on the fast ones."""
    cache, log = env
    with Runner(RunnerParams(backend="processes", num_cpus=2, progress=False), cache) as r:
        out = r.chain([Slow(log), Mark(log)], clips(4))
    assert [c.key for c in out[1].kept] == ["0", "1", "2", "3"]
    times = {}
    for p in Path(log).iterdir():
        kind, key, t = p.name.split("-")
        times[kind, key] = float(t)
    assert times["mark", "1"] < times["slow", "0"]  # step 2 started before step 1 finished source 0


def test_chain_retries_a_crashed_worker_and_keeps_going(env):
    cache, log = env
    with Runner(RunnerParams(backend="processes", num_cpus=2, max_retries=1, progress=False), cache) as r:
        out = r.chain([Split(2), CrashOnce(log), Mark(log)], clips(2))
    assert [c.key for c in out[2].kept] == ["0_0", "0_1", "1_0", "1_1"]  # every clip survived its crash
    assert not out[1].drops and out[1].misses == 4
    assert sorted(p.name for p in Path(log).iterdir() if p.name.startswith("crashed-")) == ["crashed-0_0", "crashed-0_1", "crashed-1_0", "crashed-1_1"]


def test_chain_with_different_resources_maps_step_by_step(env):
    cache, log = env

    class TwoCpus(Split):
        name = "two_cpus"
        resources = Resources(cpus=2)

    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        out = r.chain([TwoCpus(2), Split(2)], clips(2))
    assert [c.key for c in out[1].kept] == ["0_0_0", "0_0_1", "0_1_0", "0_1_1", "1_0_0", "1_0_1", "1_1_0", "1_1_1"]
