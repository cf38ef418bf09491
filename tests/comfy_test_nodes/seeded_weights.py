"""Seeded random weights for tiny test models (diffusion models and text encoders alike)."""

from __future__ import annotations

import torch

# Lookup tables (nn.Embedding), initialised N(0, 1); Linear/Conv layers named "*_embedding" are
# ordinary layers and get the fan-in scaling below.
_LOOKUP_TABLES = (
    "shared.weight",
    "token_embedding.weight",
    "position_embedding.weight",
    "relative_attention_bias.weight",
)


def seeded_weights(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for the given parameter shapes, iterated in sorted key order.

    Norm scales are 1 and biases 0; lookup tables are N(0, 1); modulation tables N(0, 0.02^2);
    every other matrix or kernel W is N(0, 1/fan_in), so activations keep unit scale through
    the layers (fan_in = product of all dimensions but the first).
    """
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key, shape in sorted(shapes.items()):
        leaf = key.rsplit(".", 1)[-1]
        if "norm" in key or key.endswith(("ln_1.weight", "ln_2.weight")):
            tensor = torch.ones(shape) if leaf in ("weight", "scale") else torch.zeros(shape)
        elif leaf == "bias":
            tensor = torch.zeros(shape)
        elif "modulation" in key:
            tensor = torch.randn(shape, generator=generator) * 0.02
        elif key.endswith(_LOOKUP_TABLES):
            scale = 0.1 if "relative_attention_bias" in key else 1.0
            tensor = torch.randn(shape, generator=generator) * scale
        elif len(shape) >= 2:
            fan_in = int(torch.Size(shape[1:]).numel())
            tensor = torch.randn(shape, generator=generator) / fan_in**0.5
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        weights[key] = tensor.contiguous()
    return weights
