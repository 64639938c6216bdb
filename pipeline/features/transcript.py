"""``transcript``: Whisper speech recognition with segment timestamps, per clip (paper section 3.6).

The first stage of E_t (eq. 1): the clip's speech is transcribed with Whisper
(``WhisperForConditionalGeneration`` + ``WhisperProcessor`` from a local folder, ``language`` and
``task`` from params) and ``emotion_text`` classifies the text. Reads the vocals track when
``features.vocals`` is enabled (music-free audio, as for every emotion feature), the original
track otherwise; the json says which (``"audio"``).

The track (16 kHz mono) is cut into consecutive pieces of at most 30 s (Whisper's input window;
clips are 3-20 s, so normally one piece), each becomes a log-mel input ``(80|128, 3000)`` and is
decoded greedily with timestamp tokens. A segment is the text between two timestamp tokens
(Whisper's own segmentation, ``generate(return_timestamps=True, return_segments=True)``); times
are offset by the piece start and clamped to the clip, and segments starting at or after the clip
end are left out. Values (no files)::

    {"text", "language", "task", "segments": [{"start", "end", "text"}], "frames", "audio", "tiny"}

Batching: the pieces of up to ``batch_size`` clips are decoded in one ``generate`` call; every
input is padded to 30 s by the feature extractor anyway, so a clip's result does not depend on its
batch-mates beyond float noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.clip import Clip
from core.shards import Member
from core.tiny import byte_level_vocab, write_bpe
from core.weights import ModelSpec
from pipeline.features import FeatureParams, torch_device
from pipeline.features._audio import TrackExtractor, read_mono

SAMPLE_RATE = 16000
CHUNK_S = 30  # Whisper's input window
TIME_PRECISION = 0.02  # seconds per timestamp token
#: the tiny tokenizer's languages (the real one has 99 or 100)
TINY_LANGUAGES = ("en", "de", "fr", "es")


def make_tiny_whisper(folder: Path, seed: int) -> None:
    """A tiny ``WhisperForConditionalGeneration`` with the real token layout (byte BPE, then the
    special tokens, ``<|notimestamps|>``, then 1501 timestamp tokens) and its processor files."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    vocab = byte_level_vocab()
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in TINY_LANGUAGES], "<|translate|>", "<|transcribe|>",
                "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    timestamps = [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(1501)]
    added = {}
    for text in specials + timestamps:
        added[str(len(vocab) + len(added))] = {"content": text, "lstrip": False, "rstrip": False, "normalized": False,
                                              "single_word": False, "special": text in specials}
    ids = {v["content"]: int(k) for k, v in added.items()}
    src = folder / "tokenizer-src"
    src.mkdir()
    write_bpe(src, vocab, tokenizer_config={"tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "added_tokens_decoder": added,
                                "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                                "pad_token": "<|endoftext|>", "additional_special_tokens": specials[1:]}, final_newline=True)
    tokenizer = WhisperTokenizer.from_pretrained(src, local_files_only=True)  # saved in the config: not the shell's HF_HUB_OFFLINE
    vocab_size = len(vocab) + len(added)
    eot = ids["<|endoftext|>"]
    torch.manual_seed(seed)
    config = WhisperConfig(vocab_size=vocab_size, num_mel_bins=80, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                           max_target_positions=64, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=ids["<|startoftranscript|>"], begin_suppress_tokens=None, suppress_tokens=None)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, max_initial_timestamp_index=50,
        lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in TINY_LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        begin_suppress_tokens=[eot], suppress_tokens=[], max_length=config.max_target_positions,
    )
    model.save_pretrained(folder)
    # Saved one by one, as in the published folders (preprocessor_config.json, tokenizer.json, ...)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for p in src.iterdir():
        p.unlink()
    src.rmdir()


WEIGHTS = (ModelSpec(
    "whisper-large-v3",
    files=("config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
           "tokenizer_config.json"),
    make_tiny=make_tiny_whisper, repo_id="openai/whisper-large-v3",
    # pinned hub commit; source: public code pinning openai/whisper-large-v3@<this> (base-model and tokenizer
    # revisions in several repositories)
    revision="06f233fe06e710322aca913c1bc4249a0d71fce1",
    licence="MIT",
),)


#: the features this one may read (its ``needs``): their code is part of its DVC stage
READS = ("vocals",)
#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS: tuple[Member, ...] = ()  # values only (text, language, segments) in the json


@dataclass(frozen=True)
class Params(FeatureParams):
    language: str = "en"  # Whisper language code ("en", "de", ...); "" lets Whisper detect it
    task: str = "transcribe"  # transcribe | translate (to English)
    max_new_tokens: int = 220  # per 30 s piece (capped by the model's max_target_positions)
    batch_size: int = 4  # clips per generate call
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda


def _whisper_generate_notes(record: logging.LogRecord) -> bool:
    """False for the two notes ``WhisperForConditionalGeneration.generate`` causes itself on every call."""
    msg = record.getMessage()
    return not (msg.startswith("Both `max_new_tokens`") or "generation-related arguments=({'suppress_tokens'" in msg)


class Extractor(TrackExtractor):
    name = "transcript"
    version = "1"
    weights = WEIGHTS

    def __init__(self, params: Params, weights_params: Any, root: Path = Path("."), features: Any = None):
        super().__init__(params, weights_params, root, features)
        self.pieces_decoded = 0  # Whisper inputs decoded by this worker (the benchmark reads it)

    def setup(self) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        p: Params = self.params
        self.torch = torch
        self.device = torch_device(p.device)
        folder = Path(self.folders["whisper-large-v3"])
        self.processor = WhisperProcessor.from_pretrained(folder)
        self.model = WhisperForConditionalGeneration.from_pretrained(folder).to(self.device).eval()
        gen = self.model.generation_config
        if gen.no_timestamps_token_id is None:
            raise ValueError(f"{folder}/generation_config.json has no no_timestamps_token_id: not a timestamp-capable Whisper checkpoint")
        self.timestamp_begin = int(gen.no_timestamps_token_id) + 1
        self.eos = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
        self.max_new_tokens = min(p.max_new_tokens, self.model.config.max_target_positions - 8)
        # Whisper's own generate() sets max_length beside our max_new_tokens and passes its suppress
        # tokens as arguments, then warns about both on every call; these two notes (only) are dropped.
        logging.getLogger("transformers.generation.utils").addFilter(_whisper_generate_notes)

    def transcribe(self, signals: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Segments ``{"start", "end", "text"}`` (seconds from each signal's start) per signal."""
        p: Params = self.params
        step = CHUNK_S * SAMPLE_RATE
        pieces = [(i, k) for i, x in enumerate(signals) for k in range(0, max(1, len(x)), step)]
        audio = [signals[i][k: k + step] for i, k in pieces]
        inputs = self.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        kwargs: dict[str, Any] = {"task": p.task, "return_timestamps": True, "return_segments": True, "max_new_tokens": self.max_new_tokens}
        if p.language:
            kwargs["language"] = p.language
        with self.torch.no_grad():
            out = self.model.generate(inputs.input_features.to(self.device, self.model.dtype),
                                      attention_mask=inputs.attention_mask.to(self.device), **kwargs)
        self.pieces_decoded += len(pieces)
        tokenizer = self.processor.tokenizer
        result: list[list[dict[str, Any]]] = [[] for _ in signals]
        for (i, k), segments in zip(pieces, out["segments"]):
            for seg in segments:
                result[i].append({"start": k / SAMPLE_RATE + float(seg["start"]), "end": k / SAMPLE_RATE + float(seg["end"]),
                                  "text": tokenizer.decode(seg["tokens"].tolist(), skip_special_tokens=True).strip()})
        return result

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        p: Params = self.params
        sources = [self.track(c) for c in clips]
        signals = [read_mono(path, SAMPLE_RATE) for _, path in sources]
        results = []
        for clip, (which, _), x, segs in zip(clips, sources, signals, self.transcribe(signals)):
            duration = len(x) / SAMPLE_RATE
            # Clamped to the clip; a segment that starts at or after its end (Whisper's input is
            # padded to 30 s, and a poor model may place text there) covers none of it and is left out.
            segments = [{"start": round(max(0.0, s["start"]), 3), "end": round(min(max(s["start"], s["end"]), duration), 3), "text": s["text"]}
                        for s in segs if s["start"] < duration]
            frames = int(clip.meta.get("encode", {}).get("frames") or round(duration * 25))
            values = {"text": " ".join(s["text"] for s in segments if s["text"]).strip(), "language": p.language or "auto",
                      "task": p.task, "segments": segments, "frames": frames, "audio": which, "tiny": self.tiny}
            results.append(clip.evolve(meta={"transcript": values}))
        return results
