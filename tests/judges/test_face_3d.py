"""Deep3DFaceRecon judge: strict loading of the published layout, tiny stand-in, the coefficient split,
the 5-point alignment (against the reference's numbers on a real image), gradients, folder errors."""

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
from judges import face_3d

FIXTURE = Path(__file__).parent / "fixtures" / "face_3d_keys.json"
IMAGE = "i01_macron_512.png"
#: MediaPipe face-mesh landmarks (FaceMesh(static_image_mode=True, refine_landmarks=True), mediapipe 0.10.21) of
#: i01_macron_512.png at the indices the alignment reads, image pixels rounded to 0.01
MACRON_POINTS = {33: (190.0, 218.91), 133: (232.58, 223.18), 362: (281.22, 221.45), 263: (323.49, 217.88),
                 1: (256.74, 284.14), 61: (218.56, 328.1), 291: (298.95, 330.13)}
#: what the reference util/preprocess.py align_img (sicxu/Deep3DFaceRecon_pytorch@9167c71, run outside the
#: repository with the five points of MACRON_POINTS, y flipped as read_data does) returns: trans_params and
#: the per-channel mean of its 224 x 224 crop (Pillow 13.0.0)
REF_TRANS = (512.0, 512.0, 0.6522231459524117, 258.6555355553117, 247.9338365645706)
REF_CROP_MEAN = (142.05, 121.043, 110.816)


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(face_3d.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return face_3d.load(folder, "cpu")


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
            state[k] = torch.randn(shape, generator=gen) * 0.02
    return state


def _landmarks(points: dict[int, tuple[float, float]] = MACRON_POINTS) -> np.ndarray:
    """A ``(478, 3)`` landmark array holding ``points`` (NaN elsewhere: the alignment reads only those)."""
    lm = np.full((478, 3), np.nan, np.float32)
    for i, (x, y) in points.items():
        lm[i] = (x, y, 0.0)
    return lm


def _real_image(real_dir: Path) -> np.ndarray:
    from PIL import Image

    path = real_dir / "images" / IMAGE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return np.asarray(Image.open(path).convert("RGB"))


# -- (a) the published layout ------------------------------------------------------------------------------------
def test_reconnet_has_exactly_the_reference_keys_and_shapes():
    fixture = _fixture()
    model = face_3d.ReconNet()
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fixture["keys"]
    assert list(model.state_dict()) == list(fixture["keys"])
    assert sum(p.numel() for p in model.parameters()) == fixture["_parameters"]
    assert fixture["file"] == face_3d.FILE and fixture["entry"] == face_3d.ENTRY and face_3d.SPEC.files == (face_3d.FILE,)
    assert [list(fixture["keys"][f"final_layers.{i}.weight"]) for i in range(7)] == [[n, 2048, 1, 1] for n in face_3d.HEADS]


def test_published_checkpoint_loads_strictly(tmp_path):
    state = _published_state()
    ckpt = tmp_path / "deep3d"
    ckpt.mkdir()
    # save_networks' format: the net's state dict under 'net_recon', optimiser state beside it (not read)
    torch.save({"net_recon": state, "opt_00": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}}, ckpt / face_3d.FILE)
    judge = face_3d.load(ckpt, "cpu")
    loaded = judge.model.state_dict()
    assert list(loaded) == list(state) and all(torch.equal(loaded[k], v) for k, v in state.items())
    out = judge(torch.rand(1, 3, 224, 224))
    assert out.coeffs.shape == (1, 257) and out.expression.shape == (1, 64) and torch.isfinite(out.coeffs).all()
    # a checkpoint without num_batches_tracked loads; a wrong shape, a stray key or a missing entry is refused
    model = face_3d.ReconNet()
    face_3d.load_state_strict(model, _published_state(drop_batches_tracked=True), "x")
    bad = dict(state, **{"final_layers.1.weight": torch.zeros(65, 2048, 1, 1)})
    with pytest.raises(ValueError, match=r"shape mismatches.*final_layers\.1\.weight: file \(65, 2048, 1, 1\)"):
        face_3d.load_state_strict(model, bad, "x")
    with pytest.raises(ValueError, match=r"unexpected \['backbone.fc.weight'\]"):
        face_3d.load_state_strict(model, dict(state, **{"backbone.fc.weight": torch.zeros(257, 2048)}), "x")
    del bad["backbone.bn1.running_mean"]
    with pytest.raises(ValueError, match=r"missing \['backbone.bn1.running_mean'\]"):
        face_3d.load_state_strict(model, bad, "x")
    torch.save({"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}, ckpt / face_3d.FILE)  # a bare state dict
    with pytest.raises(ValueError, match="'net_recon'"):
        face_3d.load(ckpt, "cpu")


def test_paper_random_is_the_published_layout_and_a_reduced_width_needs_the_tiny_marker(tmp_path):
    paper = tmp_path / "paper"
    paper.mkdir()
    face_3d.make_paper_random(paper, 0)
    saved = torch.load(paper / face_3d.FILE, weights_only=True)["net_recon"]
    assert {k: list(v.shape) for k, v in saved.items()} == _fixture()["keys"]
    assert face_3d.load(paper, "cpu").model.backbone.out_dim == 2048
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    face_3d.make_tiny(narrow, 0)  # tiny widths without the marker: not the published network
    with pytest.raises(ValueError, match="width 8 is not the published"):
        face_3d.load(narrow, "cpu")


# -- (b) the tiny stand-in ---------------------------------------------------------------------------------------
def test_tiny_stand_in_is_the_same_format_and_deterministic(folder, judge, tmp_path):
    assert weights.is_tiny(folder)
    saved = torch.load(folder / face_3d.FILE, weights_only=True)
    assert set(saved) == {"net_recon"} and set(saved["net_recon"]) == set(_fixture()["keys"])
    assert face_3d.width_from_state_dict(saved["net_recon"]) == face_3d.TINY_WIDTH
    again = weights.ensure(face_3d.SPEC, WeightsParams(profile="tiny", dir=str(tmp_path / "w")))
    assert hashlib.sha256((again / face_3d.FILE).read_bytes()).digest() == hashlib.sha256((folder / face_3d.FILE).read_bytes()).digest()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    a, b = judge(x), face_3d.load(again, "cpu")(x)
    assert torch.equal(a.coeffs, b.coeffs) and a.coeffs.shape == (2, 257)
    assert torch.isfinite(a.coeffs).all() and a.coeffs.abs().max() < 100 and (a.coeffs[0] != a.coeffs[1]).any()
    other = tmp_path / "seed1"
    other.mkdir()
    face_3d.make_tiny(other, 1)
    assert (other / face_3d.FILE).read_bytes() != (folder / face_3d.FILE).read_bytes()


def test_coefficients_split_as_split_coeff():
    c = torch.arange(2 * 257, dtype=torch.float32).reshape(2, 257)
    out = face_3d.Face3DCoeffs.split(c)
    assert torch.equal(out.identity, c[:, :80]) and torch.equal(out.expression, c[:, 80:144])
    assert torch.equal(out.texture, c[:, 144:224]) and torch.equal(out.angle, c[:, 224:227])
    assert torch.equal(out.gamma, c[:, 227:254]) and torch.equal(out.translation, c[:, 254:])
    assert sum(n for _, n in face_3d.SPLIT) == sum(face_3d.HEADS) == 257
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.coeffs = c  # type: ignore[misc]


# -- (c) alignment ---------------------------------------------------------------------------------------------------
def test_five_points_are_the_eye_corner_means_nose_tip_and_mouth_corners():
    lm = _landmarks()
    five = face_3d.five_points(lm)
    p = {i: np.array(v, np.float32) for i, v in MACRON_POINTS.items()}
    expected = np.stack([(p[33] + p[133]) / 2, (p[362] + p[263]) / 2, p[1], p[61], p[291]])
    assert five.shape == (5, 2) and np.allclose(five, expected)
    assert np.array_equal(face_3d.five_points(five), five)  # five points pass through
    assert face_3d.five_points(np.stack([lm, lm])).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="468 or 478"):
        face_3d.five_points(np.zeros((68, 2)))


def test_alignment_recovers_a_known_similarity():
    # the 3D template seen orthographically at scale 200 px/unit, centred at (300, 260) in a 640 x 480 image (y down)
    s_true, cx, cy = 200.0, 300.0, 260.0
    pts = np.stack([cx + s_true * face_3d.LM3D_5[:, 0], cy - s_true * face_3d.LM3D_5[:, 1]], axis=1)
    al = face_3d.estimate_alignment(pts, 640, 480)
    assert al.scale == pytest.approx(face_3d.RESCALE_FACTOR / s_true, rel=1e-5)
    assert al.t == pytest.approx((cx, 480 - 1 - cy), abs=1e-3)
    assert al.resized == (int(640 * al.scale), int(480 * al.scale))
    # the template's points land where the 224 crop puts them: 112 + 102 X, 112 - 102 Y (within the
    # integer crop corner and pixel-centre conventions, about a pixel)
    target = np.stack([112 + 102 * face_3d.LM3D_5[:, 0], 112 - 102 * face_3d.LM3D_5[:, 1]], axis=1)
    assert np.abs(al.to_crop(pts) - target).max() < 1.5


def test_real_image_alignment_matches_the_reference(real_dir):
    image = _real_image(real_dir)
    crop, al = face_3d.align_image(image, _landmarks())
    assert np.allclose(al.trans_params, REF_TRANS, rtol=1e-9, atol=1e-9)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.allclose(crop.reshape(-1, 3).mean(0), REF_CROP_MEAN, atol=0.5)
    # the eyes and the mouth land near the template's positions
    target = np.stack([112 + 102 * face_3d.LM3D_5[:, 0], 112 - 102 * face_3d.LM3D_5[:, 1]], axis=1)
    err = np.abs(al.to_crop(face_3d.five_points(_landmarks())) - target)
    assert err[[0, 1, 3, 4]].max() < 5 and err.max() < 12  # the nose tip sits lower on this face than on the template
    # the differentiable path gives the same crop up to PIL's 8-bit arithmetic
    t = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    tc = face_3d.align_images_torch(t, [al])[0].permute(1, 2, 0).numpy() * 255
    diff = np.abs(tc - crop.astype(np.float32))
    assert diff.mean() < 0.5 and diff.max() < 2


def test_mediapipe_gives_the_recorded_points(real_dir):
    mp = pytest.importorskip("mediapipe")
    image = _real_image(real_dir)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        res = mesh.process(image)
    assert res.multi_face_landmarks
    h, w = image.shape[:2]
    lm = res.multi_face_landmarks[0].landmark
    assert len(lm) == 478
    for i, (x, y) in MACRON_POINTS.items():
        assert abs(lm[i].x * w - x) < 2 and abs(lm[i].y * h - y) < 2, i


def test_real_image_predict_gives_finite_coefficients(judge, real_dir):
    image = _real_image(real_dir)
    out = judge.predict([image, image[:, ::-1].copy()], [_landmarks(), _flipped_landmarks(image.shape[1])])
    assert out.coeffs.shape == (2, 257) and out.expression.shape == (2, 64) and out.identity.shape == (2, 80)
    assert out.coeffs.dtype == torch.float32 and torch.isfinite(out.coeffs).all() and not out.coeffs.requires_grad
    crop, _ = face_3d.align_image(image, _landmarks())
    assert torch.allclose(judge.predict_aligned(crop[None]).coeffs[0], out.coeffs[0], atol=1e-5)
    assert judge.predict([], []).coeffs.shape == (0, 257)


def _flipped_landmarks(width: int) -> np.ndarray:
    """MACRON_POINTS of the mirrored image (left and right swap roles: 33 <-> 263, 133 <-> 362, 61 <-> 291)."""
    swap = {33: 263, 263: 33, 133: 362, 362: 133, 61: 291, 291: 61, 1: 1}
    return _landmarks({swap[i]: (width - 1 - x, y) for i, (x, y) in MACRON_POINTS.items()})


# -- (d) gradients -----------------------------------------------------------------------------------------------
def test_judge_is_frozen_and_gradients_reach_the_frames(judge):
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 256, 320, generator=gen).requires_grad_(True)
    pts = {i: (x * 0.5 + 20, y * 0.5) for i, (x, y) in MACRON_POINTS.items()}  # a face in a 320 x 256 frame
    crops = judge.align(frames, np.stack([_landmarks(pts)] * 2))
    assert crops.shape == (2, 3, 224, 224)
    out = judge(crops)
    (out.expression ** 2).sum().backward()  # an expression loss
    assert frames.grad is not None and torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())
    with pytest.raises(ValueError, match="224"):
        judge(torch.rand(1, 3, 256, 256))


def test_missing_folder_or_file_is_named(folder, without, tmp_path):
    with pytest.raises(WeightsError, match=face_3d.FILE):
        face_3d.load(without(folder, face_3d.FILE), "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        face_3d.load(tmp_path / "nowhere", "cpu")
