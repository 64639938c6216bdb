"""The training loader: windows, alignment of frames/audio/emotion/landmarks, sharding, resume, errors.

Synthetic clips encode the frame index everywhere: frame i is a flat grey of level 8 + 3 i (H.264
keeps it within +-1), and every per-frame sidecar row i holds i, so a sample proves which frames
its tensors came from.
"""

from __future__ import annotations

import io
import json
import subprocess
import wave

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from model.data import ClipWindows, DataParams, LoaderState, MissingFeatureError, model_pixels, stage2_indices, to_tensor
from core.clip import Clip, canonical_json
from core.shards import ShardParams, write_clip_shards, write_sidecars

SIDE = 32
FRAMES = {"c0": 14, "c1": 15, "c2": 40, "c3": 60, "c4": 33, "c5": 50, "c6": 20}
UNSELECTED = "c5"


def _level(i):
    return 8 + 3 * i


def _mp4(path, frames):
    raw = np.concatenate([np.full((1, SIDE, SIDE, 3), _level(i), np.uint8) for i in range(frames)])
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{SIDE}x{SIDE}",
                    "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-g", "25",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)], input=raw.tobytes(), check=True)


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _ok(key, values=None):
    return ("json", canonical_json({"status": "ok", "key": key, "values": values or {}}).encode())


def make_project(root, dropped=None):
    """Clip shards (3 tars) + the five stage-2 sidecars in the agreed formats + a train split."""
    media = root / "media"
    media.mkdir(parents=True)
    clips = []
    for name, n in FRAMES.items():
        mp4, wav, lm = media / f"{name}.mp4", media / f"{name}.wav", media / f"{name}.landmarks.npy"
        _mp4(mp4, n)
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(b"\0\0" * n * 640)
        landmarks = np.zeros((n, 478, 3), np.float16)
        landmarks[:, :, 0] = np.arange(n)[:, None]
        np.save(lm, landmarks)
        meta = {"encode": {"frames": n, "fps": 25, "sample_rate": 16000, "width": SIDE, "height": SIDE}, "source": {"speaker": name}}
        clips.append(Clip(key=f"toy__{name}__0000000", dataset="toy", source=f"{name}.mp4", source_rel=f"{name}.mp4",
                          source_hash=f"{len(clips):064d}", start=0.0, duration=n / 25, meta=meta,
                          files={"mp4": str(mp4), "wav": str(wav), "landmarks.npy": str(lm)}))
    clip_dir = root / "shards" / "clips" / "toy"
    write_clip_shards(clip_dir, clips, [], ShardParams(max_count=3))
    idx = {c.key: np.arange(FRAMES[c.key.split("__")[1]], dtype=np.float32) for c in clips}
    per_feature = {
        "audio_embed": lambda k, i: [("npy", _npy(np.repeat(i[:, None, None], 2, 1).repeat(3, 2).astype(np.float16)))],
        "emotion_text": lambda k, i: [("frames.npy", _npy(np.stack([i / 100] + [np.zeros_like(i)] * 6, 1)))],
        "emotion_speech": lambda k, i: [("frames.npy", _npy(np.stack([np.ones_like(i), i / 10, i, i], 1))),
                                        ("probs.npy", _npy(np.zeros((2, 4), np.float32))), ("embed.npy", _npy(np.zeros((2, 8), np.float16)))],
        "valence_arousal": lambda k, i: [("frames.npy", _npy(np.stack([i / 100, -i / 100, i * 0], 1))), ("segments.npy", _npy(np.zeros((2, 3), np.float32)))],
        "caption": lambda k, i: [("text_states.npy", _npy(np.full((77, 8), len(k) % 7, np.float16))), ("sentence.npy", _npy(np.zeros(4, np.float32)))],
    }
    for feature, members in per_feature.items():
        samples = {}
        for key, i in idx.items():
            if dropped and dropped == (feature, key):
                samples[key] = [("json", canonical_json({"status": "dropped", "reason": "no_speech", "message": "x"}).encode())]
            else:
                samples[key] = [_ok(key)] + members(key, i)
        write_sidecars(root / "shards" / "features" / feature / "toy", clip_dir, samples)
    split = root / "shards" / "splits"
    split.mkdir(parents=True)
    with open(split / "train.jsonl", "w") as f:
        for i, c in enumerate(sorted(clips, key=lambda c: c.key)):
            if UNSELECTED not in c.key:
                f.write(json.dumps({"dataset": "toy", "key": c.key, "shard": f"clips-{i // 3:06d}.tar", "frames": c.meta["encode"]["frames"],
                                    "speaker": c.key}) + "\n")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("data"))


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
        assert np.abs(_grey(s["frames"]) - _level(f)).max() <= 1.5
        assert np.abs(_grey(s["motion_frames"]) - _level(s["motion_index"].numpy())).max() <= 1.5
        assert abs(_grey(s["reference"][None])[0] - _level(int(s["reference_index"]))) <= 1.5
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
    # the 14-frame clip can only start at 0 (motion frames clamped); the 15-frame clip only at 1
    assert {tuple(s["frame_index"].tolist())[0] for s in samples if "c0" in s["key"]} == {0}
    assert {tuple(s["frame_index"].tolist())[0] for s in samples if "c1" in s["key"]} == {1}
    # batches collate with the default collate
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["frames"].shape == (3, t, 3, SIDE, SIDE) and batch["audio_embed"].shape == (3, t + 2 * c, 2, 3)


def test_window_indices_at_clip_edges():
    p = DataParams(size=SIDE)
    rng = np.random.default_rng(0)
    starts = {int(stage2_indices(20, p, rng)["frame_index"][0]) for _ in range(300)}
    assert starts == set(range(2, 7))  # [M, F - T]
    with pytest.raises(ValueError, match="shorter than the 14-frame window"):
        stage2_indices(13, p, rng)


def test_uint8_pixels_are_the_float_frames_before_scaling(project):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 128, 255  # blue, green, red planes
    raw, flt = to_tensor([bgr], bgr=True, dtype="uint8"), to_tensor([bgr], bgr=True)
    assert raw.dtype == torch.uint8 and raw.shape == (1, 3, 4, 5)
    assert raw[0, :, 0, 0].tolist() == [255, 128, 10]  # RGB
    assert torch.allclose(model_pixels(raw), flt, atol=1e-6) and model_pixels(flt) is flt
    assert flt[0, :, 0, 0].tolist() == pytest.approx([1.0, 128 / 127.5 - 1, 10 / 127.5 - 1], abs=1e-6)

    as_float = list(ClipWindows(PARAMS, "stage2", shard_root=project / "shards", world_size=1, rank=0))
    as_uint8 = list(ClipWindows(DataParams(**{**PARAMS.__dict__, "pixels": "uint8"}), "stage2", shard_root=project / "shards",
                                world_size=1, rank=0))
    assert [_signature(s) for s in as_float] == [_signature(s) for s in as_uint8]
    for f, u in zip(as_float, as_uint8):
        for name in ("frames", "motion_frames", "reference"):
            assert u[name].dtype == torch.uint8 and u[name].shape == f[name].shape
            assert torch.allclose(model_pixels(u[name]), f[name], atol=1e-6)
    with pytest.raises(ValueError, match="pixels must be"):
        DataParams(pixels="float16")


def test_stage1_samples_and_resize(project):
    p = DataParams(size=16, stage1_features=["caption"], shuffle_buffer=1, samples_per_clip=3)
    samples = list(ClipWindows(p, "stage1", shard_root=project / "shards", world_size=1, rank=0))
    for s in samples:
        assert s["target"].shape == (3, 16, 16) and s["reference"].shape == (3, 16, 16) and s["motion_frames"].shape == (2, 3, 16, 16)
        assert int(s["reference_index"]) != int(s["frame_index"][0])
        assert abs(_grey(s["target"][None])[0] - _level(int(s["frame_index"][0]))) <= 1.5
        assert "audio_embed" not in s and s["text_states"].shape == (77, 8)


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
    ds = ClipWindows(PARAMS, "stage2", shard_root=root / "shards", world_size=1, rank=0)
    with pytest.raises(MissingFeatureError, match=rf"clip toy/{key}: feature emotion_text is dropped \(no_speech\).*select.required_features"):
        list(ds)
    p = DataParams(size=SIDE, stage2_features=["audio_embed", "emotion_text"])
    list(ClipWindows(DataParams(size=SIDE, stage2_features=["audio_embed"]), "stage2", shard_root=root / "shards", world_size=1, rank=0))
    import shutil
    shutil.rmtree(root / "shards" / "features" / "emotion_text")
    with pytest.raises(MissingFeatureError, match=r"emotion_text has no sidecar for dataset toy.*extract@emotion_text-toy"):
        ClipWindows(p, "stage2", shard_root=root / "shards")
    with pytest.raises(ValueError, match="unknown feature 'emotions'"):
        DataParams(stage2_features=["emotions"])


def test_indexed_decode_equals_opencv_seek_decode(tmp_path):
    """ClipVideo (IDR-start Annex-B stream, unwanted non-reference frames left out) gives the very
    pixels of OpenCV's seek path, on a B-frame stream with scene-cut keyframes between the GOP ones."""
    from model.data import ClipVideo, decode_frames

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


def test_keyframe_reference_is_uniform_over_keyframes(project):
    keyframes = np.array([0, 25, 50, 69, 94])
    p = DataParams(size=SIDE, stage2_reference="keyframe")
    rng = np.random.default_rng(1)
    refs = [int(stage2_indices(100, p, rng, keyframes)["reference_index"]) for _ in range(2000)]
    counts = np.array([refs.count(k) for k in keyframes])
    assert set(refs) == set(keyframes.tolist()) and counts.min() > 0.8 * 400 and counts.max() < 1.2 * 400
    refs_any = {int(stage2_indices(100, DataParams(size=SIDE, stage2_reference="any"), rng, keyframes)["reference_index"]) for _ in range(2000)}
    assert len(refs_any) == 100
    # in the loader: references are IDR frames of their clip (read from its mp4), and their pixels are that frame
    from model.data import ClipVideo

    samples = list(ClipWindows(DataParams(**{**PARAMS.__dict__, "stage2_reference": "keyframe", "samples_per_clip": 6}), "stage2",
                               shard_root=project / "shards", world_size=1, rank=0))
    assert {int(s["reference_index"]) for s in samples} - {0}  # not only the first frame
    for s in samples:
        name = s["key"].split("__")[1]
        assert int(s["reference_index"]) in ClipVideo((project / "media" / f"{name}.mp4").read_bytes()).keyframes.tolist()
        assert abs(_grey(s["reference"][None])[0] - _level(int(s["reference_index"]))) <= 1.5
    with pytest.raises(ValueError, match="stage2_reference"):
        DataParams(stage2_reference="nearest")
