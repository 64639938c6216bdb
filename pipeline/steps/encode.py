"""``encode``: cut one clip from its source: constant 25 fps H.264 video and 16 kHz mono PCM audio.

Video: one ffmpeg process per clip decodes the source from the keyframe before the clip start
(accurate input seek), resamples the timeline to constant ``fps`` with the ``fps`` filter (which
handles variable-frame-rate sources by timestamp, not by frame count), pads at most a couple of
frames at the very end (rounding), and encodes exactly ``frames`` frames with ``+faststart`` so
the mp4 decodes from a pipe. No intermediate files, one decode and one encode per clip.

Audio: the clip's slice of the source's aligned, normalised 16 kHz track (see ``audio``), exactly
``frames * sample_rate / fps`` samples, written as 16-bit PCM wav. So audio and video of a clip
have the same duration by construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.clip import Clip
from pipeline.media import BITEXACT, ffprobe, run_ffmpeg
from pipeline.steps import Resources, Step


@dataclass(frozen=True)
class EncodeParams:
    """``steps.encode``."""

    fps: int = 25
    crf: int = 18
    preset: str = "fast"
    gop: int = 25  # keyframe interval: short GOPs make random 14-frame windows cheap to decode
    threads: int = 1  # x264 output depends on the thread count: fixed for byte-identical shards
    max_side: int = 0  # downscale so the longer side is at most this (0: keep the source size)


class Encode(Step):
    name = "encode"
    version = "1"
    resources = Resources(cpus=1)

    def __init__(self, params: EncodeParams | None = None):
        super().__init__(params or EncodeParams())

    def __call__(self, clip: Clip, out: Path) -> Clip:
        p = self.params
        probe, am, seg = clip.meta["probe"], clip.meta["audio"], clip.meta["segment"]
        frames = int(seg["frames"])
        sr = int(am["sample_rate"])
        if (frames * sr) % p.fps:
            raise ValueError(f"{frames} frames at {p.fps} fps is not a whole number of samples at {sr} Hz")

        # Video: seek on the container clock (ffmpeg's -ss counts from the format start time).
        seek = float(probe["video_start"]) - float(probe.get("format_start", 0.0)) + clip.start
        vf = [f"fps=fps={p.fps}:start_time=0:round=near", "tpad=stop_mode=clone:stop=2"]
        if p.max_side:
            vf.append(f"scale='if(gte(iw,ih),min({p.max_side},iw),-2)':'if(gte(iw,ih),-2,min({p.max_side},ih))'")
        vf += ["scale=trunc(iw/2)*2:trunc(ih/2)*2", "setsar=1", "format=yuv420p"]
        mp4 = out / "video.mp4"
        run_ffmpeg(
            ["-ss", f"{max(seek, 0.0):.6f}", "-i", clip.source, "-map", "0:v:0", "-an", "-sn", "-dn",
             "-vf", ",".join(vf), "-frames:v", str(frames), "-c:v", "libx264", "-preset", p.preset, "-crf", str(p.crf),
             "-g", str(p.gop), "-threads", str(p.threads), "-x264-params", "threads=%d" % p.threads,
             "-movflags", "+faststart", *BITEXACT, str(mp4)],
            what=clip.source_rel,
        )
        stream = ffprobe(mp4)["streams"][0]
        got = int(stream.get("nb_frames", 0))
        if got != frames:
            raise ValueError(f"{clip.source_rel}: encoded {got} frames, expected {frames} (source video ends early?)")

        # Audio: the exact slice of the aligned track.
        n = frames * sr // p.fps
        first = int(round((clip.start - float(am["offset_s"])) * sr))
        track = np.load(clip.files["audio_npy"], mmap_mode="r")
        pcm = np.zeros(n, dtype=np.float32)
        avail = np.asarray(track[max(first, 0) : first + n])
        pcm[max(-first, 0) : max(-first, 0) + avail.size] = avail
        wav = out / "audio.wav"
        sf.write(wav, np.clip(pcm, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")

        meta = {
            "fps": p.fps, "frames": frames, "width": int(stream["width"]), "height": int(stream["height"]),
            "video_codec": "h264", "crf": p.crf, "preset": p.preset, "gop": p.gop,
            "sample_rate": sr, "samples": n, "seek_s": round(seek, 6),
        }
        files = {k: v for k, v in clip.files.items() if k != "audio_npy"}
        hashes = {k: v for k, v in clip.file_hashes.items() if k != "audio_npy"}
        files.update(mp4=str(mp4), wav=str(wav))
        return dataclasses.replace(clip, files=files, file_hashes=hashes, meta={**clip.meta, "encode": meta})
