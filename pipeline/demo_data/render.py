"""Rendering a talking clip: rig frames and synthetic audio piped into a bit-exact ffmpeg.

The output is byte-identical from run to run: seeded RNGs, single-threaded bit-exact ffmpeg, no
metadata, frames and audio piped into ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipeline.demo_data.face_rig import FaceModel, FaceRig, Look, detect_face
from pipeline.demo_data.music import music_bed
from pipeline.demo_data.speakers import SPEAKERS
from pipeline.demo_data.tracks import blink_track, mouth_track, vfr_phase, vfr_times, yaw_track
from pipeline.demo_data.voice import envelope, speech_like_audio


class Renderer:
    """The detected face and its rigs: build one per process and pass it to every render.

    A rig per (size, look) is built on first use (a few tens of ms). It pickles as its face alone
    (about 0.8 MB), so a worker process that receives it rebuilds the rigs it needs.
    """

    def __init__(self, face: FaceModel | None = None):
        self.face = face if face is not None else detect_face()
        self._rigs: dict[tuple[int, Look], FaceRig] = {}

    def rig(self, size: int, look: Look) -> FaceRig:
        key = (size, look)
        if key not in self._rigs:
            self._rigs[key] = FaceRig(self.face, size, look)
        return self._rigs[key]

    def __reduce__(self):
        return (Renderer, (self.face,))


def fps_fraction(fps: float | str | Fraction) -> Fraction:
    """``fps`` as an exact rate (29.97 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    if isinstance(fps, str):
        return Fraction(fps)
    for ntsc in (24000, 30000, 60000):
        if abs(fps - ntsc / 1001) < 1e-3:
            return Fraction(ntsc, 1001)
    return Fraction(fps).limit_denominator(1000)


def _ffmpeg(args: list[str], frames, audio: np.ndarray | None) -> None:
    """Run ffmpeg with raw frames on stdin and (optionally) raw f32 audio on a second pipe
    (``{AUDIO}`` in ``args`` names it); ffmpeg is stopped if producing a frame fails."""
    pass_fds: tuple[int, ...] = ()
    read_fd = write_fd = None
    if audio is not None:
        read_fd, write_fd = os.pipe()
        args = [a.replace("{AUDIO}", f"pipe:{read_fd}") for a in args]
        pass_fds = (read_fd,)
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(["ffmpeg", *args], stdin=subprocess.PIPE, stderr=log, pass_fds=pass_fds)
        finally:
            if read_fd is not None:
                os.close(read_fd)
        writer = None
        if write_fd is not None:
            data = np.ascontiguousarray(audio, dtype="<f4").tobytes()

            def feed() -> None:
                try:
                    with os.fdopen(write_fd, "wb") as f:
                        f.write(data)
                except BrokenPipeError:
                    pass

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its exit status and log say why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            rc = proc.wait()
            if writer is not None:
                writer.join()
        if rc != 0:
            log.seek(0)
            raise RuntimeError(f"ffmpeg failed ({rc}): {log.read().decode(errors='replace')[-2000:]}")


BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def render_talking_clip(
    path: Path | str,
    seconds: float,
    fps: float | str | Fraction = 25,
    sample_rate: int = 44100,
    channels: int = 2,
    yaw_deg: float = 0.0,
    seed: int = 0,
    size: int = 384,
    music: bool = False,
    audio: bool = True,
    faces: int = 1,
    speaker: str = "spk_a",
    audio_offset: float = 0.0,
    vfr: bool = False,
    crf: int = 20,
    renderer: Renderer | None = None,
) -> dict:
    """Write one talking-face video; returns its properties (the sample.json entry, less purpose).

    ``faces=2`` puts a second (silent, blinking) speaker on the right: a ``2*size x size`` frame.
    ``audio_offset`` delays the audio track (it starts that many seconds after the video, in
    sync with the mouth). ``vfr`` writes jittered frame timestamps (use a .mkv path). Pass the
    process's ``renderer``; without one, the face is detected afresh for this clip.
    """
    path = Path(path)
    rate = fps_fraction(fps)
    spk = SPEAKERS[speaker]
    n_frames = int(round(seconds * rate))
    if vfr:
        times = vfr_times(n_frames, float(rate), seed)
    else:
        times = np.arange(n_frames) / float(rate)
    speech = speech_like_audio(seconds - audio_offset, sample_rate, seed=seed, voice=spk.voice)
    mouth = mouth_track(speech, sample_rate, times - audio_offset)
    mouth[times < audio_offset] = 0.0
    blinks = blink_track(times, seconds, seed + 1)
    yaws = yaw_track(times, yaw_deg, seed + 2)
    if renderer is None:
        renderer = Renderer()
    rig = renderer.rig(size, spk.look)
    others = []
    if faces > 1:
        names = [s for s in SPEAKERS if s != speaker]
        for k in range(faces - 1):
            name = names[k % len(names)]
            others.append((renderer.rig(size, SPEAKERS[name].look), blink_track(times, seconds, seed + 11 + k), yaw_track(times, 0.0, seed + 21 + k)))

    def frames():
        for i in range(n_frames):
            img = rig.render(float(mouth[i]), float(blinks[i]), float(yaws[i]))
            if others:
                img = np.concatenate([img] + [r.render(0.0, float(b[i]), float(y[i])) for r, b, y in others], axis=1)
            yield cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420)  # BT.601 limited range, as ffmpeg's default

    width = size * faces
    args = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-threads", "1"]
    args += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{size}", "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
    mix = None
    if audio:
        mix = np.repeat(speech[:, None], channels, axis=1)
        if music:
            bed = music_bed(seconds - audio_offset, sample_rate, seed + 3)
            if channels != 2:
                bed = np.repeat(bed.mean(axis=1, keepdims=True), channels, axis=1)
            active = envelope(speech, sample_rate, np.arange(0, len(speech) / sample_rate, 0.02)) > 10 ** (-40 / 20)
            speech_rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)) / max(np.sqrt(active.mean()), 1e-3))
            bed = bed * (speech_rms / (float(np.sqrt(np.mean(bed.astype(np.float64) ** 2))) + 1e-9))
            mix = mix + bed
        peak = float(np.abs(mix).max())
        if peak > 0.98:
            mix = mix * (0.98 / peak)
        if audio_offset:
            args += ["-itsoffset", f"{audio_offset}"]
        args += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "{AUDIO}"]
    args += ["-map", "0:v"] + (["-map", "1:a"] if audio else [])
    if vfr:
        phi = vfr_phase(seed)
        args += ["-vf", f"settb=1/1000,setpts=floor((N+0.3*sin(2.39996*N+{phi})-0.3*sin({phi}))/{float(rate)}*1000+1e-6)", "-fps_mode", "vfr", "-enc_time_base:v", "1/1000"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-x264-params", "threads=1:sliced-threads=0"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "128k"]
    args += BITEXACT + [str(path)]
    _ffmpeg(args, frames(), mix)
    return {
        "file": path.name,
        "speaker": speaker,
        "fps": round(float(rate), 5),
        "fps_fraction": f"{rate.numerator}/{rate.denominator}",
        "sample_rate": sample_rate if audio else None,
        "channels": channels if audio else 0,
        "duration": round(seconds, 3),
        "width": width,
        "height": size,
        "faces": faces,
        "yaw_deg": float(yaw_deg),
        "music": music,
        "audio_offset": audio_offset,
        "vfr": vfr,
    }
