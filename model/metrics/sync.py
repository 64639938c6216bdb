"""Sync: SyncNet's LSE-C (confidence) and LSE-D (minimum mean distance) and AV offset of a video with
its audio, syncnet_python's arithmetic (``SyncNetInstance.evaluate``) on :mod:`judges.sync`.

Per video: face crops by syncnet_python's convention from the landmarks' box (:func:`judges.sync.face_crops`:
box of the MediaPipe points in place of S3FD's, median-filtered over the track, crop scale 0.4,
224 x 224, 110 outside the frame), 16 kHz audio -> MFCC windows, ``min(frames, floor(samples / 640)) - 5``
windows of 5 frames; ``D (N, 31)`` the L2 distances of each video window to the audio windows
-15 .. +15 frames away (zero-padded; :func:`judges.sync.calc_pdist`), then (:func:`score_from_distances`)::

    mdist = mean over windows of D          (31,)
    min_dist, k = min(mdist), argmin(mdist)  LSE-D
    confidence = median(mdist) - min_dist    LSE-C
    offset = 15 - k                          frames (the picture lags the sound by k frames when > 0)

Aggregate over videos: the mean confidence, the mean min distance and the mean ``|offset|`` (videos
weighted equally, as Wav2Lip's LSE scripts average the per-video values). A video with fewer than
6 frames (or 6 x 640 samples) has no window and is skipped (counted). With a ground-truth video
given, its own scores (same audio, its landmarks) are reported beside the generated one's
(``*_gt``): GT HDTF is not at 10+ (DESIGN 9).
"""

from __future__ import annotations

import numpy as np
import torch

from model.metrics.streaming import SumMetric, as_uint8_frames

__all__ = ["Sync", "protocol", "score_from_distances", "sync_video"]

VSHIFT = 15


def score_from_distances(frame_dists: torch.Tensor | np.ndarray, vshift: int = VSHIFT) -> dict[str, float]:
    """``{"confidence", "min_dist", "offset"}`` from ``(N, 2 vshift + 1)`` window-shift distances
    (syncnet_python's ``evaluate`` after ``calc_pdist``)."""
    d = torch.as_tensor(np.asarray(frame_dists) if not isinstance(frame_dists, torch.Tensor) else frame_dists).double()
    if d.ndim != 2 or d.shape[1] != 2 * vshift + 1 or d.shape[0] == 0:
        raise ValueError(f"expected (N >= 1, {2 * vshift + 1}) distances, got {tuple(d.shape)}")
    mdist = d.mean(0)
    minval, minidx = torch.min(mdist, 0)
    return {"confidence": float(torch.median(mdist) - minval), "min_dist": float(minval), "offset": int(vshift - minidx)}


@torch.no_grad()
def sync_video(frames, landmarks: np.ndarray, audio: np.ndarray, judge, vshift: int = VSHIFT) -> dict[str, float]:
    """Scores of one video: ``frames`` (T frames, either convention) with their landmark track (pixels
    of those frames) and its 16 kHz mono audio (float in [-1, 1] or int16)."""
    from judges import sync

    imgs = as_uint8_frames(frames)
    crops = sync.face_crops(imgs, np.asarray(landmarks, dtype=np.float64))
    emb = judge.embed(crops, np.asarray(audio))
    return score_from_distances(sync.calc_pdist(emb.video.double().cpu(), emb.audio.double().cpu(), vshift), vshift)


def _windows(num_frames: int, num_samples: int) -> int:
    from judges import sync

    return sync.num_windows(num_frames, num_samples)


class Sync(SumMetric):
    """Streaming Sync: per side (``pred``, ``gt``) sums of confidence, min distance, ``|offset|`` and the
    video count; ``skipped`` counts videos too short for one window (or without any landmark)."""

    SIDES = ("pred", "gt")

    def __init__(self, judge, vshift: int = VSHIFT):
        self.judge = judge
        self.vshift = vshift
        super().__init__()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{s}_{k}": () for s in self.SIDES for k in ("conf", "dist", "abs_offset", "videos")} | {"skipped": ()}

    def update_scores(self, score: dict[str, float], side: str = "pred") -> None:
        self._add(f"{side}_conf", score["confidence"])
        self._add(f"{side}_dist", score["min_dist"])
        self._add(f"{side}_abs_offset", abs(score["offset"]))
        self._add(f"{side}_videos", 1.0)

    def update(self, pred, target=None, *, landmarks: np.ndarray, audio: np.ndarray,
               pred_landmarks: np.ndarray | None = None) -> None:
        """One generated video (and optionally its ground truth) with the driving audio; ``landmarks``
        the ground truth's track (also used for ``pred`` unless ``pred_landmarks`` is given)."""
        p = as_uint8_frames(pred)
        lm = np.asarray(landmarks, dtype=np.float64)
        p_lm = lm if pred_landmarks is None else np.asarray(pred_landmarks, dtype=np.float64)
        has_face = np.isfinite(p_lm[..., :2]).all(axis=(1, 2)).any() and np.isfinite(lm[..., :2]).all(axis=(1, 2)).any()
        if _windows(len(p), len(audio)) < 1 or not has_face:
            self._add("skipped", 1.0)
            return
        self.update_scores(sync_video(p, p_lm, audio, self.judge, self.vshift), "pred")
        if target is not None:
            self.update_scores(sync_video(target, lm, audio, self.judge, self.vshift), "gt")

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for side, suffix in (("pred", ""), ("gt", "_gt")):
            n = float(self._state[f"{side}_videos"])
            if side == "gt" and n == 0:
                continue
            for key, name in (("conf", "sync_conf"), ("dist", "sync_dist"), ("abs_offset", "sync_offset")):
                out[name + suffix] = float(self._state[f"{side}_{key}"]) / n if n else float("nan")
            out["videos" + suffix] = int(n)
        out["skipped"] = int(self._state["skipped"])
        return out


def protocol() -> dict:
    from judges import sync as judge

    return {"metric": "Sync (LSE-C, LSE-D, offset)", "network": "SyncNet syncnet_v2.model (joonson/syncnet_python), judges.sync",
            "weights": {"folder": judge.SPEC.name, "file": judge.FILE},
            "confidence": "median(mdist) - min(mdist) over the mean distance per shift (LSE-C)",
            "distance": "min(mdist) (LSE-D)", "offset": "vshift - argmin(mdist), frames", "vshift": VSHIFT,
            "windows": "min(frames, floor(samples / 640)) - 5 windows of 5 frames at 25 fps; audio 16 kHz MFCC (13, 100 Hz)",
            "crop": "syncnet_python crop (box side max(w, h), crop_scale 0.4, 13-tap median filter, pad 110, 224x224) "
                    "around the MediaPipe landmarks' bounding box instead of S3FD's",
            "audio": "the generated video's own audio track, else the ground truth's",
            "aggregation": "mean over videos of confidence, min distance and |offset|; ground truth reported beside (_gt)"}
