"""The ``inference`` section of params.yaml: the sampler, classifier-free guidance and chaining of
long audio (paper section 4: DDIM, 40 steps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model.conditioning import CONDITIONS


@dataclass(frozen=True)
class GuidanceParams:
    """``inference.guidance``: classifier-free guidance with a real null per condition (:mod:`model.conditioning`).

    Two branches (default): ``eps = eps_u + scale (eps_c - eps_u)``, ``eps_u`` with the conditions of
    ``unconditional`` dropped. Multi-condition form (``per_condition`` non-empty): one branch with
    nothing dropped plus one per listed condition with that condition dropped,
    ``eps = eps_c + sum_k (s_k - 1) (eps_c - eps_{-k})`` (with one condition this is the two-branch
    form). All branches run as one batch. The paper gives no scales: 3.5 is Hallo's default.
    """

    scale: float = 3.5
    # the reference stays in the unconditional branch: dropping it guides away from a random face, not the subject
    unconditional: list[str] = field(default_factory=lambda: ["caption", "audio", "emotion"])
    per_condition: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in [*self.unconditional, *self.per_condition]:
            if name not in CONDITIONS:
                raise ValueError(f"unknown condition {name!r} (conditions: {', '.join(CONDITIONS)})")
        if self.scale < 0 or any(s < 0 for s in self.per_condition.values()):
            raise ValueError("guidance scales must be >= 0")

    def branches(self) -> list[tuple[str, ...]]:
        """The dropped conditions of each branch, the fully conditional one first."""
        if self.per_condition:
            return [(), *((k,) for k in self.per_condition)]
        if self.scale == 1.0 or not self.unconditional:
            return [()]
        return [(), tuple(self.unconditional)]

    def describe(self) -> str:
        if self.per_condition:
            return "multi-condition: " + ", ".join(f"{k} {v:g}" for k, v in self.per_condition.items())
        if len(self.branches()) == 1:
            return "none (one branch)"
        return f"two branches, scale {self.scale:g}, unconditional drops {', '.join(self.unconditional)}"


@dataclass(frozen=True)
class InferenceParams:
    """``inference`` section of params.yaml."""

    steps: int = 40  # DDIM steps (paper section 4)
    eta: float = 0.0  # DDIM eta (0: deterministic given the initial noise)
    guidance: GuidanceParams = field(default_factory=GuidanceParams)
    seed: int = 0  # each clip's noise is seeded by (seed, clip name): the same on any number of ranks
    # motion frames of the first window (no previous frames): sampled from the A2M prior (3.5), or the reference
    # latent repeated (the "gt" first-clip case of training); a2m falls back to reference without an A2M checkpoint
    first_motion: Literal["a2m", "reference"] = "a2m"
    a2m_temperature: float = 1.0
    checkpoints: str = "checkpoints"  # the train stages' out_dir: <stage>/step-N/
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # weights and activations (bf16 on GPUs)
    decode_batch: int = 8  # frames per VAE decode call

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("inference.steps must be >= 1")
        if self.first_motion not in ("a2m", "reference"):
            raise ValueError(f"inference.first_motion must be a2m or reference, got {self.first_motion!r}")
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"inference.dtype must be fp32, bf16 or fp16, got {self.dtype!r}")
