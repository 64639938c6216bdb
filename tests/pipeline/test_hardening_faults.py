"""Fault injection: full disks, hung decoders and workers, killed drivers, concurrent writers.

A storage failure is never a cached reject and stops the stage naming the path; every ffmpeg call
and runner task has a time limit (``error:Timeout``); output and cache folders are checked before
any compute; a driver killed while writing shards leaves the previous set and no stray temp folder,
and two ingests of one dataset at once both succeed with the same shards.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from core import media
from core.clip import Clip
from core.media import MediaError
from core.storage import AtomicDir, StorageError
from pipeline import ingest
from pipeline.cache import Cache
from pipeline.runner import Runner, RunnerParams
from pipeline.steps import Resources, Step
from pipeline.steps.probe import Probe
from tests.conftest import make_media

REPO = Path(__file__).resolve().parents[2]
PARAMS = {
    "runner": {"local": True, "progress": False},
    "cache": {"dir": "cache"},
    "shards": {"root": "shards"},
    "datasets": {"toy": {"adapter": "folder", "raw_dir": "raw"}},
    "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}, "segment": {"min_s": 0.4, "max_s": 20.0}},
}


class DiskFull(Step):
    """Fails like a full disk on clips whose key is in ``full`` (as an OSError, or as ffmpeg says it)."""

    name = "disk_full"
    resources = Resources(cpus=1)

    def __init__(self, full: tuple[str, ...] = (), as_ffmpeg: bool = False):
        super().__init__({"full": list(full), "as_ffmpeg": as_ffmpeg})
        self.full, self.as_ffmpeg = full, as_ffmpeg

    def __call__(self, clip, out):
        if clip.key in self.full:
            if self.as_ffmpeg:
                raise MediaError(f"ffmpeg failed on {clip.source_rel}: Error writing trailer: No space left on device")
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "x.wav"))
        (out / "x.txt").write_text(clip.key)
        return clip.evolve(files={"x": str(out / "x.txt")})


class Hang(Step):
    """Never finishes on clip "0" (a hung decoder inside a step)."""

    name = "hang"
    resources = Resources(cpus=1)

    def __call__(self, clip, out):
        if clip.key == "0":
            time.sleep(600)
        return clip


def toy_clips(n: int) -> list[Clip]:
    return [Clip(key=str(i), dataset="d", source=f"/s/{i}", source_rel=f"{i}.mp4", source_hash=str(i)) for i in range(n)]


def test_a_full_disk_is_never_a_cached_reject_and_names_the_path(tmp_path):
    cache = Cache(tmp_path / "cache")
    for as_ffmpeg in (False, True):
        step = DiskFull(full=("1",), as_ffmpeg=as_ffmpeg)
        with Runner(RunnerParams(local=True, progress=False), cache) as runner:
            with pytest.raises(StorageError, match="No space left on device .*free disk space.*re-run") as err:
                runner.map(step, toy_clips(3))
        assert "disk_full on 1.mp4" in str(err.value) and (as_ffmpeg or "x.wav" in str(err.value))
        assert cache.get(step.name, Cache.key(step.identity(), toy_clips(3)[1])) is None  # nothing cached for it
    with Runner(RunnerParams(local=True, progress=False), cache) as runner:  # space freed: the clip is computed
        assert [c.key for c in runner.map(DiskFull(full=()), toy_clips(3)).kept] == ["0", "1", "2"]


def test_media_timeout_kills_a_hung_ffprobe_with_reason_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv(media.TIMEOUT_ENV, "600")  # restored after the test (the runner sets it below)
    fifo = tmp_path / "hung.mp4"
    os.mkfifo(fifo)  # ffprobe blocks opening a FIFO nobody writes: a decoder that never returns
    cache = Cache(tmp_path / "cache")
    clip = Clip(key="t__hung", dataset="t", source=str(fifo), source_rel="hung.mp4", source_hash="0" * 64)
    t0 = time.perf_counter()
    with Runner(RunnerParams(local=True, progress=False, media_timeout_s=1.0), cache) as runner:
        (drop,) = [d for _, d in runner.map(Probe(), [clip]).drops]
        assert drop.reason == "error:Timeout" and "runner.media_timeout_s" in drop.message
        with pytest.raises(media.Timeout):
            list(media.clip_frames(fifo, 0.0, 25, 2, (8, 8)))
    assert time.perf_counter() - t0 < 30


def test_runner_task_timeout_and_storage_errors_cross_the_process_boundary(tmp_path):
    cache = Cache(tmp_path / "cache")
    params = RunnerParams(backend="processes", num_cpus=2, progress=False, task_timeout_s=3.0)
    with Runner(params, cache) as runner:
        out = runner.map(Hang(), toy_clips(3))
        assert [c.key for c in out.kept] == ["1", "2"]
        assert [(c.key, d.reason) for c, d in out.drops] == [("0", "error:Timeout")]
        assert "runner.task_timeout_s" in out.drops[0][1].message
        with pytest.raises(StorageError, match="No space left on device"):
            runner.map(DiskFull(full=("0",)), toy_clips(2))


def test_output_and_cache_folders_are_checked_before_any_compute(tmp_path):
    make_media(tmp_path / "raw" / "a.mp4", seconds=0.8, size="32x32")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "cache": {"dir": "cache", "min_free_mb": 1e12}}))
    with pytest.raises(StorageError, match="cache.dir: only .* MiB free in .*cache"):
        ingest.run("toy", root=tmp_path, params_file=params)
    (tmp_path / "shards").write_text("a file where the shards folder should be")
    params.write_text(yaml.safe_dump(PARAMS))
    with pytest.raises(StorageError, match="shards.root: cannot write to .*shards/clips"):
        ingest.run("toy", root=tmp_path, params_file=params)
    assert not (tmp_path / "cache" / "probe").exists()  # nothing was computed
    assert ingest.main(["toy", "--params", str(params)]) == 2  # one line naming the folder, exit status 2


def test_a_full_disk_while_writing_shards_names_the_output_folder(tmp_path, monkeypatch):
    from core.shards import ShardParams, write_clip_shards

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as pyarrow raises it: no path at all

    monkeypatch.setattr("core.shards.pq.write_table", full)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / 'o'}: No space left on device .*free disk space"):
        write_clip_shards(tmp_path / "o", [], [], ShardParams())
    assert os.listdir(tmp_path) == []  # the temp folder is gone, no target appeared


def test_concurrent_swaps_never_fail_and_readers_always_see_a_complete_folder(tmp_path, monkeypatch):
    target = tmp_path / "out"
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def writer(tag: str, n: int) -> None:
        try:
            for i in range(n):
                with AtomicDir(target) as tmp:
                    for f in ("a", "b", "c"):
                        (tmp / f).write_text(f"{tag}{i}")
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(len(os.listdir(target)))
            except FileNotFoundError:
                seen.append(-1)

    with AtomicDir(target) as tmp:
        for f in ("a", "b", "c"):
            (tmp / f).write_text("0")
    r = threading.Thread(target=reader)
    r.start()
    threads = [threading.Thread(target=writer, args=(t, 150)) for t in "xy"]
    [t.start() for t in threads]
    [t.join() for t in threads]
    stop.set()
    r.join()
    # Never missing, never half-written (a reader that opened the previous folder just before a swap may
    # watch it being deleted, which is the only way to see fewer than 3 files).
    assert not errors and -1 not in seen and seen.count(3) > len(seen) // 2
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temp or old folder left
    # Where the OS cannot exchange two folders, the lock alone keeps concurrent swaps from failing.
    monkeypatch.setattr("core.storage._exchange", lambda a, b: False)
    threads = [threading.Thread(target=writer, args=(t, 50)) for t in "xy"]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and sorted(os.listdir(target)) == ["a", "b", "c"] and sorted(os.listdir(tmp_path)) == ["out"]


KILL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
import core.shards as shards
from pipeline import ingest
add = shards._TarSet.add
def killing_add(self, *a, **k):
    if self.count:  # the second clip: the first one is in the temp folder already
        os.kill(os.getpid(), signal.SIGKILL)
    return add(self, *a, **k)
shards._TarSet.add = killing_add
ingest.run("toy", root=Path(sys.argv[1]), params_file=Path(sys.argv[1]) / "params.yaml")
"""


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_kill_mid_shard_write_then_rerun_and_two_concurrent_ingests(tmp_path):
    for i in range(2):
        make_media(tmp_path / "raw" / f"s{i}.mp4", seconds=0.8 + 0.1 * i, size="32x32", gated=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert ingest.run("toy", root=tmp_path, params_file=tmp_path / "params.yaml")["kept"] == 2
    out = tmp_path / "shards" / "clips" / "toy"
    before = digests(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    stray = [p.name for p in out.parent.iterdir() if p.name.startswith(".toy.tmp-")]
    assert len(stray) == 1 and digests(out) == before  # killed mid-write: the previous set is intact

    ingest.run("toy", root=tmp_path, params_file=tmp_path / "params.yaml")
    assert digests(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["toy"]  # stray removed

    cmd = [sys.executable, "-m", "pipeline.ingest", "toy", "--params", str(tmp_path / "params.yaml"), "-q"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0], [p.stderr.read().decode()[-2000:] for p in procs]  # type: ignore[union-attr]
    assert digests(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["toy"]


def test_kill_mid_extract_then_rerun_gives_the_same_sidecar(tmp_path):
    from pipeline import extract

    for i in range(4):
        make_media(tmp_path / "raw" / f"s{i}.mp4", seconds=0.6 + 0.1 * i, size="32x32", gated=False)
    params = {**PARAMS, "weights": {"profile": "tiny", "dir": "weights"},
              "features": {"rms": {"module": "tests.pipeline.rms_feature", "delay_s": 0.4}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert ingest.run("toy", root=tmp_path, params_file=tmp_path / "params.yaml")["kept"] == 4
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pipeline.extract", "rms", "toy", "--params", str(tmp_path / "params.yaml"), "-q"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True)
    records = tmp_path / "cache" / "rms"
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline and not (records.exists() and any(records.glob("*/*/record.json"))):
        time.sleep(0.02)
    os.killpg(proc.pid, 9)
    proc.wait()
    done = len(list(records.glob("*/*/record.json")))
    assert 1 <= done < 4, "the run should be killed half-way through the clips"
    out = tmp_path / "shards" / "features" / "rms" / "toy"
    assert not out.exists()

    report = extract.run("rms", "toy", root=tmp_path, params_file=tmp_path / "params.yaml")
    assert report["steps"]["rms"]["cached"] == done and report["steps"]["rms"]["computed"] == 4 - done  # resumed
    resumed = digests(out)
    os.rename(tmp_path / "cache", tmp_path / "old_cache")
    extract.run("rms", "toy", root=tmp_path, params_file=tmp_path / "params.yaml")  # all computed again
    assert digests(out) == resumed and sorted(p.name for p in out.parent.iterdir()) == ["toy"]
