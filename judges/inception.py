"""FID Inception-v3: pool3 features exactly as pytorch-fid's ``InceptionV3([3], resize_input=True, normalize_input=True)``.

Model: the TensorFlow FID Inception (``inception-2015-12-05``) ported to PyTorch by mseitzer/pytorch-fid
(Apache-2.0): :data:`FILE` = ``pt_inception-2015-12-05-6726825d.pth`` from :data:`FILE_URL` (the hash
prefix in the name is the start of its sha256), a plain state dict of ``fid_inception_v3()``:
torchvision's ``Inception3(num_classes=1008, aux_logits=False)`` names (``Conv2d_1a_3x3.conv.weight``,
``...bn.running_var``, ``Mixed_5b.branch1x1.conv.weight``, ..., ``fc.weight (1008, 2048)``; no
``AuxLogits``), with the FID blocks: ``Mixed_5b-d`` FIDInceptionA, ``Mixed_6b-e`` FIDInceptionC
(their pool branch averages with ``count_include_pad=False``, as TensorFlow), ``Mixed_7b``
FIDInceptionE_1 (same), ``Mixed_7c`` FIDInceptionE_2 (a 3x3 MAX pool in the pool branch), and
torchvision's InceptionB / InceptionD for ``Mixed_6a`` / ``Mixed_7a``. :class:`FIDInceptionV3` has
exactly these names; the file is read with ``weights_only=True`` and loaded STRICTLY (every key, every
shape; BatchNorm's ``num_batches_tracked`` may be absent). ``BasicConv2d`` = conv (no bias) ->
BatchNorm(eps=0.001) -> ReLU. ``fc`` is loaded (the file has it) but pool3 does not use it.

Input: ``(N, 3, H, W)`` RGB float in [0, 1] (pytorch-fid's ``ToTensor`` of the image file), any
``H, W``. The forward resizes to 299 x 299 (``F.interpolate(mode='bilinear', align_corners=False)``,
no antialias; an input already 299 x 299 is unchanged), then ``2 x - 1``, then blocks 0-3: Conv2d_1a,
2a, 2b, max-pool 3/2; Conv2d_3b, 4a, max-pool 3/2; Mixed_5b ... 6e; Mixed_7a, 7b, 7c, global average
pool. :meth:`InceptionJudge.predict` takes ``(N, H, W, 3)`` uint8 (``/ 255``). clean-fid resizes
differently (DESIGN 9): use this path for the FID numbers we report.

Output :class:`InceptionFeatures`: ``pool3 (N, 2048)`` float32 (the space FID is computed in;
``(N, 128)`` for the tiny stand-in).

Tiny stand-in (:func:`make_tiny`): the same network, same names, same kernels and strides (so the
same input sizes), every width divided by 16 (pool3 128-d; about 0.22 M parameters instead of 23.9 M),
seeded, BatchNorm statistics calibrated on seeded noise, saved as the published file is
(``torch.save(state_dict)`` to :data:`FILE`). :func:`load` reads the divisor from the file
(``Conv2d_1a_3x3.conv.weight`` has ``32 / divisor`` output channels) and requires 1 unless the folder
carries the tiny marker. :func:`make_paper_random` writes the full network with random weights
(speed benchmarks only).

Used by: the FID metric (DESIGN 9); :meth:`InceptionJudge.forward` keeps the graph to the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.weights import ModelSpec, is_tiny
from judges import freeze, verify
from judges._checkpoint import load_state_strict, read_state_dict

__all__ = [
    "FEATURES",
    "FILE",
    "SPEC",
    "FIDInceptionV3",
    "InceptionFeatures",
    "InceptionJudge",
    "load",
    "make_paper_random",
    "make_tiny",
]

FILE = "pt_inception-2015-12-05-6726825d.pth"
URL = "https://github.com/mseitzer/pytorch-fid"
FILE_URL = f"{URL}/releases/download/fid_weights/{FILE}"
SHA256_PREFIX = "6726825d"
#: the pytorch-fid commit the blocks and the preprocessing were transcribed from
CODE_REVISION = "b9c18118d082cbd263c1b8963fc4221dc1cbb659"
FEATURES = 2048
NUM_CLASSES = 1008
RESIZE = 299
TINY_DIVISOR = 16
DIVISORS = (1, 2, 4, 8, 16)  # every width of the network divides by 16


class BasicConv2d(nn.Module):
    """torchvision ``BasicConv2d``: conv (no bias) -> BatchNorm(eps=0.001) -> ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool that, as TensorFlow's, does not count the zero padding (the FID patch)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """InceptionA with the TF average pool; out ``c(64) + c(64) + c(96) + pool_features`` channels."""

    def __init__(self, cin: int, pool_features: int, d: int = 1):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64 // d, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48 // d, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48 // d, 64 // d, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // d, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """torchvision InceptionB (grid reduction 35 -> 17): out ``c(384) + c(96) + cin``."""

    def __init__(self, cin: int, d: int = 1):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384 // d, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64 // d, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64 // d, 96 // d, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96 // d, 96 // d, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """InceptionC (factorised 7x7) with the TF average pool; out ``4 c(192)``."""

    def __init__(self, cin: int, channels_7x7: int, d: int = 1):
        super().__init__()
        c7, c192 = channels_7x7, 192 // d
        self.branch1x1 = BasicConv2d(cin, c192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, c192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, c192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, c192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """torchvision InceptionD (grid reduction 17 -> 8): out ``c(320) + c(192) + cin``."""

    def __init__(self, cin: int, d: int = 1):
        super().__init__()
        c192 = 192 // d
        self.branch3x3_1 = BasicConv2d(cin, c192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c192, 320 // d, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(c192, c192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c192, c192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c192, c192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """InceptionE (expanded filter bank); ``pool='avg'``: FIDInceptionE_1 (TF average pool),
    ``pool='max'``: FIDInceptionE_2 (3x3 max pool). Out ``c(320) + 2 c(384) + 2 c(384) + c(192)``."""

    def __init__(self, cin: int, pool: str, d: int = 1):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        c384 = 384 // d
        self.branch1x1 = BasicConv2d(cin, 320 // d, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, c384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(c384, c384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c384, c384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448 // d, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448 // d, c384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c384, c384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c384, c384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192 // d, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _avg_pool_tf(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """``fid_inception_v3()`` (parameter names of torchvision's Inception3 without AuxLogits), every width
    divided by ``divisor``. ``forward``: ``(N, 3, H, W)`` in [0, 1] -> pool3 ``(N, 2048 / divisor)``."""

    def __init__(self, divisor: int = 1, num_classes: int = NUM_CLASSES):
        super().__init__()
        if divisor not in DIVISORS:
            raise ValueError(f"width divisor {divisor} is not one of {DIVISORS}")
        d = divisor
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32 // d, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32 // d, 32 // d, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32 // d, 64 // d, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64 // d, 80 // d, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80 // d, 192 // d, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192 // d, pool_features=32 // d, d=d)
        self.Mixed_5c = FIDInceptionA(256 // d, pool_features=64 // d, d=d)
        self.Mixed_5d = FIDInceptionA(288 // d, pool_features=64 // d, d=d)
        self.Mixed_6a = InceptionB(288 // d, d=d)
        self.Mixed_6b = FIDInceptionC(768 // d, channels_7x7=128 // d, d=d)
        self.Mixed_6c = FIDInceptionC(768 // d, channels_7x7=160 // d, d=d)
        self.Mixed_6d = FIDInceptionC(768 // d, channels_7x7=160 // d, d=d)
        self.Mixed_6e = FIDInceptionC(768 // d, channels_7x7=192 // d, d=d)
        self.Mixed_7a = InceptionD(768 // d, d=d)
        self.Mixed_7b = FIDInceptionE(1280 // d, pool="avg", d=d)
        self.Mixed_7c = FIDInceptionE(2048 // d, pool="max", d=d)
        self.fc = nn.Linear(FEATURES // d, num_classes)
        self.features = FEATURES // d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(RESIZE, RESIZE), mode="bilinear", align_corners=False)  # resize_input
        x = 2 * x - 1  # normalize_input: (0, 1) -> (-1, 1)
        # block 0: input to maxpool1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        # block 1: maxpool1 to maxpool2
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        # block 2: maxpool2 to the aux classifier's input
        for m in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = m(x)
        # block 3: to the final average pool (pool3)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return F.adaptive_avg_pool2d(x, output_size=(1, 1)).flatten(1)


# -- files ---------------------------------------------------------------------------------------------------------
def divisor_from_state_dict(state: Mapping[str, torch.Tensor]) -> int:
    """The width divisor of a state dict (``32 / out channels of Conv2d_1a_3x3``; 1 published)."""
    try:
        c = int(state["Conv2d_1a_3x3.conv.weight"].shape[0])
    except KeyError:
        raise ValueError("state dict has no 'Conv2d_1a_3x3.conv.weight': not an Inception-v3") from None
    if c <= 0 or 32 % c or 32 // c not in DIVISORS:
        raise ValueError(f"Conv2d_1a_3x3 has {c} output channels: not 32 divided by one of {DIVISORS}")
    return 32 // c




def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` of the plain state dict (``weights_only``)."""
    return read_state_dict(path)


def _random_net(divisor: int, seed: int, calibrate: bool) -> FIDInceptionV3:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FIDInceptionV3(divisor)
        if calibrate:  # running statistics from seeded noise (cumulative average), so eval activations stay O(1)
            bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            model.train()
            with torch.no_grad():
                model(torch.rand(8, 3, RESIZE, RESIZE))
            for m in bns:
                m.momentum = 0.1
    return model.eval()


def make_tiny(folder: Path, seed: int) -> None:
    """The tiny stand-in: :class:`FIDInceptionV3` with widths / :data:`TINY_DIVISOR`, saved as the published file."""
    torch.save(_random_net(TINY_DIVISOR, seed, calibrate=True).state_dict(), Path(folder) / FILE)


def make_paper_random(folder: Path, seed: int) -> None:
    """The full :class:`FIDInceptionV3` (23.9 M parameters) with random weights (BatchNorm statistics
    mean 0, var 1), saved as the published file: for speed benchmarks when the real file is absent."""
    torch.save(_random_net(1, seed, calibrate=False).state_dict(), Path(folder) / FILE)


SPEC = ModelSpec(
    "pt-inception-2015-12-05", files=(FILE,), make_tiny=make_tiny,
    url=FILE_URL,  # not on the Hugging Face hub: a GitHub release asset, placed by hand
    revision="fid_weights",  # the release tag; the file name carries its sha256 prefix (no full sha256 published)
    licence="Apache-2.0 (pytorch-fid; Inception weights ported from TensorFlow's inception-2015-12-05)",
)


# -- the judge ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InceptionFeatures:
    """``pool3`` ``(N, 2048)`` float32 (``(N, 128)`` for the tiny stand-in): the FID feature space."""

    pool3: torch.Tensor


class InceptionJudge:
    """The frozen FID Inception (see the module docstring for the input conventions)."""

    def __init__(self, model: FIDInceptionV3, device: torch.device):
        self.model = model
        self.device = device

    @property
    def dim(self) -> int:
        return self.model.features

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(self, images: torch.Tensor) -> InceptionFeatures:
        """``(N, 3, H, W)`` RGB in [0, 1] -> :class:`InceptionFeatures`, differentiable w.r.t. ``images``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) RGB images, got {tuple(images.shape)}")
        return InceptionFeatures(pool3=self.model(images.to(self.device, self.dtype)))

    __call__ = forward

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch_size: int = 50) -> InceptionFeatures:
        """``(N, H, W, 3)`` uint8 RGB -> :class:`InceptionFeatures` (``/ 255``, batches of ``batch_size``; no grad)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 RGB images, got {images.shape} {images.dtype}")
        out = [self.forward(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255.0).pool3
               for i in range(0, len(images), batch_size)]
        pool3 = torch.cat(out) if out else torch.zeros(0, self.dim, dtype=self.dtype, device=self.device)
        return InceptionFeatures(pool3=pool3)


def load(folder: str | Path, device: str | torch.device = "cpu") -> InceptionJudge:
    """The frozen judge from a verified :data:`SPEC` folder (strict load, width divisor from the file;
    a folder without the tiny marker must hold the published widths)."""
    folder = verify(SPEC, folder)
    path = folder / FILE
    state = read_checkpoint(path)
    divisor = divisor_from_state_dict(state)
    if not is_tiny(folder) and divisor != 1:
        raise ValueError(f"{path}: widths are 1/{divisor} of the published FID Inception's")
    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else NUM_CLASSES
    model = FIDInceptionV3(divisor, num_classes)
    load_state_strict(model, state, str(path))
    device = torch.device(device)
    return InceptionJudge(freeze(model.to(device)), device)
