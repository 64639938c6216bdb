"""Facial action units: LibreFace's AU detector (Chang et al., WACV 2024), ResNet-18, the 12 BP4D AUs.

Model: LibreFace ``AU_Detection`` ResNet-18 distilled (feature matching) from its MAE/Swin teachers and
trained on BP4D (all folds): ``resnet.pt`` = github.com/ihp-lab/LibreFace
``AU_Detection/fm_distillation_all/BP4D/all/resnet.pt`` (git blob ``30fc24b3d54b520956122faf2a8cc1d7c2678b7c``,
added at commit :data:`REVISION`; check a copy with ``git hash-object resnet.pt``). The ``libreface``
package up to 0.1.x downloads a ResNet-18 BP4D detector of the same layout as
``AU_Detection/weights/resnet.pt`` (Google Drive id :data:`GDRIVE_ID`; not verified to be the same bytes;
later releases switched to RepVGG, a timm model). Licence: the USC research licence of LibreFace (education, research and non-profit use
without fee; commercial use needs a licence from USC Stevens Center). Our own plain-torch port.

Why this network: it gives exactly the 12 BP4D AUs (:data:`AUS`) as per-frame probabilities, its
architecture is torchvision's ResNet-18 trunk plus a small MLP (plain torch here, no torchvision or
timm), and the reference code loads the checkpoint STRICTLY (``load_state_dict(torch.load(path)['model'],
strict=True)``), which this loader repeats verbatim. (ME-GraphAU / OpenGraphAU needs a ResNet-50 or Swin
backbone and a graph head for 12/41 AUs; JAA-Net is a multi-branch landmark-attention network; both
are larger ports for the same 12 AUs.)

:class:`AUDetector` keeps LibreFace's names: ``encoder`` = ``nn.Sequential`` of ResNet-18's children
but the last (0 conv1, 1 bn1, 2 relu, 3 maxpool, 4-7 layer1-4 of BasicBlocks ``conv1 bn1 conv2 bn2
[downsample.0 conv1x1, downsample.1 bn]``, 8 global average pool), ``classifier`` = Linear(512, 128),
ReLU, BatchNorm1d(128), Dropout(0.1), Linear(128, 12), Sigmoid. Native format: ``torch.save({'model':
state_dict}, 'resnet.pt')`` (LibreFace's solver). Widths, block counts, the hidden size and the label
count are read off the checkpoint's shapes (:func:`config_from_state_dict`): that is how the tiny
stand-in (same file, same loader) is smaller; the label count must be 12.

Input (:meth:`AUJudge.forward`): ``(B, 3, 224, 224)`` RGB float in [0, 1]; the judge applies the
ImageNet normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225) as LibreFace's
``transforms.Normalize`` does. The crop follows LibreFace's inference: its MediaPipe aligner
(``detect_mediapipe_image.image_align``, FFHQ-style) cuts a square of side ``qsize = 2 max(2.0 |e2e|,
1.8 |e2m|)`` centred at ``eye_avg + 0.1 e2m`` (eye centres = means of MediaPipe's 16-point eye
contours, mouth = midpoint of the leftmost and rightmost lip landmarks, e2e / e2m = eye-to-eye and
eye-to-mouth vectors) into 512 x 512, then ``Resize(256)``, ``CenterCrop(224)``, ``ToTensor``,
``Normalize``. :func:`crop_box_from_landmarks` gives that square as ``[cx, cy, qsize]``; unlike
LibreFace it does not rotate the square to the eye line (our crop boxes are axis-aligned: a tilted head
is cropped upright), and outside the frame it pads with zeros (LibreFace blurs a reflected border).
:meth:`AUJudge.preprocess` repeats the rest (differentiably): bilinear warp to 512 (average-pooled
first when the box exceeds 1024 px, as LibreFace's aligner shrinks), antialiased bilinear resize to
256 (torch's ``antialias=True`` follows PIL's), centre 224.

Output :class:`AUs`: ``probs (B, 12)`` sigmoid probabilities of :data:`AUS` (1, 2, 4, 6, 7, 10, 12, 14,
15, 17, 23, 24 in that order), ``logits (B, 12)`` the pre-sigmoid scores (for a BCE-with-logits loss);
``present`` thresholds at 0.5 as LibreFace does.

Used by: the AU loss (eq. 4, decoded frames vs cached ground-truth AUs, through :meth:`AUJudge.forward`)
and, with a different detector or said so, the AU F1 metric (DESIGN 6 and 9).
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
from judges.face_va import crop_faces, frames_to_tensor

__all__ = [
    "AUS",
    "INPUT_SIZE",
    "SPEC",
    "AUDetector",
    "AUJudge",
    "AUs",
    "config_from_state_dict",
    "crop_box_from_landmarks",
    "load",
    "make_paper_random",
    "make_tiny",
]

AUS = specs.AUS  # LibreFace's BP4D AU order (solver_inference_image.py)
CHECKPOINT = specs.LIBREFACE_FILE
REVISION = specs.LIBREFACE_REVISION
GDRIVE_ID = specs.LIBREFACE_GDRIVE_ID
SOURCE = specs.LIBREFACE_SOURCE
ALIGN_SIZE = 512  # the aligner's transform_size
RESIZE = 256  # image_size
INPUT_SIZE = 224  # crop_size
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PAPER_CONFIG = {"stem": 64, "widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "hidden": 128, "num_labels": len(AUS)}
TINY_CONFIG = {"stem": 4, "widths": (4, 8, 8, 16), "blocks": (1, 1, 1, 1), "hidden": 16, "num_labels": len(AUS)}


# -- the network (torchvision resnet18 children[:-1] + LibreFace's classifier, names as published) -------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class AUDetector(nn.Module):
    """LibreFace's ``ResNet18`` (AU detection): ``(B, 3, 224, 224)`` ImageNet-normalised RGB -> ``(B, 12)``
    probabilities. :meth:`logits` gives the scores before the final Sigmoid."""

    def __init__(self, stem: int = 64, widths: tuple[int, ...] = (64, 128, 256, 512), blocks: tuple[int, ...] = (2, 2, 2, 2),
                 hidden: int = 128, num_labels: int = 12, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem),
                                   nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
        cin = stem
        for i, (width, n) in enumerate(zip(widths, blocks)):
            stage = [BasicBlock(cin, width, stride=1 if i == 0 else 2)] + [BasicBlock(width, width) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            cin = width
        layers.append(nn.AdaptiveAvgPool2d((1, 1)))
        self.encoder = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.BatchNorm1d(hidden), nn.Dropout(p=dropout),
                                        nn.Linear(hidden, num_labels), nn.Sigmoid())

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images).reshape(images.shape[0], -1)
        return self.classifier[:-1](features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.logits(images))


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict:
    """The :class:`AUDetector` arguments a LibreFace ``checkpoint['model']`` was saved from, read off its shapes."""
    try:
        widths, blocks = [], []
        for stage in range(4, 8):
            n = sum(1 for k in state if k.startswith(f"encoder.{stage}.") and k.endswith(".conv1.weight"))
            if not n:
                raise KeyError(f"encoder.{stage}.0.conv1.weight")
            widths.append(int(state[f"encoder.{stage}.0.conv1.weight"].shape[0]))
            blocks.append(n)
        return {"stem": int(state["encoder.0.weight"].shape[0]), "widths": tuple(widths), "blocks": tuple(blocks),
                "hidden": int(state["classifier.0.weight"].shape[0]), "num_labels": int(state["classifier.4.weight"].shape[0])}
    except (KeyError, ValueError) as e:
        raise ValueError(f"not a LibreFace ResNet-18 AU state dict (missing or malformed {e})") from None


def read_checkpoint(path: Path) -> AUDetector:
    """The (unfrozen) :class:`AUDetector` of a native ``resnet.pt``: ``torch.load(path)['model']``, loaded strictly
    (LibreFace's ``load_best_ckpt``)."""
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        raise TypeError(f"{path}: expected LibreFace's {{'model': state_dict}} checkpoint")
    state = raw["model"]
    config = config_from_state_dict(state)
    if config["num_labels"] != len(AUS):
        raise ValueError(f"{path}: {config['num_labels']} outputs; this judge is the 12-AU BP4D detector {AUS}")
    model = AUDetector(**config)
    model.load_state_dict(state, strict=True)
    return model


def _save(model: AUDetector, folder: Path) -> None:
    torch.save({"model": model.state_dict()}, Path(folder) / CHECKPOINT)




def make_tiny(folder: Path, seed: int) -> None:
    """A seeded small AU detector (:data:`TINY_CONFIG`: widths 4-16, one block per stage, hidden 16, the 12
    outputs) saved as LibreFace saves (``resnet.pt``, ``{'model': state_dict}``); the loader reads its widths
    off the shapes. Input and output conventions are the published model's."""
    torch.manual_seed(seed)
    model = AUDetector(**TINY_CONFIG)
    with torch.no_grad():
        randomise_norms(model, torch.Generator().manual_seed(seed))
    _save(model, folder)


def make_paper_random(folder: Path, seed: int) -> None:
    """The FULL published architecture (:data:`PAPER_CONFIG`, 11.2 M parameters) with seeded random weights in the
    native format (for speed benchmarks; its outputs mean nothing)."""
    torch.manual_seed(seed)
    model = AUDetector(**PAPER_CONFIG)
    with torch.no_grad():
        randomise_norms(model, torch.Generator().manual_seed(seed))
    _save(model, folder)


SPEC = specs.ACTION_UNITS  # defined without torch (judges._specs): the action_units stage's driver lists it


# -- crops ------------------------------------------------------------------------------------------------
def _contour(edges: tuple[tuple[int, int], ...]) -> np.ndarray:
    """The unique vertices of MediaPipe connection ``edges`` in first-seen order (LibreFace's lists)."""
    out: list[int] = []
    for a, b in edges:
        for v in (a, b):
            if v not in out:
                out.append(v)
    return np.array(out)


# MediaPipe FACEMESH_LEFT_EYE / FACEMESH_RIGHT_EYE / FACEMESH_LIPS, as LibreFace transcribes them
LEFT_EYE = _contour(((263, 249), (249, 390), (390, 373), (373, 374), (374, 380), (380, 381), (381, 382), (382, 362),
                     (263, 466), (466, 388), (388, 387), (387, 386), (386, 385), (385, 384), (384, 398), (398, 362)))
RIGHT_EYE = _contour(((33, 7), (7, 163), (163, 144), (144, 145), (145, 153), (153, 154), (154, 155), (155, 133),
                      (33, 246), (246, 161), (161, 160), (160, 159), (159, 158), (158, 157), (157, 173), (173, 133)))
LIPS = _contour(((61, 146), (146, 91), (91, 181), (181, 84), (84, 17), (17, 314), (314, 405), (405, 321), (321, 375),
                 (375, 291), (61, 185), (185, 40), (40, 39), (39, 37), (37, 0), (0, 267), (267, 269), (269, 270),
                 (270, 409), (409, 291), (78, 95), (95, 88), (88, 178), (178, 87), (87, 14), (14, 317), (317, 402),
                 (402, 318), (318, 324), (324, 308), (78, 191), (191, 80), (80, 81), (81, 82), (82, 13), (13, 312),
                 (312, 311), (311, 310), (310, 415), (415, 308)))


def crop_box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """LibreFace's alignment square ``[cx, cy, qsize]`` (pixels) from MediaPipe's 478 (or 468) landmarks
    ``(..., 478, 2 or 3)`` in pixels (``image_align`` with its defaults, without its rotation). Shape ``(..., 3)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2] < 468 or lm.shape[-1] not in (2, 3):
        raise ValueError(f"expected MediaPipe face-mesh landmarks (..., 478, 2|3), got {lm.shape}")
    lm = lm[..., :2]
    eye_a = lm[..., LEFT_EYE, :].mean(axis=-2)  # LibreFace's "eye_right" (the subject's left eye, image right)
    eye_b = lm[..., RIGHT_EYE, :].mean(axis=-2)
    eye_avg = (eye_a + eye_b) / 2
    eye_to_eye = eye_a - eye_b
    lips = lm[..., LIPS, :]
    left = np.take_along_axis(lips, lips[..., 0].argmin(axis=-1)[..., None, None], axis=-2)[..., 0, :]
    right = np.take_along_axis(lips, lips[..., 0].argmax(axis=-1)[..., None, None], axis=-2)[..., 0, :]
    eye_to_mouth = (left + right) / 2 - eye_avg
    half = np.maximum(np.hypot(eye_to_eye[..., 0], eye_to_eye[..., 1]) * 2.0, np.hypot(eye_to_mouth[..., 0], eye_to_mouth[..., 1]) * 1.8)
    centre = eye_avg + eye_to_mouth * 0.1
    return np.concatenate([centre, (2 * half)[..., None]], axis=-1)


# -- the judge --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AUs:
    """``probs`` ``(B, 12)`` in [0, 1] and ``logits`` ``(B, 12)``, columns in :data:`AUS` order."""

    probs: torch.Tensor
    logits: torch.Tensor

    @property
    def present(self) -> torch.Tensor:
        """``(B, 12)`` bool: LibreFace's detection (probability >= 0.5)."""
        return self.probs >= 0.5


class AUJudge:
    """The frozen AU detector (see the module docstring for input conventions)."""

    def __init__(self, model: AUDetector, device: torch.device):
        self.model = model
        self.device = device
        self.dtype = next(model.parameters()).dtype
        self.mean = torch.tensor(MEAN, device=device, dtype=self.dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device, dtype=self.dtype).view(1, 3, 1, 1)

    def forward(self, images: torch.Tensor) -> AUs:
        """``(B, 3, 224, 224)`` RGB in [0, 1] aligned crops -> :class:`AUs`, differentiable w.r.t. ``images``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) RGB crops, got {tuple(images.shape)}")
        x = (images.to(self.device, self.dtype) - self.mean) / self.std
        logits = self.model.logits(x)
        return AUs(probs=torch.sigmoid(logits), logits=logits)

    __call__ = forward

    def preprocess(self, images: torch.Tensor, boxes: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames ``(B, 3, H, W)`` RGB [0, 1] and boxes ``(B, 3)`` -> ``(B, 3, 224, 224)`` crops, as LibreFace's
        aligner (512) + ``Resize(256)`` + ``CenterCrop(224)`` (differentiable)."""
        # Only the part of the 512 crop that the centre 224 of the 256 resize reads, with a margin of two resized
        # pixels (bilinear antialias at scale 2 reads source pixels 2i-1 .. 2i+2; the window starts on an even pixel):
        # the same values as resizing the whole crop and cutting its centre (tested), 79% of the pixels.
        o, scale, margin = (RESIZE - INPUT_SIZE) // 2, ALIGN_SIZE // RESIZE, 2
        lo, hi = scale * (o - margin), scale * (o + INPUT_SIZE + margin)
        x = crop_faces(images, boxes, ALIGN_SIZE, shrink=True, window=(lo, hi))
        x = F.interpolate(x, size=((hi - lo) // scale,) * 2, mode="bilinear", align_corners=False, antialias=True)
        return x[..., margin : margin + INPUT_SIZE, margin : margin + INPUT_SIZE]

    @torch.no_grad()
    def predict(self, frames: np.ndarray, boxes: np.ndarray, batch_size: int = 32) -> AUs:
        """uint8 RGB frames ``(N, H, W, 3)`` and crop boxes ``(N, 3)`` (or one ``(3,)`` for all) in frame pixels
        (:func:`crop_box_from_landmarks`) -> :class:`AUs` (no grad, on the judge's device)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        n = len(frames)
        box = np.broadcast_to(np.asarray(boxes, dtype=np.float64).reshape(-1, 3), (n, 3))
        outs = []
        for s in range(0, n, batch_size):
            x = frames_to_tensor(frames[s : s + batch_size]).to(self.device)
            outs.append(self.forward(self.preprocess(x, box[s : s + batch_size])))
        return AUs(probs=torch.cat([o.probs for o in outs]), logits=torch.cat([o.logits for o in outs]))


def load(folder: str | Path, device: str | torch.device = "cpu") -> AUJudge:
    """The frozen judge from a verified :data:`SPEC` folder (``resnet.pt``, loaded strictly; see the module docstring)."""
    folder = verify(SPEC, folder)
    device = torch.device(device)
    return AUJudge(freeze(read_checkpoint(folder / CHECKPOINT).to(device)), device)
