"""The closed-form input-side edit, its low-rank factors, what it does to activations, block ranges.

Step 5 and 6 of the refusal-vector method (shared/methods.md section 1): for a linear layer
y = W x + b and an orthonormal basis Q [in, m] of concept directions,

    W' = W (I - lambda Q Q^T) = W + up @ down,   up = -lambda W Q  [out, m],  down = Q^T  [m, in],

a rank-m update: exactly a LoRA with scale 1. The bias is unchanged. All maths in float32.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor


def input_side_factors(weight: Tensor, basis: Tensor, strength: float) -> tuple[Tensor, Tensor]:
    """(up, down) with up = -lambda W Q [out, m] and down = Q^T [m, in], both float32, contiguous."""
    if weight.ndim != 2:
        raise ValueError(f"expected a linear weight [out, in], got shape {tuple(weight.shape)}")
    if basis.ndim != 2 or basis.shape[0] != weight.shape[1]:
        raise ValueError(
            f"basis {tuple(basis.shape)} does not match the layer's input width {weight.shape[1]}"
        )
    w = weight.float()
    q = basis.to(device=w.device, dtype=torch.float32)
    up = (-float(strength)) * (w @ q)
    return up.contiguous(), q.T.contiguous()


def edited_weight(weight: Tensor, basis: Tensor, strength: float) -> Tensor:
    """W' = W - lambda (W Q) Q^T as a dense float32 matrix (for checks and measurements only)."""
    up, down = input_side_factors(weight, basis, strength)
    return weight.float() + up @ down


def pair_distance_ratio(
    weight: Tensor, basis: Tensor, strength: float, unsafe: Tensor, safe: Tensor
) -> Tensor:
    """Per pair i: ||W' (u_i - s_i)|| / ||W (u_i - s_i)||  (the bias cancels); u, s [M, in] -> [M]."""
    delta = (unsafe.float() - safe.float()).to(weight.device)
    up, down = input_side_factors(weight, basis, strength)
    output = delta @ weight.float().T
    after = (output + (delta @ down.T) @ up.T).norm(dim=1)
    return after / output.norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)


def relative_output_change(
    weight: Tensor, bias: Tensor | None, basis: Tensor, strength: float, tokens: Tensor
) -> float:
    """||Y' - Y||_F / ||Y||_F over token rows X [N, in], with Y = X W^T + b and Y' = X W'^T + b."""
    x = tokens.float().to(weight.device)
    y = x @ weight.float().T
    if bias is not None:
        y = y + bias.float()
    up, down = input_side_factors(weight, basis, strength)
    change = (x @ down.T) @ up.T
    return float(change.norm() / y.norm().clamp_min(torch.finfo(torch.float32).tiny))


_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_block_range(spec: str, num_blocks: int) -> list[int]:
    """Block indices from "all" or a comma list of indices and inclusive ranges ("0-9,28,29").

    Returns sorted unique indices; raises ValueError naming the bad part and the valid range.
    """
    valid = f"blocks are numbered 0-{num_blocks - 1} in this model"
    text = spec.strip().lower()
    if text in ("all", "*"):
        return list(range(num_blocks))
    if not text:
        raise ValueError(f"empty block selection; write 'all' or ranges like '0-9,28,29' ({valid})")
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        match = _RANGE.match(part)
        if match:
            first, last = int(match.group(1)), int(match.group(2))
            if first > last:
                raise ValueError(f"block range '{part}' runs backwards; write it as '{last}-{first}'")
        elif part.isdigit():
            first = last = int(part)
        else:
            raise ValueError(
                f"cannot read '{part}' in block selection '{spec}': use 'all', 'N' or 'N-M' ({valid})"
            )
        if last >= num_blocks:
            raise ValueError(f"block selection '{part}' is outside the model: {valid}")
        chosen.update(range(first, last + 1))
    return sorted(chosen)
