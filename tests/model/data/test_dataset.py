"""ClipWindows: alignment of frames/audio/emotion/landmarks, sharding, resume, errors, decoding.

The toy shard tree (``toy.py``) encodes the frame index everywhere, so a sample proves which frames
its tensors came from.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from core.shards import ShardFormatError, ShardLayout
from model.data import (
    ClipVideo,
    ClipWindows,
    DataParams,
    LoaderState,
    MissingFeatureError,
    decode_frames,
    model_pixels,
)

from .toy import FRAMES, SIDE, UNSELECTED, level, make_project

PARAMS = DataParams(size=SIDE, shuffle_buffer=4, samples_per_clip=2, seed=3)


def _signature(sample):
    return sample["key"], tuple(sample["frame_index"].tolist()), int(sample["reference_index"])


def _grey(frames):
    """Level of flat grey frames ``(N, 3, H, W)`` in [-1, 1] back to 0..255."""
    return ((frames.mean(dim=(1, 2, 3)) + 1) * 127.5).numpy()


def test_stage2_samples_have_documented_shapes_and_aligned_frames_audio_emotion_and_landmarks(project):
    ds = ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0)
    samples = list(ds)
    assert len(samples) == 2 * (len(FRAMES) - 1)
    assert {s["key"] for s in samples} == {f"toy__{n}__0000000" for n in FRAMES if n != UNSELECTED}
    t, m, c = PARAMS.target_frames, PARAMS.motion_frames, PARAMS.audio_context
    for s in samples:
        n = FRAMES[s["key"].split("__")[1]]
        f = s["frame_index"].numpy()
        assert s["frames"].shape == (t, 3, SIDE, SIDE) and s["frames"].dtype == torch.float32
        assert s["motion_frames"].shape == (m, 3, SIDE, SIDE) and s["reference"].shape == (3, SIDE, SIDE)
        assert s["frames"].min() >= -1 and s["frames"].max() <= 1
        # window inside the clip, consecutive, motion frames right before (clamped only when the clip is too short)
        assert f[0] >= min(m, n - t) and f[-1] <= n - 1 and (np.diff(f) == 1).all()
        assert s["motion_index"].tolist() == np.clip(np.arange(f[0] - m, f[0]), 0, n - 1).tolist()
        assert 0 <= int(s["reference_index"]) < n
        # pixels are the frames the indices name
        assert np.abs(_grey(s["frames"]) - level(f)).max() <= 1.5
        assert np.abs(_grey(s["motion_frames"]) - level(s["motion_index"].numpy())).max() <= 1.5
        assert abs(_grey(s["reference"][None])[0] - level(int(s["reference_index"]))) <= 1.5
        # audio: T + 2c rows whose centre rows are the window's frames; edges clamped like frame_windows
        a = s["audio_embed"]
        assert a.shape == (t + 2 * c, 2, 3) and a.dtype == torch.float32
        assert s["audio_index"][c:c + t].tolist() == f.tolist()
        assert a[:, 0, 0].tolist() == s["audio_index"].float().tolist()
        assert s["audio_index"].tolist() == np.clip(np.arange(f[0] - c, f[-1] + c + 1), 0, n - 1).tolist()
        # emotion inputs and targets of the same frames
        assert s["text_emotion"].shape == (7,) and s["text_emotion"][0].item() == pytest.approx(f.mean() / 100, rel=1e-5)
        assert s["speech_emotion"].shape == (4,) and s["speech_emotion"][2].item() == pytest.approx(f.mean(), rel=1e-5)
        assert s["valence_arousal"].shape == (t, 2)
        assert np.allclose(s["valence_arousal"].numpy(), np.stack([f / 100, -f / 100], 1), atol=1e-6)
        assert s["landmarks"].shape == (t, 478, 3) and s["landmarks"][:, 0, 0].tolist() == f.astype(float).tolist()
        assert s["text_states"].shape == (77, 8) and s["text_states"].dtype == torch.float32
        # the window's own 16 kHz samples: 640 per frame, frame i's samples say i
        assert s["audio"].shape == (t * 640,) and s["audio"].dtype == torch.float32
        assert np.allclose(s["audio"].numpy().reshape(t, 640), (f * 100 / 32768.0)[:, None])
        # exactly the documented entries (no sidecar member that fills none, e.g. probs.npy, leaks in)
        assert set(s) == {"dataset", "key", "frame_index", "motion_index", "reference_index", "audio_index", "frames",
                          "motion_frames", "reference", "audio_embed", "text_emotion", "speech_emotion", "valence_arousal",
                          "landmarks", "text_states", "audio", "worker", "position"}
    # the 14-frame clip can only start at 0 (motion frames clamped); the 15-frame clip only at 1
    assert {tuple(s["frame_index"].tolist())[0] for s in samples if "c0" in s["key"]} == {0}
    assert {tuple(s["frame_index"].tolist())[0] for s in samples if "c1" in s["key"]} == {1}
    # batches collate with the default collate
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["frames"].shape == (3, t, 3, SIDE, SIDE) and batch["audio_embed"].shape == (3, t + 2 * c, 2, 3)


def test_uint8_samples_are_the_float_samples_before_scaling(project):
    as_float = list(ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0))
    as_uint8 = list(ClipWindows(DataParams(**{**PARAMS.__dict__, "pixels": "uint8"}), "stage2", shard_root=project / "shards",
                                world_size=1, rank=0))
    assert [_signature(s) for s in as_float] == [_signature(s) for s in as_uint8]
    for f, u in zip(as_float, as_uint8):
        for name in ("frames", "motion_frames", "reference"):
            assert u[name].dtype == torch.uint8 and u[name].shape == f[name].shape
            assert torch.allclose(model_pixels(u[name]), f[name], atol=1e-6)


def test_stage1_samples_and_resize(project):
    p = DataParams(size=16, stage1_features=["caption"], shuffle_buffer=1, samples_per_clip=3)
    samples = list(ClipWindows(p, "stage1", shard_root=project / "shards", world_size=1, rank=0))
    for s in samples:
        assert s["target"].shape == (3, 16, 16) and s["reference"].shape == (3, 16, 16) and s["motion_frames"].shape == (2, 3, 16, 16)
        assert int(s["reference_index"]) != int(s["frame_index"][0])
        assert abs(_grey(s["target"][None])[0] - level(int(s["frame_index"][0]))) <= 1.5
        assert "audio_embed" not in s and "landmarks" not in s and s["text_states"].shape == (77, 8)


def test_order_is_deterministic_per_seed_and_workers_split_the_clips(project):
    def run(**kw):
        return [_signature(s) for s in ClipWindows(PARAMS if not kw else DataParams(**{**PARAMS.__dict__, **kw}), "stage2",
                                                   shard_root=project / "shards", world_size=1, rank=0)]

    assert run() == run()
    assert run() != run(seed=4)
    natural = DataParams(**{**PARAMS.__dict__, "equal_rank_epochs": False})  # every clip once, however uneven
    ranks = [[_signature(s) for s in ClipWindows(natural, "stage2", shard_root=project / "shards", rank=r, world_size=2)] for r in (0, 1)]
    keys = [{k for k, *_ in r} for r in ranks]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert keys[0] | keys[1] == {k for k, *_ in run()}
    # more global workers than shards: every worker reads all shards and keeps every 4th clip
    ranks = [{_signature(s)[0] for s in ClipWindows(natural, "stage2", shard_root=project / "shards", rank=r, world_size=4)} for r in range(4)]
    assert all(ranks) and sum(map(len, ranks)) == len(FRAMES) - 1 and set().union(*ranks) == keys[0] | keys[1]


def test_ranks_get_equal_epochs(project):
    """DDP needs the same number of steps on every rank: shards hold 3, 2 and 1 selected clips."""
    spc, n_clips = PARAMS.samples_per_clip, len(FRAMES) - 1
    for epoch in range(3):
        per_rank, natural = [], []
        for r in (0, 1):
            ds = ClipWindows(PARAMS, "stage2", shard_root=project / "shards", rank=r, world_size=2)
            ds.set_epoch(epoch)
            samples = list(ds)
            assert [s["position"] for s in samples] == list(range(1, len(samples) + 1))
            per_rank.append([_signature(s) for s in samples])
            natural.append(ds.worker_clips(r, 2) * spc)
            assert ds.epoch_samples(2) == n_clips * spc // 2
        assert [len(r) for r in per_rank] == [n_clips * spc // 2] * 2
        assert natural[0] != natural[1]  # the shards split unevenly, the epochs do not
        short = int(np.argmin(natural))
        first, again = per_rank[short][:natural[short]], per_rank[short][natural[short]:]
        assert again and {k for k, *_ in again} <= {k for k, *_ in first}  # going round its own clips again ...
        assert again != first[:len(again)]  # ... with newly drawn windows
    with pytest.raises(ValueError, match="6 clips for 8 global workers"):
        list(ClipWindows(DataParams(**{**PARAMS.__dict__, "samples_per_clip": 4}), "stage2", shard_root=project / "shards",
                         rank=7, world_size=8))


def test_resume_after_n_samples_with_dataloader_workers(project):
    def loader(ds):
        return DataLoader(ds, batch_size=2, num_workers=2)

    full = []
    for batch in loader(ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0)):
        full += list(zip(batch["key"], map(tuple, batch["frame_index"].tolist()), batch["worker"].tolist(), batch["position"].tolist()))
    state, seen = LoaderState(), []
    for i, batch in enumerate(loader(ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0))):
        if i == 3:
            break
        state.update(batch)
        seen += list(zip(batch["key"], map(tuple, batch["frame_index"].tolist()), batch["worker"].tolist(), batch["position"].tolist()))
    resumed_ds = ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0)
    resumed_ds.load_state_dict(json.loads(json.dumps(state.state_dict())))  # survives a checkpoint round trip
    rest = []
    for batch in loader(resumed_ds):
        rest += list(zip(batch["key"], map(tuple, batch["frame_index"].tolist()), batch["worker"].tolist(), batch["position"].tolist()))
    assert len(seen) == 6 and len(seen) + len(rest) == len(full)
    assert sorted(seen + rest) == sorted(full)  # every sample exactly once, with the same frames


def test_missing_feature_errors_name_the_clip_the_feature_and_the_fix(tmp_path):
    key = "toy__c2__0000000"
    root = make_project(tmp_path, dropped=("emotion_text", key))
    layout = ShardLayout(root / "shards")
    ds = ClipWindows(PARAMS, "stage2", shard_root=layout.root, world_size=1, rank=0)
    with pytest.raises(MissingFeatureError, match=rf"clip toy/{key}: feature emotion_text is dropped \(no_speech\), no "
                                                  rf"{key}.frames.npy.*select.required_features"):
        list(ds)
    p = DataParams(size=SIDE, stage2_features=["audio_embed", "emotion_text"])
    list(ClipWindows(DataParams(size=SIDE, stage2_features=["audio_embed"]), "stage2", shard_root=layout.root, world_size=1, rank=0))
    # a sidecar shard missing, then a sidecar out of step with its clip shard
    shard = layout.sidecar_shard("audio_embed", "toy", "clips-000001.tar")
    saved = shard.read_bytes()
    shard.unlink()
    with pytest.raises(MissingFeatureError, match=r"audio_embed sidecar of toy lacks shard clips-000001.tar.*extract@audio_embed-toy"):
        list(ClipWindows(DataParams(size=SIDE, stage2_features=["audio_embed"]), "stage2", shard_root=layout.root, world_size=1, rank=0))
    shard.write_bytes(layout.sidecar_shard("audio_embed", "toy", "clips-000000.tar").read_bytes())
    with pytest.raises(ShardFormatError, match=r"the audio_embed sidecar is not aligned.*extract@audio_embed-toy"):
        list(ClipWindows(DataParams(size=SIDE, stage2_features=["audio_embed"]), "stage2", shard_root=layout.root, world_size=1, rank=0))
    shard.write_bytes(saved)
    shutil.rmtree(layout.features_root / "emotion_text")
    with pytest.raises(MissingFeatureError, match=r"emotion_text has no sidecar for dataset toy.*extract@emotion_text-toy"):
        ClipWindows(p, "stage2", shard_root=layout.root)
    with pytest.raises(MissingFeatureError, match=r"feature emotions has no sidecar for dataset toy.*data.stage2_features"):
        ClipWindows(DataParams(stage2_features=["emotions"]), "stage2", shard_root=layout.root)


def test_indexed_decode_equals_opencv_seek_decode(tmp_path):
    """ClipVideo (IDR-start Annex-B stream, unwanted non-reference frames left out) gives the very
    pixels of OpenCV's seek path, on a B-frame stream with scene-cut keyframes between the GOP ones."""
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (4, 48, 48, 3), np.uint8)
    raw = np.concatenate([np.roll(base[i // 20], i, axis=1)[None] for i in range(80)])  # a cut every 20 frames
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x48", "-r", "25",
                    "-i", "-", "-c:v", "libx264", "-preset", "fast", "-crf", "18", "-g", "25", "-bf", "3", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], input=raw.tobytes(), check=True)
    mp4 = path.read_bytes()
    video = ClipVideo(mp4)
    assert video.frames == 80 and video.keyframes[0] == 0 and not video.reference.all()  # there are frames to skip
    feed, shown = video.plan(list(range(30, 46)))
    assert len(feed) < 46 - int(video.keyframes[video.keyframes <= 30].max()) + 3  # fewer than decoding through
    requests = [list(range(s - 2, s + 14)) + [r] for s, r in [(2, 79), (11, 0), (30, 31), (60, 5), (66, 40), (24, 24)]]
    for idx in requests:
        fast, slow = video.decode(idx, 48), decode_frames(mp4, idx, 48, rgb=False)
        assert fast.keys() == slow.keys() == set(idx)
        assert all(np.array_equal(fast[i], slow[i]) for i in idx)
    with pytest.raises(ValueError, match="outside the clip"):
        video.decode([80], 48)
    with pytest.raises(ValueError):
        ClipVideo(b"not an mp4")


def test_keyframe_references_in_the_loader_are_idr_frames_of_their_clip(project):
    """References are IDR frames of their clip (read from its mp4), and their pixels are that frame."""
    samples = list(ClipWindows(DataParams(**{**PARAMS.__dict__, "stage2_reference": "keyframe", "samples_per_clip": 6}), "stage2",
                               shard_root=project / "shards", world_size=1, rank=0))
    assert {int(s["reference_index"]) for s in samples} - {0}  # not only the first frame
    for s in samples:
        name = s["key"].split("__")[1]
        assert int(s["reference_index"]) in ClipVideo((project / "media" / f"{name}.mp4").read_bytes()).keyframes.tolist()
        assert abs(_grey(s["reference"][None])[0] - level(int(s["reference_index"]))) <= 1.5
