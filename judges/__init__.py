"""Judges: the frozen perception networks that feature extraction, training losses and metrics share.

One home per network (DESIGN 1.1): ``pipeline/features`` computes sidecar features with them,
``model`` uses them in losses and metrics, and neither imports the other. This package stands on
:mod:`core` only (never ``pipeline`` or ``model``) and imports without Ray, DVC or MediaPipe;
importing it, or any judge module, is cheap.

Today's judges:

* :mod:`judges.voice_va`: audio valence/arousal/dominance regression (wav2vec2, Wagner et al.,
  audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim; CC-BY-NC-SA-4.0, research only). E_va.
* :mod:`judges.speech_emotion`: speech emotion recognition (HuBERT, superb/hubert-large-superb-er):
  class probabilities and the pooled hidden embedding per window. E_ser.
* :mod:`judges.text_emotion`: text emotion classification (RoBERTa,
  j-hartmann/emotion-english-distilroberta-base): class probabilities per text. E_t.
* :mod:`judges.clip_text`: the SD 1.5 CLIP text encoder + tokenizer: last hidden states ``(N, 77, D)``
  of a caption (the ReferenceNet's text context).
* :mod:`judges.face_va`: EmoNet (face-analysis/emonet ``emonet_8.pth``, CC-BY-NC-ND-4.0): 8 expression probabilities + valence/arousal of a 256 face crop (emo loss, CCC).
* :mod:`judges.action_units`: LibreFace AU detector (ResNet-18, BP4D, USC research licence): 12 AU probabilities of a 224 aligned crop (AU loss, AU F1).
* :mod:`judges.sync`: SyncNet (joonson/syncnet_python ``syncnet_v2.model``, MIT): offset/confidence (LSE-C/D), soft offset + location (sync loss, eq. 2).
* :mod:`judges.i3d`: StyleGAN-V's FVD detector ``i3d_torchscript.pt`` (TorchScript Kinetics-400 I3D, Apache-2.0 weights): ``(N, 400)`` features of ``(N, 3, 16, H, W)`` [0, 255] clips; ``clips`` samples them (FVD).
* :mod:`judges.clip_image`: CLIP ViT-L/14 vision tower + projection (openai/clip-vit-large-patch14, MIT): ``(N, 768)`` image embeddings (attr-action loss, reference image).
* :mod:`judges.face_3d`: Deep3DFaceRecon R-Net (``epoch_20.pth['net_recon']``, ResNet-50, MIT code): 257 coefficients, ``expression (N, 64)``, of a 224 crop aligned by 5 MediaPipe points (E-FID).
* :mod:`judges.lpips`: LPIPS(net='alex', version='0.1') (torchvision AlexNet + ``v0.1/alex.pth``, BSD): ``(N,)`` distances of [-1, 1] image pairs (LPIPS).
* :mod:`judges.inception`: pytorch-fid's FID Inception-v3 (``pt_inception-2015-12-05-6726825d.pth``, Apache-2.0): pool3 ``(N, 2048)`` of [0, 1] images, resized to 299 inside (FID).

Every network of the paper's losses (eq. 2-5) and Table-1 metrics is here; their ground-truth
targets are cached by the ``sync``, ``face_va``, ``action_units`` and ``clip_image`` features.

The contract, kept plain (no registry, no base class to inherit): a judge module defines

* ``SPEC``: its :class:`core.weights.ModelSpec` (folder name, files, repo, licence and the tiny
  stand-in generator); the pipeline's extractors list it in their ``WEIGHTS``;
* ``load(folder, device) -> Judge``: verifies the folder first (:func:`verify`: a missing or
  incomplete folder is a :class:`core.weights.WeightsError` naming the missing files), then loads
  it; the model is frozen (:func:`freeze`: ``eval()``, no parameter requires grad);
* a typed output: a frozen dataclass of tensors, shapes in its docstring;
* on the judge: ``forward(...)`` (also ``judge(...)``) keeps the graph, so a loss can take
  gradients w.r.t. the INPUT (never the judge's weights), and a ``@torch.no_grad`` convenience
  (``predict`` / ``encode``) that takes raw inputs (numpy windows, strings) and preprocesses them
  exactly as the feature extraction always has (its numbers are part of the cache keys' meaning).

A judge is a plain object holding its modules, not an ``nn.Module``: placing it inside a trained
network can therefore never add its weights to an optimiser or flip it to ``train()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.weights import ModelSpec, is_tiny
from core.weights import verify as _verify


def verify(spec: ModelSpec, folder: str | Path, files: Sequence[str] | None = None) -> Path:
    """``folder`` as a Path, or :class:`core.weights.WeightsError` naming every missing file.

    ``files`` narrows the check to the files this judge reads (default: the spec's files for the
    folder's profile, ``tiny`` when it carries the stand-in marker)."""
    path = Path(folder)
    if files is not None:
        spec = ModelSpec(spec.name, files=tuple(files), repo_id=spec.repo_id, revision=spec.revision, licence=spec.licence)
    return _verify(spec, path, "tiny" if is_tiny(path) else "paper")


def freeze(module: Any) -> Any:
    """``module`` in eval mode with no parameter requiring grad (returned for chaining)."""
    module.eval()
    module.requires_grad_(False)
    return module


def names() -> list[str]:
    """Every judge module of the package, by name (private helpers, ``_*``, left out); no import."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def specs() -> list[ModelSpec]:
    """The ``SPEC`` of every judge (imports each judge module: torch and transformers)."""
    import importlib

    return [importlib.import_module(f"{__name__}.{name}").SPEC for name in names()]
