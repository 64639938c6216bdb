"""I3D (Kinetics-400): the FVD feature detector of StyleGAN-V, ``i3d_torchscript.pt`` (TorchScript).

Model: the StyleGAN-V port of the tf-hub ``deepmind/i3d-kinetics-400/1`` I3D (Carreira & Zisserman),
the network the original FVD (Unterthiner et al., google-research ``frechet_video_distance``) is
defined on; StyleGAN-V checked it against the TensorFlow graph (``universome/fvd-comparison``: L2
difference 2.6e-4 on the features, FVD equal within 1e-6). One file, :data:`FILE`, loaded with
``torch.jit.load`` exactly as StyleGAN-V's ``metric_utils.get_feature_detector`` does
(``torch.jit.load(f).eval().to(device)``); source :data:`URL` (Dropbox, not a Hugging Face repo:
copy it into the folder by hand; no sha256 is published, so ``fetch``/the manifest records the
folder's own). Weights: DeepMind's Kinetics-400 I3D (Apache-2.0, tf-hub); the port ships with
StyleGAN-V, whose README says the repository may fall under the NVIDIA source code licence.

Input and call, EXACTLY as StyleGAN-V's ``compute_feature_stats_for_dataset`` /
``compute_feature_stats_for_generator`` (``src/metrics/metric_utils.py``) with
``frechet_video_distance.compute_fvd``'s :data:`DETECTOR_KWARGS`::

    features = detector(videos, rescale=True, resize=True, return_features=True)   # (N, 400)

* ``videos``: ``(N, 3, T, H, W)`` RGB, values in [0, 255] (StyleGAN-V passes ``torch.uint8``: the
  dataset's PNG frames as stored, ``(N, T, C, H, W).permute(0, 2, 1, 3, 4)``; generated frames in
  [-1, 1] as ``(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)``); float in [0, 255] works too.
  A 1-channel video is repeated to 3 channels first. ``T`` = 16 (:data:`CLIP_FRAMES`, the
  ``fvd2048_16f`` metric; ``fvd2048_128f`` uses 128); the real architecture needs ``T >= 9``
  (its temporal poolings leave too few frames for the final ``(2, 7, 7)`` average pool below that).
* ``rescale=True``: the module maps [0, 255] to [-1, 1] (``x / 127.5 - 1``, the TF ``preprocess``'s
  ``2 * x / 255 - 1``) itself; ``rescale=False`` expects [-1, 1].
* ``resize=True``: the module resizes every frame to 224 x 224 itself (any ``H, W``; aspect ratio
  not kept, no crop; StyleGAN-V: "matches the original TF implementation up to the upsampling
  operation"); ``resize=False`` expects 224 x 224.
* ``return_features=True``: the pre-softmax Kinetics-400 logits averaged over time
  (``RGB/inception_i3d/Mean:0`` of the TF graph): the space FVD is computed in. ``False`` gives
  the class probabilities.

Clip sampling (:func:`clips`, :func:`random_offset`): StyleGAN-V takes ONE clip per video, of
``num_frames`` consecutive frames (``subsample_factor`` s: every s-th frame), and discards videos
shorter than ``num_frames * s`` (``discard_short_videos=True``); real videos start at a uniform
random offset in ``[0, F - n * s + s - 1]`` (``load_n_consecutive_random_offset``, ``random.randint``),
generated ones (``generator_as_dataset``) at frame 0; at most 2048 clips per side (``fvd2048_*``);
``calc_metrics_for_dataset --mirror 1`` adds every real video x-flipped. Mean and covariance over the
clips' features, then the Frechet distance (``scipy.linalg.sqrtm``). With few videos (100 HDTF + 100
MEAD test clips) one clip each gives a rank-deficient 400 x 400 covariance: :func:`clips` with a
``stride`` takes several windows per video, a deviation to record in the evaluation protocol.

Output :class:`I3DFeatures`: ``features`` ``(N, 400)`` float32 (:data:`FEATURES`; the tiny stand-in
has the same width).

The tiny stand-in (:func:`make_tiny_i3d`) is a small scripted 3D-conv network with the same
``forward(x, rescale: bool, resize: bool, return_features: bool)`` schema and the same input and
output conventions, saved with ``torch.jit.save`` under the same file name, so :func:`load` takes
the real path. :func:`make_paper_random` writes the full I3D architecture (:class:`InceptionI3d`,
TF-SAME padding, ~12.7 M parameters) with random weights, scripted and saved the same way: the
speed benchmark's stand-in when the real file is absent (same layers and FLOPs; its numbers mean
nothing).

Used by: the FVD metric (DESIGN 9). :meth:`I3DJudge.forward` keeps the graph to float inputs;
:meth:`I3DJudge.encode` is the no-grad, batched metric path.
"""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.weights import ModelSpec
from judges import verify

__all__ = [
    "CLIP_FRAMES",
    "DETECTOR_KWARGS",
    "FEATURES",
    "FILE",
    "MIN_FRAMES",
    "SPEC",
    "URL",
    "I3DFeatures",
    "I3DJudge",
    "InceptionI3d",
    "clips",
    "load",
    "make_paper_random",
    "make_tiny_i3d",
    "random_offset",
]

FILE = "i3d_torchscript.pt"
#: where StyleGAN-V's ``compute_fvd`` downloads it (``detector_url``)
URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
#: StyleGAN-V's ``detector_kwargs`` for FVD: rescale [0, 255] -> [-1, 1] and resize to 224 inside, raw logits
DETECTOR_KWARGS = {"rescale": True, "resize": True, "return_features": True}
FEATURES = 400  # Kinetics-400 logits
CLIP_FRAMES = 16  # fvd2048_16f
MIN_FRAMES = 9  # the real architecture's minimum clip length
SIZE = 224  # the detector's own resize target


# -- clip sampling (StyleGAN-V's VideoFramesFolderDataset with load_n_consecutive) ----------------
def random_offset(num_frames: int, length: int = CLIP_FRAMES, subsample: int = 1, rng: _random.Random | None = None) -> int:
    """StyleGAN-V's random start of a real video's clip: ``randint(0, F - length * subsample + subsample - 1)``
    (inclusive; ``rng`` a :class:`random.Random`, the module's when None). ``ValueError`` for a video
    StyleGAN-V discards (``F < length * subsample``)."""
    if num_frames < length * subsample:
        raise ValueError(f"a {num_frames}-frame video is shorter than {length} x {subsample} frames (StyleGAN-V discards it)")
    return (rng or _random).randint(0, num_frames - length * subsample + subsample - 1)


def clips(video: np.ndarray | torch.Tensor, length: int = CLIP_FRAMES, stride: int | None = None, subsample: int = 1,
          offset: int = 0) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 RGB frames -> ``(K, 3, length, H, W)`` uint8 clips in the detector's layout.

    Clip ``k`` holds frames ``offset + k * stride + i * subsample``, ``i < length`` (``subsample`` is
    StyleGAN-V's ``subsample_factor``). ``stride=None``: ONE clip at ``offset`` (StyleGAN-V: 0 for a
    generated video, :func:`random_offset` for a real one); ``stride`` = s: every window that fits,
    s frames apart (``stride=length``: non-overlapping), for protocols that need more clips than
    videos. A video shorter than ``length * subsample`` frames gives ``K = 0`` (StyleGAN-V discards
    it), as does an ``offset`` past the last full window.
    """
    frames = torch.as_tensor(np.asarray(video)) if not isinstance(video, torch.Tensor) else video
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected (T, H, W, 3) frames, got {tuple(frames.shape)}")
    if length < 1 or subsample < 1 or offset < 0 or (stride is not None and stride < 1):
        raise ValueError(f"length {length}, subsample {subsample}, stride {stride} must be positive and offset {offset} >= 0")
    n, span = frames.shape[0], (length - 1) * subsample + 1
    starts: list[int] = []
    if n >= length * subsample:
        last = n - span  # the last start whose window fits
        starts = [offset] if stride is None else list(range(offset, last + 1, stride))
        starts = [s for s in starts if s <= last]
    if not starts:
        return torch.empty((0, frames.shape[-1], length, *frames.shape[1:3]), dtype=frames.dtype)
    index = torch.tensor([[s + i * subsample for i in range(length)] for s in starts])
    return frames[index].permute(0, 4, 1, 2, 3).contiguous()  # (K, L, H, W, C) -> (K, C, L, H, W)


# -- the tiny stand-in and the full architecture (both TorchScript, same forward schema) ----------
def _rescale_resize(x: torch.Tensor, rescale: bool, resize: bool) -> torch.Tensor:
    x = x.to(torch.float32)
    if rescale:
        x = x / 127.5 - 1.0
    if resize:
        x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)  # SIZE
    return x


class TinyI3D(nn.Module):
    """Stand-in: ``(N, 3, T, H, W)`` -> ``(N, 400)``, the real detector's call and conventions, a few 3D convs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, kernel_size=(3, 7, 7), stride=(2, 8, 8), padding=(1, 3, 3))
        self.conv2 = nn.Conv3d(8, 16, kernel_size=3, stride=2, padding=1)
        self.logits = nn.Conv3d(16, FEATURES, kernel_size=1)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        x = _rescale_resize(x, rescale, resize)
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.logits(x.mean(dim=[3, 4], keepdim=True))  # (N, 400, T', 1, 1)
        logits = x.flatten(2).mean(dim=2)  # time-mean of the per-step logits, as I3D
        if return_features:
            return logits
        return F.softmax(logits, dim=1)


def _same_pad(x: torch.Tensor, kernel: list[int], stride: list[int], value: float) -> torch.Tensor:
    """TensorFlow 'SAME' padding of the last three dims (the extra pixel after, as TF)."""
    pads: list[int] = []
    for d in [2, 1, 0]:  # F.pad lists the last dim first
        size = x.size(2 + d)
        out = (size + stride[d] - 1) // stride[d]
        total = max((out - 1) * stride[d] + kernel[d] - size, 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """kinetics-i3d ``Unit3D``: SAME-padded conv (no bias) -> batch norm (eps 1e-3) -> ReLU; the logits
    layer: conv with bias, no norm, no activation."""

    def __init__(self, cin: int, cout: int, kernel: Sequence[int] = (1, 1, 1), stride: Sequence[int] = (1, 1, 1),
                 norm_relu: bool = True):
        super().__init__()
        self.kernel = list(kernel)
        self.stride = list(stride)
        self.norm_relu = norm_relu
        self.conv3d = nn.Conv3d(cin, cout, kernel_size=tuple(kernel), stride=tuple(stride), bias=not norm_relu)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001) if norm_relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride, 0.0))
        if self.norm_relu:
            x = F.relu(self.bn(x))
        return x


class MaxPool3dSame(nn.Module):
    """TF ``max_pool3d`` with 'SAME' padding (padding never wins the max)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel = list(kernel)
        self.stride = list(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | max-pool 3x3x3 -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, b0: int, b1: tuple[int, int], b2: tuple[int, int], b3: int):
        super().__init__()
        self.branch_0 = Unit3D(cin, b0)
        self.branch_1a, self.branch_1b = Unit3D(cin, b1[0]), Unit3D(b1[0], b1[1], (3, 3, 3))
        self.branch_2a, self.branch_2b = Unit3D(cin, b2[0]), Unit3D(b2[0], b2[1], (3, 3, 3))
        self.branch_3a, self.branch_3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1b(self.branch_1a(x)), self.branch_2b(self.branch_2a(x)),
                          self.branch_3b(self.branch_3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """The kinetics-i3d RGB network (``deepmind/kinetics-i3d`` ``i3d.py``, the tf-hub graph), in torch.

    ``(N, 3, T, 224, 224)`` in [-1, 1] -> Conv3d_1a_7x7 (64, stride 2) -> MaxPool3d_2a (1x3x3 /1x2x2) ->
    Conv3d_2b_1x1 (64) -> Conv3d_2c_3x3 (192) -> MaxPool3d_3a (1x3x3 /1x2x2) -> Mixed_3b, 3c ->
    MaxPool3d_4a (3x3x3 /2) -> Mixed_4b .. 4f -> MaxPool3d_5a (2x2x2 /2) -> Mixed_5b, 5c -> average
    pool (2x7x7, VALID) -> dropout (identity in eval) -> Conv3d_0c_1x1 (400, bias) -> mean over time:
    ``(N, 400)`` logits. Same forward schema as the StyleGAN-V file. One liberty: sonnet's batch norm
    has no scale (offset only); here it is a standard affine ``BatchNorm3d`` (same cost)."""

    def __init__(self, num_classes: int = FEATURES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Mixed(192, 64, (96, 128), (16, 32), 32)
        self.Mixed_3c = Mixed(256, 128, (128, 192), (32, 96), 64)
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = Mixed(480, 192, (96, 208), (16, 48), 64)
        self.Mixed_4c = Mixed(512, 160, (112, 224), (24, 64), 64)
        self.Mixed_4d = Mixed(512, 128, (128, 256), (24, 64), 64)
        self.Mixed_4e = Mixed(512, 112, (144, 288), (32, 64), 64)
        self.Mixed_4f = Mixed(528, 256, (160, 320), (32, 128), 128)
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Mixed(832, 256, (160, 320), (32, 128), 128)
        self.Mixed_5c = Mixed(832, 384, (192, 384), (48, 128), 128)
        self.dropout = nn.Dropout(0.0)
        self.Conv3d_0c_1x1 = Unit3D(1024, num_classes, norm_relu=False)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        x = _rescale_resize(x, rescale, resize)
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        x = F.avg_pool3d(x, kernel_size=[2, 7, 7], stride=[1, 1, 1])
        x = self.Conv3d_0c_1x1(self.dropout(x))  # (N, 400, T', 1, 1)
        logits = x.squeeze(4).squeeze(3).mean(dim=2)
        if return_features:
            return logits
        return F.softmax(logits, dim=1)


def _in_hash_seed_zero(maker: str, folder: Path, seed: int) -> bool:
    """Run ``maker(folder, seed)`` in a child interpreter with ``PYTHONHASHSEED=0`` unless this one has it.

    TorchScript writes a module's constants (``Final`` attributes) in the order of a ``set`` of their names,
    which follows Python's string-hash seed: without a fixed seed two saves of the same module differ in
    their code files, and so would the DVC hash of a weights folder built outside ``make``. Returns whether
    the child did the work."""
    import os
    import subprocess
    import sys

    if os.environ.get("PYTHONHASHSEED") == "0":
        return False
    code = f"from judges.i3d import {maker}; {maker}({str(folder)!r}, {int(seed)})"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "0"},
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"{folder}: writing the scripted I3D failed: {run.stderr.strip()[-2000:]}")
    return True


def _save_scripted(module: nn.Module, folder: Path) -> None:
    import warnings

    with warnings.catch_warnings():  # torch.jit.script is deprecated, but the real detector is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module.eval()), str(Path(folder) / FILE))
    _make_reproducible(Path(folder) / FILE)


def _make_reproducible(path: Path) -> None:
    """Rewrite a TorchScript archive without what differs between two saves of the same module: the
    random ``.data/serialization_id`` (set to the sha256 of the other members) and the ``*.debug_pkl``
    source maps (they hold the absolute path of this file), so the tiny stand-in's bytes, and the
    DVC hash of the weights folder, are the same on every machine."""
    import hashlib
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist() if not i.filename.endswith(".debug_pkl")]
    digest = hashlib.sha256(b"".join(n.encode() + d for n, d in members if not n.endswith("serialization_id"))).hexdigest()
    members = [(n, digest[:20].encode() if n.endswith(".data/serialization_id") else d) for n, d in members]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    tmp.replace(path)


def make_tiny_i3d(folder: Path, seed: int) -> None:
    """The tiny stand-in: :class:`TinyI3D` (seeded), scripted and saved as :data:`FILE` (the same bytes
    whatever the caller's ``PYTHONHASHSEED``)."""
    if _in_hash_seed_zero("make_tiny_i3d", folder, seed):
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyI3D()
    _save_scripted(module, folder)


def make_paper_random(folder: Path, seed: int) -> None:
    """The full :class:`InceptionI3d` with random weights (seeded; batch-norm statistics mean 0, var 1),
    scripted and saved as :data:`FILE`: for speed benchmarks when the real file is absent."""
    if _in_hash_seed_zero("make_paper_random", folder, seed):
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = InceptionI3d()
    _save_scripted(module, folder)


SPEC = ModelSpec(
    "i3d-kinetics-400-torchscript", files=(FILE,), make_tiny=make_tiny_i3d, url=URL,
    revision="",  # a Dropbox file: no revision, no published sha256 (the manifest records the folder's)
    licence="Apache-2.0 (DeepMind Kinetics-400 I3D weights); TorchScript port from StyleGAN-V (NVIDIA licence may apply)",
)


# -- the judge ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class I3DFeatures:
    """``features`` ``(N, 400)`` float32: time-averaged pre-softmax Kinetics-400 logits (FVD's space)."""

    features: torch.Tensor


class I3DJudge:
    """The frozen FVD detector (see the module docstring for the exact calling convention)."""

    def __init__(self, detector: torch.jit.ScriptModule, device: torch.device):
        self.detector = detector
        self.device = device

    def forward(self, videos: torch.Tensor) -> I3DFeatures:
        """``(N, 3, T, H, W)`` in [0, 255] (uint8 or float) -> :class:`I3DFeatures`, called with
        :data:`DETECTOR_KWARGS`; keeps the graph to a float input. 1-channel videos are repeated to 3."""
        if videos.ndim != 5:
            raise ValueError(f"expected (N, C, T, H, W) videos, got {tuple(videos.shape)}")
        if videos.shape[1] == 1:
            videos = videos.repeat([1, 3, 1, 1, 1])
        return I3DFeatures(features=self.detector(videos.to(self.device), **DETECTOR_KWARGS))

    __call__ = forward

    @torch.no_grad()
    def encode(self, videos: np.ndarray | torch.Tensor, batch_size: int = 4) -> I3DFeatures:
        """Clips ``(N, 3, T, H, W)`` (e.g. from :func:`clips`; uint8 as StyleGAN-V) -> :class:`I3DFeatures`
        on the CPU, ``batch_size`` clips per detector call (StyleGAN-V: 64 frames per batch at 512 px)."""
        x = torch.as_tensor(np.asarray(videos)) if not isinstance(videos, torch.Tensor) else videos
        if x.shape[0] == 0:
            return I3DFeatures(features=torch.empty((0, FEATURES)))
        feats = [self.forward(x[i:i + batch_size]).features.float().cpu() for i in range(0, x.shape[0], batch_size)]
        return I3DFeatures(features=torch.cat(feats))


def load(folder: str | Path, device: str | torch.device = "cpu") -> I3DJudge:
    """The frozen judge: ``torch.jit.load`` of the verified folder's :data:`FILE` (as StyleGAN-V loads it)."""
    import warnings

    folder = verify(SPEC, folder)
    device = torch.device(device)
    with warnings.catch_warnings():  # torch.jit.load is deprecated, but the detector is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        detector = torch.jit.load(str(folder / FILE), map_location=device)
    # judges.freeze, spelled out: a ScriptModule refuses requires_grad_() but not its parameters'
    detector.eval()
    for p in detector.parameters():
        p.requires_grad_(False)
    return I3DJudge(detector.to(device), device)
