"""FVD: the Frechet distance (:mod:`model.metrics.frechet`) of StyleGAN-V's I3D features
(:mod:`judges.i3d`, ``i3d_torchscript.pt``, 400-d, called with ``rescale=True, resize=True,
return_features=True``: [0, 255] clips, resized to 224 inside) of 16-frame clips.

Clips (:func:`judges.i3d.clips`): ``length`` 16 consecutive frames (``fvd2048_16f``, subsample 1),
windows every ``stride`` frames from frame 0 of BOTH videos (default 16: non-overlapping), the same
windows for generated and ground truth. A video shorter than 16 frames gives no clip (StyleGAN-V
discards it). Deviation from StyleGAN-V, recorded in :func:`protocol`: it takes ONE clip per video
(frame 0 of a generated video, a random offset of a real one); a test set of ~100 videos would then
give ~100 samples in a 400-d space, so every window is used instead. Frames go to the detector as
uint8 (``round(255 x)`` of [0, 1] frames; decoded videos are uint8 already).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.metrics.frechet import FrechetMetric, frechet_from_features
from model.metrics.streaming import as_uint8_frames

__all__ = ["FVD", "LENGTH", "STRIDE", "fvd", "i3d_features", "protocol"]

LENGTH = 16
STRIDE = 16


@torch.no_grad()
def i3d_features(video: torch.Tensor, judge, stride: int = STRIDE, length: int = LENGTH, batch_size: int = 4) -> torch.Tensor:
    """``(K, 400)`` float64 features of one video's clips (``(T, 3, H, W)`` [0, 1] or ``(T, H, W, 3)`` uint8)."""
    from judges import i3d

    frames = torch.from_numpy(as_uint8_frames(video))
    clips = i3d.clips(frames, length=length, stride=stride)
    return judge.encode(clips, batch_size=batch_size).features.double()


def fvd(pred_videos: Sequence[torch.Tensor], target_videos: Sequence[torch.Tensor], judge, stride: int = STRIDE) -> float:
    """FVD of two lists of videos (clips of all videos pooled per side)."""
    p = torch.cat([i3d_features(v, judge, stride) for v in pred_videos])
    t = torch.cat([i3d_features(v, judge, stride) for v in target_videos])
    return frechet_from_features(p, t)


class FVD(FrechetMetric):
    """Streaming FVD: ``update`` takes one video per side (either may be None)."""

    def __init__(self, judge, stride: int = STRIDE, batch_size: int = 4):
        from judges import i3d

        self.judge = judge
        self.stride = stride
        self.batch_size = batch_size
        super().__init__(i3d.FEATURES)

    def update(self, pred: torch.Tensor | None, target: torch.Tensor | None) -> None:
        f = [None if v is None else i3d_features(v, self.judge, self.stride, LENGTH, self.batch_size) for v in (pred, target)]
        self.update_features(*f)


def protocol(stride: int = STRIDE) -> dict:
    from judges import i3d as judge

    return {"metric": "FVD", "network": "StyleGAN-V i3d_torchscript.pt (Kinetics-400 I3D logits, 400-d), judges.i3d",
            "weights": {"folder": judge.SPEC.name, "file": judge.FILE, "url": judge.URL},
            "detector_kwargs": dict(judge.DETECTOR_KWARGS), "clip_length": LENGTH, "subsample": 1, "stride": stride,
            "clips": f"every {LENGTH}-frame window from frame 0, {stride} frames apart, same windows for both sides; "
                     f"videos shorter than {LENGTH} frames give none",
            "deviation": "StyleGAN-V takes one clip per video (random offset for real videos); all windows are used here",
            "input": "uint8 [0, 255] frames (round(255 x)), resized to 224 inside the detector",
            "covariance": "sample (n - 1)", "sqrtm": "scipy.linalg.sqrtm; eps 1e-6 on the diagonals if not finite"}
