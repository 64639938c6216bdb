"""The user's inputs of :mod:`pipeline.prepare`: checks, the still source video, and errors that say the fix.

* :func:`read_image`: the reference as OpenCV decodes it (EXIF orientation applied, alpha dropped),
  ``(H, W, 3)`` uint8 BGR, padded to even sides by repeating the last row/column (x264 and the crop
  step work on even sizes; the face's pixel coordinates do not move).
* :func:`read_audio`: the driving audio's length in seconds, decoded as the ingest audio step decodes
  it (:func:`core.media.decode_audio`: first audio stream, soxr to 16 kHz, channels averaged).
* :func:`still_source`: the "raw video" the ingest steps read: the image repeated at ``fps`` for
  ``ceil(seconds * fps) + 1`` frames (so the video covers all of the audio; the audio step keeps
  the span where both exist), losslessly encoded (``libx264rgb`` qp 0: the steps see the image's
  exact pixels), with the audio's first stream muxed in unchanged (Matroska takes any codec; FLAC,
  lossless, when a stream cannot be copied).
* :func:`drop_error`: a drop of an ingest step as an error naming the file, the check and the fix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from core import cli
from core.clip import TOO_SHORT, Drop
from core.media import BITEXACT, MediaError, decode_audio, ffprobe, run_ffmpeg

MIN_SECONDS = 0.5  # the shortest driving audio accepted
MIN_SIDE = 32  # pixels: a smaller image holds no usable face

#: face checks of the ingest steps (pipeline/steps/face_filter.py) -> how to fix the image
FACE_FIXES = {
    "no_face": "use a photo with one clearly visible face (the check is steps.face_filter.min_face_fraction)",
    "multi_face": "crop the image to one person (steps.face_filter.max_multi_face_fraction)",
    "face_too_small": "use a larger image or a closer crop of the face (steps.face_filter.min_face_px, min_face_size)",
    "profile": "use a photo with the face turned towards the camera (steps.face_filter.max_yaw, max_pitch)",
}


class PrepareError(ValueError):
    """An input the user can fix (exit status 2); the message names the file and the fix."""


def read_image(path: Path) -> np.ndarray:
    """The reference image ``(H, W, 3)`` uint8 BGR with even sides; an error naming ``path`` otherwise."""
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found; pass an existing image file to --image")
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if pixels is None:
        raise PrepareError(f"{path}: unreadable image (OpenCV cannot decode it); pass a PNG, JPEG, WebP or BMP image to --image")
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise PrepareError(f"{path}: the image is {w}x{h} pixels; pass an image of at least {MIN_SIDE} pixels a side to --image")
    return np.pad(pixels, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def read_audio(path: Path, sample_rate: int) -> float:
    """Seconds of the first audio stream of ``path``; an error naming it when it is missing, unreadable,
    has no audio stream or is shorter than :data:`MIN_SECONDS`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: audio file not found; pass an existing audio file to --audio")
    fix = "pass an audio file ffmpeg can decode (wav, mp3, m4a, flac, ogg, or a video with sound) to --audio"
    try:
        streams = ffprobe(path).get("streams", [])
        if not any(s.get("codec_type") == "audio" for s in streams):
            raise PrepareError(f"{path}: no audio stream in the file; {fix}")
        samples = decode_audio(path, sample_rate).size
    except MediaError as e:
        raise PrepareError(f"{path}: unreadable audio ({e}); {fix}") from None
    seconds = samples / sample_rate
    if seconds < MIN_SECONDS:
        raise PrepareError(f"{path}: {seconds:.2f} s of audio; the driving audio must be at least {MIN_SECONDS:g} s long")
    return seconds


def still_source(pixels: np.ndarray, audio: Path, seconds: float, fps: int, folder: Path) -> Path:
    """``folder/source.mkv``: ``pixels`` as a still ``fps`` video covering ``seconds``, with ``audio``'s first stream."""
    import cv2

    png, out = folder / "reference.png", folder / "source.mkv"
    if not cv2.imwrite(str(png), pixels):
        raise MediaError(f"could not write {png}")
    frames = int(math.ceil(seconds * fps)) + 1
    video = ["-framerate", str(fps), "-i", str(png)]
    error: MediaError | None = None
    for codec in (["-c:a", "copy"], ["-c:a", "flac"]):
        try:
            run_ffmpeg(["-y", *video, "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-vf", f"tpad=stop={frames - 1}:stop_mode=clone",
                        "-frames:v", str(frames), "-c:v", "libx264rgb", "-qp", "0", "-preset", "ultrafast", "-threads", "1",
                        *codec, *BITEXACT, str(out)], what=str(audio))
            return out
        except MediaError as e:
            error = e
    raise PrepareError(f"{audio}: could not be muxed beside the image ({error}); convert it to wav and pass that to --audio")


def drop_error(step: str, drop: Drop, image: Path, audio: Path) -> Exception:
    """The error for an ingest step's drop of the prepared clip: the face checks name the image and
    the fix (exit status 2), a too-short span the audio; anything else is a failed step (exit 3)."""
    if drop.reason in FACE_FIXES:
        return PrepareError(f"{image}: rejected by the face check '{drop.reason}' of the {step} step ({drop.message}); "
                            f"{FACE_FIXES[drop.reason]}")
    if drop.reason == TOO_SHORT:
        return PrepareError(f"{audio}: too short once aligned to video frames ({drop.message}); pass at least "
                            f"{MIN_SECONDS:g} s of audio")
    return cli.StageFailed(f"{image} + {audio}: the ingest step {step} failed ({drop.reason}: {drop.message})")
