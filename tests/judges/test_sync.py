"""SyncNet judge: strict loading of the published layout, tiny stand-in, the reference's offset/confidence
arithmetic, face crops, real frames, gradients to the frames, folder errors."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import weights
from core.weights import WeightsError, WeightsParams
from judges import sync

FIXTURE = Path(__file__).parent / "fixtures" / "syncnet_v2_keys.json"
CLIP = "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(sync.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return sync.load(folder, "cpu")


def _published_state(drop_batches_tracked: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors of exactly the fixture's keys and shapes (values unlike any initialisation)."""
    keys = json.loads(FIXTURE.read_text())["keys"]
    gen = torch.Generator().manual_seed(7)
    state = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            if not drop_batches_tracked:
                state[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[k] = torch.randn(shape, generator=gen) * 0.05
    return state


def _face_landmarks(n: int, box=(150.0, 110.0, 362.0, 360.0)) -> np.ndarray:
    """``(n, 4, 3)`` stand-in landmarks: the corners of a face box (what the crop reads of 478 points)."""
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 0], [x1, y0, 0], [x0, y1, 0], [x1, y1, 0]], np.float32)
    return np.repeat(pts[None], n, axis=0)


# -- (a) the published checkpoint loads strictly -----------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_published_layout_loads_strictly(tmp_path, legacy):
    state = _published_state()
    ckpt = tmp_path / "syncnet_v2"
    ckpt.mkdir()
    torch.save(state, ckpt / sync.FILE, _use_new_zipfile_serialization=not legacy)  # loadParameters' format
    judge = sync.load(ckpt, "cpu")
    loaded = judge.model.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert judge.dim == 1024 and sum(p.numel() for p in judge.model.parameters()) == 13_631_616
    # the full-size network runs on one window: (1, 3, 5, 224, 224) and (1, 1, 13, 20) -> (1, 1024) each
    emb = judge(torch.rand(5, 3, 224, 224) * 255, torch.randn(13, 20))
    assert emb.video.shape == (1, 1024) and emb.audio.shape == (1, 1024) and torch.isfinite(emb.video).all()


def test_checkpoint_without_num_batches_tracked_loads_and_a_wrong_one_is_refused(tmp_path):
    ckpt = tmp_path / "syncnet_v2"
    ckpt.mkdir()
    torch.save(_published_state(drop_batches_tracked=True), ckpt / sync.FILE)  # a pre-0.4.1 save
    assert sync.load(ckpt, "cpu").dim == 1024
    state = _published_state()
    state["netfclip.3.weight"] = torch.zeros(1024, 256)
    torch.save(state, ckpt / sync.FILE)
    with pytest.raises(ValueError, match=r"shape mismatches.*netfclip\.3\.weight: file \(1024, 256\)"):
        sync.load(ckpt, "cpu")
    model = sync.S()
    with pytest.raises(ValueError, match=r"shape mismatches.*netfclip\.3\.weight"):
        sync.load_state_strict(model, state)
    state = _published_state()
    state["netcnnlip.21.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected \['netcnnlip.21.weight'\]"):
        sync.load_state_strict(model, state)
    del state["netcnnlip.21.weight"], state["netfcaud.1.running_mean"]
    with pytest.raises(ValueError, match=r"missing \['netfcaud.1.running_mean'\]"):
        sync.load_state_strict(model, state)


# -- (b) the tiny stand-in -----------------------------------------------------------------------------
def test_tiny_stand_in_is_the_same_format_and_deterministic(folder, judge, tmp_path):
    assert weights.is_tiny(folder) and (folder / sync.FILE).is_file()
    state = torch.load(folder / sync.FILE, weights_only=True)  # a plain pickled state dict, as published
    assert isinstance(state, dict) and set(state) == set(json.loads(FIXTURE.read_text())["keys"])
    assert sync.widths_from_state_dict(state) == sync.TINY and judge.dim == 32
    again = weights.ensure(sync.SPEC, WeightsParams(profile="tiny", dir=str(tmp_path / "w")))
    assert hashlib.sha256((again / sync.FILE).read_bytes()).digest() == hashlib.sha256((folder / sync.FILE).read_bytes()).digest()
    video, cc = torch.rand(9, 3, 224, 224) * 255, torch.randn(13, 40)
    a, b = judge(video, cc), sync.load(again, "cpu")(video, cc)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert a.video.shape == (5, 32) and a.audio.shape == (5, 32)
    other = tmp_path / "seed1"
    other.mkdir()
    sync.make_tiny_sync(other, 1)
    assert (other / sync.FILE).read_bytes() != (folder / sync.FILE).read_bytes()


def test_judge_is_frozen_and_imports_cheaply(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    assert sync.SPEC.name == "syncnet_v2" and sync.SPEC.files == ("syncnet_v2.model",) and sync.SPEC.url == sync.URL and not sync.SPEC.repo_id
    assert "Input" in sync.__doc__ and "Output" in sync.__doc__
    for out in (sync.SyncEmbeddings, sync.SyncScore, sync.SoftSync):
        assert out.__dataclass_params__.frozen
    code = ("import sys, judges.sync\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'ray', 'dvc', 'mediapipe', 'pipeline', 'model', 'cv2', 'scipy', 'python_speech_features'})\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(sync.__file__).parents[1])


# -- (c) offset and confidence: the reference's arithmetic ----------------------------------------------------
def test_windows_share_the_first_conv_and_equal_syncnet_pythons_stacked_windows(judge):
    """The lip stream runs over a chunk of windows as one frame sequence; syncnet_python stacks the 5-frame
    windows into a batch (``im_batch``) and calls ``forward_lip``: the same embeddings, to float rounding."""
    gen = torch.Generator().manual_seed(3)
    video = torch.rand(13, 3, 224, 224, generator=gen) * 255
    mfcc = torch.randn(13, 20 + 4 * 8, generator=gen)
    chunked = copy.copy(judge)
    chunked.batch_size = 3  # chunks of 3, 3, 3 windows (9 = 13 - 4)
    with torch.no_grad():
        got = chunked(video, mfcc)
    clip = video[:, [2, 1, 0]].transpose(0, 1)
    with torch.no_grad():
        ref = judge.model.forward_lip(torch.stack([clip[:, v : v + 5] for v in range(9)]))
    assert got.video.shape == ref.shape == (9, 32)
    assert torch.allclose(got.video, ref, rtol=1e-4, atol=1e-5)


def _reference_evaluate(im_feat: torch.Tensor, cc_feat: torch.Tensor, vshift: int):
    """SyncNetInstance.py (calc_pdist + evaluate's offset block), transcribed line by line."""
    from scipy import signal

    win_size = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    dists = []
    for i in range(len(im_feat)):
        dists.append(torch.nn.functional.pairwise_distance(im_feat[[i], :].repeat(win_size, 1), feat2p[i:i + win_size, :]))
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - minidx
    conf = torch.median(mdist) - minval
    fdist = np.stack([dist[minidx].numpy() for dist in dists])
    fconf = torch.median(mdist).numpy() - fdist
    fconfm = signal.medfilt(fconf, kernel_size=9)
    return offset.numpy(), conf.numpy(), minval, np.array([d.numpy() for d in dists]), fconf, fconfm


def _shifted(n: int, k: int, dim: int = 64, seed: int = 0, noise: float = 0.1):
    """Video and audio embeddings with audio[t] ~ video[t + k]."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n + 40, dim, generator=gen)
    video = z[20 : 20 + n]
    audio = z[20 + k : 20 + k + n] + noise * torch.randn(n, dim, generator=gen)
    return sync.SyncEmbeddings(video=video, audio=audio)


@pytest.mark.parametrize("k", [0, 3, -5, 11])
def test_offset_and_confidence_equal_the_reference(k):
    emb = _shifted(45, k, seed=k + 20)
    score = sync.sync_score(emb)
    offset, conf, minval, dists, fconf, fconfm = _reference_evaluate(emb.video, emb.audio, 15)
    assert score.offset == int(offset) == k and score.confidence == pytest.approx(float(conf), abs=1e-5) and score.confidence > 0
    assert score.min_dist == pytest.approx(float(minval), abs=1e-5)
    assert score.dists.shape == (31,) and score.frame_dists.shape == (45, 31)
    np.testing.assert_allclose(score.frame_dists.numpy(), dists, atol=1e-5)
    np.testing.assert_allclose(score.frame_conf.numpy(), fconf, atol=1e-5)
    np.testing.assert_allclose(score.frame_conf_smoothed.numpy(), fconfm, atol=1e-5)
    # random (unsynchronised) embeddings: the same arithmetic, whatever offset it lands on
    gen = torch.Generator().manual_seed(k + 99)
    noise = sync.SyncEmbeddings(video=torch.randn(30, 16, generator=gen), audio=torch.randn(30, 16, generator=gen))
    ref = _reference_evaluate(noise.video, noise.audio, 10)
    got = sync.sync_score(noise, vshift=10)
    assert got.offset == int(ref[0]) and got.confidence == pytest.approx(float(ref[1]), abs=1e-5)


def test_soft_offset_tends_to_the_offset_and_finds_the_misaligned_window():
    emb = _shifted(40, 4, seed=3)
    soft = sync.soft_offset(emb, temperature=0.05)
    assert float(soft.offset) == pytest.approx(4, abs=1e-3)
    assert soft.shift_weights.shape == (31,) and soft.frame_weights.shape == (40,)
    assert float(soft.shift_weights.sum()) == pytest.approx(1) and float(soft.confidence) > 0
    warm = sync.soft_offset(emb, temperature=50.0)  # a flat softmax: between the offset and the shifts' mean 0
    assert 0 < float(warm.offset) < 4
    video = emb.video.clone()
    video[25] = torch.randn(64, generator=torch.Generator().manual_seed(5)) * 3  # window 25 (frames 25..29) out of sync
    soft = sync.soft_offset(sync.SyncEmbeddings(video=video, audio=emb.audio), temperature=0.05, location_temperature=0.1)
    assert float(soft.location) == pytest.approx(27, abs=0.05)  # the window's centre frame
    assert sync.sync_score(sync.SyncEmbeddings(video=video, audio=emb.audio)).frame_conf.argmin() == 25


def test_windows_and_mfcc_follow_evaluate():
    assert sync.num_windows(50, 32000) == 45 and sync.num_windows(60, 32000) == 45 and sync.num_windows(40, 32000) == 35
    t = np.arange(32000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cc = sync.mfcc(audio)
    import python_speech_features

    ints = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype(np.int16)
    ref = np.stack([np.array(i) for i in zip(*python_speech_features.mfcc(ints, 16000))])  # evaluate's stacking
    assert cc.shape == (13, 199) and cc.dtype == np.float32
    np.testing.assert_allclose(cc, ref.astype(np.float32))
    np.testing.assert_array_equal(sync.mfcc(ints), cc)


# -- crops --------------------------------------------------------------------------------------------------
def test_crop_windows_are_run_pipelines_slice():
    boxes = np.array([[256.0, 235.0, 125.0], [100.3, 50.7, 80.2]])
    wins = sync.crop_windows(boxes)
    for (x, y, s), (x0, y0, x1, y1) in zip(boxes, wins):
        cs, bsi = 0.4, int(s * 1.8)  # run_pipeline.crop_video, transcribed
        my, mx = y + bsi, x + bsi
        assert (y0 + bsi, y1 + bsi, x0 + bsi, x1 + bsi) == (int(my - s), int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)), int(mx + s * (1 + cs)))
    lms = _face_landmarks(20)
    lms[3] = np.nan  # a frame without a face takes its neighbours' box
    boxes = sync.face_boxes(lms, smooth=False)
    np.testing.assert_allclose(boxes[3], [256.0, 235.0, 125.0])
    smooth = sync.face_boxes(lms)  # medfilt over frames (zero-padded at the ends, as the reference)
    np.testing.assert_allclose(smooth[6:-6], boxes[6:-6])


def test_numpy_and_torch_crops_agree():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512]
    frames = np.stack([np.stack([xx * 0.4 + 10 * i, yy * 0.45, (xx + yy) * 0.2], -1) for i in range(3)]).astype(np.uint8)
    frames = np.clip(frames.astype(np.int16) + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)
    lms = _face_landmarks(3, box=(60.0, 200.0, 330.0, 470.0))  # the crop runs past the bottom edge: padding 110
    crops = sync.face_crops(frames, lms)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    assert (crops[:, -5:] == 110).all()
    wins = sync.crop_windows(sync.face_boxes(lms))
    t = sync.face_crops_torch(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, wins)
    diff = (t.permute(0, 2, 3, 1).numpy() - crops.astype(np.float32))[:, 2:-2, 2:-2]  # borders: cv2 clamps, grid_sample reads on
    assert np.abs(diff).mean() < 0.6 and np.abs(diff).max() <= 4


# -- (d) a real clip -----------------------------------------------------------------------------------------
def test_real_clip_gives_finite_scores(judge, real_dir):
    from core.media import clip_frames, decode_audio

    path = real_dir / "videos" / CLIP
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frames = np.stack(list(clip_frames(path, 0.0, 25, 50, (512, 512))))  # 2 s, RGB
    audio = decode_audio(path, 16000)[:32000]
    crops = sync.face_crops(frames, _face_landmarks(50))  # a fixed centre face box (judges never import MediaPipe)
    assert crops.shape == (50, 224, 224, 3) and 0 < crops.mean() < 255
    emb = judge.embed(crops, audio)
    assert emb.video.shape == (45, 32) and emb.audio.shape == (45, 32)
    assert torch.isfinite(emb.video).all() and torch.isfinite(emb.audio).all()
    score = judge.evaluate(crops, audio)
    assert -15 <= score.offset <= 15 and np.isfinite(score.confidence) and score.confidence >= 0
    assert score.dists.shape == (31,) and score.frame_conf.shape == (45,) and score.frame_conf_smoothed.shape == (45,)
    assert np.isfinite(score.min_dist) and torch.isfinite(score.frame_dists).all()


# -- (e) gradients ------------------------------------------------------------------------------------------
def test_soft_offset_is_differentiable_wrt_the_frames(judge):
    gen = torch.Generator().manual_seed(0)
    frames = (torch.rand(12, 3, 256, 256, generator=gen) * 2 - 1).requires_grad_(True)  # decoded frames in [-1, 1]
    wins = sync.crop_windows(sync.face_boxes(_face_landmarks(12, box=(70.0, 50.0, 190.0, 180.0))))
    crops = sync.face_crops_torch(frames, wins, value_range=(-1.0, 1.0))
    assert crops.shape == (12, 3, 224, 224)
    cc = torch.from_numpy(sync.mfcc(np.sin(np.arange(12 * 640) * 0.05).astype(np.float32) * 0.2))
    emb = judge(crops, cc)
    assert emb.video.shape == (7, 32) and emb.video.requires_grad and not emb.audio.requires_grad
    soft = sync.soft_offset(emb, temperature=0.5)
    (soft.offset + soft.location).backward()
    assert frames.grad is not None and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


# -- (f) folder errors ---------------------------------------------------------------------------------------
def test_missing_folder_or_file_is_named(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="syncnet_v2.model"):
        sync.load(without(folder, sync.FILE), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        sync.load(tmp_path / "nowhere", "cpu")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    torch.save([torch.zeros(1)], bogus / sync.FILE)
    with pytest.raises(TypeError, match="state dict"):
        sync.load(bogus, "cpu")


def test_outputs_are_frozen_dataclasses():
    emb = _shifted(20, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        emb.video = emb.audio  # type: ignore[misc]
