"""A tiny, seeded, randomly initialised Stable Diffusion 1.5-like folder.

``write_tiny_sd15(out_dir, seed=0)`` writes the same layout and on-disk formats as a real
``stable-diffusion-v1-5`` folder, with the same classes, so every loading path is the real one:

```
out_dir/
  model_index.json
  unet/          UNet2DConditionModel      config.json + diffusion_pytorch_model.safetensors
  vae/           AutoencoderKL             config.json + diffusion_pytorch_model.safetensors
  text_encoder/  CLIPTextModel             config.json + model.safetensors
  tokenizer/     CLIPTokenizer             vocab.json + merges.txt + tokenizer.json + tokenizer_config.json
  scheduler/     PNDMScheduler             scheduler_config.json (the SD 1.5 noise schedule)
```

The tokenizer is a byte-level BPE built offline from a ``vocab.json`` (the 256 byte symbols, their
end-of-word forms, a few merges and the two special tokens) and a ``merges.txt`` written here.
Nothing is downloaded. The weights prove the machinery, not the quality.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from core.tiny import bytes_to_unicode, write_bpe

# Small enough for CPU tests; the same block kinds as SD 1.5 (cross-attention down/up blocks, a
# plain down/up block, a cross-attention mid block), so every code path of the real model runs.
TINY_UNET_CONFIG: dict = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "attention_head_dim": 2,
    "cross_attention_dim": 32,
    "norm_num_groups": 32,
}

TINY_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}

TINY_TEXT_CONFIG: dict = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}

# The SD 1.5 scheduler configuration (PNDM, scaled-linear betas, epsilon prediction).
SD15_SCHEDULER_CONFIG: dict = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# A few merges so that the BPE path is exercised (pairs of symbols; end-of-word forms end in </w>).
_TINY_MERGES = [
    ("t", "h"),
    ("th", "e</w>"),
    ("a", "n"),
    ("an", "d</w>"),
    ("i", "n"),
    ("in", "g</w>"),
    ("o", "n</w>"),
    ("e", "r</w>"),
    ("s", "m"),
    ("i", "l"),
    ("il", "e</w>"),
    ("sm", "ile</w>"),
]


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The tiny CLIP BPE vocabulary (token -> id) and its merges, in CLIP's id order."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in _TINY_MERGES] + [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}, list(_TINY_MERGES)


def _write_tokenizer(out_dir: Path, max_length: int) -> "object":
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocab_and_merges()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        write_bpe(src, vocab, merges)
        # local_files_only explicitly: transformers writes it into tokenizer_config.json, as true when HF_HUB_OFFLINE
        # is set and false otherwise, so the folder's bytes would follow the shell's environment
        tokenizer = CLIPTokenizer.from_pretrained(str(src), model_max_length=max_length, local_files_only=True)
        tokenizer.save_pretrained(str(out_dir))
        # Keep the two source files too: a real SD 1.5 tokenizer folder has them.
        for name in ("vocab.json", "merges.txt"):
            (out_dir / name).write_bytes((src / name).read_bytes())
    return tokenizer


def write_tiny_sd15(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny SD 1.5-like diffusers folder to ``out_dir`` and return its path.

    Deterministic: the same ``seed`` writes byte-identical weights. The global torch RNG state is
    left untouched (a forked RNG is used).
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _write_tokenizer(out / "tokenizer", max_length=TINY_TEXT_CONFIG["max_position_embeddings"])
    vocab, _ = tiny_vocab_and_merges()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**TINY_VAE_CONFIG)
        torch.manual_seed(seed + 2)
        text_config = CLIPTextConfig(
            vocab_size=len(vocab),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TINY_TEXT_CONFIG,
        )
        text_encoder = CLIPTextModel(text_config)

    unet.save_pretrained(out / "unet")
    vae.save_pretrained(out / "vae")
    text_encoder.save_pretrained(out / "text_encoder")
    scheduler_config = {k: v for k, v in SD15_SCHEDULER_CONFIG.items() if not k.startswith("_")}
    PNDMScheduler.from_config(scheduler_config).save_pretrained(out / "scheduler")

    import diffusers

    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n", encoding="utf-8")
    return out


# A TAESD-layout AutoencoderTiny matching the tiny VAE above (one 2x up/down sampling, 4 latent channels): the
# stand-in of the real ``madebyollin/taesd`` folder (the cheaper decoder of the auxiliary losses, train.aux.decoder).
TINY_TAESD_CONFIG: dict = {
    "encoder_block_out_channels": [16, 16],
    "decoder_block_out_channels": [16, 16],
    "num_encoder_blocks": [1, 1],
    "num_decoder_blocks": [1, 1],
    "latent_channels": 4,
}


def write_tiny_taesd(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny seeded ``AutoencoderTiny`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors``, the
    layout of ``madebyollin/taesd``) that decodes the tiny VAE's latents; returns its path."""
    from diffusers import AutoencoderTiny

    out = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        AutoencoderTiny(**TINY_TAESD_CONFIG).save_pretrained(out)
    return out


if __name__ == "__main__":  # pragma: no cover - convenience entry point
    import sys

    print(write_tiny_sd15(sys.argv[1] if len(sys.argv) > 1 else "weights/sd15-tiny"))
