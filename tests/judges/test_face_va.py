"""EmoNet judge: the published key layout loads strictly, the tiny stand-in, outputs, crops, gradients, folder errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import face_va

FIXTURE = Path(__file__).parent / "fixtures" / "face_va_keys.json"
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "images" / "i01_macron_512.png"
#: crop_box_from_landmarks of MediaPipe's face mesh (static image, refined) of REAL, measured once
REAL_BOX = (257.21, 288.53, 402.9)


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(face_va.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return face_va.load(folder, "cpu")


@pytest.fixture(scope="module")
def published():
    """Random tensors of exactly the fixture's keys and shapes (the reference EmoNet's state dict)."""
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


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


def test_the_port_has_exactly_the_reference_keys_and_shapes():
    data = json.loads(FIXTURE.read_text())
    assert "emonet" in data["_derived_from"]
    ours = {k: list(v.shape) for k, v in face_va.EmoNet().state_dict().items()}
    assert ours == data["keys"]
    assert sum(p.numel() for p in face_va.EmoNet().parameters()) == data["_parameters"]
    assert face_va.config_from_state_dict(face_va.EmoNet().state_dict()) == face_va.PAPER_CONFIG


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_a_published_layout_checkpoint_loads_strictly_through_load(published, tmp_path, prefix):
    """As saved by DataParallel ('module.' keys, stripped as emonet's loaders do) or plain; every tensor arrives."""
    torch.save({prefix + k: v for k, v in published.items()}, tmp_path / face_va.CHECKPOINT)
    judge = face_va.load(tmp_path, "cpu")
    state = judge.model.state_dict()
    assert state.keys() == published.keys()
    assert all(torch.equal(state[k], v) for k, v in published.items())
    out = judge(_faces(1))  # the full-size network runs at 256 x 256
    assert out.probs.shape == (1, 8) and out.valence_arousal.shape == (1, 2)


def test_a_checkpoint_without_num_batches_tracked_loads_and_a_mismatch_is_refused(published, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    torch.save({f"module.{k}": v for k, v in published.items() if not k.endswith("num_batches_tracked")}, old / face_va.CHECKPOINT)
    face_va.load(old, "cpu")  # a pre-0.4.1 BatchNorm save: torch fills the counter (the renamed dict has no _metadata)
    extra = tmp_path / "extra"
    extra.mkdir()
    torch.save({**published, "emo_fc_2.9.weight": torch.zeros(1)}, extra / face_va.CHECKPOINT)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        face_va.load(extra, "cpu")
    five = tmp_path / "five"
    five.mkdir()
    torch.save({**published, "emo_fc_2.3.weight": torch.zeros(7, 128), "emo_fc_2.3.bias": torch.zeros(7)}, five / face_va.CHECKPOINT)
    with pytest.raises(ValueError, match="8-class"):
        face_va.load(five, "cpu")


def test_make_paper_random_writes_the_full_published_layout(tmp_path):
    face_va.make_paper_random(tmp_path, seed=0)
    raw = torch.load(tmp_path / face_va.CHECKPOINT, weights_only=True)
    keys = json.loads(FIXTURE.read_text())["keys"]
    assert {k.removeprefix("module."): list(v.shape) for k, v in raw.items()} == keys


def test_tiny_stand_in_is_the_same_format_loaded_by_the_same_code_and_deterministic(folder, judge, tmp_path):
    raw = torch.load(folder / face_va.CHECKPOINT, weights_only=True)
    assert all(k.startswith("module.") for k in raw)
    assert face_va.config_from_state_dict(face_va.strip_module_prefix(raw)) == face_va.TINY_CONFIG
    again = tmp_path / "again"
    again.mkdir()
    face_va.make_tiny(again, seed=0)
    other = torch.load(again / face_va.CHECKPOINT, weights_only=True)
    assert raw.keys() == other.keys() and all(torch.equal(raw[k], other[k]) for k in raw)
    x = _faces(2)
    a, b = judge(x), face_va.load(again, "cpu")(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.raw_valence_arousal, b.raw_valence_arousal)


def test_outputs_are_probabilities_and_valence_arousal_in_range(judge):
    out = judge(_faces(3))
    assert isinstance(out, face_va.FaceVA)
    assert out.logits.shape == out.probs.shape == (3, 8) and out.valence_arousal.shape == (3, 2)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(3), atol=1e-5) and (out.probs >= 0).all()
    assert (out.valence_arousal.abs() <= 1).all()
    assert torch.equal(out.valence_arousal, out.raw_valence_arousal.clamp(-1, 1))
    assert torch.equal(out.valence, out.valence_arousal[:, 0]) and torch.equal(out.arousal, out.valence_arousal[:, 1])
    assert not out.probs.std(dim=0).eq(0).all()  # the stand-in's outputs depend on the input
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.probs = out.probs  # type: ignore[misc]
    with pytest.raises(ValueError, match="256"):
        judge(torch.rand(1, 3, 224, 224))


def test_judge_is_frozen_and_gradients_reach_the_input_frames(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    frames = torch.rand(2, 3, 320, 300, requires_grad=True)
    out = judge(judge.preprocess(frames, np.array([[150.0, 160.0, 280.0], [140.0, 170.0, 250.0]])))
    (out.valence_arousal ** 2).sum().add(out.probs[:, 1].sum()).backward()  # an eq. 3 style loss
    assert frames.grad is not None and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())


def test_crop_faces_is_the_cv2_affine_map():
    img = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    # the box of the whole frame at its own size is the identity (source x = cx + u - size/2)
    assert torch.allclose(face_va.crop_faces(img[:, :, :, :40], np.array([20.0, 20.0, 40.0]), 40), img[:, :, :, :40], atol=1e-6)
    # an integer shift moves the content and fills zeros; two boxes crop their own images
    out = face_va.crop_faces(img, np.array([[37.0, 20.0, 40.0], [20.0, 23.0, 40.0]]), 40)
    assert torch.allclose(out[0, :, :, :31], img[0, :, :, 17:48], atol=1e-6) and (out[0, :, :, 31:] == 0).all()
    assert torch.allclose(out[1, :, :37], img[1, :, 3:40, :40], atol=1e-6) and (out[1, :, 37:] == 0).all()
    # half the output size: each output pixel (source x = cx + 2(u - 10)) samples a pixel centre exactly
    half = face_va.crop_faces(img[:1], np.array([20.0, 20.0, 40.0]), 20)
    assert torch.allclose(half, img[:1, :, 0:40:2, 0:40:2], atol=1e-6)
    with pytest.raises(ValueError, match="boxes"):
        face_va.crop_faces(img, np.zeros((3, 3)) + 10, 8)


def test_crop_box_follows_emonets_evaluation_crop():
    lm = np.zeros((478, 3))
    lm[:, :2] = 100.0  # every landmark outside the box set sits in the middle
    lm[234, :2], lm[454, :2] = (60.0, 110.0), (140.0, 110.0)  # jaw ends: width 80
    lm[152, :2], lm[105, :2] = (100.0, 170.0), (90.0, 70.0)  # chin and a brow: height 100
    lm[10, :2] = (100.0, 0.0)  # the forehead top is not part of emonet's 68-point outline
    box = face_va.crop_box_from_landmarks(lm)
    assert box.shape == (3,) and np.allclose(box, [100.0, 120.0, 180.0 / 1.1])
    cx, cy, side = face_va.crop_box_from_landmarks(lm[:, :2])
    assert np.allclose((cx, cy, side), box)
    assert face_va.crop_box_from_landmarks(np.stack([lm, lm + [5, 0, 0]])).shape == (2, 3)
    with pytest.raises(ValueError, match="478"):
        face_va.crop_box_from_landmarks(np.zeros((68, 2)))


@pytest.mark.skipif(not REAL.is_file(), reason=f"{REAL} is absent")
def test_predict_on_a_real_frame(judge):
    from PIL import Image

    frame = np.asarray(Image.open(REAL).convert("RGB"))
    out = judge.predict(np.stack([frame, frame[:, ::-1]]), np.array([REAL_BOX, (512 - 1 - REAL_BOX[0], *REAL_BOX[1:])]))
    assert out.probs.shape == (2, 8) and out.valence_arousal.shape == (2, 2)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(2), atol=1e-5) and (out.valence_arousal.abs() <= 1).all()
    assert not out.probs.requires_grad and torch.isfinite(out.raw_valence_arousal).all()
    single = judge.predict(frame, np.array(REAL_BOX))
    x = face_va.crop_faces(torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float() / 255, np.array(REAL_BOX), 256)
    assert torch.allclose(single.logits, judge(x).logits, atol=1e-5) and torch.allclose(single.logits, out.logits[:1], atol=1e-5)


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="emonet_8.pth"):
        face_va.load(without(folder, face_va.CHECKPOINT), "cpu")
    with pytest.raises(WeightsError, match="does not exist.*github.com/face-analysis/emonet"):
        face_va.load(tmp_path / "nowhere", "cpu")


def test_spec_is_the_published_model():
    spec = face_va.SPEC
    assert spec.files == ("emonet_8.pth",) and (spec.make_tiny.__module__, spec.make_tiny.__name__) == (face_va.__name__, "make_tiny")
    assert spec.licence == "CC-BY-NC-ND-4.0" and not spec.repo_id  # not on the hub: a URL at a pinned commit
    assert spec.url == f"https://github.com/face-analysis/emonet/raw/{face_va.REVISION}/pretrained/emonet_8.pth"
    assert face_va.CLASSES == ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
    assert "Input" in face_va.__doc__ and "Output" in face_va.__doc__ and "CC BY-NC-ND 4.0" in face_va.__doc__
