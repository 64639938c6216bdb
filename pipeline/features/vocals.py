"""``vocals``: music removal with Demucs (HTDemucs) and a music score per clip (DESIGN 3.2, 5).

Each clip's 16 kHz mono track is upsampled to the model's rate (44.1 kHz, duplicated to stereo),
normalised by its own mean/std (as ``demucs.separate`` does per track), separated into
drums/bass/other/vocals, and the vocals stem is written back as a 16 kHz mono wav sidecar
(``vocals.wav``). Values: each stem's RMS level (dBFS) and the music ratio, the energy of the
accompaniment stems (everything but vocals) over the energy of all stems. Scores:
``vocals_music_ratio`` and ``vocals_vocals_dbfs`` (``select`` drops ``music`` on the ratio).

Packing. HTDemucs is trained on fixed segments (7.8 s for ``htdemucs``) and pads every shorter
input up to one full segment, so a 3 s clip alone pays for 7.8 s of compute. Clips no longer than
a segment are packed first-fit-decreasing into segment-long windows (``gap_s`` of silence
between neighbours, each clip normalised on its own), and up to ``batch_size`` windows go
through the model in one batched call; each clip is cut back out of its window. Clips longer
than a segment go through ``demucs.apply.apply_model`` on their own (its overlapping split).
The packing is deterministic for a given batch (clips arrive in key order), but a packed clip's
stems depend slightly on its window-mates (the cross-domain transformer attends over the whole
segment); ``pack: false`` gives one model call per clip.

Weights: a Demucs repo folder, ``<sig>.th`` + ``<name>.yaml``, loaded with
``demucs.pretrained.get_model(name, repo=folder)`` (never the network). The tiny profile
generates a small randomly initialised HTDemucs saved in that format.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from core.clip import Clip
from core.shards import Member
from core.weights import ModelSpec, WeightsError
from core.weights import fingerprint as folder_fingerprint
from pipeline.features import Extractor as _Extractor
from pipeline.features import FeatureParams, torch_device
from pipeline.features._audio import VOCALS_FILE, read_mono, resample, rms_dbfs

SOURCES = ("drums", "bass", "other", "vocals")
#: the reason code ``select`` gives a clip whose ``vocals_music_ratio`` is above its threshold
REASON = "music"
TINY_SIG = "tinyhtdm"
log = logging.getLogger("pipeline.features.vocals")


def make_tiny_htdemucs(folder: Path, seed: int) -> None:
    """A small HTDemucs (same class, 4 sources, 44.1 kHz, 7.8 s segment) as ``<sig>.th`` + ``htdemucs.yaml``."""
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    model = HTDemucs(sources=list(SOURCES), audio_channels=2, samplerate=44100, segment=7.8, channels=4,
                     t_layers=1, t_heads=2, dconv_depth=1, dconv_comp=2, t_hidden_scale=1.0)
    args, kwargs = model._init_args_kwargs  # recorded by demucs' capture_init, as in its own checkpoints
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict(), "training_args": {}}
    torch.save(package, folder / f"{TINY_SIG}.th")
    (folder / "htdemucs.yaml").write_text(f"models: ['{TINY_SIG}']\n")


WEIGHTS = (ModelSpec(
    "htdemucs", files=("htdemucs.yaml", "955717e8-8726e21a.th"), tiny_files=("htdemucs.yaml", f"{TINY_SIG}.th"),
    # Not on the Hugging Face hub, so `pipeline.weights fetch` skips it: copy demucs/remote/htdemucs.yaml
    # from the installed package and https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/955717e8-8726e21a.th
    # into weights/paper/htdemucs/ (demucs checks the sha256 prefix in the file name when loading).
    make_tiny=make_tiny_htdemucs, repo_id="", revision="955717e8-8726e21a", licence="MIT",
),)


#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (Member("wav", doc="the vocals track, 16 kHz mono PCM (files[\"vocals.wav\"] of the clip)"),)


@dataclass(frozen=True)
class Params(FeatureParams):
    model: str = "htdemucs"  # the <name>.yaml in the weights folder
    sample_rate: int = 16000  # of the vocals sidecar
    pack: bool = True  # pack clips shorter than a model segment into shared windows
    gap_s: float = 0.5  # silence between packed clips
    overlap: float = 0.25  # apply_model overlap for clips longer than a segment
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda


@dataclass
class _Piece:
    index: int  # clip index in the batch
    mix: np.ndarray  # (2, n) normalised, at the model rate
    mean: float
    std: float


def pack_windows(lengths: Sequence[int], window: int, gap: int) -> list[list[int]]:
    """First-fit-decreasing packing of items (lengths <= window) into windows; ``gap`` between items.

    Deterministic: ties broken by index; windows listed in order of their first item.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[tuple[int, list[int]]] = []  # (used, items)
    for i in order:
        for b, (used, items) in enumerate(bins):
            if used + gap + lengths[i] <= window:
                bins[b] = (used + gap + lengths[i], items + [i])
                break
        else:
            bins.append((lengths[i], [i]))
    return sorted((sorted(items) for _, items in bins), key=lambda items: items[0])


def verify_before_unpickling(folder: Path, driver_fingerprint: str = "") -> None:
    """Demucs checkpoints are pickles (``torch.load(weights_only=False)`` inside demucs), so the folder's
    bytes must match the sha256 recorded for it in ``weights/<profile>/manifest.json`` (written by
    ``python -m pipeline.weights build``) before demucs may open it. Without a manifest, the bytes must
    match what the driver fingerprinted (a warning says so). Raises :class:`WeightsError` naming the fix."""
    manifest = folder.parent / "manifest.json"
    actual = folder_fingerprint(folder, memo_ok=False)
    if manifest.is_file():
        try:
            entries = {m.get("name"): m for m in json.loads(manifest.read_text()).get("models", [])}
        except (ValueError, AttributeError) as e:
            raise WeightsError(f"{manifest}: not a weights manifest ({e}); run `python -m pipeline.weights build`") from None
        want = (entries.get(folder.name) or {}).get("sha256")
        if not want:
            raise WeightsError(f"{manifest} records no sha256 for {folder.name}; run `python -m pipeline.weights build`")
        where = manifest
    else:
        log.warning("%s not found: checking %s against the fingerprint taken at start only (run `python -m pipeline.weights build`)",
                    manifest, folder)
        want, where = driver_fingerprint.split(f"{folder.name}=", 1)[-1].split("|", 1)[0], "the fingerprint taken at start"
    if actual != want:
        raise WeightsError(f"{folder}: its files do not match the sha256 in {where} ({want[:16]}..., found {actual[:16]}...); "
                           f"the checkpoint is not unpickled. Restore the folder (or rebuild it: `python -m pipeline.weights build`)")


class Extractor(_Extractor):
    name = "vocals"
    reads = ("files.wav",)
    version = "1"
    weights = WEIGHTS

    def setup(self) -> None:
        import torch
        from demucs.pretrained import get_model

        p: Params = self.params
        self.torch = torch
        self.device = torch_device(p.device)
        folder = self.folders["htdemucs"]
        verify_before_unpickling(Path(folder), self.weights_fingerprint())
        self.model = get_model(p.model, repo=Path(folder)).to(self.device).eval()
        inner = self.model.models[0] if hasattr(self.model, "models") else self.model
        self.samplerate = int(inner.samplerate)
        self.channels = int(inner.audio_channels)
        self.sources = list(inner.sources)
        if "vocals" not in self.sources:
            raise ValueError(f"Demucs model {p.model} in {folder} has no vocals source: {self.sources}")
        self.window = int(float(inner.segment) * self.samplerate)
        self.calls = 0  # apply_model calls, and model segments computed (for the benchmark)
        self.windows = 0

    # -- separation ---------------------------------------------------------------------------------
    def _load(self, clip: Clip, index: int) -> _Piece:
        mono = read_mono(clip.files["wav"], self.samplerate)
        mean, std = float(mono.mean()), float(mono.std())
        x = (mono - mean) / (std + 1e-8)
        return _Piece(index, np.repeat(x[None], self.channels, axis=0), mean, std)

    def _apply(self, mix: np.ndarray, split: bool) -> np.ndarray:
        """(B, C, T) -> (B, S, C, T) stems."""
        from demucs.apply import apply_model

        self.calls += 1
        with self.torch.no_grad():
            out = apply_model(self.model, self.torch.from_numpy(mix), shifts=0, split=split, overlap=self.params.overlap,
                              progress=False, device=self.device)
        return out.float().cpu().numpy()

    def separate(self, pieces: list[_Piece]) -> dict[int, np.ndarray]:
        """Stems ``(S, C, n)`` (de-normalised) of every piece, packed and batched as configured."""
        p: Params = self.params
        stems: dict[int, np.ndarray] = {}
        short = [q for q in pieces if q.mix.shape[1] <= self.window] if p.pack else []
        for q in pieces:
            if q not in short:
                stems[q.index] = self._apply(q.mix[None], split=True)[0]
                step = self.window * (1 - p.overlap)
                self.windows += 1 + max(0, int(np.ceil((q.mix.shape[1] - self.window) / step)))
        if short:
            gap = int(p.gap_s * self.samplerate)
            windows = pack_windows([q.mix.shape[1] for q in short], self.window, gap)
            placed: list[tuple[int, int, _Piece]] = []  # (window, offset, piece)
            batch = np.zeros((len(windows), self.channels, self.window), np.float32)
            for w, items in enumerate(windows):
                offset = 0
                for i in items:
                    q = short[i]
                    n = q.mix.shape[1]
                    batch[w, :, offset:offset + n] = q.mix
                    placed.append((w, offset, q))
                    offset += n + gap
            size = max(1, self.batch_size)
            self.windows += len(windows)
            out = np.concatenate([self._apply(batch[i:i + size], split=False) for i in range(0, len(batch), size)])
            for w, offset, q in placed:
                stems[q.index] = out[w, :, :, offset:offset + q.mix.shape[1]]
        for q in pieces:
            stems[q.index] = stems[q.index] * (q.std + 1e-8) + q.mean
        return stems

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        pieces = [self._load(c, i) for i, c in enumerate(clips)]
        stems = self.separate(pieces)
        results = []
        vi = self.sources.index("vocals")
        for i, (clip, out) in enumerate(zip(clips, outs)):
            s = stems[i]  # (S, C, n) at the model rate
            mono = s.mean(axis=1)  # (S, n)
            energy = np.sum(np.square(mono, dtype=np.float64), axis=1)
            total = float(energy.sum())
            music = float(energy.sum() - energy[vi])
            ratio = music / total if total > 0 else 0.0
            vocals = resample(mono[vi], self.samplerate, self.params.sample_rate)
            info = sf.info(clip.files["wav"])  # same length as the clip's own track
            vocals = _fit(vocals, int(round(info.frames * self.params.sample_rate / info.samplerate)))
            sf.write(out / VOCALS_FILE, np.clip(vocals, -1.0, 1.0), self.params.sample_rate, subtype="PCM_16")
            levels = {f"{name}_dbfs": rms_dbfs(mono[k]) for k, name in enumerate(self.sources)}
            values = {"music_ratio": round(ratio, 6), **levels, "sources": self.sources, "sample_rate": self.params.sample_rate,
                      "packed": bool(self.params.pack and pieces[i].mix.shape[1] <= self.window),
                      "model_segment_s": round(self.window / self.samplerate, 3)}
            results.append(clip.evolve(files={VOCALS_FILE: str(out / VOCALS_FILE)}, meta={"vocals": values},
                                       scores={"vocals_music_ratio": round(ratio, 6), "vocals_vocals_dbfs": levels["vocals_dbfs"]}))
        return results


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to exactly ``n`` samples (resampling rounding)."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
