"""Sanity on a real clip (../shared/data/real): a video against itself (PSNR at the cap, SSIM 1, LPIPS 0,
FID and FVD ~0 with tiny features) and monotonic worsening under increasing blur and noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.metrics import fid, fvd, lpips, psnr, ssim, video

CLIP = "videos/v01_frontal_hdtf_katiehill_25fps_a16k.mp4"
pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def frames(real_dir):
    path = real_dir / CLIP
    if not path.is_file():
        pytest.skip(f"{path} not found")
    x = video.decode(path, 64)[:48]  # 25 fps, 64 x 64: 48 frames (3 FVD clips)
    assert x.shape == (48, 64, 64, 3)
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1.0) / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(x.reshape(-1, 1, *x.shape[2:]), (r, r, r, r), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))
    return y.reshape(x.shape)


def _noise(x: torch.Tensor, std: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_a_video_against_itself(frames, judge):
    x = frames
    assert float(psnr.psnr(x, x)) == psnr.CAP_DB == 100.0
    assert float(ssim.ssim(x, x)) == pytest.approx(1.0, abs=1e-12)
    assert float(lpips.lpips(x[:16], x[:16], judge("lpips"))) == pytest.approx(0.0, abs=1e-6)
    assert abs(fid.fid(x[:24], x[:24], judge("inception"))) < 1e-4
    assert abs(fvd.fvd([x], [x], judge("i3d"))) < 1e-4


@pytest.mark.parametrize("degrade, levels", [(_blur, (0.5, 1.0, 2.0, 3.0)), (_noise, (0.02, 0.05, 0.1, 0.2))],
                         ids=["blur", "noise"])
def test_worsening_is_monotonic(frames, judge, degrade, levels):
    x = frames[:8]
    scores = {"psnr": [], "ssim": [], "lpips": []}
    for level in levels:
        y = degrade(x, level)
        scores["psnr"].append(float(psnr.psnr(y, x)))
        scores["ssim"].append(float(ssim.ssim(y, x)))
        scores["lpips"].append(float(lpips.lpips(y, x, judge("lpips"))))
    assert all(a > b for a, b in zip(scores["psnr"], scores["psnr"][1:])), scores
    assert all(a > b for a, b in zip(scores["ssim"], scores["ssim"][1:])), scores
    assert all(a < b for a, b in zip(scores["lpips"], scores["lpips"][1:])), scores
    assert scores["psnr"][0] < psnr.CAP_DB and scores["ssim"][0] < 1 and scores["lpips"][0] > 0
