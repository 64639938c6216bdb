"""The SynchroRaMa network (paper section 3) built on diffusers, its training, inference and evaluation.

One module per component; importing this package is cheap (no torch/diffusers import here). It
stands on ``core`` (and the ``judges`` package), never on ``pipeline``, and imports without Ray, DVC
or MediaPipe (DESIGN 1.1).

- ``model.unet``          DenoisingUNet: SD 1.5 UNet with four attentions per transformer block (3.2)
- ``model.reference_net`` ReferenceNet: encodes reference image + motion frames, returns features (3.3)
- ``model.attention``     the attention processors and the added attention modules
- ``model.audio_proj``    AudioProjection: wav2vec2 hidden states -> per-frame audio tokens
- ``model.a2m``           A2M: audio-to-motion VAE producing motion frames (3.5)
- ``model.vp_flow``       VPFlow: volume-preserving flow of the A2M latent (3.5, figure 2c)
- ``model.emotion_embed`` EmotionEmbedding: concat(E_text, E_ser, E_va) -> tokens (3.6, eq. 1)
- ``model.losses``        diffusion, sync (eq. 2), emo (eq. 3), AU (eq. 4), attr-action (eq. 5), A2M VAE
- ``model.stages``        which parameters each training stage optimises
- ``model.builder``       ModelParams (``model`` section of params.yaml) and THE builder of all components,
                          from a local SD 1.5 folder or, without weights, at paper scale
- ``model.conditioning``  batch -> UNet/ReferenceNet conditions, classifier-free-guidance dropout with a
                          real null per condition (shared by training and inference)
- ``model.data``          the training loader: clip shards + feature sidecars -> stage-1/stage-2 samples
- ``model.metrics``       (a room) Table 1 metrics, functional + streaming, cross-checked against references
- ``model.train``         the trainer (A2M, stage 1, stage 2; helpers in ``model.training``)
- ``model.inference``     ``TalkingFacePipeline``: DDIM with classifier-free guidance over chained windows (not named
                          ``pipeline``, which is the data package); ``model.generate`` its command line
- ``model.evaluate``      the Table 1 stage on the test split (``model.evaluation``: params, reference statistics, reports)

Below ``model``: ``core.sd15`` (SD 1.5 folder layout and verification), ``core.tiny_sd`` (a tiny, seeded
SD 1.5-like folder), ``core.shards`` (the shard format the loader reads), ``core.mp4`` (frame decoding).
The paper-scale parameter counts and memory estimate are a benchmark: ``python -m bench.paper_scale``.
"""

#: component classes by name, imported on first access (``model.DenoisingUNet``): diffusers resolves a saved
#: pipeline's ``model_index.json`` entries ``["model", "<Class>"]`` through this package
_CLASSES = {"DenoisingUNet": "model.unet", "ReferenceNet": "model.reference_net", "AudioProjection": "model.audio_proj",
            "EmotionEmbedding": "model.emotion_embed", "A2M": "model.a2m", "ImageProjection": "model.image_proj",
            "TalkingFacePipeline": "model.inference.pipeline"}


def __getattr__(name: str):
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
