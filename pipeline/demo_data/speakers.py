"""The speakers: three looks of the one photo and three voices, so that splits can be identity-disjoint."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.demo_data.face_rig import Look
from pipeline.demo_data.voice import Voice


@dataclass(frozen=True)
class Speaker:
    voice: Voice
    look: Look


SPEAKERS: dict[str, Speaker] = {
    "spk_a": Speaker(Voice(f0=205.0, formant_scale=1.12, syllable_rate=4.2), Look()),
    "spk_b": Speaker(Voice(f0=120.0, formant_scale=0.94, syllable_rate=3.6), Look(zoom=1.1, flip=True, tint=(0.94, 1.0, 1.08))),
    "spk_c": Speaker(Voice(f0=160.0, formant_scale=1.04, syllable_rate=4.6), Look(zoom=0.9, tint=(1.07, 1.0, 0.92))),
}
