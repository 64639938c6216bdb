"""Frame tensors: uint8 and float conversions agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import model_pixels, to_tensor


def test_uint8_pixels_are_the_float_frames_before_scaling():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 128, 255  # blue, green, red planes
    raw, flt = to_tensor([bgr], bgr=True, dtype="uint8"), to_tensor([bgr], bgr=True)
    assert raw.dtype == torch.uint8 and raw.shape == (1, 3, 4, 5)
    assert raw[0, :, 0, 0].tolist() == [255, 128, 10]  # RGB
    assert torch.allclose(model_pixels(raw), flt, atol=1e-6) and model_pixels(flt) is flt
    assert flt[0, :, 0, 0].tolist() == pytest.approx([1.0, 128 / 127.5 - 1, 10 / 127.5 - 1], abs=1e-6)
