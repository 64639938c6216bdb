"""Emotion extractors: clips/s and real-time factor of transcript, emotion_text, emotion_speech, valence_arousal.

    python -m bench.emotion_features [--arch tiny|paper] [--only NAME ...] [--device cpu|cuda] [--clips 8] [--threads 1]

Inputs: the clips of ``bench.audio_features`` (3-5 s cuts of the real clips in
``../shared/data/real``, 16 kHz mono). Each extractor is set up once (not timed), then ``process``
runs over all clips in batches of its ``batch_size``. Whisper runs once per clip: ``emotion_text``
is timed on the transcripts ``transcript`` produced (as the per-clip cache hands them over in
``dvc repro``), and the benchmark records how many Whisper inputs were decoded. RTF = compute
seconds / audio seconds (lower is faster); clips/s = clips / compute seconds.

``--arch tiny`` times the tiny stand-ins of the demo. ``--arch paper`` builds randomly initialised
models with the paper models' architectures (whisper-large-v3, distilroberta-base with the
7-class head, HuBERT-large with the SER head, wav2vec2-large-robust pruned to 12 layers with the
VA head), saved in the native formats, so the compute is that of the real models without their
weights (nothing is downloaded). Random Whisper weights do not stop decoding where a real model
would, so the paper-arch Whisper time is taken at ``--whisper-tokens`` new tokens per clip and
is an estimate of the decoder's share. Results: printed as JSON and written to
``bench/results/emotion_features-<arch>-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.audio_features import REAL, make_clips, time_extractor  # noqa: E402

NAMES = ("transcript", "emotion_text", "emotion_speech", "valence_arousal")


def paper_arch_specs() -> dict:
    """Random models with the paper architectures in the native formats (the tiny tokenizers and
    feature extractors are reused: they do not change the compute)."""
    import torch
    from transformers import (GenerationConfig, HubertConfig, HubertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification,
                              WhisperConfig, WhisperForConditionalGeneration)

    from judges import speech_emotion, text_emotion, voice_va
    from pipeline.features import emotion_speech, emotion_text, transcript, valence_arousal

    def whisper(folder: Path, seed: int) -> None:
        transcript.make_tiny_whisper(folder, seed)  # tokenizer, generation config, feature extractor
        tiny = json.loads((folder / "config.json").read_text())
        torch.manual_seed(seed)
        config = WhisperConfig(**{k: tiny[k] for k in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")},
                               num_mel_bins=80, d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                               decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, max_target_positions=448)
        model = WhisperForConditionalGeneration(config)
        model.generation_config = GenerationConfig.from_pretrained(folder)  # timestamp and language tokens of the tokenizer
        model.save_pretrained(folder)

    def roberta(folder: Path, seed: int) -> None:
        text_emotion.make_tiny_roberta_classifier(folder, seed)
        tiny = json.loads((folder / "config.json").read_text())
        config = RobertaConfig(vocab_size=50265, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
                               max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                               id2label={int(k): v for k, v in tiny["id2label"].items()}, label2id=tiny["label2id"])
        torch.manual_seed(seed)
        model = RobertaForSequenceClassification(config)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")

    def hubert(folder: Path, seed: int) -> None:
        speech_emotion.make_tiny_hubert_er(folder, seed)
        config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                              feat_extract_norm="layer", do_stable_layer_norm=True, classifier_proj_size=256,
                              id2label=dict(enumerate(speech_emotion.CLASSES)), label2id={c: i for i, c in enumerate(speech_emotion.CLASSES)})
        torch.manual_seed(seed)
        model = HubertForSequenceClassification(config)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")

    def va(folder: Path, seed: int) -> None:
        voice_va.make_tiny_va(folder, seed)
        config = voice_va.Wav2Vec2Config(
            hidden_size=1024, num_hidden_layers=12, num_attention_heads=16, intermediate_size=4096, feat_extract_norm="layer",
            do_stable_layer_norm=True, final_dropout=0.1, id2label=dict(enumerate(voice_va.MODEL_LABELS)),
            label2id={c: i for i, c in enumerate(voice_va.MODEL_LABELS)})
        torch.manual_seed(seed)
        model = voice_va.Wav2Vec2ForEmotionRegression(config)
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")

    return {"transcript": replace(transcript.WEIGHTS[0], make_tiny=whisper),
            "emotion_text": replace(emotion_text.WEIGHTS[0], make_tiny=roberta),
            "emotion_speech": replace(emotion_speech.WEIGHTS[0], make_tiny=hubert),
            "valence_arousal": replace(valence_arousal.WEIGHTS[0], make_tiny=va)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["tiny", "paper"], default="tiny")
    ap.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES), help="emotion_text implies transcript")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--whisper-tokens", type=int, default=32, help="--arch paper: new tokens per clip")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from pipeline.features import emotion_speech, emotion_text, transcript, valence_arousal
    from core.weights import WeightsParams

    if not REAL.is_dir():
        print(f"real clips not found at {REAL}", file=sys.stderr)
        return 2
    modules = {"transcript": transcript, "emotion_text": emotion_text, "emotion_speech": emotion_speech, "valence_arousal": valence_arousal}
    names = [n for n in NAMES if n in args.only or (n == "transcript" and "emotion_text" in args.only)]
    result = {"benchmark": "emotion_features", "arch": args.arch, "device": args.device, "threads": args.threads,
              "machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        clips = make_clips(tmp / "clips", args.clips)
        wp = WeightsParams(profile="tiny", dir=str(tmp / "weights"))
        if args.arch == "paper":
            specs = paper_arch_specs()
            for n in names:
                modules[n].Extractor.weights = (specs[n],)
        params = {
            "transcript": transcript.Params(device=args.device, **({"max_new_tokens": args.whisper_tokens} if args.arch == "paper" else {})),
            "emotion_text": emotion_text.Params(device=args.device),
            "emotion_speech": emotion_speech.Params(device=args.device),
            "valence_arousal": valence_arousal.Params(device=args.device),
        }
        rows, transcribed = {}, None
        for name in names:
            ext = modules[name].Extractor(params[name], wp, features=[])
            inputs = transcribed if name == "emotion_text" else clips
            r = time_extractor(ext, inputs, tmp / "out")
            outs = r.pop("outputs")
            r["clips_per_s"] = round(len(clips) / r["seconds"], 3)
            r["params_millions"] = round(sum(p.numel() for p in ext.model.parameters()) / 1e6, 2)
            if name == "transcript":
                transcribed = outs
                r["whisper_inputs_decoded"] = ext.pieces_decoded
                r["segments_per_clip"] = round(sum(len(o.meta["transcript"]["segments"]) for o in outs) / len(outs), 2)
            if name in ("emotion_speech", "valence_arousal"):
                r["windows"] = sum(len(o.meta[name]["segments"]) for o in outs)
            rows[name] = r
            print(f"{name}: {r['seconds']} s for {r['audio_s']} s of audio (RTF {r['rtf']}, {r['clips_per_s']} clips/s)", file=sys.stderr, flush=True)
        result["extractors"] = rows
    out = Path(__file__).resolve().parent / "results" / f"emotion_features-{args.arch}-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
