"""Refusals of broken numbers: what the pack reads or makes on its way into a MODEL or a file must be
finite, and the error says which input, which key and what is wrong.

ComfyUI's own input validation compares a FLOAT with its min and max, and every comparison with NaN
is false: NaN passes it. One NaN in a LoRA factor or a strength makes every output of the patched
model NaN, so each node checks before it patches or writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


def non_finite(tensor: Tensor) -> str | None:
    """None when every value of ``tensor`` is finite, else what is wrong, e.g.
    "3 NaN and 1 infinite of 2048 values (the first at [0, 5])"."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return None
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return None
    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    first = [int(i) for i in (~finite).nonzero()[0]]
    parts = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "infinite")) if n]
    where = f" (the first at {first})" if first else ""
    return f"{' and '.join(parts)} of {tensor.numel()} values{where}"


def require_finite(
    tensors: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]], source: str, hint: str = ""
) -> None:
    """ValueError naming ``source`` and the first key whose tensor holds NaN or infinity."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    for key, tensor in items:
        problem = non_finite(tensor)
        if problem:
            raise ValueError(f"{source}: {key} has {problem}{'; ' + hint if hint else ''}")


def finite_number(name: str, value, hint: str = "") -> float:
    """``value`` as a float; ValueError naming the input when it is NaN, infinite or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {value!r}, not a number{'; ' + hint if hint else ''}")
    if not math.isfinite(value):
        raise ValueError(
            f"{name} is {value}: it must be a finite number (NaN or infinity would make every output "
            f"of the model NaN){'; ' + hint if hint else ''}"
        )
    return float(value)
