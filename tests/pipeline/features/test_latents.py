"""The latent cache: ``extract@latents`` writes the scaled VAE posterior mean of every frame of a real clip,
resized to ``features.latents.size``, with the tiny SD 1.5 stand-in."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from core.clip import Clip
from core.shards import ShardParams, iter_samples, read_members, write_clip_shards
from pipeline import extract

REAL = Path(__file__).resolve().parents[4] / "shared" / "data" / "real" / "videos" / "v01_frontal_hdtf_katiehill_25fps_a16k.mp4"
FRAMES = 20


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if not REAL.is_file():
        pytest.skip(f"real clips not found at {REAL.parent} (../shared/data/real)")
    root = tmp_path_factory.mktemp("latents")
    mp4, wav = root / "c0.mp4", root / "c0.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(REAL), "-frames:v", str(FRAMES), "-an", "-vf", "scale=128:128",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-movflags", "+faststart", str(mp4)],
                   check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(REAL), "-t", f"{FRAMES / 25}", "-vn", "-ac", "1", "-ar", "16000",
                    "-c:a", "pcm_s16le", str(wav)], check=True)
    meta = {"encode": {"frames": FRAMES, "fps": 25, "sample_rate": 16000, "width": 128, "height": 128}}
    clip = Clip(key="toy__c0__0000000", dataset="toy", source="c0.mp4", source_rel="c0.mp4", source_hash="0" * 64, start=0.0,
                duration=FRAMES / 25, meta=meta, files={"mp4": str(mp4), "wav": str(wav)})
    write_clip_shards(root / "shards" / "clips" / "toy", [clip], [], ShardParams())
    params = {"runner": {"local": True, "progress": False}, "cache": {"dir": "cache"}, "shards": {"root": "shards"},
              "weights": {"profile": "tiny", "dir": "weights", "backbone": False},
              "features": {"latents": {"size": 64, "frame_batch": 8, "device": "cpu"}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def test_every_frame_is_the_scaled_posterior_mean_of_the_resized_frame(project):
    import cv2
    import torch
    from diffusers import AutoencoderKL

    from core.media import clip_frames

    report = extract.run("latents", "toy", root=project, params_file=project / "params.yaml")
    assert report["kept"] == 1 and report["tiny_weights"] is True
    side = project / "shards" / "features" / "latents" / "toy"
    (sample,) = list(iter_samples(side))
    (member,) = read_members(side)
    assert member.name == "latents.npy" and member.sample == "latents" and member.window == "frames"
    latents = np.load(io.BytesIO(sample["latents.npy"]))
    assert latents.shape == (FRAMES, 4, 32, 32) and latents.dtype == np.float16  # the tiny VAE halves 64 px
    member.check(sample["latents.npy"], FRAMES)
    values = json.loads(sample["json"])["values"]
    assert values["size"] == 64 and values["scaling_factor"] == pytest.approx(0.18215)
    # the same frames (ffmpeg, ingest's numbering), resized (area) and encoded here
    frames = np.stack(list(clip_frames(project / "c0.mp4", 0.0, 25, FRAMES, (128, 128))))
    small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames[[0, 7, FRAMES - 1]]])
    vae = AutoencoderKL.from_pretrained(str(project / "weights" / "tiny" / "stable-diffusion-v1-5" / "vae"))
    with torch.no_grad():
        want = vae.encode(torch.from_numpy(small).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean * 0.18215
    np.testing.assert_allclose(latents[[0, 7, FRAMES - 1]].astype(np.float32), want.numpy(), atol=2e-3, rtol=2e-3)
    assert not np.allclose(latents[0], latents[FRAMES - 1], atol=1e-2)  # the frames differ, so do their latents
