"""``chain``: the outcomes of step-by-step maps, with no barrier between steps."""

from pathlib import Path

import pytest

from pipeline.cache import Cache
from pipeline.runner import Runner, RunnerParams
from tests.pipeline.runner.toy_steps import CrashOnce, Mark, Slow, Split, clips, sequential


@pytest.mark.parametrize("backend", ["local", "processes"])
def test_chain_gives_the_outcomes_of_step_by_step_maps(tmp_path, backend):
    log = tmp_path / "log"
    log.mkdir()
    steps = [Split(3, drop=(1,)), Split(2), Slow(str(log))]
    params = RunnerParams(local=backend == "local", backend="processes", num_cpus=2, progress=False)
    with Runner(RunnerParams(local=True, progress=False), Cache(tmp_path / "ref")) as r:
        expected = sequential(r, steps, clips(4))
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
