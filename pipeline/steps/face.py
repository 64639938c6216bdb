"""``face``: face track, head pose, face count and a stable square crop box for every frame of a clip.

One decode of the clip's 25 fps frames (the encoder's seek and ``fps`` filter, so frame ``i`` here
is frame ``i`` of the clip), scaled down so the longer side is at most ``analysis_side``:

* **Face count**: MediaPipe face detection (``detect_model``; bundled in mediapipe 0.10.21) on
  every ``detect_every``-th frame; a detection counts when its score is at least
  ``detect_confidence``, its box at least ``min_face_size`` of the frame's shorter side, and its
  centre is not inside a larger counted box. When a frame has two or more such boxes, each is
  confirmed by face mesh (static mode) on a crop of ``2x`` the box (``verify_faces``): the short-range
  detector gives face-like blobs 0.55-0.66 (a suit badge in a rendered single-face clip, every frame,
  so it does not flicker away), and face mesh finds no face in them, while it finds the real second
  faces of the sample's and the real two-speaker clips. ``multi_face_fraction`` is the fraction of
  the detection frames with two or more confirmed faces.
* **Landmarks**: MediaPipe face mesh (478 points with irises) in tracking (video) mode, one
  instance per clip, on every ``mesh_every``-th frame. Every ``redetect_every`` mesh frames the
  track restarts from a fresh detection (one blank frame ends it): pure tracking can drift on a
  turned head (the sample's rendered 60-degree turn drifted back to about 16 degrees within a
  second; real clips did not move), and a restart costs about a tenth of the mesh time. Frames in
  between, and gaps where the mesh lost the face for at most ``max_gap_s``, get landmarks
  interpolated linearly in time; longer gaps stay NaN.
* **Pose**: yaw, pitch, roll in degrees per frame: perspective-n-point (OpenCV SQPnP) of the rigid
  landmarks' image positions (lips, eyes and irises left out) on a canonical 3-D face, pinhole
  camera with focal length = the frame's longer side, then ``R = Ry(yaw) Rx(pitch) Rz(roll)``.
  The canonical face is MediaPipe's own mesh of scikit-image's astronaut photo made exactly
  left-right symmetric (averaged with its mirror image), so yaw 0 and roll 0 mean "symmetric to
  the camera"; pitch 0 puts forehead (landmark 10) and chin (152) at the same depth. Positive yaw
  turns the nose towards image right, positive pitch raises it (:func:`euler_yxz`). Accuracy:
  exact (< 0.5 degree) on projected canonical faces; on faces rendered at known yaw (the sample's
  mesh warp) MediaPipe's landmarks follow about 0.75-0.8 of the turn (15/30/45/60 -> about
  11/24/35/46 degrees); real v06 (a three-quarter view) measures about 33. See
  tests/pipeline/steps/test_face.py.
* **Crop**: per frame, the landmarks' bounding square (centre, side); the centre is smoothed with a
  zero-phase Gaussian filter of ``smooth_s`` seconds (sigma) and the side with ``size_smooth_s``
  (the clip is processed offline, so the filter looks both ways and does not lag); the side is
  scaled by ``margin``. The encoder cuts this box out of each frame, pads outside the frame, and
  resizes it to ``size`` x ``size``.

Output: ``meta["face"]`` (per-frame ``pose`` [yaw, pitch, roll], ``crop`` [cx, cy, side] in source
pixels, ``tracked`` flags, and a summary), ``scores`` (below), and ``files["landmarks.npy"]``:
``(frames, 478, 3)`` float16 in crop pixels (x, y in the ``size`` x ``size`` crop, z in the same scale;
NaN where no face). Thresholds are applied by :mod:`pipeline.steps.face_filter`, so changing one
never re-runs MediaPipe.

Scores: ``face_fraction`` (mesh frames with a face), ``faces_max``, ``multi_face_fraction``,
``face_size`` (median face side / frame's shorter side), ``face_px`` (median face side, source
pixels), ``yaw_abs_median``, ``yaw_abs_p90``, ``pitch_abs_median``, ``pitch_abs_p90``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.clip import Clip
from pipeline.media import clip_frames, frame_size
from pipeline.steps import Resources, Step

N_LANDMARKS = 478


@dataclass(frozen=True)
class FaceParams:
    """``steps.face``."""

    enabled: bool = True  # false: no face step, no face filter; encode keeps the whole frame
    analysis_side: int = 640  # frames are scaled down so the longer side is at most this for MediaPipe
    mesh_every: int = 2  # face mesh on every n-th frame (1: all 25 fps frames); the rest interpolated
    redetect_every: int = 5  # restart the mesh's tracking from a fresh detection every n mesh frames (0: never)
    detect_every: int = 5  # face detection (counting faces) on every n-th frame (5: 5 fps)
    detect_model: int = 0  # MediaPipe face detection model: 0 short range (faces within ~2 m, fast), 1 full range
    detect_confidence: float = 0.65  # 0.5 lets through face-like blobs (the sample's space suit at 0.5-0.58)
    min_face_size: float = 0.05  # a detection counts as a face from this box side / frame's shorter side
    mesh_confidence: float = 0.5  # face mesh detection and tracking confidence
    verify_faces: bool = True  # a frame's second face counts only when face mesh confirms it on its crop
    max_gap_s: float = 0.5  # landmark gaps up to this long are interpolated; longer ones stay NaN
    margin: float = 1.8  # crop side = margin * landmark bounding square side
    size: int = 512  # crop output side in pixels
    smooth_s: float = 0.2  # Gaussian sigma (seconds) of the crop centre filter
    size_smooth_s: float = 1.0  # Gaussian sigma (seconds) of the crop side filter

    def __post_init__(self) -> None:
        if self.mesh_every < 1 or self.detect_every < 1:
            raise ValueError("steps.face: mesh_every and detect_every must be >= 1")
        if self.size % 2:
            raise ValueError(f"steps.face: size ({self.size}) must be even (yuv420p)")


class Face(Step):
    name = "face"
    version = "2"  # 2: second faces confirmed by face mesh
    resources = Resources(cpus=1)

    def __init__(self, params: FaceParams | None = None, fps: int = 25):
        super().__init__(params or FaceParams())
        self.fps = fps
        self._canonical: np.ndarray | None = None
        self._detector = None
        self._verifier = None

    def weights_fingerprint(self) -> str:
        # The face models ship inside the mediapipe wheel: its version identifies them. Read from the
        # package metadata, because importing mediapipe in the driver costs about a second.
        from importlib.metadata import version

        return f"mediapipe=={version('mediapipe')}"

    def setup(self) -> None:
        import cv2
        import mediapipe as mp

        cv2.setNumThreads(1)
        self._canonical = canonical_face()
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=self.params.detect_model, min_detection_confidence=self.params.detect_confidence)
        self._verifier = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                                         min_detection_confidence=self.params.mesh_confidence)

    def __call__(self, clip: Clip, out: Path) -> Clip:
        if self._canonical is None:
            self.setup()
        p = self.params
        probe, seg = clip.meta["probe"], clip.meta["segment"]
        n = int(seg["frames"])
        src_w, src_h = frame_size(probe)
        scale = min(1.0, p.analysis_side / max(src_w, src_h))
        aw, ah = max(2, int(round(src_w * scale))), max(2, int(round(src_h * scale)))
        sx, sy = src_w / aw, src_h / ah  # analysis pixel -> source pixel
        seek = float(probe["video_start"]) - float(probe.get("format_start", 0.0)) + clip.start

        raw = np.full((n, N_LANDMARKS, 3), np.nan, dtype=np.float64)
        counts = []
        mesh = _face_mesh(p.mesh_confidence)
        blank = np.zeros((32, 32, 3), dtype=np.uint8)
        try:
            for i, frame in enumerate(clip_frames(clip.source, seek, self.fps, n, (aw, ah), what=clip.source_rel)):
                if i % p.detect_every == 0:
                    counts.append(self._count_faces(frame))
                if i % p.mesh_every == 0:
                    if p.redetect_every and i and (i // p.mesh_every) % p.redetect_every == 0:
                        mesh.process(blank)  # a frame without a face ends the track: the next frame is detected afresh
                    res = mesh.process(frame)
                    if res.multi_face_landmarks:
                        lm = res.multi_face_landmarks[0].landmark
                        raw[i] = [(q.x * aw * sx, q.y * ah * sy, q.z * aw * sx) for q in lm]
        finally:
            mesh.close()

        mesh_idx = np.arange(0, n, p.mesh_every)
        tracked = ~np.isnan(raw[:, 0, 0])
        lms = interpolate_track(raw, tracked, max_gap=max(p.mesh_every, int(round(p.max_gap_s * self.fps))))
        valid = ~np.isnan(lms[:, 0, 0])
        pose = np.full((n, 3), np.nan)
        for i in np.flatnonzero(valid):
            pose[i] = head_pose(lms[i], self._canonical, (src_w, src_h))
        crop = crop_boxes(lms, valid, p, self.fps, (src_w, src_h))

        # Landmarks in crop pixels: (p - (c - side/2)) * size / side; z scaled alike.
        if crop is not None:
            k = (p.size / crop[:, 2])[:, None]
            lc = np.empty_like(lms)
            lc[..., 0] = (lms[..., 0] - (crop[:, 0] - crop[:, 2] / 2)[:, None]) * k
            lc[..., 1] = (lms[..., 1] - (crop[:, 1] - crop[:, 2] / 2)[:, None]) * k
            lc[..., 2] = lms[..., 2] * k
        else:
            lc = lms
        npy = out / "landmarks.npy"
        np.save(npy, lc.astype(np.float16))

        counts_a = np.asarray(counts, dtype=np.int64)
        side = _face_side(lms[tracked]) if tracked.any() else np.zeros(0)
        tp = pose[tracked]
        scores = {
            "face_fraction": float(tracked[mesh_idx].mean()) if n else 0.0,
            "faces_max": float(counts_a.max()) if counts_a.size else 0.0,
            "multi_face_fraction": float((counts_a >= 2).mean()) if counts_a.size else 0.0,
            "face_size": float(np.median(side) / min(src_w, src_h)) if side.size else 0.0,
            "face_px": float(np.median(side)) if side.size else 0.0,
        }
        for j, name in ((0, "yaw"), (1, "pitch")):
            a = np.abs(tp[:, j]) if tp.size else np.zeros(0)
            scores[f"{name}_abs_median"] = float(np.median(a)) if a.size else 0.0
            scores[f"{name}_abs_p90"] = float(np.percentile(a, 90)) if a.size else 0.0
        scores = {k: round(v, 4) for k, v in scores.items()}

        meta = {
            "frames": n, "source_size": [src_w, src_h], "analysis_size": [aw, ah], "size": p.size,
            "mesh_every": p.mesh_every, "detect_every": p.detect_every,
            "faces_per_detect_frame": counts_a.tolist(),
            "tracked": tracked.astype(int).tolist(),
            "pose": _rounded(pose, 2),
            "crop": _rounded(crop, 2) if crop is not None else None,
            "landmarks": {"file": "landmarks.npy", "shape": [n, N_LANDMARKS, 3], "dtype": "float16", "space": "crop pixels (x, y, z)"},
            "method": {
                "detector": f"mediapipe face_detection model {p.detect_model}", "mesh": f"mediapipe face_mesh 478 (refined), tracking mode, re-detected every {p.redetect_every} mesh frames",
                "pose": "SQPnP of rigid landmarks on a symmetric canonical face, f = longer frame side; R = Ry(yaw) Rx(pitch) Rz(roll)",
                "crop_filter": f"zero-phase Gaussian, sigma {p.smooth_s} s (centre), {p.size_smooth_s} s (side)",
            },
        }
        return clip.evolve(meta={"face": meta}, scores=scores, files={"landmarks.npy": str(npy)})

    def _count_faces(self, frame: np.ndarray) -> int:
        res = self._detector.process(frame)  # type: ignore[union-attr]
        if not res.detections:
            return 0
        h, w = frame.shape[:2]
        # The score threshold is applied here: the solution's min_detection_confidence lets 0.5-scored boxes through.
        boxes = [(b.xmin * w, b.ymin * h, b.width * w, b.height * h)
                 for b, score in ((d.location_data.relative_bounding_box, d.score[0]) for d in res.detections)
                 if score >= self.params.detect_confidence]
        faces = distinct_faces(boxes, self.params.min_face_size * min(w, h))
        if len(faces) < 2 or not self.params.verify_faces:
            return len(faces)
        return sum(self._is_face(frame, box) for box in faces)

    def _is_face(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> bool:
        """Face mesh finds a face in a square crop of twice the detection box (resized to 256 px)."""
        import cv2

        h, w = frame.shape[:2]
        x, y, bw, bh = box
        half = max(bw, bh)
        x0, y0 = int(max(0, x + bw / 2 - half)), int(max(0, y + bh / 2 - half))
        x1, y1 = int(min(w, x + bw / 2 + half)), int(min(h, y + bh / 2 + half))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return False
        crop = np.ascontiguousarray(cv2.resize(frame[y0:y1, x0:x1], (256, 256), interpolation=cv2.INTER_AREA))
        return bool(self._verifier.process(crop).multi_face_landmarks)  # type: ignore[union-attr]


# -- helpers (pure functions, tested directly) ------------------------------------------------------
def count_faces(boxes: list[tuple[float, float, float, float]], min_side: float) -> int:
    """Number of :func:`distinct_faces`."""
    return len(distinct_faces(boxes, min_side))


def distinct_faces(boxes: list[tuple[float, float, float, float]], min_side: float) -> list[tuple[float, float, float, float]]:
    """Distinct faces among detection boxes ``(x, y, w, h)``, largest first: at least ``min_side`` pixels,
    and a box whose centre lies inside an already counted (larger) box is the same face detected twice
    (a turned head sometimes gives two overlapping detections)."""
    kept: list[tuple[float, float, float, float]] = []
    for x, y, w, h in sorted(boxes, key=lambda b: -b[2] * b[3]):
        if max(w, h) < min_side:
            continue
        cx, cy = x + w / 2, y + h / 2
        if any(kx <= cx <= kx + kw and ky <= cy <= ky + kh for kx, ky, kw, kh in kept):
            continue
        kept.append((x, y, w, h))
    return kept


def _face_mesh(confidence: float):
    import mediapipe as mp

    return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=confidence, min_tracking_confidence=confidence)


def _rounded(a: np.ndarray, digits: int) -> list:
    return [[None if math.isnan(v) else round(float(v), digits) for v in row] for row in a]


def _face_side(lms: np.ndarray) -> np.ndarray:
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


def crop_boxes(lms: np.ndarray, valid: np.ndarray, p: FaceParams, fps: int, src: tuple[int, int]) -> np.ndarray | None:
    """``(frames, 3)`` crop boxes ``[cx, cy, side]`` in source pixels, or None when no frame has a face."""
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
    box[:, 0] = _gaussian(filled[:, 0], p.smooth_s * fps)
    box[:, 1] = _gaussian(filled[:, 1], p.smooth_s * fps)
    box[:, 2] = _gaussian(filled[:, 2], p.size_smooth_s * fps) * p.margin
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


_RIGID: list[np.ndarray] = []


def head_pose(lm: np.ndarray, canonical: np.ndarray, frame: tuple[int, int]) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) of one frame's landmarks (``(478, 2+)``, source pixels) against ``canonical``.

    Perspective-n-point (OpenCV SQPnP, a global solver) of the rigid landmarks' image positions on
    the canonical 3-D face, pinhole camera with focal length = the frame's longer side (a ~53 degree
    field of view) and the principal point at the frame centre.
    """
    import cv2

    if not _RIGID:
        _RIGID.append(rigid_indices())
    idx = _RIGID[0]
    w, h = frame
    f = float(max(w, h))
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(canonical[idx].astype(np.float64), lm[idx, :2].astype(np.float64).reshape(-1, 1, 2), K, None,
                               flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return (math.nan, math.nan, math.nan)
    R, _ = cv2.Rodrigues(rvec)
    return euler_yxz(R)


def canonical_face() -> np.ndarray:
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
