"""The ``processes`` backend: local worker processes, set up once, crashes retried then dropped."""

import pytest

from pipeline.cache import Cache
from pipeline.runner import Runner, RunnerParams, StepSetupError
from tests.pipeline.runner.toy_steps import BrokenSetup, CrashOnce, Double, calls, clips


def test_processes_two_workers_crash_retry_and_setup_errors(env):
    """The default local backend: same contract as Ray's (test_ray_backend.py)."""
    cache, log = env
    with Runner(RunnerParams(backend="processes", num_cpus=2, max_retries=1, progress=False), cache) as r:
        out = r.map(Double(log, fail_on=2), clips(6))
        assert [c.key for c in out.kept] == ["0", "1", "3", "4", "5"]
        assert [c.scores["n2"] for c in out.kept] == [0, 2, 6, 8, 10]
        assert out.drops[0][1].reason == "error:ValueError" and "bad clip 2" in out.drops[0][1].message
        assert len(calls(log, "setup-")) == 2  # two workers, each set up once
        pids = {p.proc.pid for p in r.backend.procs}

        crash = r.map(CrashOnce(log), clips(3))  # each clip kills its worker once, then succeeds
        assert [c.key for c in crash.kept] == ["0", "1", "2"]
        assert not {p.proc.pid for p in r.backend.procs} & pids  # both workers were replaced
        assert crash.crashes == crash.retries == 3  # counted (and logged) for the stage report

        dead = r.map(CrashOnce(log, always=True), clips(1)[:1])
        assert dead.drops[0][1].reason == "error:WorkerCrashed" and "2 times" in dead.drops[0][1].message
        assert (dead.crashes, dead.retries) == (2, 1)
        assert cache.get("crash_once", Cache.key(CrashOnce(log, always=True).identity(), clips(1)[0])) is None  # not cached

        again = r.map(Double(log), clips(8))  # the restarted workers serve the next step
        assert [c.scores["n2"] for c in again.kept] == [2 * i for i in range(8)]

        with pytest.raises(StepSetupError, match="config.json missing"):
            r.map(BrokenSetup(), clips(1))
        assert not r.backend.procs
    assert not r.backend.started


@pytest.mark.parametrize("local", [False, True])
def test_startup_seconds_are_charged_to_the_step_once_per_worker(env, local):
    """Worker start-up (spawn, imports, setup) is reported per step; kept workers and cached clips add none."""
    from tests.pipeline.runner.toy_steps import SlowSetup

    cache, _ = env
    with Runner(RunnerParams(backend="processes", num_cpus=1, local=local, progress=False), cache) as r:
        first = r.map(SlowSetup(0.3), clips(2))
        assert first.misses == 2 and first.startup_s >= 0.3  # one worker: set up once, before its first clip
        assert first.startup_s < 0.3 + 30  # not once per clip either
        again = r.map(SlowSetup(0.3), clips(4)[2:])  # the same worker, already set up
        assert again.misses == 2 and again.startup_s < 0.3
        cached = r.map(SlowSetup(0.3), clips(2))
        assert cached.hits == 2 and cached.startup_s == 0.0
    from pipeline.stats import StageStats

    stats = StageStats("extract", "x")
    stats.add(first)
    assert stats.run_steps["slow_setup"]["startup_s"] == round(first.startup_s, 3)
