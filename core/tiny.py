"""Helpers for tiny stand-in model folders: the ONE byte-level BPE tokenizer writer (DESIGN 5).

Every tiny text model (the SD 1.5 CLIP tokenizer, the RoBERTa text-emotion classifier, Whisper,
the LLaVA-layout captioner) needs a tokenizer built offline from files we write (transformers 5
builds one with ``from_pretrained(folder)`` on ``vocab.json`` + ``merges.txt``, not from the old
``vocab_file=`` keywords). They all use the GPT-2/CLIP byte-level alphabet below.

The exact bytes written are part of each stand-in's weights fingerprint (and so of every cache key
computed with it): do not change the formatting without expecting every tiny feature to recompute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable-character table of byte-level BPE (GPT-2 / CLIP / RoBERTa / Whisper / Qwen2)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    byte_values, code_points = printable[:], printable[:]
    extra = 0
    for b in range(256):
        if b not in byte_values:
            byte_values.append(b)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, (chr(c) for c in code_points)))


def byte_level_vocab() -> dict[str, int]:
    """The 256 byte symbols, in byte order (ids 0..255): a BPE vocabulary with no merges."""
    table = bytes_to_unicode()
    return {table[b]: b for b in range(256)}


def write_bpe(folder: Path | str, vocab: dict[str, int], merges: Iterable[tuple[str, str]] = (),
              tokenizer_config: dict[str, Any] | None = None, final_newline: bool = False) -> Path:
    """Write ``vocab.json`` (token -> id), ``merges.txt`` (``#version: 0.2`` then one pair a line) and,
    when given, ``tokenizer_config.json`` (indented) into ``folder``; return the folder.

    ``final_newline`` ends ``vocab.json`` with a newline (the Whisper and RoBERTa stand-ins were
    written that way; kept so their fingerprints do not change)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + ("\n" if final_newline else ""), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    if tokenizer_config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    return folder
