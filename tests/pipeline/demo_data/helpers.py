"""Shared by the demo-data tests."""

from __future__ import annotations

import numpy as np


def frame_db(x: np.ndarray, sr: int = 16000, hop: float = 0.05) -> np.ndarray:
    """Level (dB) of consecutive ``hop``-second frames."""
    n = int(sr * hop)
    frames = x[: len(x) // n * n].reshape(-1, n)
    return 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
