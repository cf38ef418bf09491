"""Standard LoRA state dicts for ComfyUI diffusion models, and their safetensors files.

Key format (what ComfyUI's stock LoraLoaderModelOnly, LoraModelLoader and SaveLoRA handle):

    diffusion_model.<module>.lora_up.weight    [out, r]
    diffusion_model.<module>.lora_down.weight  [r, in]
    diffusion_model.<module>.alpha             scalar; the update is (alpha / r) * up @ down

We always write alpha = r, so the update is exactly up @ down. Files are safetensors only (never
pickles), written to a temporary file in the target folder and renamed over the target, so a
reader never sees half a file. Metadata values are strings.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor

PREFIX = "diffusion_model."
UP, DOWN, ALPHA = ".lora_up.weight", ".lora_down.weight", ".alpha"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class LoraStateDict(dict):
    """A LORA_MODEL: a plain ``{key: tensor}`` dict (what stock nodes expect) that also carries
    ``metadata`` (str -> str) for the pack's savers."""

    def __init__(self, tensors: Mapping[str, Tensor] = (), metadata: Mapping[str, str] | None = None):
        super().__init__(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})


def pack_version() -> str:
    """The pack's version from pyproject.toml ("unknown" when the file is not there)."""
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', _PYPROJECT.read_text(), re.MULTILINE)
    except OSError:
        return "unknown"
    return match.group(1) if match else "unknown"


def build_lora(factors: Mapping[str, tuple[Tensor, Tensor]], metadata: Mapping[str, str]) -> LoraStateDict:
    """LoRA state dict from ``{module: (up [out, r], down [r, in])}`` with alpha = r (scale 1).

    ``module`` is the name inside the diffusion model, e.g. "blocks.3.cross_attn.k".
    """
    tensors: dict[str, Tensor] = {}
    for module, (up, down) in factors.items():
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"{module}: up {tuple(up.shape)} and down {tuple(down.shape)} are not LoRA factors"
            )
        base = PREFIX + module
        tensors[base + UP] = up.detach().float().cpu().contiguous()
        tensors[base + DOWN] = down.detach().float().cpu().contiguous()
        tensors[base + ALPHA] = torch.tensor(float(up.shape[1]))
    return LoraStateDict(tensors, {str(k): str(v) for k, v in metadata.items()})


def lora_factors(lora: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor, float]]:
    """``{module: (up, down, scale)}`` from a LoRA state dict in the format above; scale = alpha / r.

    Raises ValueError for keys outside the format, an up without its down (or the reverse), and
    shapes that do not multiply.
    """
    modules: dict[str, dict[str, Tensor]] = {}
    for key, value in lora.items():
        if not key.startswith(PREFIX):
            raise ValueError(f"LoRA key {key!r} does not start with {PREFIX!r}")
        for suffix in (UP, DOWN, ALPHA):
            if key.endswith(suffix):
                modules.setdefault(key[len(PREFIX) : -len(suffix)], {})[suffix] = value
                break
        else:
            raise ValueError(f"LoRA key {key!r} is not a {UP}, {DOWN} or {ALPHA} entry")
    out = {}
    for module, parts in sorted(modules.items()):
        if UP not in parts or DOWN not in parts:
            missing = UP if UP not in parts else DOWN
            raise ValueError(f"LoRA module {module!r} lacks its {missing.lstrip('.')} tensor")
        up, down = parts[UP], parts[DOWN]
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"LoRA module {module!r}: up {tuple(up.shape)} and down {tuple(down.shape)} do not multiply"
            )
        rank = down.shape[0]
        alpha = float(parts[ALPHA].item()) if ALPHA in parts else float(rank)
        out[module] = (up, down, alpha / rank)
    if not out:
        raise ValueError("the LoRA has no modules")
    return out


def save_lora_file(path: str | os.PathLike, lora: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``lora`` with ``metadata`` to ``path`` (must end in .safetensors) atomically."""
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(f"LoRA files are written as .safetensors only, not {target.name!r}")
    lora_factors(lora)  # refuse to write something loaders would misread
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in lora.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        safetensors.torch.save_file(tensors, tmp, metadata={str(k): str(v) for k, v in metadata.items()})
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_lora_file(path: str | os.PathLike) -> LoraStateDict:
    """Read a .safetensors LoRA (tensors and metadata) and check its format; nothing is unpickled."""
    source = Path(path)
    if source.suffix != ".safetensors":
        raise ValueError(f"only .safetensors LoRA files are read, not {source.name!r}")
    with safetensors.safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    lora_factors(tensors)
    return LoraStateDict(tensors, metadata)


def json_list(values) -> str:
    """Metadata encoding of a list of strings or pairs."""
    return json.dumps(list(values), ensure_ascii=False)
