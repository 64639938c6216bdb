"""SyncNet (Chung & Zisserman, "Out of time", 2016): audio-visual sync offset and confidence, frame level.

Model: ``S`` of joonson/syncnet_python (``SyncNetModel.py``, commit 6efbb1c) with its published
parameter names (``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``; Sequential indices as
there), so the published checkpoint ``syncnet_v2.model`` loads into it key for key and shape for
shape. Source of the weights: :data:`URL` (what the repository's ``download_model.sh`` fetches);
code MIT (the repository's ``LICENSE.md``; no separate licence is stated for the weights). The file
is what ``SyncNetInstance.loadParameters`` reads: ``torch.load`` of a pickled state dict (a
mapping of those names to tensors), read here with ``weights_only=True``. :func:`load` checks it
STRICTLY: no unexpected key, no missing key, every shape equal; the one tolerance is BatchNorm's
``num_batches_tracked`` (a PyTorch >= 0.4.1 buffer that eval-mode BatchNorm never reads, which a
checkpoint saved before it existed does not carry; ``loadParameters`` copies only the file's keys).
The channel widths are read from the file's shapes (:func:`widths_from_state_dict`); a folder
without the tiny marker must have the published widths (:data:`PUBLISHED`).

Tiny stand-in (:func:`make_tiny_sync`): the same ``S`` (same layers, kernels, strides, so the same
input sizes) at reduced widths (audio and lip convs 4-8-8-8-8-16, fc 16, embedding 32; about 17k
parameters, about 0.1 MB instead of 13.6M / 55 MB), seeded, saved exactly as the published file is
(``torch.save(state_dict)`` to ``syncnet_v2.model``) and loaded by the same :func:`load`.

Input (as ``SyncNetInstance.evaluate``):

* video: 25 fps (:data:`FPS`) face crops of 224x224 (:data:`SIZE`) in **BGR** channel order
  (``cv2.imread``) with raw 0..255 values (no mean, no scaling); the lip stream is a Conv3d over
  windows of 5 consecutive colour frames ``(N, 3, 5, 224, 224)`` (not 15 stacked channels, not
  grey). The judge takes RGB crops (ours) and flips them to BGR itself.
* audio: 16 kHz mono (:data:`SAMPLE_RATE`) as 16-bit integers (``wavfile.read`` of ffmpeg's
  ``pcm_s16le``; our float waveforms are quantised the way ffmpeg does, :func:`mfcc`) ->
  ``python_speech_features.mfcc(audio, 16000)`` with its defaults (13 coefficients, 25 ms windows
  every 10 ms: 100 Hz, log energy as coefficient 0) -> ``(13, M)``; the audio window of video
  window ``v`` is MFCC frames ``4v .. 4v + 20`` (``(N, 1, 13, 20)``).
* windows: ``N = min(frames, floor(samples / 640)) - 5`` (:func:`num_windows`: the reference's
  ``lastframe``, one fewer than would fit), window ``v`` = video frames ``v .. v + 4``.

Crop convention (:func:`face_boxes`, :func:`crop_windows`, :func:`face_crops`): syncnet_python crops
each S3FD face box ``(x0, y0, x1, y1)`` as ``s = max(w, h) / 2`` about the box centre, median-filters
``s``, ``x``, ``y`` over the track (``scipy.signal.medfilt``, kernel 13), pads the frame with the
constant 110 and takes rows ``y - s .. y + s (1 + 2 cs)`` and columns ``x - s (1 + cs) .. x + s (1 + cs)``
(``cs`` = ``crop_scale`` 0.40: a square of side 2.8 s whose top is the box top, so the mouth sits in
the lower middle), then ``cv2.resize`` to 224x224 (bilinear). We use the bounding box of OUR
MediaPipe landmarks (478 points, pixels of the 512x512 face-crop video; ``landmarks.npy``) in place
of the S3FD box (both span about upper forehead to chin and cheek to cheek; ``box_scale`` scales it,
1.0 by default, not calibrated against S3FD: on a frontal sample face the eyes land at about 22% of
the crop's height, the mouth at 51%, the chin at 72%), frames without landmarks (NaN) take the box linearly
interpolated (held at the ends), and the rest is the same arithmetic (``int`` truncation of the
padded slice bounds included). Not reproduced: the reference's re-encoding of the crops (XVID avi,
then JPEG frames). :func:`face_crops_torch` samples the same integer windows with an affine
``grid_sample`` (bilinear, half-pixel centres like ``cv2.resize``, 110 outside the frame),
differentiable w.r.t. the frames: the sync loss's path from decoded frames.

Output: :class:`SyncEmbeddings` ``video (N, E)``, ``audio (N, E)`` (E = 1024 published, 32 tiny);
:class:`SyncScore` exactly the reference's arithmetic (:func:`calc_pdist`: L2 distances
``(N, 2 vshift + 1)`` of each video window to the audio windows ``-vshift .. +vshift`` away,
zero-padded; mean over windows; ``offset = vshift - argmin``, ``confidence = median - min``, the
per-window ``fconf`` and its 9-tap median filter); :class:`SoftSync` the differentiable offset and
misalignment location for the sync loss (eq. 2 of the paper, :func:`soft_offset`).

Sign of the offset (as the reference's): ``offset = k`` when the audio window at ``t`` matches the
video window at ``t + k`` (the picture lags the sound by ``k`` frames, 40 ms each).

Used by: the sync loss (eq. 2, through :meth:`SyncJudge.forward` + :func:`soft_offset`) and the Sync
metric (LSE-C / LSE-D: :meth:`SyncJudge.evaluate`), DESIGN 6 and 9.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.weights import is_tiny
from judges import _specs as specs
from judges import freeze, verify
from judges._checkpoint import load_state_strict, read_state_dict
from judges._sync_crops import (  # noqa: F401  (the crop convention is part of this judge's interface)
    CROP_SCALE,
    PAD_VALUE,
    SIZE,
    SMOOTH_KERNEL,
    crop_frames,
    crop_windows,
    face_boxes,
    face_crops,
    face_crops_torch,
)

__all__ = [
    "CROP_SCALE",
    "FILE",
    "FPS",
    "PUBLISHED",
    "SAMPLE_RATE",
    "SIZE",
    "SPEC",
    "URL",
    "VSHIFT",
    "S",
    "SoftSync",
    "SyncEmbeddings",
    "SyncJudge",
    "SyncScore",
    "calc_pdist",
    "crop_windows",
    "face_boxes",
    "face_crops",
    "face_crops_torch",
    "load",
    "make_tiny_sync",
    "mfcc",
    "num_windows",
    "soft_offset",
    "sync_score",
    "widths_from_state_dict",
]

FILE = specs.SYNC_FILE
URL = specs.SYNC_URL
SAMPLE_RATE = 16000
FPS = 25
WINDOW = 5  # video frames per window
MFCC_HOP = 4  # MFCC frames (100 Hz) per video frame (25 fps)
MFCC_WINDOW = 20  # MFCC frames per window
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
VSHIFT = 15  # run_syncnet.py's default search range (frames)
FCONF_KERNEL = 9  # SyncNetInstance.evaluate's medfilt of the per-window confidence

#: the indices in ``netcnnaud`` / ``netcnnlip`` of the convolutions (each followed by its BatchNorm)
CONV_INDICES = (0, 4, 8, 11, 14, 18)
#: the published widths (SyncNetModel.S with num_layers_in_fc_layers = 1024)
PUBLISHED = {"aud_channels": (64, 192, 384, 256, 256, 512), "lip_channels": (96, 256, 256, 256, 256, 512),
             "aud_fc": 512, "lip_fc": 512, "num_layers_in_fc_layers": 1024}
TINY = {"aud_channels": (4, 8, 8, 8, 8, 16), "lip_channels": (4, 8, 8, 8, 8, 16), "aud_fc": 16, "lip_fc": 16,
        "num_layers_in_fc_layers": 32}


# -- the network ------------------------------------------------------------------------------------
class S(nn.Module):
    """SyncNetModel.S: ``forward_aud`` ``(N, 1, 13, 20)`` MFCC -> ``(N, E)``, ``forward_lip``
    ``(N, 3, 5, 224, 224)`` BGR 0..255 -> ``(N, E)``. Layers, kernels, strides and parameter names as
    published; the widths are arguments (defaults: the published ones) so a reduced-width file loads."""

    def __init__(self, num_layers_in_fc_layers: int = 1024, aud_channels: tuple[int, ...] = PUBLISHED["aud_channels"],
                 lip_channels: tuple[int, ...] = PUBLISHED["lip_channels"], aud_fc: int = 512, lip_fc: int = 512):
        super().__init__()
        a1, a2, a3, a4, a5, a6 = aud_channels
        v1, v2, v3, v4, v5, v6 = lip_channels
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, a1, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(a1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),

            nn.Conv2d(a1, a2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(a2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),

            nn.Conv2d(a2, a3, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(a3),
            nn.ReLU(inplace=True),

            nn.Conv2d(a3, a4, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(a4),
            nn.ReLU(inplace=True),

            nn.Conv2d(a4, a5, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(a5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),

            nn.Conv2d(a5, a6, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(a6),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(a6, aud_fc),
            nn.BatchNorm1d(aud_fc),
            nn.ReLU(),
            nn.Linear(aud_fc, num_layers_in_fc_layers),
        )
        self.netfclip = nn.Sequential(
            nn.Linear(v6, lip_fc),
            nn.BatchNorm1d(lip_fc),
            nn.ReLU(),
            nn.Linear(lip_fc, num_layers_in_fc_layers),
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, v1, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(v1),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),

            nn.Conv3d(v1, v2, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(v2),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),

            nn.Conv3d(v2, v3, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(v3),
            nn.ReLU(inplace=True),

            nn.Conv3d(v3, v4, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(v4),
            nn.ReLU(inplace=True),

            nn.Conv3d(v4, v5, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(v5),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),

            nn.Conv3d(v5, v6, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(v6),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnaud(x)  # N x ch x 1 x 1
        return self.netfcaud(mid.view((mid.size()[0], -1)))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)  # N x ch x 1 x 1 x 1
        return self.netfclip(mid.view((mid.size()[0], -1)))

    def forward_lipfeat(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.netcnnlip(x)
        return mid.view((mid.size()[0], -1))


def widths_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`S` arguments a state dict's shapes imply (KeyError naming a missing weight)."""
    def out(key: str) -> int:
        if key not in state:
            raise KeyError(f"{FILE}: no '{key}' (not a SyncNetModel.S state dict?)")
        return int(state[key].shape[0])

    return {
        "aud_channels": tuple(out(f"netcnnaud.{i}.weight") for i in CONV_INDICES),
        "lip_channels": tuple(out(f"netcnnlip.{i}.weight") for i in CONV_INDICES),
        "aud_fc": out("netfcaud.0.weight"),
        "lip_fc": out("netfclip.0.weight"),
        "num_layers_in_fc_layers": out("netfcaud.3.weight"),
    }




def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` of the pickled state dict (as ``loadParameters``), tensors only."""
    return read_state_dict(path)


def make_tiny_sync(folder: Path, seed: int) -> None:
    """A reduced-width :class:`S` (:data:`TINY`), seeded, saved as the published file (``torch.save(state_dict)``)."""
    torch.manual_seed(seed)
    model = S(**TINY)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the stand-in's eval differs from identity norms
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(model.state_dict(), Path(folder) / FILE)


SPEC = specs.SYNC  # defined without torch (judges._specs): the sync stage's driver lists it


# -- typed outputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncEmbeddings:
    """``video`` ``(N, E)``: one per 5-frame window; ``audio`` ``(N, E)``: its 20 MFCC frames."""

    video: torch.Tensor
    audio: torch.Tensor


@dataclass(frozen=True)
class SyncScore:
    """The reference's numbers: ``offset`` (frames), ``confidence`` (median - min of ``dists``),
    ``min_dist``; ``dists`` ``(2 vshift + 1,)`` the mean distance per shift (index ``j`` is offset
    ``vshift - j``); ``frame_dists`` ``(N, 2 vshift + 1)``; ``frame_conf`` ``(N,)`` (``fconf``: median
    - the window's distance at the best shift) and ``frame_conf_smoothed`` (``fconfm``, 9-tap median)."""

    offset: int
    confidence: float
    min_dist: float
    dists: torch.Tensor
    frame_dists: torch.Tensor
    frame_conf: torch.Tensor
    frame_conf_smoothed: torch.Tensor


@dataclass(frozen=True)
class SoftSync:
    """Differentiable (scalar tensors): ``offset`` the softmax-expected offset in frames;
    ``location`` the softmax-expected frame (centre of a 5-frame window) where the clip is least in
    sync; ``confidence`` median - expected distance; ``shift_weights`` ``(2 vshift + 1,)``,
    ``frame_weights`` ``(N,)`` the two softmaxes."""

    offset: torch.Tensor
    location: torch.Tensor
    confidence: torch.Tensor
    shift_weights: torch.Tensor
    frame_weights: torch.Tensor


# -- offset and confidence (SyncNetInstance.py) --------------------------------------------------------
def calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """``(N, 2 vshift + 1)``: row ``i`` is ``calc_pdist``'s ``dists[i]``: ``pairwise_distance`` of
    ``feat1[i]`` to ``feat2[i - vshift .. i + vshift]`` (zero rows beyond the ends). Differentiable."""
    win = vshift * 2 + 1
    feat2p = F.pad(feat2, (0, 0, vshift, vshift))
    windows = feat2p.unfold(0, win, 1).transpose(1, 2)  # (N, win, E)
    return F.pairwise_distance(feat1[:, None, :].expand_as(windows), windows)


def sync_score(emb: SyncEmbeddings, vshift: int = VSHIFT) -> SyncScore:
    """``SyncNetInstance.evaluate``'s offset, confidence and per-window confidence from the embeddings."""
    from scipy import signal

    dists = calc_pdist(emb.video.detach().float().cpu(), emb.audio.detach().float().cpu(), vshift)
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    median = torch.median(mdist)
    fdist = dists[:, minidx]
    fconf = median - fdist
    fconfm = torch.from_numpy(signal.medfilt(fconf.numpy(), kernel_size=FCONF_KERNEL).astype(np.float32))
    return SyncScore(offset=int(vshift - minidx), confidence=float(median - minval), min_dist=float(minval),
                     dists=mdist, frame_dists=dists, frame_conf=fconf, frame_conf_smoothed=fconfm)


def soft_offset(emb: SyncEmbeddings, vshift: int = VSHIFT, temperature: float = 1.0, location_temperature: float = 1.0) -> SoftSync:
    """The sync loss's terms (eq. 2), differentiable w.r.t. the embeddings (and so the frames).

    ``p = softmax(-dists / temperature)`` over the shifts (``dists`` the mean distance per shift,
    as :func:`sync_score`): ``offset = sum_j p_j (vshift - j)`` (-> the reference's offset as the
    temperature -> 0). Each window's distance at that soft shift, ``d_i = sum_j p_j D_ij``, says how
    far out of sync window ``i`` is; ``q = softmax(d / location_temperature)`` over the windows and
    ``location = sum_i q_i (i + 2)``: the expected (centre) frame of misalignment, eq. 2's ``t``
    (divide by :data:`FPS` for seconds). ``confidence = median(dists) - sum_j p_j dists_j``."""
    dists = calc_pdist(emb.video, emb.audio, vshift)  # (N, W)
    mdist = dists.mean(0)
    p = torch.softmax(-mdist / temperature, dim=0)
    shifts = vshift - torch.arange(2 * vshift + 1, device=mdist.device, dtype=mdist.dtype)
    offset = (p * shifts).sum()
    d = dists @ p
    q = torch.softmax(d / location_temperature, dim=0)
    centres = torch.arange(d.shape[0], device=d.device, dtype=d.dtype) + (WINDOW - 1) / 2
    location = (q * centres).sum()
    confidence = torch.median(mdist) - (p * mdist).sum()
    return SoftSync(offset=offset, location=location, confidence=confidence, shift_weights=p, frame_weights=q)


# -- audio --------------------------------------------------------------------------------------------
def mfcc(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``(13, M)`` float32 MFCC as ``evaluate``: 16-bit samples (float input in [-1, 1] is quantised
    as ffmpeg's ``pcm_s16le``: ``rint(x * 32768)`` clipped) -> ``python_speech_features.mfcc``."""
    import python_speech_features

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"SyncNet expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
    audio = np.asarray(audio)
    if audio.dtype != np.int16:
        audio = np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    feats = python_speech_features.mfcc(audio, sample_rate)  # (M, 13)
    return np.ascontiguousarray(feats.T).astype(np.float32)


def num_windows(num_frames: int, num_samples: int) -> int:
    """``evaluate``'s ``lastframe``: ``min(frames, floor(samples / 640)) - 5``."""
    return min(num_frames, math.floor(num_samples / SAMPLES_PER_FRAME)) - WINDOW


# -- the judge ----------------------------------------------------------------------------------------
class SyncJudge:
    """The frozen SyncNet (see the module docstring for conventions)."""

    def __init__(self, model: S, device: torch.device, batch_size: int = 20):
        self.model = model
        self.device = device
        self.batch_size = batch_size  # windows per forward (the reference's --batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.netfcaud[3].out_features)

    def forward(self, video: torch.Tensor, mfcc: torch.Tensor | np.ndarray, windows: int | None = None) -> SyncEmbeddings:
        """``video`` ``(T, 3, 224, 224)`` RGB crops on the 0..255 scale (:func:`face_crops_torch`, or
        :func:`face_crops` as float), ``mfcc`` ``(13, M)`` (:func:`mfcc`) -> :class:`SyncEmbeddings` of
        ``windows`` windows (default: as many as both fit, ``min(T - 4, (M - 20) // 4 + 1)``),
        differentiable w.r.t. ``video``."""
        video = video.to(self.device, torch.float32)
        cc = torch.as_tensor(np.asarray(mfcc) if not isinstance(mfcc, torch.Tensor) else mfcc).to(self.device, torch.float32)
        fit = min(video.shape[0] - WINDOW + 1, (cc.shape[1] - MFCC_WINDOW) // MFCC_HOP + 1)
        n = fit if windows is None else windows
        if n < 1 or n > fit:
            raise ValueError(f"{n} windows do not fit {video.shape[0]} frames and {cc.shape[1]} MFCC frames (at most {fit})")
        clip = video[:, [2, 1, 0]].transpose(0, 1)  # RGB -> BGR (cv2.imread), (3, T, H, W)
        vids, auds = [], []
        for i in range(0, n, self.batch_size):
            idx = range(i, min(n, i + self.batch_size))
            # forward_lip of the windows v .. v + 4 for v in idx, as one sequence: the 5-frame-deep first Conv3d slides
            # over it once instead of once per window (every later layer is 1 frame deep): the same values (tested)
            mid = self.model.netcnnlip(clip[None, :, idx[0] : idx[-1] + WINDOW])  # (1, ch, B, 1, 1)
            cc_in = torch.stack([cc[None, :, v * MFCC_HOP : v * MFCC_HOP + MFCC_WINDOW] for v in idx])  # (B, 1, 13, 20)
            vids.append(self.model.netfclip(mid[0, :, :, 0, 0].T))
            auds.append(self.model.forward_aud(cc_in))
        return SyncEmbeddings(video=torch.cat(vids), audio=torch.cat(auds))

    __call__ = forward

    @torch.no_grad()
    def embed(self, crops: np.ndarray, audio: np.ndarray) -> SyncEmbeddings:
        """``(T, 224, 224, 3)`` uint8 RGB crops (:func:`face_crops`) and 16 kHz audio (float in [-1, 1]
        or int16) -> the embeddings of ``evaluate``'s :func:`num_windows` windows."""
        crops = np.asarray(crops)
        n = num_windows(len(crops), len(audio))
        video = torch.from_numpy(crops.astype(np.float32)).permute(0, 3, 1, 2)
        return self.forward(video, mfcc(audio), windows=n)

    @torch.no_grad()
    def evaluate(self, crops: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT) -> SyncScore:
        """``SyncNetInstance.evaluate`` on our crops: offset, confidence (LSE-C), min distance (LSE-D)."""
        return sync_score(self.embed(crops, audio), vshift)


def load(folder: str | Path, device: str | torch.device = "cpu") -> SyncJudge:
    """The frozen judge from a verified :data:`SPEC` folder (strict load, widths from the file;
    a folder without the tiny marker must hold the published widths)."""
    folder = verify(SPEC, folder)
    path = folder / FILE
    state = read_checkpoint(path)
    widths = widths_from_state_dict(state)
    if not is_tiny(folder) and widths != PUBLISHED:
        raise ValueError(f"{path}: widths {widths} are not the published SyncNet's {PUBLISHED}")
    model = S(**widths)
    load_state_strict(model, state, str(path))
    device = torch.device(device)
    return SyncJudge(freeze(model.to(device)), device)
