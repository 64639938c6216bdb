"""Visual valence/arousal and expression: EmoNet (Toisoul et al., Nature Machine Intelligence 2021), the 8-class model.

Model: ``emonet_8.pth`` of github.com/face-analysis/emonet (``pretrained/emonet_8.pth``, git blob
``6833bfdcf8fc761deb7630256a750cf1f7c850c1`` at commit :data:`REVISION`; check a copy with
``git hash-object emonet_8.pth``). Licence: CC BY-NC-ND 4.0 (the repository's, which ships the
weights: research, non-commercial use only, no redistribution of modified versions; this module is our
own plain-torch port of the architecture and reads the published file unmodified).

:class:`EmoNet` is the published network (``emonet/models/emonet.py``) with the published parameter
names: a two-stack FAN (stem ``conv1``/``bn1``/``conv2``-``conv4``, hourglasses ``m<i>`` of
``b1_<l>``/``b2_<l>``/``b2_plus_1``/``b3_<l>`` ConvBlocks, ``top_m_<i>``, ``conv_last<i>``,
``bn_end<i>``, landmark heatmaps ``l<i>`` (68), inter-stack ``bl<i>``/``al<i>``) and the emotion
branch (``conv1x1_input_emo_2``, ``emo_net_2`` = 4 x (ConvBlock, MaxPool 2), ``AvgPool2d(4)``,
``emo_fc_2`` = Linear(256, 128), BatchNorm1d, ReLU, Linear(128, 8 + 2)), attention on (the
stacks' features are multiplied by the summed last heatmap), no temporal smoothing (the
published default; emonet's smoothing is a ``.cuda()`` running state, not weights). emonet aliases
``nn.InstanceNorm2d = nn.BatchNorm2d`` at import, so every "instance norm" there is a BatchNorm2d
here (same keys, eval-mode running statistics).

Loading, as emonet's own loaders (``demo.py``, ``demo_video.py``, ``test.py``) do: ``torch.load``
the bare state dict, strip ``'module.'`` from every key (``k.replace('module.', '')``: a
DataParallel save), then ``load_state_dict``. Emonet passes ``strict=False``; we load STRICTLY
(a key or shape mismatch raises instead of leaving random weights), after the same strip, so
nothing is dropped: the reference module registers no more and no fewer tensors than this one
(``emo_convs`` is a plain list whose modules are registered once, under ``emo_net_2``;
``temporal_weights`` is a plain tensor, never saved; the published file itself was not available
here, so should it hold any other key, strict loading names it). The renamed dict has no ``_metadata``, so
BatchNorm accepts a file without ``num_batches_tracked`` (saved by torch < 0.4.1) as torch always
has. The widths and depths are read from the checkpoint's shapes (:func:`config_from_state_dict`),
which is how the tiny stand-in (same file name, same format, same loader) is smaller.

Input (:meth:`FaceVAJudge.forward`): ``(B, 3, 256, 256)`` RGB float in [0, 1] (emonet feeds
``ToTensor()`` / ``/ 255.0`` images, no mean/std normalisation), a square face crop resized to
256. The crop (:func:`crop_box_from_landmarks`) follows emonet's evaluation (``test.py`` ->
``DataAugmentor`` with ``bb`` = the 68 FAN landmarks' bounding box): centre = the box centre,
side = (box width + box height) / 1.1 (``scale = (w + h) / 220``, ``200 * scale`` pixels), here
with the box of the MediaPipe landmarks that trace the same outline as the 68-point jaw and brows
(:data:`BOX_LANDMARKS`). It is warped with the bilinear affine map of ``cv2.warpAffine`` (pixel
centres at integers: source ``x = cx + (u - 256 / 2) * side / 256``), zero outside the frame, no
prefilter (:func:`crop_faces`). Emonet's ``demo_video.py`` instead stretches a face detector's box
to 256 x 256; the published accuracy figures come from the evaluation crop used here.
:meth:`FaceVAJudge.predict` takes uint8 RGB frames ``(N, H, W, 3)`` and crop boxes ``(N, 3)``
``[cx, cy, side]`` in frame pixels.

Output :class:`FaceVA`: ``logits (B, 8)`` expression scores in :data:`CLASSES` order (emonet's
class order), ``probs (B, 8)`` their softmax, ``valence_arousal (B, 2)`` clamped to [-1, 1] as
emonet's demos report them (the regressor's raw outputs, ``raw_valence_arousal``, are kept too).

Used by: the emo loss (eq. 3, trainable form: VA of decoded frames vs the ground truth's, through
:meth:`FaceVAJudge.forward`) and the CCC V/A metrics (DESIGN 6 and 9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from judges import _specs as specs
from judges import freeze, verify
from judges._checkpoint import randomise_norms

__all__ = [
    "BOX_LANDMARKS",
    "CLASSES",
    "IMAGE_SIZE",
    "SPEC",
    "EmoNet",
    "FaceVA",
    "FaceVAJudge",
    "config_from_state_dict",
    "crop_box_from_landmarks",
    "crop_faces",
    "load",
    "make_paper_random",
    "make_tiny",
]

CLASSES = specs.CLASSES  # emonet's 8-class order (README, demo.py)
IMAGE_SIZE = 256
CHECKPOINT = specs.EMONET_FILE
REVISION = specs.EMONET_REVISION
SOURCE = specs.EMONET_SOURCE
#: the published configuration (EmoNet(n_expression=8) defaults)
PAPER_CONFIG = {"n_expression": 8, "num_modules": 2, "hg_depth": 4, "stem": (64, 128), "features": 256, "n_landmarks": 68,
                "emo_features": 256, "n_blocks": 4, "fc_hidden": 128}
# two stacks (the published attention path: stack outputs, inter-stack projections), one hourglass level and
# width 4 (the narrowest ConvBlock: 2-1-1 channels): the 256x256 input keeps the early maps large, so widths, not
# depth, set the CPU cost (in batches of 32 on one thread: 17.7 ms a frame at widths 4-8, 10.9 at 4)
TINY_CONFIG = {"n_expression": 8, "num_modules": 2, "hg_depth": 1, "stem": (4, 4), "features": 4, "n_landmarks": 2,
               "emo_features": 4, "n_blocks": 4, "fc_hidden": 8}


# -- the network (emonet/models/emonet.py, parameter names as published) --------------------------------
def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's multi-scale residual block: three pre-activated 3x3 convs (out/2, out/4, out/4), concatenated,
    plus the input (through BN-ReLU-1x1 conv ``downsample`` when the widths differ)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout // 2)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = _conv3x3(cout // 2, cout // 4)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = _conv3x3(cout // 4, cout // 4)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, kernel_size=1, stride=1, bias=False))
                           if cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """FAN hourglass of ``depth`` levels (modules ``b1_<l>``, ``b2_<l>``, ``b2_plus_1``, ``b3_<l>``)."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        self._generate_network(depth, features)

    def _generate_network(self, level: int, features: int) -> None:
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._generate_network(level - 1, features)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _forward(self, level: int, inp: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](inp)
        low1 = self._modules[f"b2_{level}"](F.max_pool2d(inp, 2, stride=2))
        low2 = self._forward(level - 1, low1) if level > 1 else self._modules[f"b2_plus_{level}"](low1)
        low3 = self._modules[f"b3_{level}"](low2)
        return up1 + F.interpolate(low3, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class EmoNet(nn.Module):
    """EmoNet with attention, no temporal smoothing: ``(B, 3, 256, 256)`` RGB [0, 1] -> ``(B, n_expression + 2)``
    (expression logits, valence, arousal: emonet's ``final_features`` before its dict split).
    The defaults are the published model (:data:`PAPER_CONFIG`); smaller widths make the tiny stand-in."""

    def __init__(self, n_expression: int = 8, num_modules: int = 2, hg_depth: int = 4, stem: tuple[int, int] = (64, 128),
                 features: int = 256, n_landmarks: int = 68, emo_features: int = 256, n_blocks: int = 4, fc_hidden: int = 128):
        super().__init__()
        self.n_expression = n_expression
        self.num_modules = num_modules
        c0, c1 = stem
        self.conv1 = nn.Conv2d(3, c0, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(c0)
        self.conv2 = ConvBlock(c0, c1)
        self.conv3 = ConvBlock(c1, c1)
        self.conv4 = ConvBlock(c1, features)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(hg_depth, features))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, n_landmarks, kernel_size=1, stride=1, padding=0))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0))
                self.add_module(f"al{i}", nn.Conv2d(n_landmarks, features, kernel_size=1, stride=1, padding=0))
        self.conv1x1_input_emo_2 = nn.Conv2d(features * (num_modules + 1), emo_features, kernel_size=1, stride=1, padding=0)
        blocks: list[nn.Module] = []
        for _ in range(n_blocks):
            blocks += [ConvBlock(emo_features, emo_features), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*blocks)
        self.avg_pool_2 = nn.AvgPool2d(4)
        self.emo_fc_2 = nn.Sequential(nn.Linear(emo_features, fc_hidden), nn.BatchNorm1d(fc_hidden), nn.ReLU(),
                                      nn.Linear(fc_hidden, n_expression + 2))

    def forward_with_heatmap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_expression + 2)`` outputs and the last stack's landmark heatmaps ``(B, n_landmarks, 64, 64)``."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        previous = x
        hg_features = []
        tmp_out = x
        for i in range(self.num_modules):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            tmp_out = self._modules[f"l{i}"](ll)
            if i < self.num_modules - 1:
                ll = self._modules[f"bl{i}"](ll)  # emonet keeps this projected map as the stack's feature
                previous = previous + ll + self._modules[f"al{i}"](tmp_out)
            hg_features.append(ll)
        mask = torch.sum(tmp_out, dim=1, keepdim=True)  # attention: the summed heatmap of the last stack
        emo_feat = torch.cat((x, torch.cat(hg_features, dim=1) * mask), dim=1)
        feats = self.avg_pool_2(self.emo_net_2(self.conv1x1_input_emo_2(emo_feat)))
        return self.emo_fc_2(feats.view(feats.shape[0], feats.shape[1])), tmp_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_heatmap(x)[0]


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict:
    """The :class:`EmoNet` arguments that a (``'module.'``-stripped) state dict was saved from, read off its shapes."""
    try:
        num_modules = sum(1 for i in range(64) if f"l{i}.weight" in state)
        depth = max(int(k.split(".")[1][3:]) for k in state if k.startswith("m0.b1_"))
        n_blocks = sum(1 for k in state if k.startswith("emo_net_2.") and k.endswith(".bn1.weight"))
        config = {
            "n_expression": int(state["emo_fc_2.3.weight"].shape[0]) - 2, "num_modules": num_modules, "hg_depth": depth,
            "stem": (int(state["conv1.weight"].shape[0]), int(state["conv3.conv1.weight"].shape[1])),
            "features": int(state["conv_last0.weight"].shape[0]), "n_landmarks": int(state["l0.weight"].shape[0]),
            "emo_features": int(state["conv1x1_input_emo_2.weight"].shape[0]), "n_blocks": n_blocks,
            "fc_hidden": int(state["emo_fc_2.0.weight"].shape[0]),
        }
    except (KeyError, ValueError) as e:
        raise ValueError(f"not an EmoNet state dict (missing or malformed {e})") from None
    return config


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Emonet's loaders' renaming, verbatim: ``{k.replace('module.', ''): v}`` (every occurrence, as they do)."""
    return {k.replace("module.", ""): v for k, v in state.items()}


def read_checkpoint(path: Path) -> EmoNet:
    """The (unfrozen) :class:`EmoNet` of a native checkpoint: bare state dict, ``'module.'`` stripped, loaded strictly."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping):
        raise TypeError(f"{path}: expected a state dict (emonet's format), got {type(raw).__name__}")
    state = strip_module_prefix(raw)
    config = config_from_state_dict(state)
    if config["n_expression"] != len(CLASSES):
        raise ValueError(f"{path}: {config['n_expression']} expression classes; this judge is the 8-class model ({CLASSES})")
    model = EmoNet(**config)
    model.load_state_dict(state, strict=True)
    return model


def _save(model: EmoNet, folder: Path) -> None:
    # A DataParallel save, as emonet's loaders expect (they strip 'module.'); a file without the prefix loads too.
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, Path(folder) / CHECKPOINT)




def make_tiny(folder: Path, seed: int) -> None:
    """A seeded small EmoNet (:data:`TINY_CONFIG`: width 4, hourglass depth 1, 2 heatmaps) saved as the
    published file is (``emonet_8.pth``, bare ``'module.'``-prefixed state dict); the loader reads its widths off
    the shapes. Input and output conventions are the published model's (256 x 256 in, 8 + 2 out)."""
    torch.manual_seed(seed)
    model = EmoNet(**TINY_CONFIG)
    with torch.no_grad():
        randomise_norms(model, torch.Generator().manual_seed(seed))
        # spread the expression logits and VA over their ranges, without the bias: the width-4 features share a
        # large common part, so a bias would push VA past the [-1, 1] clamp (constant VA: no CCC, no emo loss)
        model.emo_fc_2[3].weight.mul_(2.0)
        model.emo_fc_2[3].bias.zero_()
    _save(model, folder)


def make_paper_random(folder: Path, seed: int) -> None:
    """The FULL published architecture (:data:`PAPER_CONFIG`, 14.0 M parameters) with seeded random weights in the
    native format (for speed benchmarks; its outputs mean nothing)."""
    torch.manual_seed(seed)
    model = EmoNet(**PAPER_CONFIG)
    with torch.no_grad():
        randomise_norms(model, torch.Generator().manual_seed(seed))
    _save(model, folder)


SPEC = specs.FACE_VA  # defined without torch (judges._specs): the face_va stage's driver lists it


# -- crops ------------------------------------------------------------------------------------------------
#: MediaPipe face-mesh landmarks outlining what the 68-point (iBUG) jaw and brows outline: the lower face
#: oval from 454 through the chin (152) to 234, and both brows (FACEMESH_LEFT_EYEBROW, FACEMESH_RIGHT_EYEBROW)
BOX_LANDMARKS = np.array([
    454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234,
    276, 283, 282, 295, 285, 300, 293, 334, 296, 336,
    46, 53, 52, 65, 55, 70, 63, 105, 66, 107,
])
#: emonet's DataAugmentor: scale = (w + h) / 220 and a 200 * scale pixel square, i.e. side = (w + h) / 1.1
BOX_DIVISOR = 1.1


def crop_box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """EmoNet's crop box ``[cx, cy, side]`` (pixels) from MediaPipe's 478 (or 468) landmarks ``(..., 478, 2 or 3)``
    in pixels: the bounding box of :data:`BOX_LANDMARKS` (the 68-point jaw and brows), its centre, and side
    ``(w + h) / 1.1`` as emonet's evaluation crops around the 68 FAN landmarks. Shape ``(..., 3)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2] < 468 or lm.shape[-1] not in (2, 3):
        raise ValueError(f"expected MediaPipe face-mesh landmarks (..., 478, 2|3), got {lm.shape}")
    pts = lm[..., BOX_LANDMARKS, :2]
    lo, hi = pts.min(axis=-2), pts.max(axis=-2)
    centre = (lo + hi) / 2
    side = ((hi - lo).sum(axis=-1)) / BOX_DIVISOR
    return np.concatenate([centre, side[..., None]], axis=-1)


def crop_faces(images: torch.Tensor, boxes: torch.Tensor | np.ndarray, size: int, *, shrink: bool = False,
               window: tuple[int, int] | None = None) -> torch.Tensor:
    """Square crops of ``images`` ``(B, C, H, W)`` (float) at ``boxes`` ``(B, 3)`` or ``(3,)`` ``[cx, cy, side]``
    (pixels, pixel centres at integers) resized to ``size``: the bilinear affine warp of ``cv2.warpAffine`` with
    ``M = [[k, 0, size/2 - k cx], [0, k, size/2 - k cy]]``, ``k = size / side`` (source ``x = cx + (u - size/2) / k``),
    zeros outside the frame. Differentiable w.r.t. ``images``.

    ``shrink``: first average-pool the frame by ``floor(side / size)`` when that is 2 or more (boxes much larger
    than the output would alias; LibreFace's aligner shrinks the same way); off, as emonet's warp.
    ``window`` ``(a, b)``: only output pixels ``a .. b - 1`` on both axes (exactly those of the full crop: each
    output pixel is sampled on its own), for a caller that keeps a centre part."""
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got {tuple(images.shape)}")
    b = images.shape[0]
    box = torch.from_numpy(np.array(boxes, dtype=np.float64)).reshape(-1, 3)  # a copy (boxes may be a read-only view)
    if box.shape[0] == 1 and b > 1:
        box = box.expand(b, 3)
    if box.shape[0] != b:
        raise ValueError(f"{box.shape[0]} boxes for {b} images")
    if not torch.isfinite(box).all() or (box[:, 2] <= 0).any():
        raise ValueError("crop boxes must be finite with a positive side")
    factors = [max(1, int(s // size)) if shrink else 1 for s in box[:, 2].tolist()]
    lo, hi = window or (0, size)
    u = torch.arange(lo, hi, dtype=torch.float64) - size / 2
    pieces, order = [], []
    for k in sorted(set(factors)):
        idx = [i for i, f in enumerate(factors) if f == k]
        src = images[idx]
        if k > 1:
            src = F.avg_pool2d(src, k, k)
        hh, ww = src.shape[-2:]
        bx = box[idx]
        scale = (bx[:, 2] / size)[:, None]
        xs = (bx[:, 0:1] + u[None] * scale - (k - 1) / 2) / k  # source pixel coordinates in the pooled frame
        ys = (bx[:, 1:2] + u[None] * scale - (k - 1) / 2) / k
        # grid_sample, align_corners=False: pixel i is at (2i + 1) / W - 1; rounded to the frames' dtype per axis
        # before the (B, n, n, 2) grid is spread out (the same grid as rounding it whole, a quarter of the work)
        gx = ((2 * xs + 1) / ww - 1).to(src.device, src.dtype)
        gy = ((2 * ys + 1) / hh - 1).to(src.device, src.dtype)
        grid = torch.stack([gx[:, None, :].expand(-1, hi - lo, -1), gy[:, :, None].expand(-1, -1, hi - lo)], dim=-1)
        pieces.append(F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        order += idx
    out = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    if order != list(range(b)):
        out = out[torch.as_tensor(np.argsort(order), device=out.device)]
    return out


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB frames ``(N, H, W, 3)`` (or one ``(H, W, 3)``) -> float ``(N, 3, H, W)`` in [0, 1]."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames (N, H, W, 3), got {arr.dtype} {arr.shape}")
    if not arr.flags.writeable:  # torch.from_numpy wants a writable array (PIL's asarray is read-only)
        arr = arr.copy()
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


# -- the judge --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceVA:
    """``logits`` / ``probs`` ``(B, 8)`` in :data:`CLASSES` order (probs sum to 1); ``valence_arousal`` ``(B, 2)``
    in [-1, 1] (clamped); ``raw_valence_arousal`` ``(B, 2)`` the regressor's unclamped outputs."""

    logits: torch.Tensor
    probs: torch.Tensor
    valence_arousal: torch.Tensor
    raw_valence_arousal: torch.Tensor

    @property
    def valence(self) -> torch.Tensor:
        return self.valence_arousal[:, 0]

    @property
    def arousal(self) -> torch.Tensor:
        return self.valence_arousal[:, 1]


class FaceVAJudge:
    """The frozen EmoNet (see the module docstring for input conventions)."""

    def __init__(self, model: EmoNet, device: torch.device):
        self.model = model
        self.device = device
        self.dtype = next(model.parameters()).dtype

    def forward(self, images: torch.Tensor) -> FaceVA:
        """``(B, 3, 256, 256)`` RGB in [0, 1] face crops -> :class:`FaceVA`, differentiable w.r.t. ``images``."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"EmoNet takes (B, 3, {IMAGE_SIZE}, {IMAGE_SIZE}) crops, got {tuple(images.shape)}: crop with crop_faces")
        out = self.model(images.to(self.device, self.dtype))
        logits, raw = out[:, :-2], out[:, -2:]
        return FaceVA(logits=logits, probs=torch.softmax(logits, dim=1), valence_arousal=raw.clamp(-1.0, 1.0),
                      raw_valence_arousal=raw)

    __call__ = forward

    def preprocess(self, images: torch.Tensor, boxes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames ``(B, 3, H, W)`` RGB [0, 1] and boxes ``(B, 3)`` -> the ``(B, 3, 256, 256)`` crops (differentiable)."""
        return crop_faces(images, boxes, IMAGE_SIZE)

    @torch.no_grad()
    def predict(self, frames: np.ndarray, boxes: np.ndarray, batch_size: int = 32) -> FaceVA:
        """uint8 RGB frames ``(N, H, W, 3)`` and crop boxes ``(N, 3)`` (or one ``(3,)`` for all) in frame pixels
        (:func:`crop_box_from_landmarks`) -> :class:`FaceVA` (no grad, on the judge's device)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        n = len(frames)
        box = np.broadcast_to(np.asarray(boxes, dtype=np.float64).reshape(-1, 3), (n, 3))
        outs = []
        for s in range(0, n, batch_size):
            x = frames_to_tensor(frames[s : s + batch_size]).to(self.device)
            outs.append(self.forward(self.preprocess(x, box[s : s + batch_size])))
        return FaceVA(*(torch.cat([getattr(o, f) for o in outs]) for f in ("logits", "probs", "valence_arousal", "raw_valence_arousal")))


def load(folder: str | Path, device: str | torch.device = "cpu") -> FaceVAJudge:
    """The frozen judge from a verified :data:`SPEC` folder (``emonet_8.pth``, loaded strictly; see the module docstring)."""
    folder = verify(SPEC, folder)
    device = torch.device(device)
    return FaceVAJudge(freeze(read_checkpoint(folder / CHECKPOINT).to(device)), device)
