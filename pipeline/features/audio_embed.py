"""``audio_embed``: wav2vec 2.0 hidden states, one vector per 25 fps video frame (DESIGN 3.2, 6).

Reads the vocals track when ``features.vocals`` is enabled (the sidecar json records
``"audio": "vocals"``), the clip's original track otherwise. The track is normalised to zero mean
and unit variance (as the model's feature extractor does when ``do_normalize``), run through
``Wav2Vec2Model`` with ``output_hidden_states``, and every transformer layer's states (50 Hz) are
linearly interpolated (align_corners) to exactly the clip's video frame count. Output: an npy
sidecar ``audio_embed.npy`` of shape ``(frames, layers, hidden)``, float16.

Batching: models whose feature encoder uses layer norm (``feat_extract_norm: layer``, e.g.
wav2vec2-large-lv60) run the clips of a batch together, zero-padded with an attention mask.
Models with group norm (``wav2vec2-base-960h``, the paper's) must not see padding (the group norm
of the first convolution would mix it into the statistics, and a clip's result would depend on
its batch-mates), so they run one clip per forward pass; the batch then only amortises the call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from core.weights import ModelSpec
from pipeline.features import FeatureParams, torch_device
from pipeline.features._audio import TrackExtractor, read_mono

SAMPLE_RATE = 16000


def make_tiny_wav2vec2(folder: Path, seed: int) -> None:
    """A tiny ``Wav2Vec2Model`` (same class and conv strides: 320 samples per output step) via save_pretrained."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="group", do_stable_layer_norm=False, vocab_size=32)
    Wav2Vec2Model(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": False, "sampling_rate": SAMPLE_RATE}, indent=2) + "\n")


WEIGHTS = (ModelSpec(
    "wav2vec2-base-960h", files=("config.json", "preprocessor_config.json", "model.safetensors"),
    make_tiny=make_tiny_wav2vec2, repo_id="facebook/wav2vec2-base-960h",
    # pinned hub commit; source: public code pinning facebook/wav2vec2-base-960h@<this> for its model.safetensors
    # (several repositories)
    revision="22aad52d435eb6dbaf354bdad9b0da84ce7d6156",
    licence="Apache-2.0",
),)


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("vocals",)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (Member("npy", "float16", ("frames", "layers", "hidden"), "wav2vec2 hidden states, one vector per 25 fps frame",
                  sample="audio_embed", window="audio"),)


@dataclass(frozen=True)
class Params(FeatureParams):
    fps: int = 25  # video frame rate the features are aligned to
    layers: str = "all"  # all: every transformer layer (hidden_states[1:]) | last
    batch_size: int = 4
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda


def interpolate_frames(states: np.ndarray, frames: int) -> np.ndarray:
    """Linear interpolation along axis 0 (align_corners) from ``len(states)`` steps to ``frames``."""
    n = states.shape[0]
    if n == frames:
        return states
    if n == 1:
        return np.repeat(states, frames, axis=0)
    pos = np.linspace(0.0, n - 1, frames)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (states.ndim - 1))
    return states[lo] * (1 - w) + states[hi] * w


class Extractor(TrackExtractor):
    name = "audio_embed"
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        import torch
        from transformers import Wav2Vec2Model

        p: Params = self.params
        self.torch = torch
        self.device = torch_device(p.device)
        folder = Path(self.folders["wav2vec2-base-960h"])
        self.model = Wav2Vec2Model.from_pretrained(folder).to(self.device).eval()
        pre = folder / "preprocessor_config.json"
        self.normalize = json.loads(pre.read_text()).get("do_normalize", True) if pre.is_file() else True
        self.padded_batches = self.model.config.feat_extract_norm == "layer"

    def _signal(self, clip: Clip) -> tuple[str, np.ndarray]:
        which, path = self.track(clip)
        x = read_mono(path, SAMPLE_RATE)
        if self.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        return which, x.astype(np.float32)

    def _forward(self, signals: list[np.ndarray]) -> list[np.ndarray]:
        """Hidden states ``(steps, layers, hidden)`` per signal."""
        torch = self.torch
        if len(signals) > 1 and not self.padded_batches:
            return [s for x in signals for s in self._forward([x])]
        n = max(len(x) for x in signals)
        batch = np.zeros((len(signals), n), np.float32)
        mask = np.zeros((len(signals), n), np.int64)
        for i, x in enumerate(signals):
            batch[i, : len(x)], mask[i, : len(x)] = x, 1
        kwargs = {"attention_mask": torch.from_numpy(mask).to(self.device)} if len(signals) > 1 else {}
        with torch.no_grad():
            out = self.model(torch.from_numpy(batch).to(self.device), output_hidden_states=True, **kwargs)
        layers = out.hidden_states[1:] if self.params.layers == "all" else out.hidden_states[-1:]
        states = torch.stack(layers, dim=2).float().cpu().numpy()  # (B, steps, L, H)
        lengths = self.model._get_feat_extract_output_lengths(torch.tensor([len(x) for x in signals])).tolist()
        return [states[i, : int(k)] for i, k in enumerate(lengths)]

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        loaded = [self._signal(c) for c in clips]
        states = self._forward([x for _, x in loaded])
        results = []
        for clip, out, (which, x), s in zip(clips, outs, loaded, states):
            frames = int(clip.meta.get("encode", {}).get("frames") or round(len(x) / SAMPLE_RATE * self.params.fps))
            emb = interpolate_frames(s, frames).astype(np.float16)
            np.save(out / "emb.npy", emb)
            values = {"frames": frames, "fps": self.params.fps, "layers": int(emb.shape[1]), "hidden": int(emb.shape[2]),
                      "model_steps": int(s.shape[0]), "audio": which, "dtype": "float16"}
            results.append(clip.evolve(files={"audio_embed.npy": str(out / "emb.npy")}, meta={"audio_embed": values}))
        return results
