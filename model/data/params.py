"""The ``data`` section of params.yaml: what a training sample holds and how the stream is drawn."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from core.shards import safe_name

STAGES = ("stage1", "stage2")


@dataclass(frozen=True)
class DataParams:
    """``data`` section of params.yaml.

    ``stage1_features`` / ``stage2_features`` name feature sidecars (``shards/features/<f>/``); what
    each contributes to a sample is the sidecar's own declaration (``members.json``), checked when a
    :class:`~model.data.ClipWindows` opens the split.
    """

    size: int = 512
    target_frames: int = 14
    motion_frames: int = 2
    audio_context: int = 2  # must equal the audio projection's context_frames
    stage1_features: list[str] = field(default_factory=lambda: ["caption"])
    stage2_features: list[str] = field(
        default_factory=lambda: ["audio_embed", "emotion_text", "emotion_speech", "valence_arousal", "caption"])
    shuffle_buffer: int = 32  # clips
    samples_per_clip: int = 1
    seed: int = 0
    # stage-2 reference frame: "any" frame of the clip (uniform), or one of its "keyframe"s (uniform over the
    # IDR frames, one per GOP: one decoded frame instead of about 9 when it lies outside the window's GOPs)
    stage2_reference: Literal["any", "keyframe"] = "keyframe"
    # frame tensors: float32 in [-1, 1], or uint8 in [0, 255] (a quarter of the bytes between DataLoader workers
    # and to the GPU, and ~30% less loader CPU; convert with model_pixels on the device)
    pixels: Literal["float32", "uint8"] = "float32"
    # with several ranks, every global worker yields the same number of samples per epoch (len(clips) x
    # samples_per_clip // workers), so no rank waits at a collective for one that ran out of data
    equal_rank_epochs: bool = True
    # stage 2: the window's own 16 kHz samples as ``audio`` (T x sample_rate / fps,) float32, the input of the
    # sync loss's audio branch (the SyncNet MFCC windows of the generated frames' driving audio)
    raw_audio: bool = True
    # the per-frame sample entry whose REFERENCE-frame row becomes ``reference_image_embed`` (P,) in every stage-1 and
    # stage-2 sample (the reference image's CLIP embedding, model.image_proj); its feature must be in the stage's
    # features ("clip_image"); "" for none
    reference_image_embed: str = "clip_image"
    # "pixels": frames are decoded and the trainer encodes them with the VAE; "cached": the ``latents`` feature
    # (pipeline/features/latents.py, listed in data.<stage>_features) gives ``latents`` (the window), ``motion_latents``
    # and ``reference_latents``, and no frame is decoded except stage 2's window (the auxiliary losses' ground truth)
    latents: Literal["pixels", "cached"] = "pixels"

    def __post_init__(self) -> None:
        for name in ("stage1_features", "stage2_features"):
            features = getattr(self, name)
            for feature in features:
                safe_name(feature, f"data.{name}: feature")
            if len(set(features)) != len(features):
                raise ValueError(f"data.{name}: feature {next(f for f in features if features.count(f) > 1)!r} is listed twice")
        if self.target_frames < 1 or self.motion_frames < 0 or self.audio_context < 0 or self.size < 8:
            raise ValueError("target_frames >= 1, motion_frames >= 0, audio_context >= 0 and size >= 8 are required")
        if self.stage2_reference not in ("any", "keyframe"):
            raise ValueError(f"stage2_reference must be 'any' or 'keyframe', got {self.stage2_reference!r}")
        if self.latents not in ("pixels", "cached"):
            raise ValueError(f"latents must be 'pixels' or 'cached', got {self.latents!r}")
        if self.pixels not in ("float32", "uint8"):
            raise ValueError(f"pixels must be 'float32' or 'uint8', got {self.pixels!r}")

    def features(self, stage: str) -> list[str]:
        """The features configured for ``stage``."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        return list(self.stage1_features if stage == "stage1" else self.stage2_features)


def load_params(path: Path | str | None = None) -> DataParams:
    """The ``data`` section of params.yaml."""
    from core import params

    return params.load(DataParams, "data", path)
