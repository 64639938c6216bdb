"""Face geometry of a landmark track: head pose, track gap filling and the smoothed crop box.

Pure numpy/OpenCV on MediaPipe's 478 face-mesh landmarks (only :func:`compute_canonical_face` and
:func:`rigid_indices` use mediapipe: its mesh of a bundled photo, and its landmark groups).

**Pose**: yaw, pitch, roll in degrees per frame: perspective-n-point (OpenCV SQPnP) of the rigid
landmarks' image positions (lips, eyes and irises left out) on a canonical 3-D face, pinhole
camera with focal length = the frame's longer side, then ``R = Ry(yaw) Rx(pitch) Rz(roll)``.
The canonical face is MediaPipe's own mesh of scikit-image's astronaut photo made exactly
left-right symmetric (averaged with its mirror image), so yaw 0 and roll 0 mean "symmetric to
the camera"; pitch 0 puts forehead (landmark 10) and chin (152) at the same depth. Positive yaw
turns the nose towards image right, positive pitch raises it (:func:`euler_yxz`). Accuracy:
exact (< 0.5 degree) on projected canonical faces; on faces rendered at known yaw (the sample's
mesh warp) MediaPipe's landmarks follow about 0.75-0.8 of the turn (15/30/45/60 -> about
11/24/35/46 degrees); real v06 (a three-quarter view) measures about 33. See
tests/pipeline/test_face_geometry.py and tests/pipeline/steps/test_face.py.
"""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np


# -- track ----------------------------------------------------------------------------------------------
def face_side(lms: np.ndarray) -> np.ndarray:
    """Side of each frame's landmark bounding square (source pixels)."""
    return np.maximum(np.ptp(lms[..., 0], axis=1), np.ptp(lms[..., 1], axis=1))


def interpolate_track(raw: np.ndarray, have: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill frames without landmarks linearly between tracked neighbours at most ``max_gap`` frames apart."""
    out = raw.copy()
    idx = np.flatnonzero(have)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= max_gap:
            t = ((np.arange(a + 1, b) - a) / (b - a))[:, None, None]
            out[a + 1 : b] = raw[a] * (1 - t) + raw[b] * t
    if idx.size:  # a short head or tail (e.g. the frames after the last mesh frame) holds the nearest value
        if idx[0] <= max_gap:
            out[: idx[0]] = raw[idx[0]]
        if len(raw) - 1 - idx[-1] <= max_gap:
            out[idx[-1] + 1 :] = raw[idx[-1]]
    return out


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(x, sigma, mode="nearest")


def crop_boxes(lms: np.ndarray, valid: np.ndarray, fps: float, *, smooth_s: float, size_smooth_s: float, margin: float) -> np.ndarray | None:
    """``(frames, 3)`` crop boxes ``[cx, cy, side]`` in source pixels, or None when no frame has a face.

    Per frame, the landmarks' bounding square, held at the ends over frames without a face; the
    centre is smoothed with a zero-phase Gaussian of ``smooth_s`` seconds (sigma), the side with
    ``size_smooth_s`` and then scaled by ``margin`` (at least 8 pixels).
    """
    if not valid.any():
        return None
    n = len(lms)
    v = lms[valid]
    x0, x1, y0, y1 = v[..., 0].min(axis=1), v[..., 0].max(axis=1), v[..., 1].min(axis=1), v[..., 1].max(axis=1)
    raw = np.zeros((n, 3))
    raw[valid] = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, np.maximum(x1 - x0, y1 - y0)], axis=1)
    t = np.arange(n)
    filled = np.stack([np.interp(t, t[valid], raw[valid, j]) for j in range(3)], axis=1)  # hold at the ends
    box = np.empty_like(filled)
    box[:, 0] = _gaussian(filled[:, 0], smooth_s * fps)
    box[:, 1] = _gaussian(filled[:, 1], smooth_s * fps)
    box[:, 2] = _gaussian(filled[:, 2], size_smooth_s * fps) * margin
    box[:, 2] = np.maximum(box[:, 2], 8.0)
    return box


# -- pose ---------------------------------------------------------------------------------------------
def rigid_indices() -> np.ndarray:
    """Landmarks that move with the skull: all but lips, eyes (lids) and irises."""
    import mediapipe as mp

    fm = mp.solutions.face_mesh
    moving = set()
    for edges in (fm.FACEMESH_LIPS, fm.FACEMESH_LEFT_EYE, fm.FACEMESH_RIGHT_EYE):
        moving |= {v for e in edges for v in e}
    return np.array([i for i in range(468) if i not in moving], dtype=np.int64)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: ``dst ~= s * R @ src + t`` (rows are points); returns ``(s, R, t)``."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, 1.0, d])
    R = u @ D @ vt
    s = float((sv * np.diag(D)).sum() / (a**2).sum())
    return s, R, md - s * R @ ms


def euler_yxz(R: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` degrees of ``R = Ry(yaw) Rx(pitch) Rz(roll)`` in image axes (x right, y down, z away).

    Signs are flipped to the usual reading: yaw > 0 turns the nose towards image right,
    pitch > 0 raises the nose (looking up), roll > 0 tilts the head clockwise on screen.
    """
    pitch = math.asin(max(-1.0, min(1.0, -R[1, 2])))
    yaw = math.atan2(R[0, 2], R[2, 2])
    roll = math.atan2(R[1, 0], R[1, 1])
    return -math.degrees(yaw), -math.degrees(pitch), math.degrees(roll)


def head_pose(lm: np.ndarray, canonical: np.ndarray, frame: tuple[int, int], rigid: np.ndarray | None = None) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) of one frame's landmarks (``(478, 2+)``, source pixels) against ``canonical``.

    Perspective-n-point (OpenCV SQPnP, a global solver) of the rigid landmarks' image positions on
    the canonical 3-D face, pinhole camera with focal length = the frame's longer side (a ~53 degree
    field of view) and the principal point at the frame centre. ``rigid``: :func:`rigid_indices`,
    computed once by the caller (derived here when not given).
    """
    import cv2

    idx = rigid_indices() if rigid is None else rigid
    w, h = frame
    f = float(max(w, h))
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(canonical[idx].astype(np.float64), lm[idx, :2].astype(np.float64).reshape(-1, 1, 2), K, None,
                               flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return (math.nan, math.nan, math.nan)
    R, _ = cv2.Rodrigues(rvec)
    return euler_yxz(R)


CANONICAL_FACE = Path(__file__).with_name("canonical_face.npy")


def canonical_face() -> np.ndarray:
    """The canonical face ``(478, 3)`` float64 that :func:`compute_canonical_face` gives, stored in
    ``canonical_face.npy``: computing it runs face mesh and an assignment (about 2 CPU-s in every
    worker of the face step); the test suite checks that the stored array is what it computes
    (``python -c "from pipeline.face_geometry import *; write_canonical_face()"`` rewrites it)."""
    return np.load(CANONICAL_FACE)


def write_canonical_face() -> None:
    np.save(CANONICAL_FACE, compute_canonical_face())


def compute_canonical_face() -> np.ndarray:
    """The canonical face: MediaPipe's mesh of scikit-image's astronaut, made left-right symmetric.

    The 3-D landmarks are mirrored (x -> -x), matched point to point (each landmark to the nearest
    mirrored one, an assignment), aligned back onto the original (rotation + translation) and
    averaged with it; the result is expressed in its own frame: x across the face (symmetry plane
    x = 0), y from forehead to chin, z away from the camera. Units: pixels of the photo.
    """
    import mediapipe as mp
    import skimage.data
    from scipy.optimize import linear_sum_assignment

    image = np.ascontiguousarray(skimage.data.astronaut())
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        res = fm.process(image)
    h, w = image.shape[:2]
    P = np.array([(q.x * w, q.y * h, q.z * w) for q in res.multi_face_landmarks[0].landmark], dtype=np.float64)
    P = np.round(P, 2)  # tiny run-to-run detector differences do not change the template
    P -= P[:468].mean(axis=0)
    # Mirror about the face's own mid-plane: estimate it from the iris centres (468 right, 473 left).
    axis = P[473] - P[468]
    axis /= np.linalg.norm(axis)
    mirror = np.eye(3) - 2 * np.outer(axis, axis)
    M = P @ mirror.T
    perm = np.arange(len(P))
    Ma = M  # first match against the plain mirror image, then against it aligned by the current match
    for _ in range(3):
        cost = ((P[:468, None, :] - Ma[None, :468, :]) ** 2).sum(axis=2)
        _, col = linear_sum_assignment(cost)
        perm[:468] = col
        s, R, t = similarity(M[perm][:468], P[:468])
        Ma = (s * (R @ M.T)).T + t
    perm[468:473], perm[473:478] = np.arange(473, 478), np.arange(468, 473)  # irises swap sides
    s, R, t = similarity(M[perm][:468], P[:468])
    S = (P + ((s * (R @ M[perm].T)).T + t)) / 2
    # Frame: x = normal of the symmetry plane, y = forehead (10) to chin (152) made orthogonal to x.
    diffs = S[:468] - S[perm[:468]]
    _, _, vt = np.linalg.svd(diffs, full_matrices=False)
    x = vt[0] * np.sign(vt[0] @ (S[473] - S[468]))
    y = S[152] - S[10]
    y -= (y @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    C = S - S[:468].mean(axis=0)
    return C @ np.stack([x, y, z], axis=1)
