"""``encode``: cut one clip from its source: constant 25 fps H.264 video and 16 kHz mono PCM audio.

Video: one ffmpeg process per clip decodes the source from the keyframe before the clip start
(accurate input seek), resamples the timeline to constant ``fps`` with the ``fps`` filter (which
handles variable-frame-rate sources by timestamp, not by frame count), pads at most a couple of
frames at the very end (rounding), and encodes exactly ``frames`` frames with ``+faststart`` so
the mp4 decodes from a pipe. No intermediate files, one decode and one encode per clip.

With the ``face`` step before it, the video is the face crop instead: frames decoded the same way,
each frame's crop box (``meta["face"]["crop"]``) cut out and resized to ``size`` x ``size`` in numpy/
OpenCV, padded black outside the frame, and piped to the same x264 settings.

Audio: the clip's slice of the source's aligned, normalised 16 kHz track (see ``audio``), exactly
``frames * sample_rate / fps`` samples, written as 16-bit PCM wav. So audio and video of a clip
have the same duration by construction.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.clip import Clip
from core.media import BITEXACT, Deadline, MediaError, clip_frames, ffprobe, run_ffmpeg
from pipeline.steps import Resources, Step


@dataclass(frozen=True)
class EncodeParams:
    """``steps.encode``."""

    fps: int = 25
    crf: int = 18
    preset: str = "fast"
    gop: int = 25  # keyframe interval: short GOPs make random 14-frame windows cheap to decode
    # x264 --tune ("" for none). fastdecode (CAVLC, no deblocking, no weighted prediction) halves the
    # training loader's decode time for ~12% larger files at the same CRF, and encodes no slower (bench/README.md)
    tune: str = "fastdecode"
    threads: int = 1  # decoder and x264 threads per worker; x264 output depends on it: fixed for byte-identical shards
    max_side: int = 0  # without the face step: downscale so the longer side is at most this (0: keep the source size)

    def __post_init__(self) -> None:
        tunes = ("", "film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim")
        if self.tune not in tunes:
            raise ValueError(f"tune: {self.tune!r} is not an x264 tune (one of {', '.join(repr(t) for t in tunes)})")


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
        mp4 = out / "video.mp4"
        face = clip.meta.get("face")
        if face is not None and face.get("crop"):
            self._encode_crop(clip, seek, frames, face, mp4)
        else:
            self._encode_frame(clip, seek, frames, mp4)
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
            "crop": "face" if face is not None and face.get("crop") else None,
            "fps": p.fps, "frames": frames, "width": int(stream["width"]), "height": int(stream["height"]),
            "video_codec": "h264", "crf": p.crf, "preset": p.preset, "tune": p.tune, "gop": p.gop,
            "sample_rate": sr, "samples": n, "seek_s": round(seek, 6),
        }
        files = {k: v for k, v in clip.files.items() if k != "audio_npy"}
        hashes = {k: v for k, v in clip.file_hashes.items() if k != "audio_npy"}
        files.update(mp4=str(mp4), wav=str(wav))
        return dataclasses.replace(clip, files=files, file_hashes=hashes, meta={**clip.meta, "encode": meta})

    def _x264(self) -> list[str]:
        p = self.params
        tune = ["-tune", p.tune] if p.tune else []
        return ["-c:v", "libx264", "-preset", p.preset, *tune, "-crf", str(p.crf), "-g", str(p.gop), "-threads", str(p.threads),
                "-x264-params", "threads=%d" % p.threads, "-movflags", "+faststart", *BITEXACT]

    def _encode_frame(self, clip: Clip, seek: float, frames: int, mp4: Path) -> None:
        """The whole frame (no face step): one ffmpeg process decodes, resamples and encodes."""
        p = self.params
        vf = [f"fps=fps={p.fps}:start_time=0:round=near", "tpad=stop_mode=clone:stop=2"]
        if p.max_side:
            vf.append(f"scale='if(gte(iw,ih),min({p.max_side},iw),-2)':'if(gte(iw,ih),-2,min({p.max_side},ih))'")
        vf += ["scale=trunc(iw/2)*2:trunc(ih/2)*2", "setsar=1", "format=yuv420p"]
        run_ffmpeg(
            # Decoder and filters on one thread too: the step declares one CPU, and with N workers on N
            # cores, each ffmpeg's default thread pools would oversubscribe them (same pixels either way).
            ["-threads", str(p.threads), "-filter_threads", "1", "-ss", f"{max(seek, 0.0):.6f}", "-i", clip.source,
             "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", ",".join(vf), "-frames:v", str(frames), *self._x264(), str(mp4)],
            what=clip.source_rel,
        )

    def _encode_crop(self, clip: Clip, seek: float, frames: int, face: dict, mp4: Path) -> None:
        """The face crop: decode at source size (same seek and fps filter), cut each frame's box with
        sub-pixel accuracy (``cv2.warpAffine``, bilinear; boxes much larger than the output are first
        area-downscaled), black padding outside the frame, and pipe ``size`` x ``size`` frames to x264."""
        import cv2

        cv2.setNumThreads(1)
        p = self.params
        size = int(face["size"])
        boxes = np.asarray(face["crop"], dtype=np.float64)
        src_w, src_h = (int(v) for v in face["source_size"])
        # One area downscale of the whole frame when every box is more than twice the output (bilinear would alias).
        shrink = max(1, int(np.min(boxes[:, 2]) // (2 * size)))
        dec_w, dec_h = max(2, src_w // shrink), max(2, src_h // shrink)
        fx, fy = dec_w / src_w, dec_h / src_h
        cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{size}x{size}", "-framerate", str(p.fps), "-i", "pipe:0", "-frames:v", str(frames),
               "-vf", "format=yuv420p", *self._x264(), str(mp4)]
        with tempfile.TemporaryFile() as err:
            enc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            with Deadline(enc, clip.source_rel) as deadline:
                try:
                    for i, frame in enumerate(clip_frames(clip.source, seek, p.fps, frames, (dec_w, dec_h), what=clip.source_rel)):
                        cx, cy, side = boxes[i, 0] * fx, boxes[i, 1] * fy, boxes[i, 2] * fx
                        k = size / side
                        M = np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])
                        crop = cv2.warpAffine(frame, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                        enc.stdin.write(crop.tobytes())  # type: ignore[union-attr]
                except BrokenPipeError:  # the encoder stopped early: its own message (below) says why
                    pass
                finally:
                    try:
                        enc.stdin.close()  # type: ignore[union-attr]
                    except BrokenPipeError:
                        pass
                    rc = enc.wait()
            deadline.check()
            if rc:
                err.seek(0)
                raise MediaError(f"ffmpeg failed encoding the face crop of {clip.source_rel}: {err.read().decode(errors='replace')[-500:]}")
