"""The DenoisingUNet refuses the diffusers calls that would silently drop its added attentions."""

from __future__ import annotations

import pytest
from diffusers.models.attention_processor import AttnProcessor2_0

from model.unet import PROCESSOR_REPLACING_CALLS, DenoisingUNet

from ..tiny import UNET_KWARGS


@pytest.fixture(scope="module")
def unet(base_unet):
    return DenoisingUNet.from_base(base_unet, **UNET_KWARGS)


@pytest.mark.parametrize("call", PROCESSOR_REPLACING_CALLS)
def test_processor_replacing_calls_raise_on_the_unet_and_its_backbone(unet, call):
    before = sum(p.numel() for p in unet.parameters())
    for target in (unet, unet.unet):
        args = (AttnProcessor2_0(),) if call == "set_attn_processor" else ()
        with pytest.raises(RuntimeError, match="would silently drop the added"):
            getattr(target, call)(*args)
    assert sum(p.numel() for p in unet.parameters()) == before


def test_the_guarded_backbone_saves_and_loads_as_before(unet, tmp_path):
    unet.save_pretrained(tmp_path)
    again = DenoisingUNet.from_pretrained(tmp_path)
    assert type(again.unet).__name__ == "BackboneUNet"
    assert all(a.equal(b) for a, b in zip(unet.state_dict().values(), again.state_dict().values()))
