"""``sync``: the ground truth's own audio-visual sync, per frame and per clip (SyncNet; paper eq. 2, Table 1).

What the sync loss and the Sync metric need from the ground truth, computed once per clip with the
``sync`` judge (:mod:`judges.sync`: SyncNet as joonson/syncnet_python, its crop convention from our
MediaPipe landmarks) on the clip's own frames and its own 16 kHz track:

* ``video.npy`` ``(frames, E)`` float16: the lip-stream embedding of the 5-frame window starting at each
  frame (windows ``v .. v + 4``; the last rows, where no full window fits, repeat the last window);
* ``audio.npy`` ``(frames, E)`` float16: the MFCC-stream embedding of the same windows' audio. The
  generated video is driven by this same audio, so the sync loss compares the generated frames' lip
  embeddings against these rows and the ground truth's soft offset against the same computation on
  ``video.npy`` rows: SyncNet never runs on ground-truth frames during training.

E = 1024 (32 for the tiny stand-in). Scores (``score_sync_*``, filtered by ``select``'s
``min_sync_confidence`` / ``max_sync_offset``, with real weights only): ``confidence`` (median - min of
the mean distances over +-15 frame shifts, LSE-C), ``offset`` (frames, the reference's sign: the
picture lags the sound by that many frames), ``offset_abs``, ``min_dist`` (LSE-D). The json holds them
with the per-shift mean distances.

The clip's original track is used, not the vocals: sync is a property of the recording, and music
under speech changes SyncNet's confidence less than Demucs artefacts would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.clip import Clip, Drop
from core.shards import Member
from judges import _specs as specs
from pipeline.features import VIDEO_READS, FeatureParams, torch_device
from pipeline.features import Extractor as _Extractor
from pipeline.features._audio import read_mono
from pipeline.features._frames import frame_chunks, landmark_track

WEIGHTS = (specs.SYNC,)  # torch-free: the stage's driver never imports torch; its workers load the judge
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("video.npy", "float16", ("frames", "embed"), "SyncNet lip embedding of the 5-frame window starting at each frame",
           sample="sync_video", window="frames"),
    Member("audio.npy", "float16", ("frames", "embed"), "SyncNet audio (MFCC) embedding of the same windows",
           sample="sync_audio", window="frames"),
)


@dataclass(frozen=True)
class Params(FeatureParams):
    batch_size: int = 2  # clips per call
    frame_batch: int = 64  # frames decoded and cropped per chunk
    box_scale: float = 1.0  # scales the landmarks' box before syncnet_python's crop (judges.sync)
    vshift: int = 15  # +- frames searched for the offset (the reference's default)
    device: str = "auto"


class Extractor(_Extractor):
    name = "sync"
    reads = VIDEO_READS + ("files.wav", "files.landmarks.npy")
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        from judges import sync

        self.judge = sync.load(Path(self.folders[sync.SPEC.name]), torch_device(self.params.device))

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        results: list[Any] = []
        for clip, out in zip(clips, outs):
            if "landmarks.npy" not in clip.files:
                raise KeyError(f"{clip.key}: no landmarks.npy in the clip shard; sync needs the face track "
                               f"(ingest with steps.face.enabled: true)")
            results.append(self._clip(clip, out))
        return results

    def _clip(self, clip: Clip, out: Path) -> Clip | Drop:
        from judges import sync

        p: Params = self.params
        frames = int(clip.meta["encode"]["frames"])
        audio = read_mono(clip.files["wav"], sync.SAMPLE_RATE)
        windows = sync.num_windows(frames, len(audio))
        if windows < 1:
            return Drop("too_short", f"{frames} frames and {len(audio)} samples hold no SyncNet window")
        landmarks = landmark_track(clip.files["landmarks.npy"], frames)
        crop_boxes = sync.crop_windows(sync.face_boxes(landmarks, p.box_scale))
        crops = np.empty((frames, sync.SIZE, sync.SIZE, 3), np.uint8)  # 224 px crops: 7.5 MB per 50 frames
        for idx, chunk in frame_chunks(clip, np.arange(frames), p.frame_batch):
            crops[idx] = sync.crop_frames(chunk, crop_boxes[idx])
        emb = self.judge.embed(crops, audio)
        score = sync.sync_score(emb, p.vshift)
        rows = np.minimum(np.arange(frames), windows - 1)  # window v starts at frame v; the tail repeats the last
        np.save(out / "video.npy", emb.video.float().cpu().numpy()[rows].astype(np.float16))
        np.save(out / "audio.npy", emb.audio.float().cpu().numpy()[rows].astype(np.float16))
        values = {"windows": windows, "offset": int(score.offset), "confidence": float(score.confidence),
                  "min_dist": float(score.min_dist), "mean_dists": [round(float(d), 5) for d in score.dists.float().cpu().numpy()],
                  "vshift": p.vshift, "audio": "original"}
        scores = {"confidence": float(score.confidence), "offset": float(score.offset),
                  "offset_abs": float(abs(score.offset)), "min_dist": float(score.min_dist)}
        return clip.evolve(files={"sync.video.npy": str(out / "video.npy"), "sync.audio.npy": str(out / "audio.npy")},
                           meta={"sync": values}, scores={f"sync_{k}": v for k, v in scores.items()})
