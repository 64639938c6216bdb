"""The auxiliary losses: on with their judges (tiny stand-ins) and targets, differentiable in x0; off with
one logged line each when the judge module, its weights or its target is missing."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch

from core.weights import WeightsParams, ensure
from model.training import aux
from model.training.params import AuxParams

B, T, S = 2, 8, 32


@pytest.fixture(scope="module")
def judges_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    for name in aux.MODULES.values():
        module = pytest.importorskip(name)
        ensure(module.SPEC, WeightsParams(profile="tiny", dir=str(root)))
    return root / "tiny"


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.rand(B, T, 3, S, S, generator=g) * 2 - 1, "landmarks": torch.rand(B, T, 478, 3, generator=g) * 16 + 8,
            "audio": torch.randn(B, T * 640, generator=g) * 0.1, "face_va": torch.rand(B, T, 2, generator=g) * 2 - 1,
            "action_units": torch.rand(B, T, 12, generator=g),
            "clip_image": torch.nn.functional.normalize(torch.randn(B, T, 16, generator=g), dim=-1)}


ALL = AuxParams(sync=1.0, emo=1.0, au=1.0, attr_action=1.0, frames=8, max_timestep=500)


def test_every_loss_is_on_and_carries_a_gradient_to_x0(judges_root, project):
    from diffusers import AutoencoderKL

    active, status = aux.setup("stage2", ALL, judges_root, _batch(), torch.device("cpu"))
    assert status == dict.fromkeys(aux.NAMES, "on")
    vae = AutoencoderKL.from_pretrained(str(project / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae"))
    vae.requires_grad_(False)
    x0 = torch.randn(B, 4, T, S // 2, S // 2, requires_grad=True)
    terms = aux.compute(active, vae, x0, torch.tensor([10, 900]), _batch(), ALL, torch.tensor([0.0, 0.0]))
    assert set(terms) == set(aux.NAMES) and all(torch.isfinite(v) for v in terms.values())
    for name in aux.NAMES:
        (grad,) = torch.autograd.grad(terms[name], x0, retain_graph=True)
        assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0, name  # sample 1 has t >= max_timestep


def test_missing_judges_weights_or_targets_switch_a_loss_off_with_one_line(judges_root, monkeypatch, caplog):
    batch = _batch()
    del batch["action_units"]
    real = aux.judge_module
    monkeypatch.setattr(aux, "judge_module", lambda name: None if name == "attr_action" else real(name))
    caplog.set_level(logging.WARNING, logger="model.train")
    _, status = aux.setup("stage2", ALL, judges_root.parent / "nowhere", batch, torch.device("cpu"))
    assert status["au"] == "off: the batch has no 'action_units' (add the feature that fills it to data.stage2_features)"
    assert status["attr_action"] == "off: its judge module judges.clip_image does not exist yet"
    assert status["emo"].startswith("off: WeightsError") and status["sync"].startswith("off: WeightsError")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all(" is OFF: " in line for line in lines)
    _, status = aux.setup("stage2", AuxParams(sync=1.0, frames=6), judges_root, batch, torch.device("cpu"))
    assert status["sync"].startswith("off: the soft sync offset needs at least 3 SyncNet windows") and len(caplog.records) == 5
    _, status = aux.setup("stage2", AuxParams(), judges_root, batch, torch.device("cpu"))
    assert status == dict.fromkeys(aux.NAMES, "off: weight 0") and len(caplog.records) == 5  # weight 0: silent, by choice


def test_a_judge_whose_interface_does_not_fit_is_switched_off(judges_root, monkeypatch):
    face_va = importlib.import_module("judges.face_va")

    class Broken:
        def preprocess(self, images, boxes):
            return images

        def forward(self, images):
            raise TypeError("not the interface")

    monkeypatch.setattr(face_va, "load", lambda folder, device: Broken())
    _, status = aux.setup("stage2", AuxParams(emo=1.0, frames=8), judges_root, _batch(), torch.device("cpu"))
    assert status["emo"] == "off: TypeError: not the interface"


def test_the_tiny_decoder_option_decodes_the_same_latents_with_a_gradient(judges_root, project, tmp_path):
    from diffusers import AutoencoderKL, AutoencoderTiny

    from core.tiny_sd import write_tiny_taesd

    vae = AutoencoderKL.from_pretrained(str(project / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae")).requires_grad_(False)
    assert aux.load_decoder(AuxParams(), tmp_path, vae, torch.device("cpu")) is vae
    params = AuxParams(attr_action=1.0, frames=8, max_timestep=500, decoder="tiny", tiny_decoder="taesd-tiny")
    with pytest.raises(FileNotFoundError, match=r"taesd-tiny/config.json not found: train.aux.decoder tiny needs"):
        aux.load_decoder(params, tmp_path, vae, torch.device("cpu"))
    write_tiny_taesd(tmp_path / "taesd-tiny", seed=0)
    tiny = aux.load_decoder(params, tmp_path, vae, torch.device("cpu"))
    assert isinstance(tiny, AutoencoderTiny) and not any(p.requires_grad for p in tiny.parameters())
    x0 = torch.randn(B, 4, T, S // 2, S // 2, requires_grad=True)
    assert tiny.decode(x0[:, :, 0]).sample.shape == vae.decode(x0[:, :, 0].detach()).sample.shape == (B, 3, S, S)
    active, _ = aux.setup("stage2", params, judges_root, _batch(), torch.device("cpu"))
    terms = aux.compute(active, tiny, x0, torch.tensor([10, 20]), _batch(), params, torch.tensor([0.0, 0.0]))
    (grad,) = torch.autograd.grad(terms["attr_action"], x0)
    assert torch.isfinite(terms["attr_action"]) and grad[0].abs().sum() > 0 and grad[1].abs().sum() > 0
    with pytest.raises(ValueError, match="aux.decoder must be vae or tiny"):
        AuxParams(decoder="taesd")


def test_max_videos_decodes_only_the_first_eligible_videos_and_rescales(judges_root, project):
    """Both videos below max_timestep, max_videos 1: only the first is decoded (the decode's memory is per frame), and
    its loss counts for both (eligible / decoded), so the expected loss is unchanged."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(project / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae")).requires_grad_(False)
    every = AuxParams(attr_action=1.0, frames=8, max_timestep=500)
    one = AuxParams(attr_action=1.0, frames=8, max_timestep=500, max_videos=1)
    active, _ = aux.setup("stage2", every, judges_root, _batch(), torch.device("cpu"))
    x0 = torch.randn(B, 4, T, S // 2, S // 2, requires_grad=True)
    t, u = torch.tensor([10, 20]), torch.tensor([0.0, 0.0])
    decoded = []
    hook = vae.decoder.register_forward_hook(lambda m, i, o: decoded.append(o.shape[0]))
    try:
        capped = aux.compute(active, vae, x0, t, _batch(), one, u)["attr_action"]
        assert decoded == [T]  # one video's frames
        alone = aux.compute(active, vae, x0[:1], t[:1], {k: v[:1] for k, v in _batch().items()}, every, u[:1])["attr_action"]
    finally:
        hook.remove()
    assert torch.allclose(capped, alone, atol=1e-6)  # x 2 eligible / 1 decoded, / batch 2 == the first video's own loss
    (grad,) = torch.autograd.grad(capped, x0)
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0
    with pytest.raises(ValueError, match="max_videos"):
        AuxParams(max_videos=-1)
