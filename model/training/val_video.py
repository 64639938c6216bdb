"""The validation video of a stage-2 run: the first clip of the val split generated from its first frame and
its own audio by the networks being trained, through the inference code (:mod:`model.inference`), written
with its audio as ``<out_dir>/<stage>/videos/step-N.mp4`` (inside the stage's DVC output, so it is
pushed and pulled with the checkpoints).

Generation draws from its own generator (seeded by the clip's name) and never touches the global RNG
state, so a run with validation videos has the same losses as one without (and resumes to the bit).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("model.train")


def write(nets: dict[str, Any], frozen: Any, data: Any, shard_root: str, folder: Path, step: int, frames: int,
          steps: int) -> Path | None:
    """Generate and write the video; its path (None when the val split has no clip)."""
    from diffusers import DDIMScheduler

    from model.data.clips import ClipFrames, iter_clips
    from model.inference.params import InferenceParams
    from model.inference.pipeline import TalkingFacePipeline
    from model.inference.video import write_video

    clip = next(iter_clips(data, "val", shard_root, limit=1), None)
    if clip is None:
        return None
    pipe = TalkingFacePipeline(vae=frozen.vae, text_encoder=None, tokenizer=None, unet=nets["unet"],
                               reference_net=nets["reference_net"], audio_proj=nets["audio_proj"],
                               emotion_embed=nets["emotion_embed"], scheduler=DDIMScheduler.from_config(frozen.scheduler.config),
                               a2m=frozen.a2m, image_proj=nets.get("image_proj"))
    n = min(frames, clip.frames)
    reference = torch.from_numpy(clip.decode_frames(data.size, 1)[0]).permute(2, 0, 1).contiguous()
    modes = {name: net.training for name, net in nets.items()}
    try:
        for net in nets.values():
            net.eval()
        out = pipe(ClipFrames(clip, n), reference, InferenceParams(steps=steps), frames_per_clip=data.target_frames,
                   motion_frames=data.motion_frames, progress=False, null_text_states=frozen.null_text_states)
    finally:
        for name, net in nets.items():
            net.train(modes[name])
    folder.mkdir(parents=True, exist_ok=True)
    path = write_video(folder / f"step-{step}.mp4", out.frames, fps=round(clip.fps), audio=clip.write_wav(folder, n))
    (folder / f"{clip.key}.wav").unlink(missing_ok=True)
    log.info("validation video: %s (%s, %d frames, %d DDIM steps)", path, clip.key, n, steps)
    return path
