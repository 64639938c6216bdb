"""The trainer's helpers (:mod:`model.train` reads top to bottom and uses them):

- :mod:`.params`: ``train.common`` + ``train.<stage>`` (+ ``train.tiny`` for the tiny profile) -> ``TrainParams``;
- :mod:`.guards`: start-of-run size checks naming both keys, and the run's provenance (git, packages, device);
- :mod:`.data`: the A2M loader mode, a tensor-only collate, the resumable batch stream;
- :mod:`.objective`: DDPM noising from SD 1.5's scheduler config, targets, min-SNR, noise offset, per-sample draws;
- :mod:`.step`: the wrapped networks of each stage and the losses of a micro-batch;
- :mod:`.aux`: the auxiliary losses (eq. 2-5) behind their weights and judges;
- :mod:`.ema`, :mod:`.checkpoint`, :mod:`.runlog`: EMA, save/resume/keep-last-N, dvclive + timings.
"""
