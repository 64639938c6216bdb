"""3D face coefficients: the reconstruction network (R-Net) of Deep3DFaceRecon_pytorch (Deng et al. 2019).

Model: sicxu/Deep3DFaceRecon_pytorch (code MIT), its released ``checkpoints/<model_name>/epoch_20.pth``
(:data:`FILE`; the authors' Google Drive, :data:`CHECKPOINT_URL`, no published sha256): a
``torch.save`` dict written by ``models/base_model.py save_networks`` whose ``'net_recon'`` entry is
the state dict of ``models/networks.py ReconNetWrapper('resnet50', use_last_fc=False)`` (other
entries, ``opt_00`` etc., are optimiser state and are not read). :class:`ReconNet` has the same
parameter names: ``backbone.*`` a torchvision-layout ResNet-50 (Bottleneck with the stride on the
3x3 conv) without its fc, global-average-pooled to ``(N, 2048, 1, 1)``; ``final_layers.{0..6}`` seven
1x1 convolutions with bias (identity 80, expression 64, texture 80, angle 3, gamma 27, translation
xy 2, translation z 1), concatenated to 257 coefficients. ``models/bfm.py split_coeff`` names them
(:data:`SPLIT`): id ``0:80``, exp ``80:144``, tex ``144:224``, angle ``224:227``, gamma ``227:254``,
trans ``254:257``. The checkpoint is read with ``weights_only=True`` and loaded STRICTLY (every key,
every shape; BatchNorm's ``num_batches_tracked`` may be absent); the 3DMM itself (BFM09, needed
only to render) is not part of this judge. Licence: the code is MIT; the weights are the authors'
research release and the coefficients are BFM09's (non-commercial research use).

Input of the network (``test.py read_data``): ``(N, 3, 224, 224)`` RGB float in [0, 1] (``uint8 / 255``,
no mean or std), the face ALIGNED as below. :meth:`Face3DJudge.forward` takes such crops.

Alignment (``util/preprocess.py align_img`` with ``target_size=224, rescale_factor=102``), from OUR
MediaPipe face-mesh landmarks (478 points, pixel coordinates of the image, x right, y down; a
``(..., 5, 2)`` array of the five points is accepted too):

1. five points, in Deep3DFaceRecon's order (``extract_5p`` of the 68-point layout), picked from the
   mesh by :data:`MP_FIVE`: the image-left eye centre = mean of corners 33 and 133 (68-point 37, 40),
   the image-right eye centre = mean of 362 and 263 (43, 46), the nose tip 1 (31), the mouth corners
   61 (49) and 291 (55). The eye centres are corner means as in the reference (its 3D template
   ``similarity_Lm3D_all.mat`` is built the same way), not the iris centres 468 / 473, which move
   with the gaze;
2. y flipped to point up (``H - 1 - y``, as ``read_data`` does), ``POS`` (least squares, orthographic)
   of the five points against :data:`LM3D_5` gives ``t`` and ``s``; ``s = 102 / s``;
3. the image is resized to ``(int(W s), int(H s))`` with PIL bicubic (antialiased, as the
   reference's PIL ``Image.resize``) and the 224 x 224 window at ``left = int(w/2 - 112 + (t_x - W/2) s)``,
   ``up = int(h/2 - 112 + (H/2 - t_y) s)`` is cut out (zeros outside).

:func:`align_image` does this in numpy/PIL (the metric path, what the reference does);
:func:`align_images_torch` applies the same :class:`Alignment` to ``(N, 3, H, W)`` float images in
torch (antialiased bicubic resize + integer crop, differentiable w.r.t. the pixels; the transform
itself is estimated from the landmarks, which carry no gradient): for losses on generated frames.
:meth:`Alignment.matrix` is the 2 x 3 affine map from image pixels to crop pixels.

Output :class:`Face3DCoeffs`: ``coeffs (N, 257)`` and its named parts, ``expression (N, 64)`` (the
E-FID features, DESIGN 9), ``identity (N, 80)``, ``texture (N, 80)``, ``angle (N, 3)``,
``gamma (N, 27)``, ``translation (N, 3)``; float32.

Tiny stand-in (:func:`make_tiny`): the same :class:`ReconNet` (same depth 3-4-6-3, same heads and
257 outputs) at width 8 instead of 64 (last dim 256 instead of 2048; 0.44 M parameters instead of 24.0 M),
seeded, BatchNorm statistics calibrated on seeded noise, saved as the release is
(``torch.save({'net_recon': state_dict})`` to :data:`FILE`). :func:`load` reads the width from the
checkpoint (``backbone.conv1.weight`` has ``width`` output channels) and requires 64 unless the
folder carries the tiny marker. :func:`make_paper_random` writes the full network with random
weights (speed benchmarks only).

Used by: the E-FID metric (Frechet distance of ``expression`` over frames, DESIGN 9) and
expression losses (through :meth:`Face3DJudge.forward`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.weights import ModelSpec, is_tiny
from judges import freeze, verify
from judges._checkpoint import load_state_strict

__all__ = [
    "FILE",
    "LM3D_5",
    "MP_FIVE",
    "SPEC",
    "SPLIT",
    "Alignment",
    "Face3DCoeffs",
    "Face3DJudge",
    "ReconNet",
    "align_image",
    "align_images_torch",
    "estimate_alignment",
    "five_points",
    "load",
    "make_paper_random",
    "make_tiny",
]

FILE = "epoch_20.pth"
ENTRY = "net_recon"
URL = "https://github.com/sicxu/Deep3DFaceRecon_pytorch"
#: where the README sends you for the released checkpoint (organised as checkpoints/<model_name>/epoch_20.pth)
CHECKPOINT_URL = "https://drive.google.com/drive/folders/1liaIxn9smpudjjqMaWWRpP0mXRW_qRPP"
#: the code commit the layout and preprocessing were transcribed from
CODE_REVISION = "9167c7136aebef0c54d3ac74f4b0396222a491c1"

#: models/bfm.py split_coeff: name and width of each part of the 257 coefficients, in order
SPLIT = (("identity", 80), ("expression", 64), ("texture", 80), ("angle", 3), ("gamma", 27), ("translation", 3))
#: output widths of ReconNetWrapper.final_layers (translation is xy 2 + z 1)
HEADS = (80, 64, 80, 3, 27, 2, 1)
COEFFS = sum(HEADS)  # 257
PUBLISHED_WIDTH = 64
TINY_WIDTH = 8
DEPTHS = (3, 4, 6, 3)  # ResNet-50
EXPANSION = 4

TARGET_SIZE = 224
RESCALE_FACTOR = 102.0
#: util/load_mats.py load_lm3d: the five points of BFM/similarity_Lm3D_all.mat (extract_5p of its 68 points:
#: eye-corner means, nose tip, mouth corners; y up), float32 as read from the .mat
LM3D_5 = np.array([
    [-0.31148657, 0.29036078, 0.13377953],
    [0.30979887, 0.28972036, 0.13179526],
    [0.0032534988, -0.046179324, 0.55244243],
    [-0.25216928, -0.38133916, 0.22405732],
    [0.2484662, -0.38128236, 0.22235769],
], dtype=np.float32)
#: MediaPipe face-mesh indices averaged into each of the five points (order of LM3D_5 / extract_5p)
MP_FIVE = ((33, 133), (362, 263), (1,), (61,), (291,))


# -- the network (models/networks.py, torchvision ResNet layout) -------------------------------------------------
def _conv1x1(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=bias)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here, "ResNet V1.5") -> 1x1 (x4), BatchNorm after each, identity or projected shortcut."""

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * EXPANSION)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 without fc (``use_last_fc=False``): ``(N, 3, H, W)`` -> ``(N, 32 * width, 1, 1)``."""

    def __init__(self, width: int = PUBLISHED_WIDTH):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = width
        for i, (depth, mult) in enumerate(zip(DEPTHS, (1, 2, 4, 8))):
            planes, stride = width * mult, 1 if i == 0 else 2
            down = nn.Sequential(_conv1x1(cin, planes * EXPANSION, stride), nn.BatchNorm2d(planes * EXPANSION))
            blocks = [Bottleneck(cin, planes, stride, down)]
            cin = planes * EXPANSION
            blocks += [Bottleneck(cin, planes) for _ in range(1, depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class ReconNet(nn.Module):
    """ReconNetWrapper('resnet50', use_last_fc=False): ``(N, 3, 224, 224)`` in [0, 1] -> ``(N, 257)`` coefficients."""

    def __init__(self, width: int = PUBLISHED_WIDTH):
        super().__init__()
        self.backbone = ResNet50(width)
        self.final_layers = nn.ModuleList([_conv1x1(self.backbone.out_dim, n, bias=True) for n in HEADS])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        return torch.flatten(torch.cat([layer(x) for layer in self.final_layers], dim=1), 1)


def width_from_state_dict(state: Mapping[str, torch.Tensor]) -> int:
    """The base width of a ``net_recon`` state dict (output channels of ``backbone.conv1``; 64 published)."""
    try:
        return int(state["backbone.conv1.weight"].shape[0])
    except KeyError:
        raise ValueError("state dict has no 'backbone.conv1.weight': not a ReconNetWrapper('resnet50') net_recon") from None




def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``'net_recon'`` state dict of a ``save_networks`` checkpoint (``weights_only`` load)."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise TypeError(f"{path}: expected a Deep3DFaceRecon checkpoint (a dict), got {type(loaded).__name__}")
    if ENTRY not in loaded:
        raise ValueError(f"{path}: no '{ENTRY}' entry (keys {sorted(map(str, loaded))[:5]}...): not a save_networks checkpoint")
    state = loaded[ENTRY]
    if not isinstance(state, Mapping):
        raise TypeError(f"{path}['{ENTRY}']: expected a state dict, got {type(state).__name__}")
    return {str(k): v for k, v in state.items()}


def _calibrate_batchnorm(model: nn.Module, size: int, batches: int = 2, n: int = 8) -> None:
    """Running statistics from seeded noise images (cumulative average), so a random stand-in's eval
    mode keeps activations of order one through the 16 residual blocks."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(n, 3, size, size))
    for m in bns:
        m.momentum = 0.1
    model.eval()


def _random_net(width: int, seed: int, calibrate: bool) -> ReconNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ReconNet(width)
        for m in model.modules():  # the reference's initialisation (networks.py ResNet.__init__)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for head in model.final_layers:  # the reference zeroes the heads; random ones make outputs informative
            nn.init.normal_(head.weight, std=0.5 / model.backbone.out_dim ** 0.5)
            nn.init.normal_(head.bias, std=0.1)
        if calibrate:
            _calibrate_batchnorm(model, 112)
    return model.eval()


def make_tiny(folder: Path, seed: int) -> None:
    """The tiny stand-in: :class:`ReconNet` at width :data:`TINY_WIDTH`, saved as the release (``{'net_recon': ...}``)."""
    torch.save({ENTRY: _random_net(TINY_WIDTH, seed, calibrate=True).state_dict()}, Path(folder) / FILE)


def make_paper_random(folder: Path, seed: int) -> None:
    """The full :class:`ReconNet` (width 64, 24.0 M parameters) with random weights, saved as the release
    (BatchNorm statistics mean 0, var 1): for speed benchmarks when the real checkpoint is absent."""
    torch.save({ENTRY: _random_net(PUBLISHED_WIDTH, seed, calibrate=False).state_dict()}, Path(folder) / FILE)


SPEC = ModelSpec(
    "deep3dfacerecon-epoch20", files=(FILE,), make_tiny=make_tiny,
    url=CHECKPOINT_URL,  # not on the Hugging Face hub: copy that folder's <model_name>/epoch_20.pth here by hand
    revision="",  # a Google Drive file: no revision, no published sha256 (the manifest records the folder's)
    licence="MIT (Deep3DFaceRecon_pytorch code); weights: the authors' research release, BFM09 coefficients (non-commercial)",
)


# -- alignment (util/preprocess.py align_img) --------------------------------------------------------------------
def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``(..., 478 | 468 | 5, 2 | 3)`` image-pixel landmarks -> ``(..., 5, 2)`` float32, :data:`MP_FIVE` order
    (image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner)."""
    lm = np.asarray(landmarks, dtype=np.float32)[..., :2]
    if lm.shape[-2] == 5:
        return lm.copy()
    if lm.shape[-2] < 468:
        raise ValueError(f"expected MediaPipe face-mesh landmarks (468 or 478 points) or 5 points, got {lm.shape[-2]}")
    return np.stack([lm[..., list(idx), :].mean(axis=-2) for idx in MP_FIVE], axis=-2)


def pos(xp: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """util/preprocess.py POS: least-squares orthographic fit of 3D points ``x (3, n)`` to image points
    ``xp (2, n)`` -> translation ``t (2,)`` and scale ``s`` (mean norm of the two projection rows)."""
    n = xp.shape[1]
    a = np.zeros([2 * n, 8])
    a[0:2 * n - 1:2, 0:3] = x.T
    a[0:2 * n - 1:2, 3] = 1
    a[1:2 * n:2, 4:7] = x.T
    a[1:2 * n:2, 7] = 1
    b = np.reshape(xp.T, [2 * n, 1])
    k = np.linalg.lstsq(a, b, rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3, 0], k[7, 0]]), float(s)


@dataclass(frozen=True)
class Alignment:
    """One image's align_img transform: original size, scale ``s`` (rescale factor / POS scale), POS
    translation ``t`` (y up), the resized size and the crop's top-left corner in the resized image."""

    width: int
    height: int
    scale: float
    t: tuple[float, float]
    resized: tuple[int, int]  # (w, h)
    left: int
    up: int
    size: int = TARGET_SIZE

    @property
    def trans_params(self) -> np.ndarray:
        """The reference's ``trans_params``: ``[W, H, s, t_x, t_y]``."""
        return np.array([self.width, self.height, self.scale, self.t[0], self.t[1]])

    def matrix(self) -> np.ndarray:
        """``(2, 3)`` affine map from image pixel coordinates (x right, y down, pixel centres at integers)
        to crop pixel coordinates, as the resize (pixel-centre aligned) and crop move them. (The
        reference's own ``lm_new`` formula ignores the integer crop corner and the pixel centres, and
        differs from where the pixels go by up to about 1.5 px.)"""
        sx, sy = self.resized[0] / self.width, self.resized[1] / self.height
        return np.array([[sx, 0.0, 0.5 * sx - 0.5 - self.left], [0.0, sy, 0.5 * sy - 0.5 - self.up]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2+)`` image-pixel points -> ``(..., 2)`` crop-pixel points."""
        m = self.matrix()
        p = np.asarray(points, dtype=np.float64)[..., :2]
        return p @ m[:, :2].T + m[:, 2]


def estimate_alignment(landmarks: np.ndarray, width: int, height: int, rescale_factor: float = RESCALE_FACTOR,
                       target_size: int = TARGET_SIZE) -> Alignment:
    """The align_img transform of one image of ``width`` x ``height`` from its landmarks (see :func:`five_points`)."""
    lm5 = five_points(landmarks)
    if lm5.ndim != 2 or not np.isfinite(lm5).all():
        raise ValueError("expected one face's finite landmarks")
    lm5[:, 1] = height - 1 - lm5[:, 1]  # y up, as read_data
    t, s = pos(lm5.T, LM3D_5.T)
    s = rescale_factor / s
    w, h = int(width * s), int(height * s)
    left = int(w / 2 - target_size / 2 + float((t[0] - width / 2) * s))
    up = int(h / 2 - target_size / 2 + float((height / 2 - t[1]) * s))
    return Alignment(int(width), int(height), float(s), (float(t[0]), float(t[1])), (w, h), left, up, int(target_size))


def align_image(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, Alignment]:
    """``(H, W, 3)`` uint8 RGB image + its landmarks -> the ``(224, 224, 3)`` uint8 aligned crop and its
    :class:`Alignment`: PIL bicubic resize and crop, exactly as ``resize_n_crop_img``."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    al = estimate_alignment(landmarks, image.shape[1], image.shape[0])
    pil = Image.fromarray(image).resize(al.resized, resample=Image.Resampling.BICUBIC)
    crop = pil.crop((al.left, al.up, al.left + al.size, al.up + al.size))
    return np.asarray(crop), al


def align_images_torch(images: torch.Tensor, alignments: Sequence[Alignment]) -> torch.Tensor:
    """``(N, 3, H, W)`` float images in [0, 1] -> ``(N, 3, 224, 224)`` aligned crops, differentiable w.r.t.
    ``images``: per image, an antialiased bicubic resize to ``alignment.resized`` (what PIL does) and
    the integer crop (zeros outside), clamped to [0, 1] as PIL's uint8 output is."""
    if images.ndim != 4 or len(alignments) != images.shape[0]:
        raise ValueError(f"expected (N, 3, H, W) images and N alignments, got {tuple(images.shape)} and {len(alignments)}")
    out = []
    for img, al in zip(images, alignments):
        if (img.shape[2], img.shape[1]) != (al.width, al.height):
            raise ValueError(f"image is {img.shape[2]}x{img.shape[1]}, its alignment was estimated for {al.width}x{al.height}")
        w, h = al.resized
        r = F.interpolate(img[None], size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        r = F.pad(r, (-al.left, al.left + al.size - w, -al.up, al.up + al.size - h))
        out.append(r)
    return torch.cat(out).clamp(0.0, 1.0)


# -- the judge ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Face3DCoeffs:
    """``coeffs`` ``(N, 257)`` and its :data:`SPLIT` parts (views): ``identity (N, 80)``, ``expression (N, 64)``,
    ``texture (N, 80)``, ``angle (N, 3)`` (radians), ``gamma (N, 27)`` (SH lighting), ``translation (N, 3)``."""

    coeffs: torch.Tensor
    identity: torch.Tensor
    expression: torch.Tensor
    texture: torch.Tensor
    angle: torch.Tensor
    gamma: torch.Tensor
    translation: torch.Tensor

    @classmethod
    def split(cls, coeffs: torch.Tensor) -> Face3DCoeffs:
        parts, start = {}, 0
        for name, n in SPLIT:
            parts[name] = coeffs[:, start:start + n]
            start += n
        return cls(coeffs=coeffs, **parts)


class Face3DJudge:
    """The frozen R-Net (see the module docstring for the input and alignment conventions)."""

    def __init__(self, model: ReconNet, device: torch.device):
        self.model = model
        self.device = device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(self, crops: torch.Tensor) -> Face3DCoeffs:
        """``(N, 3, 224, 224)`` aligned RGB crops in [0, 1] -> :class:`Face3DCoeffs`, differentiable w.r.t. ``crops``."""
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, TARGET_SIZE, TARGET_SIZE):
            raise ValueError(f"expected (N, 3, 224, 224) aligned crops, got {tuple(crops.shape)}")
        return Face3DCoeffs.split(self.model(crops.to(self.device, self.dtype)))

    __call__ = forward

    def align(self, images: torch.Tensor, landmarks: np.ndarray) -> torch.Tensor:
        """``(N, 3, H, W)`` float images in [0, 1] + ``(N, 478, 2|3)`` landmarks -> differentiable aligned crops."""
        als = [estimate_alignment(lm, images.shape[3], images.shape[2]) for lm in np.asarray(landmarks)]
        return align_images_torch(images, als)

    @torch.no_grad()
    def predict_aligned(self, crops: np.ndarray) -> Face3DCoeffs:
        """``(N, 224, 224, 3)`` uint8 aligned RGB crops -> :class:`Face3DCoeffs` (no grad)."""
        x = torch.from_numpy(np.array(crops, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
        return self.forward(x)

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> Face3DCoeffs:
        """``(H, W, 3)`` uint8 RGB images + their landmarks -> :class:`Face3DCoeffs` of the :func:`align_image`
        crops (no grad): the metric path."""
        crops = [align_image(img, lm)[0] for img, lm in zip(images, landmarks, strict=True)]
        if not crops:
            return Face3DCoeffs.split(torch.zeros(0, COEFFS, dtype=self.dtype, device=self.device))
        return self.predict_aligned(np.stack(crops))


def load(folder: str | Path, device: str | torch.device = "cpu") -> Face3DJudge:
    """The frozen judge from a verified :data:`SPEC` folder (strict load of ``epoch_20.pth['net_recon']``,
    width from the file; a folder without the tiny marker must hold the published width 64)."""
    folder = verify(SPEC, folder)
    path = folder / FILE
    state = read_checkpoint(path)
    width = width_from_state_dict(state)
    if not is_tiny(folder) and width != PUBLISHED_WIDTH:
        raise ValueError(f"{path}: backbone width {width} is not the published ResNet-50's {PUBLISHED_WIDTH}")
    model = ReconNet(width)
    load_state_strict(model, state, f"{path}['{ENTRY}']")
    device = torch.device(device)
    return Face3DJudge(freeze(model.to(device)), device)
