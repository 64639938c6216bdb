"""CLIP image judge: strict loading of the ViT-L/14 vision tower, embeddings, the differentiable preprocessing, folder errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.weights import WeightsError
from judges import clip_image

FIXTURE = Path(__file__).parent / "fixtures" / "clip_vit_l14_vision_keys.json"
#: openai/clip-vit-large-patch14's preprocessor_config.json as published (legacy CLIPFeatureExtractor keys)
PUBLISHED_PREPROCESSOR = {
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}


@pytest.fixture(scope="module")
def folder(tiny_folder):
    return tiny_folder(clip_image.SPEC)


@pytest.fixture(scope="module")
def judge(folder):
    return clip_image.load(folder, "cpu")


@pytest.fixture(scope="module")
def real_image(real_dir) -> np.ndarray:
    from PIL import Image

    path = real_dir / "images" / "i01_macron_512.png"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # a writable copy


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_spec_is_the_published_model():
    spec = clip_image.SPEC
    assert spec.repo_id == "openai/clip-vit-large-patch14" and spec.licence == "MIT"
    assert spec.files == ("config.json", "preprocessor_config.json", "model.safetensors")
    assert spec.make_tiny is clip_image.make_tiny_clip_image


def test_fixture_is_what_transformers_builds_for_the_published_vision_config():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    fx = _fixture()
    assert "meta device" in fx["_derived_from"]
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**fx["vision_config"]))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == fx["keys"]
    assert sum(v.numel() for v in model.state_dict().values()) == fx["parameters"] == 303_966_208
    assert fx["keys"]["visual_projection.weight"] == [768, 1024]
    assert fx["keys"]["vision_model.embeddings.position_embedding.weight"] == [257, 1024]  # (224 / 14)^2 + CLS


def test_a_full_size_checkpoint_in_the_published_layout_loads_strictly(tmp_path):
    """Random tensors under every fixture key (plus text-tower keys, as the full CLIP checkpoint has)
    in a full-CLIP config.json folder: ``load`` must take each one, none initialised by itself."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig

    fx = _fixture()
    ckpt = tmp_path / "clip-vit-large-patch14"
    ckpt.mkdir()
    CLIPConfig(vision_config=fx["vision_config"], projection_dim=768, architectures=["CLIPModel"]).save_pretrained(ckpt)
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "clip"
    (ckpt / "preprocessor_config.json").write_text(json.dumps(PUBLISHED_PREPROCESSOR))
    gen = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(shape, generator=gen) for k, shape in fx["keys"].items()}
    tensors["text_projection.weight"] = torch.randn(768, 768, generator=gen)
    tensors["logit_scale"] = torch.tensor(2.6592)
    save_file(tensors, str(ckpt / "model.safetensors"))
    judge = clip_image.load(ckpt, "cpu")
    state = judge.model.state_dict()
    assert set(state) == set(fx["keys"])
    for k, v in state.items():
        assert torch.equal(v, tensors[k]), k
    del state, tensors
    p = judge.processor
    assert (p.size.shortest_edge, p.crop_size.height, p.crop_size.width, int(p.resample)) == (224, 224, 224, 3)
    assert judge.preprocess(torch.rand(1, 3, 300, 240)).shape == (1, 3, 224, 224)


def test_a_checkpoint_missing_a_vision_tensor_is_refused(folder, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["visual_projection.weight"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing: visual_projection.weight"):
        clip_image.load(broken, "cpu")


def test_tiny_folder_has_the_published_layout(folder, judge):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "clip" and {"text_config", "vision_config"} <= set(config)
    assert type(judge.processor).__name__ == "CLIPImageProcessorPil"
    assert judge.processor.size.shortest_edge == 32 and judge.model.config.projection_dim == 16
    assert not judge.model.training and not any(p.requires_grad for p in judge.model.parameters())


def test_encode_a_real_image(judge, real_image):
    assert real_image.shape == (512, 512, 3)
    out = judge.encode([real_image, real_image[::-1]])
    assert isinstance(out, clip_image.ClipImage)
    assert out.embeds.shape == (2, 16) and out.embeds.dtype == torch.float32 and torch.isfinite(out.embeds).all()
    unit = judge.encode([real_image], normalize=True).embeds
    assert torch.allclose(unit.norm(dim=-1), torch.ones(1)) and torch.allclose(unit[0], out.embeds[0] / out.embeds[0].norm(), atol=1e-6)
    assert torch.allclose(judge.encode([real_image]).embeds[0], out.embeds[0], atol=1e-5)  # batch-independent
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.embeds = out.embeds  # type: ignore[misc]


def test_torch_preprocessing_matches_the_processor(judge, real_image):
    from transformers import CLIPImageProcessorPil

    for processor in (judge.processor, CLIPImageProcessorPil.from_dict(PUBLISHED_PREPROCESSOR)):
        twin = clip_image.ClipImageJudge(judge.model, processor, judge.device)
        for image in (real_image, real_image[40:, :]):  # square, and 472 x 512 (short side resized, centre crop)
            ref = torch.from_numpy(np.asarray(processor(images=[image], return_tensors="np").pixel_values))
            ours = twin.preprocess(_as_tensor(np.ascontiguousarray(image)))
            assert ours.shape == ref.shape
            diff = (ours - ref).abs()
            assert diff.max() < 0.05 and diff.mean() < 0.01, (processor.size, image.shape, float(diff.max()), float(diff.mean()))


def test_gradients_reach_the_generated_frames(judge, real_image):
    """An eq. 5 style loss: 1 - cos of the image embeddings of generated vs ground-truth frames."""
    gt = judge.encode([real_image], normalize=True).embeds
    x = _as_tensor(real_image).repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    x.requires_grad_(True)
    out = judge(x, normalize=True)
    assert out.embeds.shape == (2, 16) and torch.isfinite(out.embeds).all()
    assert torch.nn.functional.cosine_similarity(out.embeds[:1], gt).item() > 0.99  # the torch path agrees with encode
    loss = (1 - torch.nn.functional.cosine_similarity(out.embeds, gt.expand(2, -1))).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in judge.model.parameters())
    with pytest.raises(ValueError, match="RGB"):
        judge(x[:, :1])


def test_tiny_stand_in_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        clip_image.make_tiny_clip_image(tmp_path / name, seed)
        weights[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert all(torch.equal(v, weights["b"][k]) for k, v in weights["a"].items())
    assert not torch.equal(weights["a"]["visual_projection.weight"], weights["c"]["visual_projection.weight"])


def test_missing_or_incomplete_folder_names_the_missing_file(folder, without, tmp_path):
    with pytest.raises(WeightsError, match="model.safetensors"):
        clip_image.load(without(folder, "model.safetensors"), "cpu")
    no_processor = tmp_path / "no-processor"
    shutil.copytree(folder, no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(WeightsError, match="preprocessor_config.json"):
        clip_image.load(no_processor, "cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        clip_image.load(tmp_path / "nowhere", "cpu")
