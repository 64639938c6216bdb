"""The SynchroRaMa network (paper section 3) built on diffusers.

One module per component; importing this package is cheap (no torch/diffusers import here):

- ``model.unet``          DenoisingUNet: SD 1.5 UNet with four attentions per transformer block (3.2)
- ``model.reference_net`` ReferenceNet: encodes reference image + motion frames, returns features (3.3)
- ``model.attention``     the attention processors and the added attention modules
- ``model.audio_proj``    AudioProjection: wav2vec2 hidden states -> per-frame audio tokens
- ``model.a2m``           A2M: audio-to-motion VAE producing motion frames (3.5)
- ``model.vp_flow``       VPFlow: volume-preserving flow of the A2M latent (3.5, figure 2c)
- ``model.emotion_embed`` EmotionEmbedding: concat(E_text, E_ser, E_va) -> tokens (3.6, eq. 1)
- ``model.losses``        diffusion, sync (eq. 2), emo (eq. 3), AU (eq. 4), attr-action (eq. 5), A2M VAE
- ``model.stages``        which parameters each training stage optimises
- ``core.sd15``          SD 1.5 folder layout, verification and loading of all components
- ``core.tiny_sd``       writes a tiny, seeded SD 1.5-like folder (same classes and file formats)
- ``model.scale``         parameter counts and training-memory estimate at paper scale
"""
