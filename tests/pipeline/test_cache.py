import os
from pathlib import Path

import pytest

from pipeline.cache import Cache
from core.clip import Clip, Drop


def clip(key="k", source="/x/a.mp4", **kw):
    return Clip(key=key, dataset="d", source=source, source_rel="a.mp4", source_hash="h" * 64, **kw)


def test_put_get_roundtrip_with_files(tmp_path):
    cache = Cache(tmp_path / "c")
    work = cache.new_workdir()
    (work / "out.bin").write_bytes(b"abc")
    result = [clip(files={"bin": str(work / "out.bin")})]
    key = Cache.key("step-id", clip())
    got = cache.put("s", key, work, result)
    assert got == cache.get("s", key)
    path = got[0].files["bin"]
    assert open(path, "rb").read() == b"abc" and path.startswith(str(cache.entry("s", key)))
    assert got[0].file_hashes["bin"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert not work.exists()


def test_keys_depend_on_content_step_and_params_not_on_paths():
    a, b = clip(), clip(source="/elsewhere/a.mp4")
    assert Cache.key("s1", a) == Cache.key("s1", b)  # same content on another machine
    assert Cache.key("s1", a) != Cache.key("s2", a)
    assert Cache.key("s1", a) != Cache.key("s1", clip(start=1.0))
    assert Cache.key("s1", a) != Cache.key("s1", clip(file_hashes={"x": "1"}))


def test_drops_are_cached(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.put("s", "ab" * 32, cache.new_workdir(), Drop("too_short", "2 s"))
    assert cache.get("s", "ab" * 32) == Drop("too_short", "2 s")


def test_incomplete_entries_are_misses_and_get_replaced(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "cd" * 32
    cache.entry("s", key).mkdir(parents=True)  # a folder without record.json (killed mid-copy elsewhere)
    assert cache.get("s", key) is None
    cache.put("s", key, cache.new_workdir(), Drop("x"))
    assert cache.get("s", key) == Drop("x")


def test_second_writer_of_a_key_keeps_the_first(tmp_path):
    cache = Cache(tmp_path / "c")
    key = "ef" * 32
    cache.put("s", key, cache.new_workdir(), Drop("first"))
    w = cache.new_workdir()
    assert cache.put("s", key, w, Drop("second")) == Drop("first")
    assert not w.exists()


def test_source_hash_is_memoised_and_tracks_changes(tmp_path):
    cache = Cache(tmp_path / "c")
    f = tmp_path / "v.mp4"
    f.write_bytes(b"1")
    h1 = cache.source_hash(f)
    assert cache.source_hash(f) == h1
    f.write_bytes(b"22")
    os.utime(f, ns=(1, 1))
    assert cache.source_hash(f) != h1


def test_clean_tmp_removes_only_old_work_folders(tmp_path):
    cache = Cache(tmp_path / "c")
    old, new = cache.new_workdir(), cache.new_workdir()
    os.utime(old, (0, 0))
    cache.clean_tmp()
    assert not old.exists() and new.exists()


def test_relative_cache_dir_of_a_dvc_temp_experiment_is_the_workspaces(tmp_path):
    """`dvc exp run --temp` runs in <workspace>/.dvc/tmp/exps/<name>/: its steps must hit the workspace's cache."""
    from pipeline.cache import CacheParams

    workspace = tmp_path / "repo"
    (workspace / ".dvc").mkdir(parents=True)
    (workspace / ".dvc" / "config").write_text("[core]\n")
    temp = workspace / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12cd"  # DVC 3's --temp layout
    temp.mkdir(parents=True)
    assert CacheParams().root(temp) == workspace / ".cache"
    assert CacheParams().root(workspace / ".dvc" / "tmp" / "exps" / "tmpq") == workspace / ".cache"
    assert CacheParams().root(workspace) == workspace / ".cache"
    assert CacheParams(dir="/srv/team-cache").root(temp) == Path("/srv/team-cache")
    # the same folder names without a DVC workspace above them are an ordinary project
    lookalike = tmp_path / "x" / ".dvc" / "tmp" / "exps" / "y"
    lookalike.mkdir(parents=True)
    assert CacheParams().root(lookalike) == lookalike / ".cache"
