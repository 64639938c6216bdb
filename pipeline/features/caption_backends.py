"""Caption backends: one small interface over the video-language models that caption clips.

A backend turns a batch of frame stacks into one caption each (paper section 3: the attribute and
action description that VideoLLaMA2 gives every training video)::

    backend = make_backend("transformers")       # or "videollama2"
    backend.setup(folder, device="cpu")
    backend.generate([frames, ...], prompt, settings) -> ["caption", ...]

``frames`` is one clip's sampled frames, ``(N, H, W, 3)`` uint8 RGB. Decoding is greedy
(:class:`GenerationSettings`); ``tokens`` counts the tokens generated so far (for the benchmark).

* ``transformers``: any video-capable ``AutoModelForImageTextToText`` + ``AutoProcessor`` folder.
  The prompt goes through the processor's chat template. With ``frames_as: video`` (``auto``
  picks it when the processor has a video processor: Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision, ...)
  the frames are one video input; with ``images`` (``auto`` on processors without one, e.g. the
  LLaVA layout of llava-interleave, which was trained on videos as frame sequences) they are N
  image inputs. A batch is padded on the left so every row's prompt ends where generation starts.
  transformers' video processors need torchvision; without it such a folder is an error that says so.
* ``videollama2``: the VideoLLaMA2 package's own API (``model_init`` / ``mm_infer``) on a local
  checkpoint folder. ``mm_infer`` takes one clip per call, so a batch runs clip by clip.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

VIDEOLLAMA2_INSTALL = "pip install git+https://github.com/DAMO-NLP-SG/VideoLLaMA2"


class CaptionBackendError(RuntimeError):
    """A backend cannot run here (package missing, processor unusable): the message says the fix."""


@dataclass(frozen=True)
class GenerationSettings:
    """How captions are decoded (recorded in every sidecar json)."""

    max_new_tokens: int = 128
    do_sample: bool = False  # greedy: the same clip and weights always give the same caption
    num_beams: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaptionBackend(abc.ABC):
    """Loads one captioning model once per worker and captions batches of frame stacks."""

    name: str = ""

    def __init__(self) -> None:
        self.tokens = 0  # tokens generated since setup (all clips)
        self.model_class = ""

    @abc.abstractmethod
    def setup(self, folder: Path, device: str = "cpu") -> None:
        """Load the model from a local folder (never from the network)."""

    @abc.abstractmethod
    def generate(self, videos: Sequence[np.ndarray], prompt: str, settings: GenerationSettings) -> list[str]:
        """One caption per ``(N, H, W, 3)`` uint8 frame stack."""


class TransformersBackend(CaptionBackend):
    """``AutoModelForImageTextToText`` + ``AutoProcessor``: Qwen2-VL, LLaVA-OneVision, LLaVA layouts."""

    name = "transformers"

    def __init__(self, frames_as: Literal["auto", "video", "images"] = "auto", dtype: str = "auto") -> None:
        super().__init__()
        self.frames_as = frames_as
        self.dtype = dtype

    def setup(self, folder: Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.device = torch.device(device)
        try:
            self.processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        except ImportError as e:
            if "torchvision" in str(e).lower():
                raise CaptionBackendError(
                    f"{folder}: this model's processor needs torchvision for video input, which is not installed; "
                    f"install the torchvision build that matches torch, or caption with a processor without a video "
                    f"processor (a LLaVA layout such as llava-interleave, frames as images) or backend: videollama2") from e
            raise
        dtype = {"auto": torch.float16 if self.device.type == "cuda" else torch.float32, "float32": torch.float32,
                 "float16": torch.float16, "bfloat16": torch.bfloat16}[self.dtype]
        self.model = AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True, dtype=dtype).to(self.device).eval()
        self.model_class = type(self.model).__name__
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"  # batched generation: prompts end where new tokens begin
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        has_video = getattr(self.processor, "video_processor", None) is not None
        self.mode = ("video" if has_video else "images") if self.frames_as == "auto" else self.frames_as
        if self.mode == "video" and not has_video:
            raise CaptionBackendError(f"{folder}: frames_as: video, but {type(self.processor).__name__} has no video "
                                      f"processor; use frames_as: images (or auto)")
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else []) | {tokenizer.pad_token_id}

    def _messages(self, n_frames: int, prompt: str) -> list[dict[str, Any]]:
        visual = [{"type": "video"}] if self.mode == "video" else [{"type": "image"}] * n_frames
        return [{"role": "user", "content": [*visual, {"type": "text", "text": prompt}]}]

    def generate(self, videos: Sequence[np.ndarray], prompt: str, settings: GenerationSettings) -> list[str]:
        torch = self.torch
        texts = [self.processor.apply_chat_template(self._messages(len(v), prompt), add_generation_prompt=True, tokenize=False)
                 for v in videos]
        visual = ({"videos": [np.asarray(v) for v in videos]} if self.mode == "video"
                  else {"images": [[np.asarray(f) for f in v] for v in videos]})
        inputs = self.processor(text=texts, padding=True, return_tensors="pt", **visual).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=settings.do_sample, num_beams=settings.num_beams,
                                      max_new_tokens=settings.max_new_tokens, pad_token_id=self.processor.tokenizer.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:].cpu().numpy()
        for row in new:
            stops = [i for i, t in enumerate(row.tolist()) if t in self.stop_ids]
            self.tokens += (stops[0] + 1) if stops else len(row)
        return [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]


class VideoLlama2Backend(CaptionBackend):
    """VideoLLaMA2 through its own package (``videollama2.model_init`` / ``mm_infer``)."""

    name = "videollama2"

    def setup(self, folder: Path, device: str = "cpu") -> None:
        try:
            import videollama2
        except ModuleNotFoundError as e:
            if e.name != "videollama2":
                raise
            raise CaptionBackendError(
                f"features.caption.backend is videollama2 but the videollama2 package is not installed: "
                f"`{VIDEOLLAMA2_INSTALL}` (it needs a CUDA GPU), or set features.caption.backend: transformers "
                f"with a transformers video-LLM folder") from None
        self.api = videollama2
        # model_init reads the checkpoint from a local folder; its vision tower (config.json
        # mm_vision_tower) must be a local folder too when offline.
        self.model, self.processors, self.tokenizer = videollama2.model_init(str(folder))
        self.model_class = type(self.model).__name__

    def generate(self, videos: Sequence[np.ndarray], prompt: str, settings: GenerationSettings) -> list[str]:
        captions = []
        for frames in videos:
            tensor = self.processors["video"](np.asarray(frames))
            text = self.api.mm_infer(tensor, prompt, model=self.model, tokenizer=self.tokenizer, modal="video",
                                     do_sample=settings.do_sample, max_new_tokens=settings.max_new_tokens)
            self.tokens += len(self.tokenizer(text, add_special_tokens=False).input_ids) + 1  # + the end token
            captions.append(text.strip())
        return captions


BACKENDS: dict[str, type[CaptionBackend]] = {"transformers": TransformersBackend, "videollama2": VideoLlama2Backend}


def make_backend(name: str, **options: Any) -> CaptionBackend:
    if name not in BACKENDS:
        raise ValueError(f"unknown caption backend '{name}' (one of: {', '.join(BACKENDS)})")
    return BACKENDS[name](**options)
