"""The bad-input corpus: one ingest over every kind of broken, odd or hostile source, made by ffmpeg.

Every source the adapter sees must end in the manifest or in rejects with the expected reason, the
stage must not crash, and no name may run a shell command. (Faces: ``test_ingest_face.py``; the
face steps are off here, so the test patterns' missing faces do not hide the other outcomes.)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from core.shards import read_manifest, read_rejects
from pipeline import ingest
from tests.conftest import make_media

PARAMS = {
    "runner": {"local": True, "progress": False, "media_timeout_s": 60},
    "cache": {"dir": "cache"},
    "shards": {"root": "shards"},
    "datasets": {"bad": {"adapter": "folder", "raw_dir": "raw"}},
    "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast"}, "segment": {"min_s": 0.4, "max_s": 20.0}},
}
NON_UTF8 = os.fsdecode(b"caf\xe9.mp4")  # a Latin-1 file name: not valid UTF-8
LONG = "l" * 200 + ".mp4"
SHELL = "$(touch pwned).mp4"

#: source name (as the rejects/manifest print it) -> expected reason, or "ok" for a manifest row
EXPECTED = {
    "zero.mp4": "unreadable", "truncated.mp4": "unreadable", "No space left on device.mp4": "unreadable", "random.mp4": "unreadable", "corrupt_moov.mp4": "unreadable",
    "audio_only.mp4": "no_video", "wav_named.mp4": "no_video", "video_only.mp4": "no_audio", "one_frame.mp4": "too_short",
    "fifo.mp4": "not_a_file", "folder.mp4": "not_a_file", "dangling.mp4": "dangling_symlink", "outside.mp4": "outside_raw_dir",
    "then_copy_of_good.mp4": "duplicate_source", "then_link_to_good.mp4": "duplicate_source",
    "a-b.mp4": "key_collision", "x.mp4": "key_collision",  # the first by name keeps the key
    "good.mp4": "ok", "a b.mp4": "ok", "x.mov": "ok", "4k.mp4": "ok", "rotated.mp4": "ok", "vfr.mp4": "ok", "odd_63x47.mp4": "ok",
    "quote'\"s.mp4": "ok", SHELL: "ok", "caf\\xe9.mp4": "ok", LONG: "ok", "silent.mp4": "ok", "eight_channels.mp4": "ok",
    "audio_longer.mp4": "ok",
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


def make_corpus(root: Path) -> Path:
    raw = root / "raw"
    small = {"seconds": 0.8, "size": "64x64", "gated": False}
    good = make_media(raw / "good.mp4", **small)
    for i, name in enumerate(("a b.mp4", "quote'\"s.mp4", SHELL, NON_UTF8, LONG, "x.mp4", "vfr.mp4"), 1):  # distinct bytes
        make_media(raw / name, **{**small, "seconds": 0.8 + 0.04 * i, "vfr": name == "vfr.mp4"})
    make_media(raw / "a-b.mp4", seconds=1.2, size="64x64", gated=False)  # other bytes, same key as "a b.mp4"
    make_media(raw / "x.mov", seconds=1.24, size="64x64", gated=False)  # other bytes, same key as x.mp4
    make_media(raw / "odd_63x47.mp4", seconds=0.8, size="63x47", gated=False)
    make_media(raw / "audio_longer.mp4", seconds=0.8, size="64x64", audio_seconds=1.6, gated=False)
    make_media(raw / "audio_only.mp4", seconds=0.8, video=False)
    make_media(raw / "video_only.mp4", seconds=0.8, size="64x64", audio=False)
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=25:duration=0.5", "-f", "lavfi", "-i", "sine=d=0.5",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(raw / "4k.mp4"))
    wide = make_media(root / "src" / "wide.mp4", seconds=0.8, size="64x48", gated=False)
    _ffmpeg("-i", str(wide), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(raw / "rotated.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=0.8", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono",
            "-t", "0.8", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(raw / "silent.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=0.8", "-f", "lavfi", "-i", "sine=d=0.8",
            "-filter_complex", "[1:a]pan=7.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0|c6=c0|c7=c0[a]", "-map", "0:v", "-map", "[a]",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(raw / "eight_channels.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25:duration=0.04", "-f", "lavfi", "-i", "sine=d=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(raw / "one_frame.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "sine=d=0.8", str(raw / "wav_named.wav"))
    os.rename(raw / "wav_named.wav", raw / "wav_named.mp4")
    data = good.read_bytes()
    (raw / "zero.mp4").write_bytes(b"")
    (raw / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (raw / "random.mp4").write_bytes(os.urandom(4096))
    (raw / "No space left on device.mp4").write_bytes(os.urandom(4096))  # a name that reads like a full disk
    moov = data.find(b"moov")
    (raw / "corrupt_moov.mp4").write_bytes(data[: moov + 8] + b"\xff" * 192 + data[moov + 200:])
    (raw / "then_copy_of_good.mp4").write_bytes(data)
    os.symlink("good.mp4", raw / "then_link_to_good.mp4")
    os.symlink("nowhere.mp4", raw / "dangling.mp4")
    outside = make_media(root / "elsewhere" / "o.mp4", **small)
    os.symlink(outside, raw / "outside.mp4")
    os.mkfifo(raw / "fifo.mp4")
    (raw / "folder.mp4").mkdir()
    return raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    report = ingest.run("bad", root=root, params_file=root / "params.yaml")
    out = root / "shards" / "clips" / "bad"
    return root, report, read_manifest(out).to_pylist(), read_rejects(out).to_pylist()


def test_every_bad_source_ends_in_the_manifest_or_a_reason_coded_reject(corpus):
    root, report, manifest, rejects = corpus
    outcome = {r["source"]: r["reason"] for r in rejects}
    outcome.update({m["source"]: "ok" for m in manifest})
    assert outcome == EXPECTED  # every source accounted for (none lost), each with its expected outcome
    assert not [r for r in rejects if r["reason"].startswith("error:")]  # nothing crashed
    assert report["inputs"] == len(EXPECTED) and report["kept"] == len(manifest)
    assert not (root / "pwned").exists() and not Path("pwned").exists()  # no name ran a shell command


def test_rejects_name_the_twin_and_the_fix(corpus):
    _, _, manifest, rejects = corpus
    by_source = {r["source"]: r for r in rejects}
    assert "the same content as good.mp4 " in by_source["then_copy_of_good.mp4"]["message"]
    assert "the same content as good.mp4 " in by_source["then_link_to_good.mp4"]["message"]
    assert "a b.mp4, which is kept" in by_source["a-b.mp4"]["message"] and "rename" in by_source["a-b.mp4"]["message"]
    assert "x.mov, which is kept" in by_source["x.mp4"]["message"]
    assert "follow_outside_symlinks" in by_source["outside.mp4"]["message"]
    assert "FIFO" in by_source["fifo.mp4"]["message"] and "directory" in by_source["folder.mp4"]["message"]
    keys = [m["key"] for m in manifest]
    assert len(keys) == len(set(keys)) and all(len(k) < 120 and k.replace("_", "").replace("-", "").isalnum() for k in keys)
    rows = {m["source"]: m for m in manifest}
    assert (rows["rotated.mp4"]["width"], rows["rotated.mp4"]["height"]) == (48, 64)  # displayed upright
    assert rows["odd_63x47.mp4"]["width"] % 2 == 0 and rows["odd_63x47.mp4"]["height"] % 2 == 0
    assert json.loads(rows["caf\\xe9.mp4"]["source_meta"]) == {}
