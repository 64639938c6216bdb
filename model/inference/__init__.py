"""Inference (paper section 4): DDIM sampling with classifier-free guidance of long talking videos.

- ``params``      the ``inference`` section (steps, guidance, first-clip motion, dtype)
- ``guidance``    classifier-free guidance over batched branches
- ``pipeline``    ``TalkingFacePipeline`` (a diffusers ``DiffusionPipeline``): every component, clip chaining
- ``checkpoints`` the pipeline from the training stages' checkpoints (``from_pretrained`` per component)
- ``video``       frames + driving audio -> H.264 mp4

Not named ``pipeline`` at the package level: that is the data package.
"""
