"""LPIPS judge: strict loading of both published files, tiny stand-in, the metric's properties
(identity, symmetry, layer sum), real images, gradients, folder errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core import weights
from core.weights import WeightsError, WeightsParams
from judges import lpips

FIXTURE = Path(__file__).parent / "fixtures" / "lpips_keys.json"
IMAGE = "i01_macron_512.png"


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(lpips.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return lpips.load(folder, "cpu")


def _files() -> dict[str, dict[str, list[int]]]:
    return json.loads(FIXTURE.read_text())["files"]


def _published(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of exactly the fixture's keys and shapes for one file."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * 0.05 for k, shape in _files()[name].items()}


def _pair(n: int = 3, size: tuple[int, int] = (64, 80), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, *size, generator=gen) * 2 - 1, torch.rand(n, 3, *size, generator=gen) * 2 - 1


# -- (a) the published layout ------------------------------------------------------------------------------------
def test_modules_have_exactly_the_published_keys_and_shapes():
    files = _files()
    alex = files[lpips.ALEXNET_FILE]
    assert {k: list(v.shape) for k, v in lpips.AlexNetFeatures().state_dict().items()} == {k: v for k, v in alex.items() if k.startswith("features.")}
    assert sorted(k for k in alex if not k.startswith("features.")) == sorted(lpips.CLASSIFIER_KEYS)
    assert {k: list(v.shape) for k, v in lpips.LinearHeads().state_dict().items()} == files[lpips.LIN_FILE]
    assert set(lpips.LPIPSNet().state_dict()) == {f"net.{k}" for k in alex if k.startswith("features.")} | {f"lins.{k}" for k in files[lpips.LIN_FILE]}
    assert lpips.SPEC.files == (lpips.ALEXNET_FILE, lpips.LIN_FILE)


def test_published_files_load_strictly(tmp_path):
    alex, lin = _published(lpips.ALEXNET_FILE, 1), _published(lpips.LIN_FILE, 2)
    ckpt = tmp_path / "lpips"
    (ckpt / "v0.1").mkdir(parents=True)
    torch.save(alex, ckpt / lpips.ALEXNET_FILE)
    torch.save(lin, ckpt / lpips.LIN_FILE, _use_new_zipfile_serialization=False)  # alex.pth is a legacy pickle
    judge = lpips.load(ckpt, "cpu")
    net, lins = judge.model.net.state_dict(), judge.model.lins.state_dict()
    assert all(torch.equal(net[k], v) for k, v in alex.items() if k.startswith("features."))
    assert list(lins) == list(lin) and all(torch.equal(lins[k], v) for k, v in lin.items())
    x0, x1 = _pair(2, (64, 64))
    out = judge(x0, x1)
    assert out.distance.shape == (2,) and out.layers.shape == (2, 5) and torch.isfinite(out.distance).all()
    # not the AlexNet layout, a wrong lin shape: refused
    with pytest.raises(ValueError, match=r"unexpected \['classifier.7.weight'\]"):
        lpips.split_alexnet(dict(alex, **{"classifier.7.weight": torch.zeros(1)}), "x")
    with pytest.raises(ValueError, match=r"missing \['classifier.6.bias'\]"):
        lpips.split_alexnet({k: v for k, v in alex.items() if k != "classifier.6.bias"}, "x")
    torch.save(dict(lin, **{"lin2.model.1.weight": torch.zeros(1, 385, 1, 1)}), ckpt / lpips.LIN_FILE)
    with pytest.raises(ValueError, match=r"shape mismatches.*lin2\.model\.1\.weight: file \(1, 385, 1, 1\)"):
        lpips.load(ckpt, "cpu")


def test_paper_random_is_the_published_layout_and_reduced_widths_need_the_tiny_marker(tmp_path):
    paper = tmp_path / "paper"
    paper.mkdir()
    lpips.make_paper_random(paper, 0)
    for name, keys in _files().items():
        saved = torch.load(paper / name, weights_only=True)
        assert {k: list(v.shape) for k, v in saved.items()} == keys, name
    assert lpips.widths_from_state_dict(lpips.load(paper, "cpu").model.net.state_dict()) == lpips.WIDTHS
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    lpips.make_tiny(narrow, 0)
    with pytest.raises(ValueError, match="are not torchvision AlexNet's"):
        lpips.load(narrow, "cpu")


# -- (b) the tiny stand-in ---------------------------------------------------------------------------------------
def test_tiny_stand_in_is_the_same_format_and_deterministic(folder, judge, tmp_path):
    assert weights.is_tiny(folder)
    alex = torch.load(folder / lpips.ALEXNET_FILE, weights_only=True)
    lin = torch.load(folder / lpips.LIN_FILE, weights_only=True)
    assert set(alex) == set(_files()[lpips.ALEXNET_FILE]) and set(lin) == set(_files()[lpips.LIN_FILE])
    assert lpips.widths_from_state_dict(alex) == lpips.TINY_WIDTHS
    assert all((v >= 0).all() for v in lin.values())  # lpips' linear weights are non-negative
    again = weights.ensure(lpips.SPEC, WeightsParams(profile="tiny", dir=str(tmp_path / "w")))
    for name in lpips.SPEC.files:
        assert hashlib.sha256((again / name).read_bytes()).digest() == hashlib.sha256((folder / name).read_bytes()).digest()
    x0, x1 = _pair()
    assert torch.equal(judge(x0, x1).distance, lpips.load(again, "cpu")(x0, x1).distance)
    other = tmp_path / "seed1"
    other.mkdir()
    lpips.make_tiny(other, 1)
    assert (other / lpips.ALEXNET_FILE).read_bytes() != (folder / lpips.ALEXNET_FILE).read_bytes()


# -- (c) the metric ----------------------------------------------------------------------------------------------
def test_identical_images_give_zero_and_the_distance_is_symmetric(judge):
    x0, x1 = _pair()
    assert torch.equal(judge(x0, x0).distance, torch.zeros(3))
    d01, d10 = judge(x0, x1), judge(x1, x0)
    assert torch.equal(d01.distance, d10.distance) and (d01.distance > 0).all()
    assert torch.allclose(d01.layers.sum(1), d01.distance, atol=1e-6) and (d01.layers >= 0).all()
    # a small perturbation is closer than an unrelated image
    near = judge(x0, (x0 + 0.05 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)).distance
    assert (near < d01.distance).all()
    with pytest.raises(ValueError, match="one shape"):
        judge(x0, x1[:, :, :32])


def test_predict_maps_uint8_to_minus_one_one(judge):
    gen = np.random.default_rng(0)
    a = gen.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    b = gen.integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    out = judge.predict(a, b)
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(out.distance, judge(ta, tb).distance) and not out.distance.requires_grad
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.distance = out.distance  # type: ignore[misc]


def test_normalize_tensor_is_lpips_with_a_finite_gradient_at_a_zero_vector():
    x = torch.randn(2, 5, 3, 3)
    x[0, :, 1, 1] = 0.0  # a location where every channel is 0 (a dead ReLU column)
    reference = x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + 1e-10)
    assert torch.equal(lpips.normalize_tensor(x), reference)
    ours, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    lpips.normalize_tensor(ours).sum().backward()
    (ref / (torch.sqrt(torch.sum(ref ** 2, dim=1, keepdim=True)) + 1e-10)).sum().backward()
    assert torch.isnan(ref.grad[0, :, 1, 1]).all()  # lpips' own formula: sqrt'(0) * 0 = NaN
    assert torch.isfinite(ours.grad).all()
    keep = torch.ones_like(x, dtype=torch.bool)
    keep[0, :, 1, 1] = False
    assert torch.allclose(ours.grad[keep], ref.grad[keep])


def test_real_image_distances(judge, real_dir):
    from PIL import Image

    path = real_dir / "images" / IMAGE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    image = np.asarray(Image.open(path).convert("RGB"))
    blurred = np.asarray(Image.fromarray(image).resize((128, 128), Image.Resampling.BILINEAR).resize((512, 512), Image.Resampling.BILINEAR))
    out = judge.predict(np.stack([image, image]), np.stack([image, blurred]))
    assert out.distance.shape == (2,) and torch.isfinite(out.distance).all()
    assert out.distance[0] == 0 and out.distance[1] > 0


# -- (d) gradients -----------------------------------------------------------------------------------------------
def test_judge_is_frozen_and_gradients_reach_both_inputs(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    x0, x1 = (x.requires_grad_(True) for x in _pair(2))
    judge(x0, x1).distance.sum().backward()
    for x in (x0, x1):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())
    y = _pair(1)[0].requires_grad_(True)  # identical pair: the minimum, a zero (not NaN) gradient
    judge(y, y.detach().clone()).distance.sum().backward()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("name", [lpips.LIN_FILE, lpips.ALEXNET_FILE])
def test_missing_folder_or_file_is_named(folder, without, tmp_path, name):
    with pytest.raises(WeightsError, match=name):
        lpips.load(without(folder, name), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        lpips.load(tmp_path / "nowhere", "cpu")
