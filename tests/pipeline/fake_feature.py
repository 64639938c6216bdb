"""A test feature: mean wav2vec2 hidden state of each clip, from a tiny HF model in a local folder.

It uses the real extractor contract (Params, WEIGHTS with a tiny generator in the native
``save_pretrained`` format, ``setup()`` loading once per worker, batched ``process``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.features import Extractor, FeatureParams
from core.shards import Member
from core.weights import ModelSpec


def make_tiny_wav2vec2(folder: Path, seed: int) -> None:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, vocab_size=8)
    Wav2Vec2Model(config).save_pretrained(folder)


WEIGHTS = (ModelSpec("fake_wav2vec2", files=("config.json", "model.safetensors"), make_tiny=make_tiny_wav2vec2,
                     repo_id="example/wav2vec2", revision="0" * 40, licence="test"),)
MEMBERS = (Member("npy", "float16", ("hidden",), "mean wav2vec2 state of the clip"),)


@dataclass(frozen=True)
class Params(FeatureParams):
    fail_key_contains: str = ""  # clips whose key contains this raise (to test rejects)


class Extractor(Extractor):  # noqa: F811 - the module's Extractor, as the contract names it
    name = "fake"
    reads = ("files.wav", "key")  # the key: fail_key_contains
    weights = WEIGHTS

    def setup(self) -> None:
        import torch
        from transformers import Wav2Vec2Model

        self.model = Wav2Vec2Model.from_pretrained(self.folders["fake_wav2vec2"]).eval()
        self.torch = torch
        self.setups = getattr(self, "setups", 0) + 1

    def process(self, clips, outs):
        results = []
        for clip, out in zip(clips, outs):
            if self.params.fail_key_contains and self.params.fail_key_contains in clip.key:
                raise ValueError(f"refusing {clip.key}")
            wav, sr = sf.read(clip.files["wav"], dtype="float32")
            with self.torch.no_grad():
                hidden = self.model(self.torch.from_numpy(wav)[None]).last_hidden_state[0].numpy()
            np.save(out / "emb.npy", hidden.mean(axis=0).astype(np.float16))
            results.append(clip.evolve(files={"fake.npy": str(out / "emb.npy")},
                                       meta={"fake": {"frames_in": int(hidden.shape[0]), "sample_rate": sr}},
                                       scores={"fake_norm": float(np.linalg.norm(hidden.mean(axis=0)))}))
        return results
