"""AU judge (LibreFace ResNet-18, BP4D): the published key layout loads strictly, the tiny stand-in, outputs,
LibreFace's crop, gradients, folder errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import action_units as au
from judges import face_va

FIXTURE = Path(__file__).parent / "fixtures" / "action_units_keys.json"
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "images" / "i01_macron_512.png"
#: crop_box_from_landmarks of MediaPipe's face mesh (static image, refined) of REAL, measured once
REAL_BOX = (257.05, 230.52, 394.46)


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(au.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return au.load(folder, "cpu")


@pytest.fixture(scope="module")
def published():
    """Random tensors of exactly the fixture's keys and shapes (LibreFace's ResNet18 state dict)."""
    keys = json.loads(FIXTURE.read_text())["keys"]
    gen = torch.Generator().manual_seed(7)
    out = {}
    for k, shape in keys.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=gen)
        else:
            out[k] = 0.05 * torch.randn(shape, generator=gen)
    return out


def _crops(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def test_the_port_has_exactly_the_reference_keys_and_shapes():
    data = json.loads(FIXTURE.read_text())
    assert "LibreFace" in data["_derived_from"]
    model = au.AUDetector()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == data["keys"]
    assert sum(p.numel() for p in model.parameters()) == data["_parameters"]
    assert au.config_from_state_dict(model.state_dict()) == au.PAPER_CONFIG


def test_a_published_layout_checkpoint_loads_strictly_through_load(published, tmp_path):
    torch.save({"model": published}, tmp_path / au.CHECKPOINT)  # LibreFace's solver saves {'model': state_dict}
    judge = au.load(tmp_path, "cpu")
    state = judge.model.state_dict()
    assert state.keys() == published.keys() and all(torch.equal(state[k], v) for k, v in published.items())
    assert judge(_crops(1)).probs.shape == (1, 12)


def test_other_layouts_are_refused(published, tmp_path):
    for name, ckpt, error, match in [
        ("bare", published, TypeError, "'model'"),
        ("extra", {"model": {**published, "classifier.6.weight": torch.zeros(1)}}, RuntimeError, "Unexpected key"),
        ("disfa", {"model": {**published, "classifier.4.weight": torch.zeros(8, 128), "classifier.4.bias": torch.zeros(8)}},
         ValueError, "12-AU"),
    ]:
        (tmp_path / name).mkdir()
        torch.save(ckpt, tmp_path / name / au.CHECKPOINT)
        with pytest.raises(error, match=match):
            au.load(tmp_path / name, "cpu")


def test_make_paper_random_writes_the_full_published_layout(tmp_path):
    au.make_paper_random(tmp_path, seed=0)
    raw = torch.load(tmp_path / au.CHECKPOINT, weights_only=True)
    assert {k: list(v.shape) for k, v in raw["model"].items()} == json.loads(FIXTURE.read_text())["keys"]


def test_tiny_stand_in_is_the_same_format_loaded_by_the_same_code_and_deterministic(folder, judge, tmp_path):
    raw = torch.load(folder / au.CHECKPOINT, weights_only=True)
    assert set(raw) == {"model"} and au.config_from_state_dict(raw["model"]) == au.TINY_CONFIG
    au.make_tiny(tmp_path, seed=0)
    other = torch.load(tmp_path / au.CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(raw["model"][k], other[k]) for k in raw["model"]) and raw["model"].keys() == other.keys()
    x = _crops(2)
    assert torch.equal(judge(x).logits, au.load(tmp_path, "cpu")(x).logits)


def test_outputs_are_probabilities_of_the_12_bp4d_aus(judge):
    assert au.AUS == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    out = judge(_crops(3))
    assert isinstance(out, au.AUs) and out.probs.shape == out.logits.shape == (3, 12)
    assert ((out.probs >= 0) & (out.probs <= 1)).all() and torch.allclose(out.probs, torch.sigmoid(out.logits))
    # the published head ends in a Sigmoid: the judge's probabilities are the module's own output
    x = (_crops(3) - judge.mean) / judge.std
    assert torch.allclose(out.probs, judge.model(x), atol=1e-6)
    assert torch.equal(out.present, out.probs >= 0.5)
    assert not out.probs.std(dim=0).eq(0).all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.probs = out.probs  # type: ignore[misc]


def test_judge_is_frozen_and_gradients_reach_the_input_frames(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    frames = torch.rand(2, 3, 300, 280, requires_grad=True)
    crops = judge.preprocess(frames, np.array([[140.0, 150.0, 200.0], [150.0, 140.0, 260.0]]))
    assert crops.shape == (2, 3, 224, 224)
    out = judge(crops)
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, torch.ones_like(out.logits)).backward()  # eq. 4 style
    assert frames.grad is not None and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_preprocess_is_align_512_resize_256_centre_224(judge):
    img = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    # the box of the whole 512 frame: the aligner's output is the frame itself; then Resize(256) + CenterCrop(224)
    resized = torch.nn.functional.interpolate(img, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
    assert torch.allclose(judge.preprocess(img, np.array([256.0, 256.0, 512.0])), resized[..., 16:240, 16:240], atol=1e-5)
    # a box over twice the aligner's size is average-pooled first (LibreFace's shrink = floor(qsize / 512))
    big = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(6))
    pooled = torch.nn.functional.avg_pool2d(big, 2)
    assert torch.allclose(judge.preprocess(big, np.array([512.0, 512.0, 1024.0])),
                          judge.preprocess(pooled, np.array([255.75, 255.75, 512.0])), atol=1e-5)


def test_preprocess_crops_only_the_window_it_keeps_with_the_same_values(judge):
    """The 512 crop is sampled only where the centre 224 of its 256 resize reads it: bit-identical to resizing
    the whole crop and cutting the centre, for boxes inside, across the border of and larger than the frame."""
    gen = torch.Generator().manual_seed(7)
    for side, boxes in [(512, [[256.0, 256.0, 512.0], [250.0, 270.0, 398.0], [100.0, 400.0, 900.0]]),
                        (1100, [[550.0, 550.0, 1100.0], [520.0, 480.0, 2100.0], [10.0, 10.0, 300.0]])]:
        img = torch.rand(3, 3, side, side, generator=gen)
        boxes = np.array(boxes)
        whole = torch.nn.functional.interpolate(face_va.crop_faces(img, boxes, 512, shrink=True), size=(256, 256),
                                                mode="bilinear", align_corners=False, antialias=True)
        assert torch.equal(judge.preprocess(img, boxes), whole[..., 16:240, 16:240])
    assert face_va.crop_faces(img, boxes, 512, shrink=True, window=(28, 484)).shape[-2:] == (456, 456)


def test_crop_box_follows_librefaces_aligner():
    lm = np.zeros((478, 2))
    lm[:] = (100.0, 100.0)
    lm[au.LEFT_EYE] = (130.0, 90.0)  # the subject's left eye (image right)
    lm[au.RIGHT_EYE] = (70.0, 90.0)
    lm[au.LIPS] = (100.0, 150.0)
    lm[61], lm[291] = (80.0, 150.0), (120.0, 150.0)  # mouth corners: the leftmost / rightmost lip points
    box = au.crop_box_from_landmarks(lm)
    # eye_avg (100, 90), e2e 60, e2m (0, 60): half = max(2 * 60, 1.8 * 60) = 120, centre = eye_avg + 0.1 e2m
    assert box.shape == (3,) and np.allclose(box, [100.0, 96.0, 240.0])
    assert au.crop_box_from_landmarks(np.stack([lm, lm * 2])).shape == (2, 3)
    assert np.allclose(au.crop_box_from_landmarks(lm * 2), 2 * box)  # scales with the face
    assert np.allclose(au.crop_box_from_landmarks(np.concatenate([lm, np.zeros((478, 1))], axis=1)), box)
    assert len(au.LEFT_EYE) == len(au.RIGHT_EYE) == 16 and len(au.LIPS) == 40
    with pytest.raises(ValueError, match="478"):
        au.crop_box_from_landmarks(np.zeros((68, 2)))


@pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is absent")
def test_predict_on_a_real_frame(judge):
    from PIL import Image

    frame = np.asarray(Image.open(REAL).convert("RGB"))
    out = judge.predict(np.stack([frame, frame]), np.array(REAL_BOX))
    assert out.probs.shape == (2, 12) and ((out.probs >= 0) & (out.probs <= 1)).all() and not out.probs.requires_grad
    assert torch.equal(out.probs[0], out.probs[1])
    x = torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float() / 255
    assert torch.allclose(out.logits[:1], judge(judge.preprocess(x, np.array(REAL_BOX))).logits, atol=1e-5)


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="resnet.pt"):
        au.load(without(folder, au.CHECKPOINT), "cpu")
    with pytest.raises(WeightsError, match="does not exist.*ihp-lab/LibreFace"):
        au.load(tmp_path / "nowhere", "cpu")


def test_spec_is_the_published_model():
    spec = au.SPEC
    assert spec.files == ("resnet.pt",) and (spec.make_tiny.__module__, spec.make_tiny.__name__) == (au.__name__, "make_tiny")
    assert not spec.repo_id and "USC" in spec.licence  # not on the hub: a URL at a pinned commit
    assert spec.url.startswith(f"https://github.com/ihp-lab/LibreFace/raw/{au.REVISION}/") and spec.url.endswith("/resnet.pt")
    assert "Input" in au.__doc__ and "Output" in au.__doc__
