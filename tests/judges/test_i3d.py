"""I3D judge: the StyleGAN-V FVD detector's TorchScript interface, its conventions, clip sampling, folder errors."""

from __future__ import annotations

import dataclasses
import random
import shutil

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import i3d

#: the documented forward schema: (argument name, type, default) after ``self``
SIGNATURE = [("x", "Tensor", None), ("rescale", "bool", False), ("resize", "bool", False), ("return_features", "bool", False)]


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(i3d.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return i3d.load(folder, "cpu")


def _schema(detector) -> list[tuple[str, str, object]]:
    args = detector.forward.schema.arguments
    assert args[0].name == "self"
    return [(a.name, str(a.type), a.default_value) for a in args[1:]]


def _videos(n: int = 2, t: int = 16, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, t, size, size), dtype=np.uint8))


def test_spec_and_the_stylegan_v_call():
    spec = i3d.SPEC
    assert spec.files == ("i3d_torchscript.pt",) and spec.make_tiny is i3d.make_tiny_i3d and spec.url == i3d.URL and not spec.repo_id
    assert "ge9e5ujwgetktms/i3d_torchscript.pt" in i3d.URL and "Apache-2.0" in spec.licence
    # src/metrics/frechet_video_distance.py: detector_kwargs = dict(rescale=True, resize=True, return_features=True)
    assert i3d.DETECTOR_KWARGS == {"rescale": True, "resize": True, "return_features": True}
    assert (i3d.FEATURES, i3d.CLIP_FRAMES) == (400, 16)


def test_stand_in_is_torchscript_with_the_documented_interface(judge, folder):
    det = judge.detector
    assert isinstance(det, torch.jit.ScriptModule) and _schema(det) == SIGNATURE
    assert str(det.forward.schema.returns[0].type) == "Tensor"
    assert not det.training and not any(p.requires_grad for p in det.parameters())
    x = _videos()
    out = judge.encode(x)
    assert isinstance(out, i3d.I3DFeatures) and out.features.shape == (2, 400) and out.features.dtype == torch.float32
    assert torch.isfinite(out.features).all() and not out.features.requires_grad
    assert torch.equal(out.features, det(x, rescale=True, resize=True, return_features=True))
    probs = det(x, rescale=True, resize=True, return_features=False)  # without return_features: class probabilities
    assert probs.shape == (2, 400) and torch.allclose(probs.sum(dim=1), torch.ones(2), atol=1e-5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.features = out.features  # type: ignore[misc]


def test_stand_in_follows_the_input_conventions(judge):
    det, x = judge.detector, _videos(size=40)
    kw = i3d.DETECTOR_KWARGS
    # [0, 255] as uint8 (what StyleGAN-V passes) or float: the same numbers
    assert torch.allclose(det(x, **kw), det(x.float(), **kw), atol=1e-6)
    # rescale=True maps [0, 255] to [-1, 1] inside: rescale=False takes [-1, 1]
    assert torch.allclose(det(x, **kw), det(x.float() / 127.5 - 1, rescale=False, resize=True, return_features=True), atol=1e-5)
    # resize=True brings any H x W to 224 x 224 inside: resize=False takes 224 x 224
    x224 = _videos(n=1, size=224)
    assert torch.allclose(det(x224, **kw), det(x224, rescale=True, resize=False, return_features=True), atol=1e-5)
    assert det(_videos(n=1, size=33), **kw).shape == (1, 400)
    # 1-channel videos are repeated to RGB, as StyleGAN-V does before the call
    grey = x[:, :1]
    assert torch.allclose(judge(grey).features, det(grey.repeat(1, 3, 1, 1, 1), **kw))


def test_forward_keeps_the_graph_to_a_float_input(judge):
    x = _videos(n=1).float().requires_grad_(True)
    judge(x).features.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_tiny_stand_in_is_deterministic(tmp_path):
    outs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        i3d.make_tiny_i3d(tmp_path / name, seed)
        outs[name] = i3d.load(tmp_path / name).encode(_videos()).features
    assert torch.equal(outs["a"], outs["b"]) and not torch.allclose(outs["a"], outs["c"])


def test_tiny_stand_in_bytes_do_not_depend_on_the_hash_seed(tmp_path):
    """TorchScript orders constants by a set of names: the stand-in is written under PYTHONHASHSEED=0 either way."""
    import os
    import subprocess
    import sys

    digests = []
    for hash_seed in ("1", "2"):
        folder = tmp_path / hash_seed
        folder.mkdir()
        code = f"from judges.i3d import make_tiny_i3d; make_tiny_i3d({str(folder)!r}, 0)"
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": hash_seed}, check=True, timeout=600)
        digests.append((folder / i3d.FILE).read_bytes())
    assert digests[0] == digests[1]


def test_paper_random_is_the_full_scripted_architecture(tmp_path):
    i3d.make_paper_random(tmp_path, seed=3)
    judge = i3d.load(tmp_path)  # a folder without the tiny marker: the paper profile's load path
    assert _schema(judge.detector) == SIGNATURE
    assert sum(p.numel() for p in judge.detector.parameters()) > 12_000_000  # the kinetics-i3d widths, ~12.7 M
    assert {"Mixed_3b", "Mixed_4f", "Mixed_5c", "Conv3d_0c_1x1"} <= {n for n, _ in judge.detector.named_children()}
    x = _videos(n=1, t=i3d.MIN_FRAMES, size=32)
    feats = judge.encode(x).features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        eager = i3d.InceptionI3d().eval()
    with torch.no_grad():
        assert torch.equal(feats, eager(x, **i3d.DETECTOR_KWARGS))  # scripting changed nothing
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()
    with pytest.raises(RuntimeError):  # T = 8 leaves too few frames for the final (2, 7, 7) average pool
        judge.encode(_videos(n=1, t=i3d.MIN_FRAMES - 1, size=32))


def test_clips_sample_consecutive_frames_as_stylegan_v():
    t, h, w = 40, 6, 5
    video = np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()
    one = i3d.clips(video)
    assert one.shape == (1, 3, 16, h, w) and one.dtype == torch.uint8 and one.is_contiguous()
    assert one[0, 0, :, 0, 0].tolist() == list(range(16))
    sub = i3d.clips(video, subsample=2, offset=3)  # subsample_factor 2 from frame 3
    assert sub[0, 1, :, 2, 2].tolist() == list(range(3, 35, 2))
    windows = i3d.clips(video, stride=16)  # starts 0, 16 (32 + 15 > 39)
    assert windows.shape == (2, 3, 16, h, w) and windows[:, 0, 0, 0, 0].tolist() == [0, 16]
    assert i3d.clips(video, stride=8).shape[0] == 4 and i3d.clips(video, length=8, stride=8).shape[0] == 5
    assert i3d.clips(video[:10]).shape == (0, 3, 16, h, w)  # shorter than 16 frames: discarded, as StyleGAN-V
    assert i3d.clips(video[:20], subsample=2).shape[0] == 0  # needs 16 x 2 frames
    assert torch.equal(i3d.clips(torch.from_numpy(video)), one)
    with pytest.raises(ValueError, match="T, H, W, 3"):
        i3d.clips(video[..., 0])


def test_random_offset_is_stylegan_vs_randint():
    rng = random.Random(0)
    offsets = {i3d.random_offset(20, rng=rng) for _ in range(300)}
    assert offsets == set(range(5))  # randint(0, 20 - 16 + 1 - 1), both ends included
    assert {i3d.random_offset(40, subsample=2, rng=rng) for _ in range(300)} == set(range(10))  # randint(0, 40 - 32 + 2 - 1)
    with pytest.raises(ValueError, match="discards"):
        i3d.random_offset(15)


def test_a_real_16_frame_clip(judge, real_dir):
    from core.media import clip_frames

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    source = real_dir / "videos" / "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    frames = np.stack(list(clip_frames(source, seek=0.0, fps=25, frames=16, size=(512, 512), what=source.name)))
    assert frames.shape == (16, 512, 512, 3) and frames.dtype == np.uint8
    batch = i3d.clips(frames)
    assert batch.shape == (1, 3, 16, 512, 512)
    feats = judge.encode(batch).features
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()


def test_missing_or_incomplete_folder_names_the_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="i3d_torchscript.pt"):
        i3d.load(without(folder, "i3d_torchscript.pt"), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        i3d.load(tmp_path / "nowhere", "cpu")


def test_the_tiny_archive_is_byte_identical_wherever_it_is_made(tmp_path):
    """No random serialization id and no source maps with this checkout's path: the weights folder's
    DVC hash is the same on every machine."""
    import hashlib
    import zipfile

    from judges import i3d as i3d_mod

    digests = []
    for where in ("a", "b/deeper"):
        folder = tmp_path / where
        folder.mkdir(parents=True)
        i3d_mod.make_tiny_i3d(folder, 0)
        digests.append(hashlib.sha256((folder / i3d_mod.FILE).read_bytes()).hexdigest())
        with zipfile.ZipFile(folder / i3d_mod.FILE) as z:
            assert not [n for n in z.namelist() if n.endswith(".debug_pkl")]
    assert digests[0] == digests[1]
