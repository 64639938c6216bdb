"""The ``ray`` backend: Ray actors with the same contract as the local worker processes."""

from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.runner import Runner, RunnerParams, StepSetupError
from tests.pipeline.runner.toy_steps import BrokenSetup, CrashOnce, Double, Mark, Split, calls, clips
from tests.pipeline.test_hardening_faults import Hang, toy_clips


@pytest.mark.slow
def test_ray_two_workers_crash_retry_and_setup_errors(env):
    cache, log = env
    params = RunnerParams(backend="ray", num_cpus=2, max_retries=1, progress=False, temp_dir=str(Path(log).parent / "ray"),
                          task_timeout_s=20.0)
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

        # a hung batch: its actor is killed after runner.task_timeout_s (no restart: that would re-run it), a fresh one
        # takes its place, the clip is an error:Timeout reject and the other clips are done
        hung = r.map(Hang(), toy_clips(3))
        assert [c.key for c in hung.kept] == ["1", "2"] and [(c.key, d.reason) for c, d in hung.drops] == [("0", "error:Timeout")]
        assert [c.key for c in r.map(Double(log), clips(2)).kept] == ["0", "1"]  # the pool works after the kill

        with pytest.raises(StepSetupError):
            r.map(BrokenSetup(), clips(1))
    assert not r.backend.started


def test_ray_temp_dir_is_short_and_absolute(tmp_path):
    from pipeline.runner import ray_temp_dir

    short = ray_temp_dir(str(tmp_path / ("x" * 60)))
    assert short.startswith("/tmp/ray-") and len(short) <= 40 and Path(short).is_dir()
    assert ray_temp_dir(short) == short
