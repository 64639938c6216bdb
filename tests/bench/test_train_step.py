"""bench.train_step: the auxiliary-loss decode's saved activations (fake tensors), per decoder."""

from __future__ import annotations

from bench.train_step import decode_saved_bytes


def test_the_tiny_decoder_saves_far_less_and_both_scale_with_the_frames():
    vae1, vae2 = decode_saved_bytes("vae", 1, latent=8), decode_saved_bytes("vae", 2, latent=8)
    tiny1 = decode_saved_bytes("tiny", 1, latent=8)
    assert vae2 == 2 * vae1 and 0 < tiny1 < vae1 / 4
    # the decoder's output alone (3 x 64 x 64 bf16 per frame) is less than what it saves
    assert vae1 > 3 * 64 * 64 * 2
