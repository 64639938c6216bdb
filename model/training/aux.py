"""Auxiliary losses of stage 2 (paper eq. 2-5) in the forms a trainer can differentiate (DESIGN 6).

Each is computed on x0 predicted for the samples whose timestep is below ``train.aux.max_timestep``,
on ``train.aux.frames`` consecutive frames per video decoded through the (frozen) VAE WITH gradient;
face crops come from the ground-truth landmarks by an affine ``grid_sample`` (differentiable in the
frames). The frozen perception networks are the judges (``judges/``); gradients reach the frames, never
a judge's weights.

- ``sync`` (eq. 2): ``judges.sync``: SyncNet embeddings of the decoded and ground-truth mouth crops
  against the window's 16 kHz audio; ``soft_offset`` gives the softmax-expected offset and
  misalignment location (frames / 25 s) of each over the shifts the n - 5 windows of the n decoded
  frames allow, and ``model.losses.sync_loss`` compares them (n >= 8: with one window the expected
  offset is 0 whatever the frames). The ground truth's terms come from the batch's own frames.
- ``emo`` (eq. 3): valence/arousal of the decoded FRAMES (``judges.face_va``, a visual judge) vs the
  cached per-frame target (``train.aux.emo_target``), means over 50%-overlapping frame segments. The
  paper's audio version is identically zero (the generated video's audio is the driving audio).
- ``au`` (eq. 4): action-unit intensities (``judges.action_units``) of the decoded face crops vs the
  cached per-frame target (``train.aux.au_target``).
- ``attr_action`` (eq. 5): ``1 - cos`` of CLIP image embeddings (``judges.clip_image``) of decoded vs
  the cached ground-truth frames' (``train.aux.attr_action_target``). The paper compares VideoLLaMA2
  captions, which are discrete tokens: no gradient can pass through them, so the image embeddings
  stand in for the captions' content.

Each adapter calls its judge as the judge documents it: face crops with the judge's own
``crop_box_from_landmarks`` (from the ground-truth landmarks, so the generated and the true frames are
cropped alike) and ``preprocess`` (a differentiable affine warp), then ``forward`` (EmoNet's
``valence_arousal``, LibreFace's AU ``probs``, CLIP's L2-normalised ``embeds``); SyncNet's crops and MFCC
windows through ``judges.sync``'s helpers. Frames without landmarks (NaN) take the nearest frame's box.

A loss whose weight is non-zero is switched OFF, with one logged line and ``aux/<name>_on = 0`` in the
run's metrics, when its judge module does not exist, its weights folder is missing, its target is not
in the batch, or a probe of the adapter on the first batch's ground truth fails.

Cost (``python -m bench.train_step``, figures in ``bench/README.md``): decoding frames with gradient
through the SD VAE decoder is the expensive part: at 512x512 in bf16 autograd keeps 2.84 GiB per
decoded frame (39.8 GiB per video for the default 14 frames; DESIGN 6's +29 GiB for 20 frames is an
under-estimate), and at tiny scale the attr-action loss alone adds 29% to the stage-2 step;
``train.aux.frames`` trades it (8 is the least the sync loss takes).
``train.aux.decoder: tiny`` decodes through a TAESD-layout ``AutoencoderTiny`` instead (:func:`load_decoder`,
``weights/<profile>/<train.aux.tiny_decoder>/``, e.g. ``madebyollin/taesd``, MIT): the same SD latents,
0.27 GiB per frame (10.6x less) and 14x less CPU time per decoded frame, +5% instead of +29% at tiny
scale; its frames approximate the VAE's (slightly blurred), so the losses judge an approximation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from model import losses
from model.data.pixels import model_pixels

from .params import AuxParams

log = logging.getLogger("model.train")

NAMES = ("sync", "emo", "au", "attr_action")
MODULES = {"sync": "judges.sync", "emo": "judges.face_va", "au": "judges.action_units", "attr_action": "judges.clip_image"}


@dataclass
class AuxLoss:
    name: str
    weight: float
    judge: Any
    module: Any
    fn: Callable[..., torch.Tensor]  # (self, generated (B,n,3,S,S) [-1,1], batch, starts (B,), n) -> (B,)
    target: str | None = None  # the batch entry of the cached ground truth


def _rows(x: torch.Tensor, starts: torch.Tensor, n: int) -> torch.Tensor:
    """``x[b, starts[b]:starts[b]+n]`` for each b."""
    return torch.stack([x[b, int(s):int(s) + n] for b, s in enumerate(starts.tolist())])


def _boxes(module: Any, landmarks: torch.Tensor) -> np.ndarray:
    """The judge's crop boxes ``(N, 3)`` from landmarks ``(N, K, 3)``; frames without landmarks take the
    nearest frame's box (all NaN: a ValueError)."""
    boxes = module.crop_box_from_landmarks(landmarks.detach().cpu().numpy())
    good = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0)
    if not good.any():
        raise ValueError("no frame with landmarks")
    idx = np.flatnonzero(good)
    nearest = idx[np.abs(np.arange(len(boxes))[:, None] - idx[None]).argmin(1)]
    return boxes[nearest]


def _segment_means(x: torch.Tensor) -> torch.Tensor:
    """``(B, n, D)`` -> ``(B, K, D)``: means over 50%-overlapping segments of about n/2 frames (eq. 3)."""
    length = max(1, x.shape[1] // 2)
    return x.unfold(1, length, max(1, length // 2)).mean(-1)


# -- the four losses ---------------------------------------------------------------------------------
def _sync(self: AuxLoss, generated: torch.Tensor, batch: dict[str, Any], starts: torch.Tensor, n: int) -> torch.Tensor:
    m = self.module
    gt = model_pixels(_rows(batch["frames"], starts, n).to(generated.device)).float()
    landmarks = _rows(batch["landmarks"], starts, n).cpu().numpy()
    out = []
    for b in range(generated.shape[0]):
        windows = m.crop_windows(m.face_boxes(landmarks[b]))
        s = int(starts[b]) * m.SAMPLES_PER_FRAME
        cc = m.mfcc(batch["audio"][b, s:s + n * m.SAMPLES_PER_FRAME].cpu().numpy())
        fit = min(n - m.WINDOW + 1, (cc.shape[1] - m.MFCC_WINDOW) // m.MFCC_HOP + 1)
        vshift = min(m.VSHIFT, fit - 1)  # shifts within the decoded windows (the rest would compare with zero padding)
        p = m.soft_offset(self.judge.forward(m.face_crops_torch(generated[b].float(), windows, (-1.0, 1.0)), cc, fit), vshift)
        with torch.no_grad():
            g = m.soft_offset(self.judge.forward(m.face_crops_torch(gt[b], windows, (-1.0, 1.0)), cc, fit), vshift)
        est = losses.SyncEstimate
        out.append(losses.sync_loss(est(p.offset[None], p.location[None] / m.FPS), est(g.offset[None], g.location[None] / m.FPS)))
    return torch.stack(out)


def _faces(self: AuxLoss, generated: torch.Tensor, batch: dict[str, Any], starts: torch.Tensor, n: int) -> Any:
    """The judge's output on the face crops of the generated frames ``(B * n, ...)``."""
    boxes = np.concatenate([_boxes(self.module, lm) for lm in _rows(batch["landmarks"], starts, n)])
    images = (generated.flatten(0, 1).float() + 1) / 2
    return self.judge.forward(self.judge.preprocess(images, boxes))


def _target(self: AuxLoss, batch: dict[str, Any], starts: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return _rows(batch[self.target], starts, n).to(like.device).float()


def _emo(self: AuxLoss, generated: torch.Tensor, batch: dict[str, Any], starts: torch.Tensor, n: int) -> torch.Tensor:
    predicted = _faces(self, generated, batch, starts, n).valence_arousal.float().reshape(generated.shape[0], n, 2)
    target = _target(self, batch, starts, n, predicted)[..., :2]
    return losses.emo_loss(_segment_means(predicted), _segment_means(target), reduction="none")


def _au(self: AuxLoss, generated: torch.Tensor, batch: dict[str, Any], starts: torch.Tensor, n: int) -> torch.Tensor:
    predicted = _faces(self, generated, batch, starts, n).probs.float().reshape(generated.shape[0], n, -1)
    return losses.au_loss(predicted, _target(self, batch, starts, n, predicted), reduction="none")


def _attr_action(self: AuxLoss, generated: torch.Tensor, batch: dict[str, Any], starts: torch.Tensor, n: int) -> torch.Tensor:
    predicted = self.judge.forward((generated.flatten(0, 1).float() + 1) / 2, normalize=True).embeds.float()
    target = _target(self, batch, starts, n, predicted).flatten(0, 1)
    return losses.attr_action_loss(predicted, target, reduction="none").reshape(-1, n).mean(1)


LOSSES = {"sync": _sync, "emo": _emo, "au": _au, "attr_action": _attr_action}


def judge_module(name: str) -> Any:
    """The judge module of loss ``name``, or None when it does not exist. Each is imported by name here, so
    the trainer's code dependencies (``dvc.yaml``, ``tests/test_dvc_deps.py``) cover every judge it may run."""
    try:
        if name == "sync":
            from judges import sync as module
        elif name == "emo":
            from judges import face_va as module
        elif name == "au":
            from judges import action_units as module
        else:
            from judges import clip_image as module
    except ModuleNotFoundError:
        return None
    return module


def _targets(name: str, aux: AuxParams) -> tuple[str, ...]:
    if name == "sync":
        return ("frames", "landmarks", "audio")
    return ("frames", "landmarks", getattr(aux, f"{name}_target"))


def setup(stage: str, aux: AuxParams, weights_root: Path, batch: dict[str, Any], device: torch.device,
          quiet: bool = False) -> tuple[list[AuxLoss], dict[str, str]]:
    """The auxiliary losses that are on, and ``{name: "on" | "off: <reason>"}`` for each of the four."""
    active, status = [], {}
    for name in NAMES:
        weight = getattr(aux, name)
        if weight == 0:
            status[name] = "off: weight 0"
            continue
        reason = None
        try:
            if stage != "stage2":
                raise LookupError(f"{stage} trains on single images; the auxiliary losses are stage-2 video losses")
            if aux.frames > batch["frames"].shape[1]:
                raise LookupError(f"train.aux.frames ({aux.frames}) exceeds data.target_frames ({batch['frames'].shape[1]})")
            if name == "sync" and aux.frames < 8:
                raise LookupError(f"the soft sync offset needs at least 3 SyncNet windows, 8 decoded frames (with one window "
                                  f"it is 0 by symmetry); train.aux.frames is {aux.frames}")
            module = judge_module(name)
            if module is None:
                raise LookupError(f"its judge module {MODULES[name]} does not exist yet")
            missing = [k for k in _targets(name, aux) if k not in batch]
            if missing:
                raise LookupError(f"the batch has no '{missing[0]}' (add the feature that fills it to data.stage2_features)")
            folder = weights_root / module.SPEC.name
            judge = module.load(folder, device)
            loss = AuxLoss(name, weight, judge, module, LOSSES[name], getattr(aux, f"{name}_target", None))
            with torch.no_grad():  # probe: the ground truth through the adapter
                frames = model_pixels(batch["frames"][:1, :aux.frames].to(device)).float()
                value = loss.fn(loss, frames, {k: v[:1] for k, v in batch.items()}, torch.zeros(1, dtype=torch.long), aux.frames)
            if value.shape != (1,) or not torch.isfinite(value).all():
                raise LookupError(f"the probe on the ground truth gave {tuple(value.shape)} {value.tolist()}, not one finite value")
        except Exception as e:  # noqa: BLE001 - any failure switches the loss off, loudly and once
            reason = f"{type(e).__name__}: {e}" if not isinstance(e, LookupError) else str(e)
        if reason is None:
            active.append(loss)
            status[name] = "on"
        else:
            status[name] = f"off: {reason}"
            if not quiet:  # one line per run: the main process says it
                log.warning("auxiliary loss %s (weight %g) is OFF: %s", name, weight, reason)
    return active, status


def load_decoder(aux: AuxParams, weights_root: Path, vae: Any, device: torch.device) -> Any:
    """The decoder of the auxiliary losses: ``vae`` itself (``train.aux.decoder: vae``) or the frozen TAESD-layout
    ``AutoencoderTiny`` of ``<weights_root>/<train.aux.tiny_decoder>/`` in the VAE's dtype (``tiny``). Both take
    the SD latents as ``decode(latents / config.scaling_factor)`` (TAESD's factor is 1: it decodes scaled latents)."""
    if aux.decoder == "vae":
        return vae
    from diffusers import AutoencoderTiny

    folder = Path(weights_root) / aux.tiny_decoder
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}/config.json not found: train.aux.decoder tiny needs a TAESD folder there "
                                f"(huggingface-cli download madebyollin/taesd --local-dir {folder}), or set train.aux.decoder: vae")
    tiny = AutoencoderTiny.from_pretrained(str(folder), local_files_only=True)
    param = next(vae.parameters())
    if tiny.config.latent_channels != vae.config.latent_channels:
        raise ValueError(f"{folder}: {tiny.config.latent_channels} latent channels, the VAE {vae.config.latent_channels}: "
                         f"train.aux.tiny_decoder must name a decoder of the same latents")
    tiny = tiny.requires_grad_(False).eval().to(param.device)
    return tiny if param.dtype == torch.float32 else tiny.to(param.dtype)


def compute(active: list[AuxLoss], vae: Any, x0: torch.Tensor, timesteps: torch.Tensor, batch: dict[str, Any],
            aux: AuxParams, uniform: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: scalar}`` weighted-free means over the batch (zero for samples with t >= max_timestep).
    ``vae``: the decoder (:func:`load_decoder`: the SD VAE or the tiny one).

    ``x0`` ``(B, C, T, h, w)`` predicted clean latents; ``uniform`` ``(B,)`` draws in [0, 1) that place
    each video's decoded frames."""
    if not active:
        return {}
    keep = (timesteps < aux.max_timestep).nonzero().flatten()
    batch_size, frames, n = x0.shape[0], x0.shape[2], aux.frames
    if keep.numel() == 0:
        return {a.name: x0.sum() * 0.0 for a in active}
    # at most max_videos decoded (the first eligible ones): bounded memory; the sum is rescaled by eligible / decoded
    # so the expected loss is the same as decoding every eligible video
    scale = 1.0
    if aux.max_videos and keep.numel() > aux.max_videos:
        scale = keep.numel() / aux.max_videos
        keep = keep[:aux.max_videos]
    starts = (uniform[keep.cpu()] * (frames - n + 1)).long().clamp(max=frames - n)
    latents = _rows(x0[keep].transpose(1, 2), starts, n)  # (K, n, C, h, w)
    param = next(vae.parameters())
    decoded = vae.decode((latents.flatten(0, 1) / vae.config.scaling_factor).to(param.dtype)).sample
    generated = decoded.reshape(len(keep), n, *decoded.shape[1:])
    sub = {k: v[keep.cpu()] if isinstance(v, torch.Tensor) and v.shape[:1] == (batch_size,) else v for k, v in batch.items()}
    return {a.name: a.fn(a, generated, sub, starts, n).sum() * scale / batch_size for a in active}


