"""Frame tensors: decoded uint8 frames -> ``(N, 3, H, W)`` tensors, and uint8 -> model pixels."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def to_tensor(frames: list[np.ndarray], bgr: bool = False, dtype: str = "float32") -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB (or BGR) -> ``(N, 3, H, W)`` RGB: float32 in [-1, 1], or uint8 in [0, 255]
    (``dtype="uint8"``; :func:`model_pixels` then does the float conversion on the training device)."""
    n, (h, w) = len(frames), frames[0].shape[:2]
    if dtype == "uint8":
        raw = np.empty((n, 3, h, w), np.uint8)
        for i, frame in enumerate(frames):
            for c, plane in enumerate(cv2.split(frame)):
                raw[i, 2 - c if bgr else c] = plane
        return torch.from_numpy(raw)
    out = np.empty((n, 3, h, w), np.float32)
    for i, frame in enumerate(frames):  # one frame at a time: it stays in cache for the scaling
        planes = cv2.split(frame)
        for c in range(3):
            np.multiply(planes[2 - c if bgr else c], np.float32(1 / 127.5), out=out[i, c], casting="unsafe")
        np.subtract(out[i], np.float32(1), out=out[i])
    return torch.from_numpy(out)


def model_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Frames as the model takes them: float in [-1, 1]. uint8 [0, 255] frames (``data.pixels: uint8``)
    are converted, on whatever device they are (after ``.to(device)``); float frames pass through."""
    if pixels.dtype == torch.uint8:
        return pixels.to(torch.float32).mul_(1 / 127.5).sub_(1)
    return pixels
