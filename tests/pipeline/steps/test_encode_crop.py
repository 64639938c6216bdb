"""The face-crop cut of the encode step in yuv420p: the region ffmpeg hands over, and the per-plane warp."""

import cv2
import numpy as np
import pytest

from pipeline.steps.encode import crop_region, warp_yuv420


def _frame(w, h, seed=0):
    """A smooth yuv420p test frame (gradients plus low-frequency texture), planes and bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    noise = cv2.resize(rng.uniform(0, 1, (h // 8, w // 8)), (w, h), interpolation=cv2.INTER_CUBIC)
    y = np.clip(30 + 150 * xx / w + 40 * noise, 16, 235).astype(np.uint8)
    u = np.clip(128 + 60 * np.sin(xx[::2, ::2] / 17.0), 16, 240).astype(np.uint8)
    v = np.clip(128 + 60 * np.cos(yy[::2, ::2] / 13.0), 16, 240).astype(np.uint8)
    return y, u, v


def _planes(buf, size):
    a = np.frombuffer(buf, np.uint8)
    n, c = size * size, (size // 2) ** 2
    return a[:n].reshape(size, size), a[n:n + c].reshape(size // 2, size // 2), a[n + c:].reshape(size // 2, size // 2)


def test_crop_region_holds_every_box_aligned_and_inside_the_frame():
    boxes = np.array([[100.3, 150.7, 80.0], [120.0, 140.0, 90.5], [110.0, 160.0, 85.0]])
    x, y, w, h, shrink = crop_region(boxes, 640, 360, 64)
    assert shrink == 1 and x % 2 == y % 2 == w % 2 == h % 2 == 0
    assert x <= 100.3 - 40 - 2 and x + w >= 120 + 45.25 + 2 and y <= 140 - 45.25 - 2 and y + h >= 160 + 42.5 + 2
    assert w < 140 and h < 150  # the region, not the frame
    # boxes running out of the frame: clamped to it; a huge box: an area downscale, aligned to it
    assert crop_region(np.array([[10.0, 10.0, 100.0]]), 640, 360, 64)[:2] == (0, 0)
    x, y, w, h, shrink = crop_region(np.array([[320.0, 180.0, 300.0]]), 640, 360, 64)
    assert shrink == 2 and x % 4 == y % 4 == w % 4 == h % 4 == 0 and (y, h) == (24, 312)  # 30-330 plus 4 px, to multiples of 4
    x, y, w, h, _ = crop_region(np.array([[-500.0, -500.0, 50.0]]), 640, 360, 64)  # wholly outside: a minimal region
    assert (x, y) == (0, 0) and w >= 2 and h >= 2


def test_warp_of_the_region_is_the_warp_of_the_whole_frame():
    """Luma cut from ffmpeg's region equals the same box cut from the whole frame (bit for bit); chroma
    matches a full-resolution RGB-style reference (chroma upsampled, warped, averaged back) closely."""
    W, H, size = 320, 240, 64
    y, u, v = _frame(W, H)
    boxes = np.array([[150.2, 110.6, 90.0], [160.0, 120.0, 96.0], [155.5, 115.0, 93.3]])
    x0, y0, w, h, shrink = crop_region(boxes, W, H, size)
    assert shrink == 1
    region = b"".join(p.tobytes() for p in (y[y0:y0 + h, x0:x0 + w], u[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2],
                                             v[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]))
    for cx, cy, side in boxes:
        oy, ou, ov = _planes(warp_yuv420(region, w, h, np.array([cx - x0, cy - y0, side]), size), size)
        k = size / side
        m = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
        ref_y = cv2.warpAffine(y, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=16)
        assert np.array_equal(oy, ref_y)
        for got, plane in ((ou, u), (ov, v)):
            full = cv2.resize(plane, (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            ref = cv2.warpAffine(full, m, (size, size), flags=cv2.INTER_LINEAR).reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3))
            mse = np.mean((got.astype(np.float64) - ref) ** 2)
            assert 10 * np.log10(255**2 / mse) > 38


def test_warp_pads_black_outside_the_frame():
    """A box hanging over the frame's left edge: the part outside is video black (Y 16, U V 128)."""
    W, H, size = 128, 128, 32
    y, u, v = _frame(W, H, seed=1)
    buf = b"".join(p.tobytes() for p in (y, u, v))
    oy, ou, ov = _planes(warp_yuv420(buf, W, H, np.array([0.0, 64.0, 64.0]), size), size)
    assert np.all(oy[:, :12] == 16) and np.all(ou[:, :6] == 128) and np.all(ov[:, :6] == 128)
    assert oy[:, 20:].min() > 16  # the inside is the picture (the test frame's luma is above black)
    assert oy.shape == (size, size) and ou.shape == (size // 2, size // 2)


@pytest.mark.parametrize("side", [33.0, 200.0])
def test_warp_keeps_a_flat_colour(side):
    """A uniform frame stays exactly uniform in every plane, whatever the scale (no chroma shift)."""
    W, H, size = 96, 96, 32
    buf = np.concatenate([np.full(W * H, 90, np.uint8), np.full(W * H // 4, 70, np.uint8), np.full(W * H // 4, 180, np.uint8)]).tobytes()
    oy, ou, ov = _planes(warp_yuv420(buf, W, H, np.array([48.0, 48.0, min(side, 90.0)]), size), size)
    assert (oy == 90).all() and (ou == 70).all() and (ov == 180).all()
