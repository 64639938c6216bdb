"""SyncNet's face crop from our MediaPipe landmarks (part of :mod:`judges.sync`; the convention is written in
its module docstring): syncnet_python's ``run_pipeline.py`` crop arithmetic on the landmarks' bounding box,
in numpy/cv2 for extraction and metrics, and as a differentiable ``grid_sample`` for the sync loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 224  # face crop side
CROP_SCALE = 0.40  # run_pipeline.py's --crop_scale
PAD_VALUE = 110  # run_pipeline.py pads the frame with this constant
SMOOTH_KERNEL = 13  # run_pipeline.py's medfilt of the detections


def face_boxes(landmarks: np.ndarray, box_scale: float = 1.0, smooth: bool = True) -> np.ndarray:
    """``(N, 3)`` float ``[x, y, s]`` per frame: the landmarks' bounding-box centre and half its larger
    side (run_pipeline's ``dets``), median-filtered over frames (kernel 13, scipy's zero-padded
    ``medfilt`` as the reference, whose tracks are at least 100 frames; a shorter track than 13 frames
    uses the largest odd kernel it holds, since 13 would zero most boxes) when ``smooth``. ``landmarks`` ``(N, K, >=2)`` pixels, NaN where no
    face: those frames take the box interpolated between their neighbours (held at the ends)."""
    lms = np.asarray(landmarks, dtype=np.float64)[..., :2]
    valid = np.isfinite(lms).all(axis=(1, 2))
    if not valid.any():
        raise ValueError("no frame has landmarks: no face crop")
    v = lms[valid]
    x0, x1, y0, y1 = v[..., 0].min(1), v[..., 0].max(1), v[..., 1].min(1), v[..., 1].max(1)
    raw = np.stack([(x0 + x1) / 2, (y0 + y1) / 2, np.maximum(x1 - x0, y1 - y0) / 2 * box_scale], axis=1)
    t = np.arange(len(lms))
    box = np.stack([np.interp(t, t[valid], raw[:, j]) for j in range(3)], axis=1)
    kernel = min(SMOOTH_KERNEL, len(box) - (1 - len(box) % 2))  # a track shorter than 13: the largest odd kernel it holds
    if smooth and kernel >= 3:
        from scipy import signal

        box = np.stack([signal.medfilt(box[:, j], kernel_size=kernel) for j in range(3)], axis=1)
    return box


def crop_windows(boxes: np.ndarray, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """``(N, 4)`` int64 ``[x0, y0, x1, y1]`` (source pixels, end exclusive, may lie outside the frame)
    of run_pipeline's ``crop_video`` slice: rows ``y - s .. y + s (1 + 2 cs)``, columns
    ``x - s (1 + cs) .. x + s (1 + cs)``, truncated with ``int`` in the frame padded by
    ``bsi = int(s (1 + 2 cs))`` as there."""
    x, y, s = boxes[:, 0], boxes[:, 1], boxes[:, 2]
    cs = crop_scale
    bsi = np.trunc(s * (1 + 2 * cs))
    my, mx = y + bsi, x + bsi
    out = np.stack([np.trunc(mx - s * (1 + cs)), np.trunc(my - s), np.trunc(mx + s * (1 + cs)), np.trunc(my + s * (1 + 2 * cs))], axis=1)
    return (out - bsi[:, None]).astype(np.int64)


def face_crops(frames: np.ndarray, landmarks: np.ndarray, crop_scale: float = CROP_SCALE, box_scale: float = 1.0,
               smooth: bool = True) -> np.ndarray:
    """``(N, 224, 224, 3)`` uint8 crops (channel order as given: RGB in, RGB out) of ``(N, H, W, 3)``
    frames around the landmarks' face (module docstring: the crop convention); outside the frame is 110."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) != len(landmarks):
        raise ValueError(f"frames {frames.shape} and landmarks {np.shape(landmarks)} must be (N, H, W, 3) and (N, K, 2|3)")
    return crop_frames(frames, crop_windows(face_boxes(landmarks, box_scale, smooth), crop_scale))


def crop_frames(frames: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """``(N, 224, 224, 3)`` uint8 crops of ``(N, H, W, 3)`` frames to :func:`crop_windows`' windows (one per
    frame; the track's windows are computed once, so a clip can be cropped chunk by chunk)."""
    import cv2

    h, w = frames.shape[1:3]
    out = np.empty((len(frames), SIZE, SIZE, 3), np.uint8)
    for i, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, wins)):
        pad = int(max(0, -x0, -y0, x1 - w, y1 - h))
        padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=PAD_VALUE) if pad else frame
        face = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
        out[i] = cv2.resize(face, (SIZE, SIZE))
    return out


def face_crops_torch(frames: torch.Tensor, windows: np.ndarray | torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0),
                     size: int = SIZE) -> torch.Tensor:
    """``(N, 3, H, W)`` frames (values in ``value_range``) -> ``(N, 3, size, size)`` on SyncNet's 0..255
    scale, cropped to :func:`crop_windows`' windows by an affine ``grid_sample`` (bilinear,
    ``align_corners=False``: the pixel centres of ``cv2.resize``), 110 outside the frame.
    Differentiable w.r.t. ``frames``; channel order kept."""
    n, _, h, w = frames.shape
    lo, hi = value_range
    x = (frames - lo) * (255.0 / (hi - lo)) - PAD_VALUE  # zero padding of (x - 110) is padding with 110
    win = torch.as_tensor(np.asarray(windows), dtype=x.dtype, device=x.device)
    x0, y0, x1, y1 = win.unbind(1)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = (x1 - x0) / w
    theta[:, 0, 2] = (x0 + x1) / w - 1
    theta[:, 1, 1] = (y1 - y0) / h
    theta[:, 1, 2] = (y0 + y1) / h - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + PAD_VALUE
