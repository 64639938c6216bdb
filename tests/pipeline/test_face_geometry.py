"""Face geometry: pose accuracy on projected canonical faces, track gap filling, crop smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.face_geometry import canonical_face, compute_canonical_face, crop_boxes, euler_yxz, head_pose, interpolate_track, rigid_indices


@pytest.fixture(scope="module")
def canonical():
    return canonical_face()


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Ry Rx Rz`` in image axes, with the reading of :func:`euler_yxz` (yaw > 0: nose to image right)."""
    y, p, r = math.radians(-yaw), math.radians(-pitch), math.radians(roll)
    Ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def test_canonical_face_is_symmetric_and_upright(canonical):
    assert canonical.shape == (478, 3)
    assert canonical[33, 0] == pytest.approx(-canonical[263, 0], abs=0.5)  # outer eye corners mirror each other
    assert abs(canonical[1, 0]) < 0.5 and canonical[1, 2] < canonical[234, 2]  # nose tip on the midline, nearer the camera
    assert canonical[152, 1] > canonical[10, 1]  # chin below forehead
    assert euler_yxz(np.eye(3)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("yaw", [0, 15, 30, 45, 60, -30])
def test_pose_of_projected_canonical_face(canonical, yaw):
    """The estimator alone: the canonical face turned by a known pose and projected by a pinhole camera."""
    w = h = 512
    R = _rot(yaw, 10.0, -5.0)
    pts = canonical @ R.T + np.array([0.0, 0.0, 600.0])  # ~1.5 face widths from a f=512 camera
    uv = pts[:, :2] / pts[:, 2:] * 512 + np.array([w / 2, h / 2])
    lm = np.concatenate([uv, pts[:, 2:]], axis=1)
    est = head_pose(lm, canonical, (w, h))
    assert est == pytest.approx((yaw, 10.0, -5.0), abs=0.5)
    assert head_pose(lm, canonical, (w, h), rigid_indices()) == est  # the caller's rigid indices: the same


def test_track_interpolation_and_crop_smoothing():
    n = 50
    raw = np.full((n, 478, 3), np.nan)
    have = np.zeros(n, bool)
    for i in range(0, n, 2):  # mesh on every 2nd frame, a face moving right by 2 px/frame with jitter
        have[i] = True
        raw[i] = np.random.default_rng(i).normal(0, 1, (478, 3)) * 40 + np.array([100 + 2 * i + (3 if i % 4 else -3), 100, 0])
    have[20:30] = False  # a 10-frame gap: longer than max_gap stays empty
    raw[20:30] = np.nan
    lms = interpolate_track(raw, have, max_gap=4)
    valid = ~np.isnan(lms[:, 0, 0])
    assert valid[:19].all() and not valid[20:29].any() and valid[30:49].all() and valid[49]  # the tail holds the last value
    assert np.allclose(lms[1], (raw[0] + raw[2]) / 2)
    box = crop_boxes(lms, valid, 25, smooth_s=0.2, size_smooth_s=1.0, margin=2.0)
    assert box.shape == (n, 3) and not np.isnan(box).any()
    centre_raw = (lms[:19, :, 0].max(axis=1) + lms[:19, :, 0].min(axis=1)) / 2
    assert np.abs(np.diff(box[:19, 0], 2)).max() < np.abs(np.diff(centre_raw, 2)).max() / 3  # jitter filtered out
    assert 1.9 * 150 < box[:, 2].mean() < 2.1 * 350
    assert crop_boxes(lms, np.zeros(n, bool), 25, smooth_s=0.2, size_smooth_s=1.0, margin=2.0) is None


def test_the_stored_canonical_face_is_what_compute_gives(canonical):
    """canonical_face.npy saves every face worker ~2 CPU-s; it must stay the computed template."""
    np.testing.assert_allclose(canonical, compute_canonical_face(), atol=0.02)
