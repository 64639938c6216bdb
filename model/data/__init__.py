"""Training samples streamed from the selected clips and their feature sidecars (paper section 4).

A :class:`ClipWindows` dataset reads the split list ``<shards>/splits/<split>.jsonl`` (written by
``select``) and streams each clip shard together with the sidecars of the configured features,
zipped by key (:func:`core.shards.zip_sidecars`; every path from :class:`core.shards.ShardLayout`).
Each selected clip gives ``samples_per_clip`` samples; a sample's frame choice comes from a generator
seeded with ``(seed, epoch, worker, position)``, so the stream is reproducible and resumable.

Stage 1 sample (image pairs with motion frames)::

    reference      (3, S, S) float32 in [-1, 1]   a random frame of the clip (not the target)
    target         (3, S, S)                      a random frame t
    motion_frames  (M, 3, S, S)                   frames t-M .. t-1 (indices clamped to the clip)
    text_states    (77, D) float32                caption's CLIP text states (if caption is configured)
    reference_image_embed (P,) float32            the reference frame's CLIP image embedding (the clip_image row of
                                                  ``reference_index``, ``data.reference_image_embed``; model.image_proj)

Stage 2 sample (T = ``target_frames`` = 14, M = ``motion_frames`` = 2, c = ``audio_context``)::

    frames          (T, 3, S, S) float32 in [-1, 1]  frames s .. s+T-1, s uniform in [M, F-T]
    motion_frames   (M, 3, S, S)                     frames s-M .. s-1
    reference       (3, S, S)                        a random keyframe (or frame: stage2_reference) of the clip
    audio_embed     (T + 2c, L, H) float32            wav2vec2 states of frames s-c .. s+T+c-1, clamped to
                                                     [0, F-1] as ``frame_windows`` clamps: AudioProjection
                                                     output rows c .. c+T-1 belong to ``frames``
    text_emotion    (C_t,) float32                    E_t: mean per-frame text-emotion probabilities of the window
    speech_emotion  (C_ser,) float32                  E_ser: mean per-frame speech-emotion probabilities
    valence_arousal (T, 2) float32                    per-frame valence, arousal: E_va (eq. 1, resampled to K
                                                     segments with ``fit_segments``) and the emo-loss target
    landmarks       (T, 478, 3) float32               MediaPipe landmarks of the window in output pixels
    text_states     (77, D) float32                   caption's CLIP text states
    audio           (T x 640,) float32                the window's own 16 kHz samples (``raw_audio``; the sync
                                                     loss's audio input), zero-padded past the clip's end

The feature entries are not listed here but declared by the extractors: each sidecar folder's
``members.json`` (written by the extract stage from the extractor's ``MEMBERS``) names the members
that fill a sample entry and how they are cut (:mod:`model.data.features`). The defaults of
``data.stage2_features`` give the entries above; a new feature needs only an extractor declaring
``MEMBERS`` and its name in ``data.<stage>_features``. Feature names are checked against the
sidecars present when a ``ClipWindows`` opens (:class:`MissingFeatureError` naming the key and the
``dvc repro extract@<f>-<ds>`` fix).

With ``latents: cached`` (the ``latents`` feature in the stage's list) samples carry ``latents`` (the window's
rows, (T, C, h, w); stage 1: (1, C, h, w)), ``motion_latents`` (M, C, h, w) and ``reference_latents`` (C, h, w) from
that sidecar, and ``reference``, ``motion_frames`` and ``target`` are not decoded (stage 2 keeps ``frames``).

With ``pixels: uint8`` the frame tensors (``frames``, ``motion_frames``, ``reference``, ``target``) are
uint8 RGB in [0, 255] instead; :func:`model_pixels` turns them into the float [-1, 1] frames on the device.

Every sample also holds ``dataset``, ``key``, the frame indices (``frame_index`` (T,),
``motion_index`` (M,), ``reference_index``, ``audio_index`` (T+2c,)) and ``worker``/``position``
(for :class:`LoaderState`). S is ``size``: frames are resized (area) when the clips differ.

Sharding: the global workers are (rank, DataLoader worker) pairs. With at least as many shards as
global workers each worker streams its own shards (seeded shard order per epoch); otherwise each
reads all and keeps every world-th clip. With several ranks and ``equal_rank_epochs`` (default) every
global worker yields exactly :meth:`ClipWindows.epoch_samples` samples per epoch: one with more clips
stops early (a different subset each epoch, as the shard order is reshuffled), one with fewer goes
round its clips again with new windows. Clips pass a seeded shuffle buffer. Resume: feed every
batch to :class:`LoaderState` and give its ``state_dict()`` back to :meth:`ClipWindows.load_state_dict`;
each worker then skips (without decoding) the positions it already delivered. The order depends
on seed, epoch and the number of global workers.

Decoding uses OpenCV's FFmpeg backend (no torchvision). :class:`ClipVideo` (:mod:`core.mp4`) indexes a
clip's mp4 once and decodes each request from the IDR frame of its GOP, leaving out unwanted
non-reference frames; ``reference`` is an IDR frame by default (``stage2_reference``). Files it cannot
index fall back to OpenCV's frame seek (:func:`decode_frames`).

Modules: :mod:`.params` (``DataParams``, ``load_params``), :mod:`.windows` (frame choices),
:mod:`.pixels` (frame tensors), :mod:`.features` (sidecar declarations -> sample entries),
:mod:`.dataset` (``ClipWindows``), :mod:`.state` (``LoaderState``).
"""

from __future__ import annotations

from core.mp4 import ClipVideo, decode_frames

from .dataset import ClipWindows, read_split
from .features import MissingFeatureError
from .params import STAGES, DataParams, load_params
from .pixels import model_pixels, to_tensor
from .state import LoaderState
from .windows import stage1_indices, stage2_indices

__all__ = ["STAGES", "ClipVideo", "ClipWindows", "DataParams", "LoaderState", "MissingFeatureError", "decode_frames",
           "load_params", "model_pixels", "read_split", "stage1_indices", "stage2_indices", "to_tensor"]
