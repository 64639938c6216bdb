"""``table`` adapter: metadata-table rows -> sources with time ranges; ingest cuts only the listed ranges."""

from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml

from core.params import ParamsError
from core.shards import iter_samples, read_manifest, read_rejects
from pipeline import datasets, ingest

V01 = "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"  # 8.06 s, 25 fps, real speech
V02 = "v02_frontal_theresamay_25fps_a48k.mp4"  # 5.02 s


def _rows() -> list[dict]:
    return [
        {"video": V01, "t0": 1.0, "t1": 5.0, "person": "katie", "emotion": "neutral", "score": 0.9},
        {"video": V01, "t0": 0.5, "t1": 4.5, "person": "katie", "emotion": "happy", "score": float("nan")},  # overlaps
        {"video": V01, "t0": None, "t1": None, "person": "katie", "emotion": "neutral", "score": 0.5},  # the whole file
        {"video": V02, "t0": None, "t1": None, "person": "theresa", "emotion": "neutral", "score": 0.7},
        {"video": "gone/missing.mp4", "t0": 0.0, "t1": 4.0, "person": "nobody", "emotion": "sad", "score": 0.1},
        {"video": V02, "t0": 3.0, "t1": 2.0, "person": "theresa", "emotion": "sad", "score": 0.2},  # end before start
    ]


def _write(path: Path, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist(rows)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        path.write_text("".join(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}) + "\n"
                                for r in rows))
    return path


ENTRY = {"adapter": "table", "columns": {"path": "video", "start": "t0", "end": "t1", "speaker": "person"}, "global_speaker": True}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_rows_become_sources_with_ranges_speakers_and_extra_columns(tmp_path, real_dir, suffix):
    table = _write(tmp_path / f"meta{suffix}", _rows())
    sources = datasets.list_sources("talk", {**ENTRY, "raw_dir": str(real_dir / "videos"), "table": str(table)})
    assert len(sources) == 6
    by = {(s.rel, s.range): s for s in sources}
    ranged = by[(V01, (1.0, 5.0))]
    assert ranged.path == real_dir / "videos" / V01 and ranged.meta["speaker"] == "katie"
    assert ranged.meta["speaker_scope"] == "global" and ranged.meta["emotion"] == "neutral" and ranged.meta["score"] == 0.9
    assert "video" not in ranged.meta and "t0" not in ranged.meta and ranged.meta["row"] == 0
    assert by[(V01, (0.5, 4.5))].meta["score"] is None  # NaN -> null
    assert (V01, None) in by and (V02, None) in by  # empty start and end: the whole file
    missing = by[("gone/missing.mp4", (0.0, 4.0))]
    assert not missing.path.exists()  # listed, so ingest rejects it as missing_file
    assert (V02, (3.0, 2.0)) in by  # listed, so ingest rejects it as bad_range


def test_options_time_formats_duplicates_and_errors(tmp_path, real_dir):
    raw = str(real_dir / "videos")
    rows = [{"id": "v01_frontal_hdtf_katiehill_25fps_a16k", "a": "00:01.5", "b": "0:00:04"},
            {"id": "v01_frontal_hdtf_katiehill_25fps_a16k", "a": "00:01.5", "b": "0:00:04"},  # a repeat: left out
            {"id": "v02_frontal_theresamay_25fps_a48k", "a": "1500", "b": None}]  # one bound only: bad_range
    table = _write(tmp_path / "t.csv", rows)
    entry = {"adapter": "table", "raw_dir": raw, "table": str(table), "path_format": "{}.mp4", "columns": {"path": "id", "start": "a", "end": "b"}}
    sources = datasets.list_sources("t", entry)
    assert [(s.rel, s.range) for s in sources][0] == (V01, (1.5, 4.0)) and len(sources) == 2
    assert math.isnan(sources[1].range[1]) and "speaker" not in sources[0].meta
    ms = _write(tmp_path / "ms.parquet", [{"id": V01, "a": 1500, "b": 4000}])
    entry_ms = {**entry, "table": str(ms), "path_format": "{}", "time_unit": "ms"}
    assert datasets.list_sources("t", entry_ms)[0].range == (1.5, 4.0)
    with pytest.raises(datasets.DatasetError, match="no column 'nope'"):
        datasets.list_sources("t", {**entry, "columns": {"path": "nope"}})
    with pytest.raises(ParamsError, match="both start and end"):
        datasets.list_sources("t", {**entry, "columns": {"path": "id", "start": "a"}})
    with pytest.raises(ParamsError, match="unknown key 'colums'"):
        datasets.list_sources("t", {**entry, "colums": {}})
    with pytest.raises(datasets.DatasetError, match="metadata table not found"):
        datasets.list_sources("t", {**entry, "table": "absent.csv"})


def _frames(mp4: bytes, n: int, size: int = 64) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-frames:v", str(n), "-s", f"{size}x{size}", "-f", "rawvideo",
                          "-pix_fmt", "gray", "pipe:1"], input=mp4, capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, size, size).astype(np.float64)


def test_ingest_cuts_only_the_listed_ranges_aligned_with_the_whole_file(tmp_path, real_dir):
    table = _write(tmp_path / "meta.parquet", _rows())
    params = {"runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
              "datasets": {"talk": {**ENTRY, "raw_dir": str(real_dir / "videos"), "table": str(table)}},
              "steps": {"face": {"enabled": False}, "encode": {"preset": "ultrafast", "max_side": 128}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    report = ingest.run("talk", root=tmp_path, params_file=tmp_path / "params.yaml")

    folder = tmp_path / "shards" / "clips" / "talk"
    manifest = {r["key"]: r for r in read_manifest(folder).to_pylist()}
    rejects = {r["reason"]: r for r in read_rejects(folder).to_pylist()}
    assert rejects["missing_file"]["source"] == "gone/missing.mp4" and rejects["bad_range"]["source"] == V02
    assert report["kept"] == 4 and len(manifest) == 4
    stem = "talk__v01_frontal_hdtf_katiehill_25fps_a16k"
    a, b, whole = f"{stem}__0001000-0005000__0001000", f"{stem}__0000500-0004500__0000500", f"{stem}__0000000"
    assert {a, b, whole} <= set(manifest)  # overlapping ranges of one file: distinct, deterministic keys
    assert manifest[a]["start"] == 1.0 and manifest[a]["duration"] == 4.0 and manifest[b]["start"] == 0.5
    assert manifest[whole]["duration"] > 7.9
    meta = json.loads(manifest[a]["source_meta"])
    assert meta["emotion"] == "neutral" and meta["speaker_scope"] == "global" and manifest[a]["speaker"] == "katie"

    samples = {s["__key__"]: s for s in iter_samples(folder)}
    rec = json.loads(samples[a]["json"])
    assert rec["meta"]["range"] == {"start": 1.0, "end": 5.0}
    assert abs(rec["meta"]["audio"]["audio_len_s"] - 4.0) < 0.05  # only the range was decoded, not 8 s
    assert rec["meta"]["probe"]["video_packets"] <= 4.0 * 25 + 30  # only the range was demuxed (+ one GOP)

    # audio: the range's wav is the whole file's wav from 1.0 s, sample-aligned (one gain apart)
    ranged, sr = sf.read(io.BytesIO(samples[a]["wav"]))
    full, _ = sf.read(io.BytesIO(samples[whole]["wav"]))
    ref = full[sr: sr + ranged.size]
    lags = range(-40, 41)
    corr = [np.dot(ranged[100:-100], np.roll(ref, k)[100:-100]) for k in lags]
    assert lags[int(np.argmax(corr))] == 0
    assert np.corrcoef(ranged, ref)[0, 1] > 0.99
    # video: the range's first frame is the whole file's frame 25 (1.0 s at 25 fps)
    first = _frames(samples[a]["mp4"], 1)[0]
    full_frames = _frames(samples[whole]["mp4"], 51)
    err = [np.mean((first - full_frames[i]) ** 2) for i in (0, 24, 25, 26, 50)]
    assert int(np.argmin(err)) == 2
