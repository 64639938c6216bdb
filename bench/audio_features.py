"""Audio extractors: real-time factor of vocals / speech / audio_embed, and the cost of Demucs packing.

    python -m bench.audio_features [--arch tiny|paper] [--device cpu|cuda] [--clips 8] [--threads 1]

Inputs: the real clips in ``../shared/data/real`` (their audio, 16 kHz mono), cut into short
clips of 3-5 s (the typical length after segmentation), ``--clips`` of them. Each extractor is set
up once (not timed) and then times ``process`` over all clips in batches of its ``batch_size``.
RTF = compute seconds / audio seconds (lower is faster).

``--arch tiny`` times the tiny stand-ins of the demo; ``--arch paper`` builds randomly
initialised models with the paper models' architecture (HTDemucs with its default constructor
arguments, ``Wav2Vec2Config()`` = wav2vec2-base), saved in the native formats, so the compute is
that of the real models without their weights (nothing is downloaded). Silero VAD is always the
real bundled model.

Packing: the vocals extractor runs the same clips with ``pack: true`` (short clips share 7.8 s
windows, batched) and ``pack: false`` (one ``apply_model`` call per clip, each padded to a full
segment); the benchmark reports both times, the model windows computed, and the ratio.
Results: printed as JSON and written to ``bench/results/audio_features-<arch>-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
SOURCES = ["videos/v01_frontal_hdtf_katiehill_25fps_a16k.mp4", "videos/v02_frontal_theresamay_25fps_a48k.mp4",
           "videos/v08_music_beat_expressive_25fps_a44k.mp4", "videos/v06_profile34_restaurant_noise_25fps_a48k.mp4",
           "audio/a07_song_music_48k_stereo.wav", "audio/a04_german_speech_48k_s24_stereo.wav"]


def make_clips(folder: Path, n: int):
    from core.clip import Clip

    lengths = [3.0, 4.0, 5.0, 3.6, 4.4]
    clips, k = [], 0
    signals = []
    for rel in SOURCES:
        raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(REAL / rel), "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
                             capture_output=True, check=True).stdout
        signals.append(np.frombuffer(raw, np.float32))
    pos = [0] * len(signals)
    while len(clips) < n:
        i = k % len(signals)
        seconds = lengths[k % len(lengths)]
        frames = int(seconds * 25)
        m = frames * 640
        if pos[i] + m > len(signals[i]):
            pos[i] = 0
        x = signals[i][pos[i]: pos[i] + m]
        pos[i] += m
        path = folder / f"c{k:03d}.wav"
        sf.write(path, x, 16000, subtype="PCM_16")
        clips.append(Clip(key=f"b__c{k:03d}__0", dataset="b", source=SOURCES[i], source_rel=SOURCES[i], source_hash=str(k),
                          duration=seconds, meta={"encode": {"frames": frames, "fps": 25, "sample_rate": 16000}},
                          files={"wav": str(path)}))
        k += 1
    return clips


def paper_arch_specs():
    """Random models with the paper architectures, in the native formats (same loaders)."""
    from pipeline.features import audio_embed, vocals

    def htdemucs(folder: Path, seed: int) -> None:
        import torch
        from demucs.htdemucs import HTDemucs

        torch.manual_seed(seed)
        model = HTDemucs(sources=list(vocals.SOURCES), audio_channels=2, samplerate=44100, segment=7.8)
        args, kwargs = model._init_args_kwargs
        torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict(), "training_args": {}},
                   folder / f"{vocals.TINY_SIG}.th")
        (folder / "htdemucs.yaml").write_text(f"models: ['{vocals.TINY_SIG}']\n")

    def w2v(folder: Path, seed: int) -> None:
        import torch
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        torch.manual_seed(seed)
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 16000}))

    return {"vocals": replace(vocals.WEIGHTS[0], make_tiny=htdemucs), "audio_embed": replace(audio_embed.WEIGHTS[0], make_tiny=w2v)}


def time_extractor(ext, clips, work: Path) -> dict:
    import torch

    ext.setup()
    size = max(1, ext.batch_size)
    outs = []
    t0 = time.perf_counter()
    for b in range(0, len(clips), size):
        batch = clips[b: b + size]
        dirs = [work / f"{ext.name}-{b + j}-{time.monotonic_ns()}" for j in range(len(batch))]
        for d in dirs:
            d.mkdir(parents=True)
        outs += ext.process(batch, dirs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    audio = sum(c.duration for c in clips)
    return {"seconds": round(seconds, 3), "audio_s": round(audio, 2), "rtf": round(seconds / audio, 4), "outputs": outs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocals-batch", type=int, default=8)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from pipeline.features import audio_embed, speech, vocals
    from core.weights import WeightsParams

    if not REAL.is_dir():
        print(f"real clips not found at {REAL}", file=sys.stderr)
        return 2
    result = {"benchmark": "audio_features", "arch": args.arch, "device": args.device, "threads": args.threads,
              "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        clips = make_clips(tmp / "clips", args.clips)
        wp = WeightsParams(profile="tiny", dir=str(tmp / "weights"))
        if args.arch == "paper":
            specs = paper_arch_specs()
            vocals.Extractor.weights = (specs["vocals"],)
            audio_embed.Extractor.weights = (specs["audio_embed"],)
        rows = {}
        for name, ext in [
            ("speech", speech.Extractor(speech.Params(), wp)),
            ("vocals_packed", vocals.Extractor(vocals.Params(batch_size=args.vocals_batch, device=args.device), wp)),
            ("vocals_per_clip", vocals.Extractor(vocals.Params(batch_size=args.vocals_batch, pack=False, device=args.device), wp)),
            ("audio_embed", audio_embed.Extractor(audio_embed.Params(device=args.device), wp)),
        ]:
            r = time_extractor(ext, clips, tmp / "out")
            outs = r.pop("outputs")
            if name.startswith("vocals"):
                r["model_calls"] = ext.calls
                r["segments_computed"] = ext.windows
                r["params_millions"] = round(sum(p.numel() for p in ext.model.parameters()) / 1e6, 2)
                r["music_ratio"] = {c.source_rel.split("/")[-1][:3]: round(o.scores["vocals_music_ratio"], 3) for c, o in zip(clips, outs)}
            if name == "audio_embed":
                r["params_millions"] = round(sum(p.numel() for p in ext.model.parameters()) / 1e6, 2)
            if name == "speech":
                r["speech_ratio"] = {c.key: round(o.scores["speech_ratio"], 3) for c, o in zip(clips, outs)}
            rows[name] = r
            print(f"{name}: {r['seconds']} s for {r['audio_s']} s of audio (RTF {r['rtf']})", file=sys.stderr, flush=True)
        result["extractors"] = rows
        result["packing_speedup"] = round(rows["vocals_per_clip"]["seconds"] / rows["vocals_packed"]["seconds"], 3)
    out = REPO / "bench" / "results" / f"audio_features-{args.arch}-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
