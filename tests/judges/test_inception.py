"""FID Inception judge: strict loading of the published layout, tiny stand-in, pytorch-fid's
preprocessing and FID pools, pool3 features of real images, gradients, folder errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core import weights
from core.weights import WeightsError, WeightsParams
from judges import inception

FIXTURE = Path(__file__).parent / "fixtures" / "inception_keys.json"
IMAGE = "i01_macron_512.png"


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(inception.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return inception.load(folder, "cpu")


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def _published_state(drop_batches_tracked: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors of exactly the fixture's keys and shapes (values unlike any initialisation)."""
    gen = torch.Generator().manual_seed(7)
    state = {}
    for k, shape in _fixture()["keys"].items():
        if k.endswith("num_batches_tracked"):
            if not drop_batches_tracked:
                state[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            state[k] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[k] = torch.randn(shape, generator=gen) * 0.05
    return state


# -- (a) the published layout ------------------------------------------------------------------------------------
def test_network_has_exactly_the_reference_keys_and_shapes():
    fixture = _fixture()
    model = inception.FIDInceptionV3()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fixture["keys"]
    assert sum(p.numel() for p in model.parameters()) == fixture["_parameters"]
    assert fixture["file"] == inception.FILE and inception.SPEC.files == (inception.FILE,)
    assert not any(k.startswith("AuxLogits") for k in fixture["keys"]) and fixture["keys"]["fc.weight"] == [1008, 2048]
    # the FID patches: TF average pools (no padding counted) in A, C, E_1; a max pool in E_2 (Mixed_7c)
    assert model.Mixed_7b.pool == "avg" and model.Mixed_7c.pool == "max"


def test_published_file_loads_strictly(tmp_path):
    state = _published_state()
    ckpt = tmp_path / "inception"
    ckpt.mkdir()
    torch.save(state, ckpt / inception.FILE)  # a plain state dict, as the release asset
    judge = inception.load(ckpt, "cpu")
    loaded = judge.model.state_dict()
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    out = judge(torch.rand(1, 3, 299, 299))
    assert out.pool3.shape == (1, 2048) and judge.dim == 2048 and torch.isfinite(out.pool3).all() and (out.pool3 >= 0).all()
    # a file without num_batches_tracked loads (torch's own BatchNorm rule); a wrong shape or a stray key is refused
    model = inception.FIDInceptionV3()
    inception.load_state_strict(model, _published_state(drop_batches_tracked=True), "x")
    with pytest.raises(ValueError, match=r"shape mismatches.*fc\.weight: file \(1000, 2048\)"):
        inception.load_state_strict(model, dict(state, **{"fc.weight": torch.zeros(1000, 2048)}), "x")
    with pytest.raises(ValueError, match=r"unexpected \['AuxLogits.fc.weight'\]"):
        inception.load_state_strict(model, dict(state, **{"AuxLogits.fc.weight": torch.zeros(1008, 768)}), "x")


def test_paper_random_is_the_published_layout_and_reduced_widths_need_the_tiny_marker(tmp_path):
    paper = tmp_path / "paper"
    paper.mkdir()
    inception.make_paper_random(paper, 0)
    saved = torch.load(paper / inception.FILE, weights_only=True)
    assert {k: list(v.shape) for k, v in saved.items()} == _fixture()["keys"]
    assert inception.load(paper, "cpu").dim == 2048
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    inception.make_tiny(narrow, 0)
    with pytest.raises(ValueError, match="1/16 of the published"):
        inception.load(narrow, "cpu")


# -- (b) the tiny stand-in ---------------------------------------------------------------------------------------
def test_tiny_stand_in_is_the_same_format_and_deterministic(folder, judge, tmp_path):
    assert weights.is_tiny(folder)
    state = torch.load(folder / inception.FILE, weights_only=True)
    assert set(state) == set(_fixture()["keys"]) and inception.divisor_from_state_dict(state) == inception.TINY_DIVISOR
    again = weights.ensure(inception.SPEC, WeightsParams(profile="tiny", dir=str(tmp_path / "w")))
    assert hashlib.sha256((again / inception.FILE).read_bytes()).digest() == hashlib.sha256((folder / inception.FILE).read_bytes()).digest()
    x = torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    a = judge(x)
    assert torch.equal(a.pool3, inception.load(again, "cpu")(x).pool3)
    assert a.pool3.shape == (2, 128) and judge.dim == 128 and torch.isfinite(a.pool3).all() and (a.pool3[0] != a.pool3[1]).any()
    other = tmp_path / "seed1"
    other.mkdir()
    inception.make_tiny(other, 1)
    assert (other / inception.FILE).read_bytes() != (folder / inception.FILE).read_bytes()


# -- (c) pytorch-fid's conventions ---------------------------------------------------------------------------------
def test_input_is_resized_bilinearly_to_299_then_scaled_to_minus_one_one(judge):
    x = torch.rand(2, 3, 160, 200, generator=torch.Generator().manual_seed(1))
    resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    # a 299 input is not resampled again, so resizing first gives the same features
    assert torch.allclose(judge(x).pool3, judge(resized).pool3, atol=1e-5)
    seen = []
    handle = judge.model.Conv2d_1a_3x3.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    try:
        judge(x)
    finally:
        handle.remove()
    assert torch.allclose(seen[0], 2 * resized - 1)  # the first conv sees the resized image in [-1, 1]


def test_fid_average_pool_does_not_count_the_padding():
    x = torch.ones(1, 2, 5, 5)
    assert torch.equal(inception._avg_pool_tf(x), x)  # count_include_pad=True would give 4/9 in the corners
    assert not torch.equal(F.avg_pool2d(x, 3, 1, 1), x)


def test_predict_takes_uint8_and_batches(judge):
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    out = judge.predict(images, batch_size=2)
    direct = judge(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).pool3
    assert out.pool3.shape == (3, 128) and torch.allclose(out.pool3, direct, atol=1e-5) and not out.pool3.requires_grad
    assert judge.predict(images[:0]).pool3.shape == (0, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.pool3 = direct  # type: ignore[misc]


def test_real_image_features(judge, real_dir):
    from PIL import Image

    path = real_dir / "images" / IMAGE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    image = np.asarray(Image.open(path).convert("RGB"))
    out = judge.predict(np.stack([image, image[:, ::-1]]))
    assert out.pool3.shape == (2, 128) and out.pool3.dtype == torch.float32
    assert torch.isfinite(out.pool3).all() and (out.pool3 >= 0).all()  # pool3 averages ReLU outputs
    assert not torch.equal(out.pool3[0], out.pool3[1])


# -- (d) gradients -----------------------------------------------------------------------------------------------
def test_judge_is_frozen_and_gradients_reach_the_input(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    judge(x).pool3.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_missing_folder_or_file_is_named(folder, without, tmp_path):
    with pytest.raises(WeightsError, match=inception.FILE):
        inception.load(without(folder, inception.FILE), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        inception.load(tmp_path / "nowhere", "cpu")
