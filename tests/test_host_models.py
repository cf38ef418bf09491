"""The foundation: tiny real-architecture models load the stock way and are named by ComfyUI."""

from __future__ import annotations

import pytest

from fixtures.tiny_models import TINY_MODELS


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_tiny_model_loads_through_stock_unet_loader(comfy, name):
    import nodes

    spec = TINY_MODELS[name]
    (model,) = nodes.UNETLoader().load_unet(spec.filename, "default")
    assert type(model.model.model_config).__name__ == spec.expected_config
    sd = model.model.diffusion_model.state_dict()
    assert any(
        k.startswith(("blocks.", "double_blocks.", "transformer_blocks.", "visual_transformer_blocks."))
        for k in sd
    )
