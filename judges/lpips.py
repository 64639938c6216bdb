"""LPIPS (Zhang et al. 2018): ``LPIPS(net='alex', version='0.1')`` of richzhang/PerceptualSimilarity.

Model: two files, each in its published format and loaded STRICTLY (every key, every shape; read
with ``weights_only=True``):

* :data:`ALEXNET_FILE`, torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``, BSD-3-Clause,
  :data:`ALEXNET_URL`; the hash prefix in its name is the start of its sha256): a plain state dict
  ``features.{0,3,6,8,10}.{weight,bias}`` (the five convolutions of ``torchvision.models.alexnet().features``)
  and ``classifier.{1,4,6}.{weight,bias}``. LPIPS uses only ``features`` (``lpips/pretrained_networks.py
  alexnet``), so :class:`AlexNetFeatures` holds ``features`` alone: the ``features.*`` entries load into
  it strictly, the ``classifier.*`` entries must be exactly those six names and are not kept in memory;
* :data:`LIN_FILE` = ``v0.1/alex.pth`` (``lpips/weights/v0.1/alex.pth`` of the repository, BSD-2-Clause,
  :data:`LIN_SHA256`): ``lin{0..4}.model.1.weight``, the non-negative 1x1 convolutions (no bias) of
  ``NetLinLayer`` (``model`` = ``Dropout``, ``Conv2d``), loaded into :class:`LinearHeads`.

Computation (``lpips/lpips.py LPIPS.forward``, v0.1, ``lpips=True, spatial=False``): both images through
the ScalingLayer (``(x - shift) / scale``, :data:`SHIFT`, :data:`SCALE`), then AlexNet's five ReLU outputs
(``features[0:2]``, ``[2:5]``, ``[5:8]``, ``[8:10]``, ``[10:12]``); per layer ``normalize_tensor``
(``x / (sqrt(sum_c x^2) + 1e-10)``), squared difference, ``lin_k``, spatial mean; the distance is the
sum over the five layers. :func:`normalize_tensor` computes the same numbers with a finite gradient
where a feature vector is all zero (lpips' formula gives NaN there: ``sqrt'(0) * 0``).

Input: two ``(N, 3, H, W)`` RGB float tensors in [-1, 1] (``normalize=False``; images in [0, 1] go
through ``2 x - 1`` first, :meth:`LPIPSJudge.predict` does ``uint8 / 127.5 - 1`` as ``lpips.im2tensor``),
the same size, at least 32 x 32 or so (AlexNet's three stride-2 max-pools after the stride-4
conv must leave a pixel); the value depends on the resolution (DESIGN 9: compare at one size).

Output :class:`LPIPSDistance`: ``distance (N,)`` (0 for identical images, symmetric) and
``layers (N, 5)``, each layer's term; float32.

Tiny stand-in (:func:`make_tiny`): the same two files with the same names and the same key names, at
widths :data:`TINY_WIDTHS` instead of :data:`WIDTHS` (41 k LPIPS parameters instead of 2.47 M;
classifier 64-64-1000 on the reduced pooled features); :func:`load` reads the widths from the file (output channels of ``features.{0,3,6,8,10}``)
and requires the published ones unless the folder carries the tiny marker. :func:`make_paper_random`
writes both files at full size with random weights (speed benchmarks only).

Used by: the LPIPS metric (DESIGN 9) and any perceptual loss (:meth:`LPIPSJudge.forward` keeps the graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.weights import ModelSpec, is_tiny
from judges import freeze, verify
from judges._checkpoint import load_state_strict

__all__ = [
    "ALEXNET_FILE",
    "LIN_FILE",
    "SPEC",
    "AlexNetFeatures",
    "LPIPSDistance",
    "LPIPSJudge",
    "LPIPSNet",
    "LinearHeads",
    "load",
    "make_paper_random",
    "make_tiny",
    "normalize_tensor",
]

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LIN_FILE = "v0.1/alex.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
URL = "https://github.com/richzhang/PerceptualSimilarity"
LIN_URL = f"{URL}/raw/082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/alex.pth"
#: the repository commit holding v0.1/alex.pth (and the code transcribed here)
REVISION = "082bb24f84c091ea94de2867d34c4544f68e0963"
LIN_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
ALEXNET_SHA256_PREFIX = "7be5be79"

#: lpips ScalingLayer constants (shift, scale per RGB channel)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: output channels of AlexNet's five convolutions (lpips chns for 'alex')
WIDTHS = (64, 192, 384, 256, 256)
TINY_WIDTHS = (8, 24, 48, 32, 32)
CONV_INDICES = (0, 3, 6, 8, 10)  # the convolutions within torchvision's alexnet().features
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))  # lpips pretrained_networks.alexnet slice1..5
CLASSIFIER_KEYS = tuple(f"classifier.{i}.{p}" for i in (1, 4, 6) for p in ("weight", "bias"))
EPS = 1e-10


def normalize_tensor(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """lpips ``normalize_tensor``: ``x / (sqrt(sum_c x^2) + eps)`` over dim 1, the same numbers; where
    ``sum_c x^2`` is 0 the norm's gradient is taken as 0, so the result stays finite (the plain ``sqrt``
    gives NaN there)."""
    sq = torch.sum(x ** 2, dim=1, keepdim=True)
    positive = sq > 0
    norm = torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    return x / (norm + eps)


class AlexNetFeatures(nn.Module):
    """torchvision ``alexnet().features`` (parameter names ``features.{0,3,6,8,10}.*``); forward returns
    the five ReLU outputs LPIPS compares, ``[(N, c_k, h_k, w_k)]``."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for a, b in SLICES:
            for i in range(a, b):
                x = self.features[i](x)
            outs.append(x)
        return outs


class NetLinLayer(nn.Module):
    """lpips ``NetLinLayer(chn, use_dropout=True)``: ``model`` = Dropout, 1x1 Conv2d(chn, 1, bias=False)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, stride=1, padding=0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LinearHeads(nn.Module):
    """``lin0`` .. ``lin4`` (the keys of ``v0.1/alex.pth``)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        for k, c in enumerate(widths):
            setattr(self, f"lin{k}", NetLinLayer(c))

    def __getitem__(self, k: int) -> NetLinLayer:
        return getattr(self, f"lin{k}")


class LPIPSNet(nn.Module):
    """The LPIPS v0.1 computation: ``(x0, x1)`` in [-1, 1] -> ``(distance (N,), layers (N, 5))``."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None], persistent=False)
        self.net = AlexNetFeatures(widths)
        self.lins = LinearHeads(widths)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs0 = self.net((x0 - self.shift) / self.scale)
        outs1 = self.net((x1 - self.shift) / self.scale)
        terms = []
        for k, (f0, f1) in enumerate(zip(outs0, outs1)):
            diff = (normalize_tensor(f0) - normalize_tensor(f1)) ** 2
            terms.append(self.lins[k](diff).mean([2, 3], keepdim=True))  # spatial_average
        val = terms[0]
        for t in terms[1:]:
            val = val + t
        return val.flatten(), torch.cat(terms, dim=1).flatten(1)


# -- files ---------------------------------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, torch.Tensor]:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise TypeError(f"{path}: expected a pickled state dict (name -> tensor), got {type(loaded).__name__}")
    return {str(k): v for k, v in loaded.items()}


def widths_from_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Output channels of ``features.{0,3,6,8,10}.weight`` of an AlexNet state dict."""
    try:
        return tuple(int(state[f"features.{i}.weight"].shape[0]) for i in CONV_INDICES)
    except KeyError as e:
        raise ValueError(f"not a torchvision AlexNet state dict: no {e.args[0]}") from None




def split_alexnet(state: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """The ``features.*`` entries of a torchvision AlexNet state dict; every other entry must be one of
    :data:`CLASSIFIER_KEYS` (the ImageNet head LPIPS never runs), all of them present."""
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    rest = sorted(set(state) - set(features))
    if rest != sorted(CLASSIFIER_KEYS):
        unexpected = sorted(set(rest) - set(CLASSIFIER_KEYS))
        missing = sorted(set(CLASSIFIER_KEYS) - set(rest))
        raise ValueError(f"{what} is not torchvision's alexnet state dict: unexpected {unexpected}, missing {missing}")
    return features


def _save(folder: Path, widths: tuple[int, ...], hidden: int, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = AlexNetFeatures(widths)
        lins = LinearHeads(widths)
        with torch.no_grad():
            for k in range(5):  # trained lpips weights are non-negative (clamped during training), of order 0.1 - 1
                lins[k].model[1].weight.uniform_(0.0, 1.0)
        head = nn.Sequential(nn.Dropout(), nn.Linear(widths[-1] * 36, hidden), nn.ReLU(), nn.Dropout(),
                             nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1000))
    alexnet = dict(net.state_dict())
    alexnet.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    folder = Path(folder)
    torch.save(alexnet, folder / ALEXNET_FILE)
    (folder / LIN_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save(lins.state_dict(), folder / LIN_FILE)


def make_tiny(folder: Path, seed: int) -> None:
    """The tiny stand-in: both files at :data:`TINY_WIDTHS` (classifier 64-64-1000), seeded, same names and format."""
    _save(folder, TINY_WIDTHS, 64, seed)


def make_paper_random(folder: Path, seed: int) -> None:
    """Both files at full size (AlexNet with its 4096-4096-1000 classifier, 61 M parameters) with random
    weights: for speed benchmarks when the real files are absent."""
    _save(folder, WIDTHS, 4096, seed)


SPEC = ModelSpec(
    "lpips-alex-v0.1", files=(ALEXNET_FILE, LIN_FILE), make_tiny=make_tiny,
    # not on the Hugging Face hub: both files are placed by hand (torchvision's AlexNet, the lpips repository's file)
    url=f"{ALEXNET_URL} ({ALEXNET_FILE}); {LIN_URL} ({LIN_FILE})",
    revision=REVISION,  # the PerceptualSimilarity commit of v0.1/alex.pth
    sha256=LIN_SHA256,  # of v0.1/alex.pth (measured); the AlexNet file's name carries its sha256 prefix
    licence="BSD-2-Clause (lpips, v0.1/alex.pth); BSD-3-Clause (torchvision AlexNet ImageNet weights)",
)


# -- the judge ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LPIPSDistance:
    """``distance`` ``(N,)``: LPIPS of each pair; ``layers`` ``(N, 5)``: the five layers' terms (summing to it)."""

    distance: torch.Tensor
    layers: torch.Tensor


class LPIPSJudge:
    """The frozen LPIPS(alex, v0.1) (see the module docstring for the input conventions)."""

    def __init__(self, model: LPIPSNet, device: torch.device):
        self.model = model
        self.device = device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> LPIPSDistance:
        """Two ``(N, 3, H, W)`` RGB batches in [-1, 1] -> :class:`LPIPSDistance`, differentiable w.r.t. both."""
        if x0.shape != x1.shape or x0.ndim != 4 or x0.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) batches of one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        distance, layers = self.model(x0.to(self.device, self.dtype), x1.to(self.device, self.dtype))
        return LPIPSDistance(distance=distance, layers=layers)

    __call__ = forward

    @torch.no_grad()
    def predict(self, images0: np.ndarray, images1: np.ndarray) -> LPIPSDistance:
        """Two ``(N, H, W, 3)`` uint8 RGB arrays -> :class:`LPIPSDistance` (``x / 127.5 - 1``, as ``lpips.im2tensor``; no grad)."""
        def tensor(a: np.ndarray) -> torch.Tensor:
            a = np.asarray(a)
            if a.dtype != np.uint8 or a.ndim != 4 or a.shape[3] != 3:
                raise ValueError(f"expected (N, H, W, 3) uint8 RGB images, got {a.shape} {a.dtype}")
            return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1.0

        return self.forward(tensor(images0), tensor(images1))


def load(folder: str | Path, device: str | torch.device = "cpu") -> LPIPSJudge:
    """The frozen judge from a verified :data:`SPEC` folder: both files loaded strictly, widths read from
    the AlexNet file; a folder without the tiny marker must hold the published widths."""
    folder = verify(SPEC, folder)
    alex_path, lin_path = folder / ALEXNET_FILE, folder / LIN_FILE
    features = split_alexnet(_read(alex_path), str(alex_path))
    widths = widths_from_state_dict(features)
    if not is_tiny(folder) and widths != WIDTHS:
        raise ValueError(f"{alex_path}: widths {widths} are not torchvision AlexNet's {WIDTHS}")
    model = LPIPSNet(widths)
    load_state_strict(model.net, features, str(alex_path))
    load_state_strict(model.lins, _read(lin_path), str(lin_path))
    device = torch.device(device)
    return LPIPSJudge(freeze(model.to(device)), device)
