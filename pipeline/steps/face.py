"""``face``: face track, head pose, face count and a stable square crop box for every frame of a clip.

One decode of the clip's 25 fps frames (the encoder's seek and ``fps`` filter, so frame ``i`` here
is frame ``i`` of the clip); only the frames detection or the mesh read (multiples of ``detect_every``
or ``mesh_every``) leave ffmpeg, scaled down so the longer side is at most ``analysis_side``:

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
* **Pose**: yaw, pitch, roll in degrees per frame (:func:`pipeline.face_geometry.head_pose`):
  perspective-n-point of the rigid landmarks on a symmetric canonical face, positive yaw turning the
  nose towards image right; :mod:`pipeline.face_geometry` says how, and how accurate it is.
* **Crop**: per frame, the landmarks' bounding square (centre, side); the centre is smoothed with a
  zero-phase Gaussian filter of ``smooth_s`` seconds (sigma) and the side with ``size_smooth_s``
  (the clip is processed offline, so the filter looks both ways and does not lag); the side is
  scaled by ``margin``. The encoder cuts this box out of each frame, pads outside the frame, and
  resizes it to ``size`` x ``size`` (:func:`pipeline.face_geometry.crop_boxes`).

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

from core.clip import Clip
from core.media import clip_frames, frame_size, picked_frames
from pipeline.face_geometry import canonical_face, crop_boxes, face_side, head_pose, interpolate_track, rigid_indices
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
        self._rigid: np.ndarray | None = None
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
        self._rigid = rigid_indices()
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
            # Only the frames detection or the mesh look at leave ffmpeg (3 in 5 with the defaults).
            every = (p.detect_every, p.mesh_every)
            frames = clip_frames(clip.source, seek, self.fps, n, (aw, ah), what=clip.source_rel, every=every)
            for frame, i in zip(frames, picked_frames(n, every)):  # the frames first: zip runs them to their end checks
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
            pose[i] = head_pose(lms[i], self._canonical, (src_w, src_h), self._rigid)
        crop = crop_boxes(lms, valid, self.fps, smooth_s=p.smooth_s, size_smooth_s=p.size_smooth_s, margin=p.margin)

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
        side = face_side(lms[tracked]) if tracked.any() else np.zeros(0)
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
