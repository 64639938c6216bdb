"""Stable Diffusion 1.5 folders: layout, verification, paper-scale configurations, loading.

A diffusers SD 1.5 folder (``stable-diffusion-v1-5`` or the tiny stand-in of ``core.tiny_sd``)::

    unet/          config.json + diffusion_pytorch_model.safetensors (or .bin)
    vae/           config.json + diffusion_pytorch_model.safetensors (or .bin)
    text_encoder/  config.json + model.safetensors (or pytorch_model.bin)
    tokenizer/     vocab.json + merges.txt, or tokenizer.json
    scheduler/     scheduler_config.json (the noise schedule training and sampling share)

The layout and its verification live here, below both ``pipeline`` (the ``weights`` stage builds
or verifies the folder) and ``model`` (:mod:`model.builder` loads every component from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The SD 1.5 UNet (runwayml/stable-diffusion-v1-5 unet/config.json, init arguments only).
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

# The SD 1.5 VAE (vae/config.json).
SD15_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

# CLIP ViT-L/14 text encoder (text_encoder/config.json of SD 1.5).
CLIP_L14_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

# subfolder -> groups of files; each group needs one of its alternatives.
SD15_REQUIRED_FILES: dict[str, list[tuple[str, ...]]] = {
    "unet": [("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")],
    "vae": [("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")],
    "text_encoder": [("config.json",), ("model.safetensors", "pytorch_model.bin")],
    "tokenizer": [("vocab.json", "tokenizer.json"), ("merges.txt", "tokenizer.json")],
    "scheduler": [("scheduler_config.json",)],  # the training noise schedule (model.training.objective)
}


def verify_sd15_folder(folder: str | Path) -> Path:
    """Return ``folder`` as a Path, or raise FileNotFoundError naming every missing file."""
    root = Path(folder)
    missing = []
    for sub, groups in SD15_REQUIRED_FILES.items():
        for alternatives in groups:
            if not any((root / sub / name).is_file() for name in alternatives):
                missing.append(" or ".join(f"{sub}/{name}" for name in alternatives))
    if missing:
        raise FileNotFoundError(f"not an SD 1.5 folder: {root} lacks " + ", ".join(missing))
    return root


def backbone_config(unet_config: Any) -> dict[str, Any]:
    """The init arguments of a ``UNet2DConditionModel`` config (private ``_`` keys dropped), as a plain,
    JSON-friendly dict (tuples become lists)."""
    return {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(unet_config).items() if not k.startswith("_")
    }


def _write_tiny(folder: Path, seed: int) -> None:
    from core.tiny_sd import write_tiny_sd15

    write_tiny_sd15(folder, seed=seed)


def weights_spec() -> Any:
    """The SD 1.5 folder as a :class:`core.weights.ModelSpec` (the ``weights`` stage builds or verifies it)."""
    from core.weights import ModelSpec

    return ModelSpec(
        name="stable-diffusion-v1-5",
        files=("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
               "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json", "text_encoder/model.safetensors",
               "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"),
        make_tiny=_write_tiny,
        repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        # pinned hub commit; source: public code and docs pinning stable-diffusion-v1-5/stable-diffusion-v1-5@<this>
        # (several repositories, fetching its safetensors and configs at it)
        revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
        licence="CreativeML OpenRAIL-M",
    )
