"""The Runner facade: cache hits never reach workers, errors become rejects, backend choice."""

import pytest

from pipeline.runner import Runner, RunnerParams, StepSetupError
from pipeline.steps import Resources
from tests.pipeline.runner.toy_steps import BrokenSetup, Double, Split, calls, clips


def test_local_results_in_order_errors_become_rejects_and_are_cached(env):
    cache, log = env
    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        out = r.map(Double(log, fail_on=3), clips(5))
        assert [c.scores["n2"] for c in out.kept] == [0, 2, 4, 8]
        (bad, drop), = out.drops
        assert bad.key == "3" and drop.reason == "error:ValueError" and "bad clip 3" in drop.message and "toy_steps.py" in drop.message
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
            assert not r.backend.started and out.hits == 3


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


def test_backend_objects_match_the_mode(monkeypatch, env):
    from pipeline.runner.execute import InProcessBackend
    from pipeline.runner.processes import ProcessBackend
    from pipeline.runner.ray_backend import RayBackend

    cache, _ = env
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert isinstance(Runner(RunnerParams(local=True), cache).backend, InProcessBackend)
    assert isinstance(Runner(RunnerParams(), cache).backend, ProcessBackend)
    r = Runner(RunnerParams(backend="ray"), cache)
    assert isinstance(r.backend, RayBackend) and r.backend is r.backend and not r.backend.started


class _GpuStep(Split):
    name = "gpu_step"
    resources = Resources(cpus=1, gpus=1)


class _GpuOptional(_GpuStep):
    gpu_optional = True


def test_gpu_steps_fall_back_to_cpu_only_when_optional(env, caplog):
    caplog.set_level("DEBUG", logger="pipeline.runner")
    cache, _ = env
    with Runner(RunnerParams(backend="processes", num_gpus=0, progress=False), cache) as r:
        with pytest.raises(StepSetupError, match="needs 1 GPU per worker but this machine has 0"):
            r.map(_GpuStep(2), clips(1))
        assert r._resources(_GpuOptional(2), r.backend) == Resources(cpus=1, gpus=0.0)
        assert r._resources(_GpuOptional(3), r.backend) == Resources(cpus=1, gpus=0.0)
    said = [rec for rec in caplog.records if rec.getMessage().startswith("no GPU here")]
    assert len(said) == 2 and [rec.levelname for rec in said] == ["WARNING", "DEBUG"]  # one warning per stage


def test_chain_with_different_resources_maps_step_by_step(env):
    cache, log = env

    class TwoCpus(Split):
        name = "two_cpus"
        resources = Resources(cpus=2)

    with Runner(RunnerParams(local=True, progress=False), cache) as r:
        out = r.chain([TwoCpus(2), Split(2)], clips(2))
    assert [c.key for c in out[1].kept] == ["0_0_0", "0_0_1", "0_1_0", "0_1_1", "1_0_0", "1_0_1", "1_1_0", "1_1_1"]


def test_a_hit_written_by_another_checkout_takes_this_runs_source_path(env):
    """The cache is shared: an entry written where the raw video lived at another absolute path must not hand
    that path to the next step (the key and source_hash identify the source, not its path)."""
    import dataclasses

    from tests.pipeline.runner.toy_steps import Mark, clips

    cache, log = env
    params = RunnerParams(local=True, progress=False)
    with Runner(params, cache) as r:
        first = r.map(Mark(log), clips(2))
        moved = [dataclasses.replace(c, source=f"/elsewhere/{c.source_rel}") for c in clips(2)]
        again = r.map(Mark(log), moved)
    assert [c.source for c in first.kept] == ["/s/0", "/s/1"]
    assert [c.source for c in again.kept] == ["/elsewhere/0", "/elsewhere/1"] and again.hits == 2
