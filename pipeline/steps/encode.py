"""``encode``: cut one clip from its source: constant 25 fps H.264 video and 16 kHz mono PCM audio.

Video: one ffmpeg process per clip decodes the source from the keyframe before the clip start
(accurate input seek), resamples the timeline to constant ``fps`` with the ``fps`` filter (which
handles variable-frame-rate sources by timestamp, not by frame count), pads at most a couple of
frames at the very end (rounding), and encodes exactly ``frames`` frames with ``+faststart`` so
the mp4 decodes from a pipe. No intermediate files, one decode and one encode per clip.

With the ``face`` step before it, the video is the face crop instead: frames decoded the same way and
cut by ffmpeg to the clip's overall box before any conversion (only that region crosses the pipe,
as yuv420p), each frame's crop box (``meta["face"]["crop"]``) cut from it per plane and resized to
``size`` x ``size`` with OpenCV, padded black outside the frame, and piped as yuv420p to the same
x264 settings.

Audio: the clip's slice of the source's aligned, normalised 16 kHz track (see ``audio``), exactly
``frames * sample_rate / fps`` samples, written as 16-bit PCM wav. So audio and video of a clip
have the same duration by construction. The same samples go into the mp4 as its AAC track (a player's
lip sync), encoded by the process that encodes the video: no second pass over the mp4, no ffprobe of
it (the frames written are counted; the size is read from the mp4's sample description).
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.clip import Clip
from core.media import BITEXACT, Deadline, MediaError, ffprobe, run_ffmpeg
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
    audio_kbps: int = 64  # the mp4's AAC track (a player's lip sync); training reads the wav's exact samples
    max_side: int = 0  # without the face step: downscale so the longer side is at most this (0: keep the source size)

    def __post_init__(self) -> None:
        tunes = ("", "film", "animation", "grain", "stillimage", "fastdecode", "zerolatency", "psnr", "ssim")
        if self.tune not in tunes:
            raise ValueError(f"tune: {self.tune!r} is not an x264 tune (one of {', '.join(repr(t) for t in tunes)})")


class Encode(Step):
    name = "encode"
    # 2: the face crop is cut in yuv420p from an ffmpeg-cropped region (no RGB round trip); 3: the AAC track
    # encoded in the video's process (same video and audio packets; the mp4's compressor name is set)
    version = "3"
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

        # Audio first: the exact slice of the aligned track, which the video's process also encodes as AAC.
        n = frames * sr // p.fps
        first = int(round((clip.start - float(am["offset_s"])) * sr))
        track = np.load(clip.files["audio_npy"], mmap_mode="r")
        pcm = np.zeros(n, dtype=np.float32)
        avail = np.asarray(track[max(first, 0) : first + n])
        pcm[max(-first, 0) : max(-first, 0) + avail.size] = avail
        wav = out / "audio.wav"
        sf.write(wav, np.clip(pcm, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")

        # Video: seek on the container clock (ffmpeg's -ss counts from the format start time).
        seek = float(probe["video_start"]) - float(probe.get("format_start", 0.0)) + clip.start
        mp4 = out / "video.mp4"
        face = clip.meta.get("face")
        if face is not None and face.get("crop"):
            got = self._encode_crop(clip, seek, frames, face, wav, mp4)  # frames x264 was fed (size x size)
            width = height = int(face["size"])
        else:
            got = self._encode_frame(clip, seek, frames, wav, mp4)
            width, height = mp4_video_size(mp4)
        if got != frames:
            raise ValueError(f"{clip.source_rel}: encoded {got} frames, expected {frames} (source video ends early?)")

        meta = {
            "crop": "face" if face is not None and face.get("crop") else None,
            "fps": p.fps, "frames": frames, "width": width, "height": height,
            "video_codec": "h264", "crf": p.crf, "preset": p.preset, "tune": p.tune, "gop": p.gop,
            "sample_rate": sr, "samples": n, "seek_s": round(seek, 6),
        }
        files = {k: v for k, v in clip.files.items() if k != "audio_npy"}
        hashes = {k: v for k, v in clip.file_hashes.items() if k != "audio_npy"}
        files.update(mp4=str(mp4), wav=str(wav))
        return dataclasses.replace(clip, files=files, file_hashes=hashes, meta={**clip.meta, "encode": meta})

    def _x264(self) -> list[str]:
        """x264 and the wav (the process's input 1) as the AAC track: the output options of both encodes."""
        p = self.params
        tune = ["-tune", p.tune] if p.tune else []
        return ["-map", "1:a:0", "-c:v", "libx264", "-preset", p.preset, *tune, "-crf", str(p.crf), "-g", str(p.gop),
                "-threads", str(p.threads), "-x264-params", "threads=%d" % p.threads,
                "-c:a", "aac", "-b:a", f"{p.audio_kbps}k", "-movflags", "+faststart", *BITEXACT]

    def _encode_frame(self, clip: Clip, seek: float, frames: int, wav: Path, mp4: Path) -> int:
        """The whole frame (no face step): one ffmpeg process decodes, resamples and encodes; returns the
        number of frames encoded."""
        p = self.params
        # trim, not -frames:v: an output's frame limit ends the AAC track with the video's last packet, short
        # of the clip's end (same video packets either way)
        vf = [f"fps=fps={p.fps}:start_time=0:round=near", "tpad=stop_mode=clone:stop=2", f"trim=end_frame={frames}"]
        if p.max_side:
            vf.append(f"scale='if(gte(iw,ih),min({p.max_side},iw),-2)':'if(gte(iw,ih),-2,min({p.max_side},ih))'")
        vf += ["scale=trunc(iw/2)*2:trunc(ih/2)*2", "setsar=1", "format=yuv420p"]
        progress = run_ffmpeg(
            # Decoder and filters on one thread too: the step declares one CPU, and with N workers on N
            # cores, each ffmpeg's default thread pools would oversubscribe them (same pixels either way).
            ["-threads", str(p.threads), "-filter_threads", "1", "-ss", f"{max(seek, 0.0):.6f}", "-i", clip.source, "-i", str(wav),
             "-map", "0:v:0", "-sn", "-dn", "-vf", ",".join(vf), *self._x264(), "-nostats", "-progress", "pipe:1", str(mp4)],
            what=clip.source_rel,
        )
        done = [ln for ln in progress.decode(errors="replace").splitlines() if ln.startswith("frame=")]
        return int(done[-1].split("=", 1)[1]) if done else 0

    def _encode_crop(self, clip: Clip, seek: float, frames: int, face: dict, wav: Path, mp4: Path) -> int:
        """The face crop: ffmpeg decodes (same seek and fps filter), cuts the clip's overall box
        (:func:`crop_region`) and hands only that region over, as yuv420p (BT.601, as before); each
        frame's box is cut from it per plane with sub-pixel accuracy (:func:`warp_yuv420`) and
        ``size`` x ``size`` yuv420p frames go to x264. No RGB anywhere."""
        import cv2

        cv2.setNumThreads(1)
        p = self.params
        size = int(face["size"])
        boxes = np.asarray(face["crop"], dtype=np.float64)
        src_w, src_h = (int(v) for v in face["source_size"])
        x, y, w, h, shrink = crop_region(boxes, src_w, src_h, size)
        dw, dh = w // shrink, h // shrink
        vf = [f"fps=fps={p.fps}:start_time=0:round=near", "tpad=stop_mode=clone:stop=2", f"crop={w}:{h}:{x}:{y}:exact=1",
              # the frame's own matrix in (BT.709 sources), BT.601 out, as the RGB path had it; a no-op for BT.601
              f"scale={dw}:{dh}:flags=area:in_color_matrix=auto:out_color_matrix=bt601", "format=yuv420p"]
        dec = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-filter_threads", "1", "-ss", f"{max(seek, 0.0):.6f}",
               "-i", clip.source, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", ",".join(vf), "-frames:v", str(frames), "-f", "rawvideo", "pipe:1"]
        enc = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p",
               "-s", f"{size}x{size}", "-framerate", str(p.fps), "-i", "pipe:0", "-i", str(wav), "-map", "0:v:0", *self._x264(), str(mp4)]
        # Per frame: source box -> region pixels (origin x, y; scale 1 / shrink).
        local = np.column_stack([(boxes[:, 0] - x) / shrink, (boxes[:, 1] - y) / shrink, boxes[:, 2] / shrink])
        nbytes = dw * dh * 3 // 2
        got = 0
        with tempfile.TemporaryFile() as dec_err, tempfile.TemporaryFile() as enc_err:
            src = subprocess.Popen(dec, stdout=subprocess.PIPE, stderr=dec_err)
            sink = subprocess.Popen(enc, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=enc_err)
            with Deadline(src, clip.source_rel) as d_src, Deadline(sink, clip.source_rel) as d_sink:
                try:
                    while got < frames:
                        buf = src.stdout.read(nbytes)  # type: ignore[union-attr]
                        if len(buf) < nbytes:
                            break
                        sink.stdin.write(warp_yuv420(buf, dw, dh, local[got], size))  # type: ignore[union-attr]
                        got += 1
                except BrokenPipeError:  # the encoder stopped early: its own message (below) says why
                    pass
                finally:
                    src.stdout.close()  # type: ignore[union-attr]
                    src_rc = src.wait()
                    try:
                        sink.stdin.close()  # type: ignore[union-attr]
                    except BrokenPipeError:
                        pass
                    rc = sink.wait()
            d_src.check()
            d_sink.check()
            if got < frames:
                dec_err.seek(0)
                detail = dec_err.read().decode(errors="replace")[-500:] if src_rc else "no message"
                raise MediaError(f"ffmpeg decoded {got} of {frames} frames of {clip.source_rel}: {detail}")
            if rc:
                enc_err.seek(0)
                raise MediaError(f"ffmpeg failed encoding the face crop of {clip.source_rel}: {enc_err.read().decode(errors='replace')[-500:]}")
        return got


def mp4_video_size(mp4: Path) -> tuple[int, int]:
    """``(width, height)`` of the video track of an mp4 written with ``+faststart`` (its ``moov`` before the
    media), read from its sample description (:func:`core.mp4.video_size`) without an ffprobe process."""
    from core.mp4 import video_size  # imports OpenCV: only in the worker that encodes

    with mp4.open("rb") as f:
        head = f.read(1 << 16)
    try:
        return video_size(head)
    except (ValueError, KeyError, struct.error):  # a moov beyond the first 64 KiB, an unusual layout
        stream = ffprobe(mp4)["streams"][0]
        return int(stream["width"]), int(stream["height"])


def crop_region(boxes: np.ndarray, src_w: int, src_h: int, size: int) -> tuple[int, int, int, int, int]:
    """``(x, y, w, h, shrink)``: the part of the frame that every box ``[cx, cy, side]`` (source pixels)
    of a clip samples from, plus two source pixels for bilinear neighbours, inside the frame, with
    ``x, y, w, h`` multiples of ``2 * shrink`` (yuv420p after an integer area downscale). ``shrink``:
    the area downscale, when every box is more than twice the output side (bilinear would alias)."""
    shrink = max(1, int(np.min(boxes[:, 2]) // (2 * size)))
    a = 2 * shrink
    half = boxes[:, 2] / 2
    x0, x1 = np.min(boxes[:, 0] - half) - 2 * shrink, np.max(boxes[:, 0] + half) + 2 * shrink
    y0, y1 = np.min(boxes[:, 1] - half) - 2 * shrink, np.max(boxes[:, 1] + half) + 2 * shrink
    fw, fh = src_w // a * a, src_h // a * a  # the usable frame (a source of odd size loses its last column/row)
    x = int(min(max(0.0, np.floor(x0 / a) * a), fw - a))
    y = int(min(max(0.0, np.floor(y0 / a) * a), fh - a))
    w = int(max(a, min(fw, np.ceil(x1 / a) * a) - x))
    h = int(max(a, min(fh, np.ceil(y1 / a) * a) - y))
    return x, y, w, h, shrink


def warp_yuv420(buf: bytes, w: int, h: int, box: np.ndarray, size: int) -> bytes:
    """One ``size`` x ``size`` yuv420p frame: the square ``box`` ``[cx, cy, side]`` (pixels of the
    ``w`` x ``h`` yuv420p frame ``buf``) cut and resized bilinearly, black (Y 16, U V 128) outside it.

    Luma: ``out = k (p - c) + size / 2`` with ``k = size / side``, the mapping the RGB path used.
    Chroma: the same mapping on the half-resolution planes, chroma sample ``j`` centred on luma
    ``2 j + 1/2`` in both the input and the output.
    """
    import cv2

    cx, cy, side = (float(v) for v in box)
    k = size / side
    planes = np.frombuffer(buf, dtype=np.uint8)
    luma = planes[: w * h].reshape(h, w)
    cw, ch = w // 2, h // 2
    m = np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])
    out = [cv2.warpAffine(luma, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=16)]
    mc = np.array([[k, 0.0, (size / 2 - 0.5) / 2 - k * (cx - 0.5) / 2], [0.0, k, (size / 2 - 0.5) / 2 - k * (cy - 0.5) / 2]])
    for i in range(2):
        plane = planes[w * h + i * cw * ch : w * h + (i + 1) * cw * ch].reshape(ch, cw)
        out.append(cv2.warpAffine(plane, mc, (size // 2, size // 2), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=128))
    return b"".join(o.tobytes() for o in out)
