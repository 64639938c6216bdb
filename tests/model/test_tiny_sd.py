"""The tiny SD 1.5-like folder: layout, real loading classes, determinism, folder verification."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from core.sd15 import verify_sd15_folder
from core.tiny_sd import write_tiny_sd15


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_and_loading(sd15_dir):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert verify_sd15_folder(sd15_dir) == sd15_dir
    for sub in ("unet", "vae", "text_encoder", "scheduler"):
        assert (sd15_dir / sub).is_dir()
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        assert (sd15_dir / "tokenizer" / name).is_file()
    index = json.loads((sd15_dir / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]

    tokenizer = CLIPTokenizer.from_pretrained(str(sd15_dir / "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(str(sd15_dir / "text_encoder")).eval()
    vae = AutoencoderKL.from_pretrained(str(sd15_dir / "vae")).eval()
    unet = UNet2DConditionModel.from_pretrained(str(sd15_dir / "unet")).eval()
    scheduler = PNDMScheduler.from_pretrained(str(sd15_dir / "scheduler"))
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.num_train_timesteps == 1000

    ids = tokenizer(["the man smiles"], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    assert ids.shape == (1, 77)
    assert ids[0, 0].item() == tokenizer.bos_token_id and tokenizer.eos_token_id in ids[0].tolist()
    assert tokenizer.convert_ids_to_tokens(ids[0, 1:2].tolist()) == ["the</w>"]  # a merge applied
    assert text_encoder.config.vocab_size == len(tokenizer)

    with torch.no_grad():
        states = text_encoder(ids).last_hidden_state
        image = torch.rand(1, 3, 32, 32) * 2 - 1
        latents = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        assert latents.shape == (1, 4, 16, 16)
        eps = unet(latents, 10, states).sample
    assert states.shape == (1, 77, 32) and eps.shape == latents.shape


def test_same_seed_same_bytes(tmp_path, sd15_dir):
    again = write_tiny_sd15(tmp_path / "again", seed=0)
    other = write_tiny_sd15(tmp_path / "other", seed=1)
    for rel in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"):
        assert _digest(again / rel) == _digest(sd15_dir / rel), rel
        assert _digest(other / rel) != _digest(sd15_dir / rel), rel


def test_writing_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    write_tiny_sd15(tmp_path / "x", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_verify_names_missing_files(tmp_path, sd15_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sd15_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(FileNotFoundError) as err:
        verify_sd15_folder(broken)
    message = str(err.value)
    assert "unet/diffusion_pytorch_model.safetensors" in message
    assert "tokenizer/vocab.json" in message and "tokenizer/merges.txt" in message
    assert "vae/" not in message
