"""The latent cache (``data.latents: cached``): the loader reads the ``latents`` sidecar's window, motion and
reference rows instead of decoding those frames, and the trainer then gives the losses of the pixel path
(the cache holding the VAE's latents of the same frames) without running the VAE encoder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from core.shards import ShardLayout
from model.data import ClipWindows, DataParams
from model.train import train

from .conftest import DATA, write_params


@pytest.fixture(scope="module")
def cached(project, tmp_path_factory):
    """A copy of the project's shards with a latents sidecar: the tiny VAE's latents of every decoded frame."""
    from diffusers import AutoencoderKL

    from core.media import clip_frames
    from core.tiny_sd import write_tiny_sd15  # noqa: F401  (the project's VAE is the tiny SD 1.5's)
    from model.conditioning import encode_latents
    from tests.model.data import toy

    root = tmp_path_factory.mktemp("cached")
    shutil.copytree(project / "shards", root / "shards")
    vae = AutoencoderKL.from_pretrained(str(project / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae")).eval()

    def write(key, i):
        frames = np.stack(list(clip_frames(project / "media" / f"{key.split('__')[1]}.mp4", 0.0, 25, len(i), (32, 32))))
        latents = encode_latents(vae, torch.from_numpy(frames).permute(0, 3, 1, 2)[None].contiguous())[0].transpose(0, 1)
        return [("latents.npy", toy.npy(latents.numpy().astype(np.float16)))]

    toy.add_sidecar(ShardLayout(root / "shards"), "latents", toy.members_of("latents"), write)
    return root, vae


def _params(latents: str) -> DataParams:
    return DataParams(**{**DATA, "latents": latents, "stage1_features": [*DATA["stage1_features"], "latents"],
                         "stage2_features": [*DATA["stage2_features"], "latents"]})


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_the_loader_reads_the_cached_rows_instead_of_decoding(cached, stage):
    from model.conditioning import encode_latents

    root, vae = cached
    kw = {"shard_root": root / "shards", "world_size": 1, "rank": 0}
    pixels = list(ClipWindows(_params("pixels"), stage, **kw))
    latents = list(ClipWindows(_params("cached"), stage, **kw))
    assert [s["key"] for s in pixels] == [s["key"] for s in latents] and len(latents) == 6
    for p, c in zip(pixels, latents):
        assert torch.equal(p["frame_index"], c["frame_index"]) and int(p["reference_index"]) == int(c["reference_index"])
        assert "reference" not in c and "motion_frames" not in c and "target" not in c  # not decoded
        assert ("frames" in c) == (stage == "stage2")  # stage 2 keeps its window: the auxiliary losses' ground truth
        window = p["target"][None] if stage == "stage1" else p["frames"]
        assert c["latents"].shape == (len(window), 4, 16, 16) and c["motion_latents"].shape == (2, 4, 16, 16)
        for got, frames in ((c["latents"], window), (c["motion_latents"], p["motion_frames"]), (c["reference_latents"][None], p["reference"][None])):
            want = encode_latents(vae, frames[None])[0].transpose(0, 1)
            torch.testing.assert_close(got, want, atol=3e-3, rtol=3e-3)
    with pytest.raises(Exception, match="add latents to data.stage1_features"):
        ClipWindows(DataParams(**{**DATA, "latents": "cached"}), "stage1", **kw)


def test_training_on_the_cache_gives_the_pixel_paths_losses_without_the_encoder(project, cached, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    root, _ = cached
    calls = {"n": 0}
    encode = AutoencoderKL.encode

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", counted)
    losses, encodes = {}, {}
    for mode in ("pixels", "cached"):
        path = write_params(project, tmp_path / mode)
        data = yaml.safe_load(path.read_text())
        data["shards"]["root"] = str(root / "shards")
        data["data"] = {**data["data"], "latents": mode, "stage1_features": [*DATA["stage1_features"], "latents"],
                        "stage2_features": [*DATA["stage2_features"], "latents"]}
        path.write_text(yaml.safe_dump(data))
        before = calls["n"]
        losses[mode] = train("stage1", path, max_steps=2, resume="none").losses
        encodes[mode] = calls["n"] - before
    assert losses["cached"] == pytest.approx(losses["pixels"], rel=2e-3)  # float16 storage of the same latents
    assert encodes["pixels"] >= 6 and encodes["cached"] == 0  # 3 encodes a step (reference, target, motion) vs none
