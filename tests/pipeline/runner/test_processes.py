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
