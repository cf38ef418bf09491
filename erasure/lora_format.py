"""Standard LoRA state dicts for ComfyUI diffusion models, and their safetensors files.

Key format the pack writes (what ComfyUI's stock LoraLoaderModelOnly, LoraModelLoader and SaveLoRA
handle):

    diffusion_model.<module>.lora_up.weight    [out, r]
    diffusion_model.<module>.lora_down.weight  [r, in]
    diffusion_model.<module>.alpha             scalar; the update is (alpha / r) * up @ down

We always write alpha = r, so the update is exactly up @ down. Files are safetensors only (never
pickles), written to a temporary file in the target folder and renamed over the target, so a
reader never sees half a file. Metadata values are strings.

What the pack reads is wider (``lora_modules``): the up/down pair above or PEFT's ``lora_B`` /
``lora_A`` pair, an optional ``.alpha``, under any layer name (which names fit a model is ComfyUI's
mapping, ``nodes.comfy_compat.lora_layer_names``). Before a file's tensors are read its header is
checked here (``check_header``), so a file that is not safetensors, is truncated, claims more bytes
than it has, names a tensor twice or holds integer tensors is refused by name; every tensor must be
finite (``erasure.checks``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from .checks import require_finite

PREFIX = "diffusion_model."
UP, DOWN, ALPHA = ".lora_up.weight", ".lora_down.weight", ".alpha"
PEFT_UP, PEFT_DOWN = ".lora_B.weight", ".lora_A.weight"
# suffix -> (role, format): ComfyUI's, kohya's and the pack's pair, then PEFT's (diffusers,
# ai-toolkit, diffusion-pipe). A module's up and down must be of one format.
_PAIRS = {"lora_up": (UP, DOWN), "peft": (PEFT_UP, PEFT_DOWN)}
_SUFFIXES = {
    suffix: (role, fmt) for fmt, (up, down) in _PAIRS.items() for role, suffix in (("up", up), ("down", down))
}
LORA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FILE_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}  # safetensors dtype -> bytes per value
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
READS = (
    "the pack reads .safetensors LoRA files of float16, bfloat16, float32 or float64 tensors: per layer "
    "<name>.lora_up.weight [out, rank] and <name>.lora_down.weight [rank, in] (or PEFT's .lora_B.weight "
    "and .lora_A.weight) and optionally a one-value <name>.alpha (scale alpha / rank), <name> being one "
    "ComfyUI's LoRA loader maps to a layer of the model (diffusion_model.blocks.0.cross_attn.k, "
    "lora_unet_blocks_0_cross_attn_k, transformer.double_blocks.0.img_attn_qkv for HunyuanVideo)"
)
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class LoraFileError(ValueError):
    """A file the pack cannot read as a LoRA; the message names the file and says what it reads."""


class LoraStateDict(dict):
    """A LORA_MODEL: a plain ``{key: tensor}`` dict (what stock nodes expect) that also carries
    ``metadata`` (str -> str) for the pack's savers."""

    def __init__(self, tensors: Mapping[str, Tensor] = (), metadata: Mapping[str, str] | None = None):
        super().__init__(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})


@dataclass(frozen=True)
class LoraModule:
    """One layer's update in a LoRA: (alpha / rank) * up @ down (scale 1 without alpha)."""

    name: str  # as the file names the layer: its keys without their suffix
    up: Tensor  # [out, rank]
    down: Tensor  # [rank, in] (a conv layer's down flattened)
    alpha: float | None
    format: str  # "lora_up" (lora_up/lora_down) or "peft" (lora_B/lora_A)

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]


def pack_version() -> str:
    """The pack's version from pyproject.toml ("unknown" when the file is not there)."""
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', _PYPROJECT.read_text(), re.MULTILINE)
    except OSError:
        return "unknown"
    return match.group(1) if match else "unknown"


def build_lora(factors: Mapping[str, tuple[Tensor, Tensor]], metadata: Mapping[str, str]) -> LoraStateDict:
    """LoRA state dict from ``{module: (up [out, r], down [r, in])}`` with alpha = r (scale 1).

    ``module`` is the name inside the diffusion model, e.g. "blocks.3.cross_attn.k". Every factor
    must be finite (ValueError naming the module otherwise).
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
    require_finite(tensors, "the LoRA made")
    return LoraStateDict(tensors, {str(k): str(v) for k, v in metadata.items()})


def _split(key: str) -> tuple[str, str, str | None] | None:
    """(layer name, role, format) of a key the pack reads, else None."""
    for suffix, (role, fmt) in _SUFFIXES.items():
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], role, fmt
    if key.endswith(ALPHA) and len(key) > len(ALPHA):
        return key[: -len(ALPHA)], "alpha", None
    return None


def lora_modules(lora: Mapping[str, Tensor], source: str = "the LoRA") -> dict[str, LoraModule]:
    """``{layer name as in the file: LoraModule}`` from a LoRA state dict in any format the pack reads.

    ValueError naming ``source`` and the key for: keys that are no LoRA entry, tensors that are not
    float16/bfloat16/float32/float64 or hold NaN or infinity, an up without its down (or the
    reverse), two ups or downs for one layer, an alpha that is not one non-zero value, and factors
    that do not multiply.
    """
    layers: dict[str, dict[str, tuple[str, Tensor, str | None]]] = {}
    unknown = []
    for key, value in lora.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if value.dtype not in LORA_DTYPES:
            raise ValueError(
                f"{source}: {key} is {str(value.dtype).removeprefix('torch.')}; LoRA tensors must be "
                "float16, bfloat16, float32 or float64"
            )
        parsed = _split(key)
        if parsed is None:
            unknown.append(key)
            continue
        name, role, fmt = parsed
        parts = layers.setdefault(name, {})
        if role in parts:
            raise ValueError(f"{source}: layer {name!r} has two {role} tensors: {parts[role][0]} and {key}")
        parts[role] = (key, value, fmt)
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} key(s) are no LoRA entry the pack reads, e.g. {unknown[:3]}; {READS}"
        )
    require_finite(lora, source)
    out = {}
    for name, parts in sorted(layers.items()):
        if "up" not in parts or "down" not in parts:
            role = "down" if "up" in parts else "up"
            fmt = next((fmt for _, _, fmt in parts.values() if fmt), "lora_up")
            suffix = _PAIRS[fmt][role == "down"]
            raise ValueError(f"{source}: LoRA module {name!r} lacks its {suffix.lstrip('.')} tensor")
        (up_key, up, up_fmt), (down_key, down, down_fmt) = parts["up"], parts["down"]
        if up_fmt != down_fmt:
            raise ValueError(f"{source}: {up_key} and {down_key} are of two LoRA formats; use one pair")
        if up.ndim < 2 or down.ndim < 2 or any(d != 1 for d in up.shape[2:]) or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"{source}: LoRA module {name!r}: up {tuple(up.shape)} and down {tuple(down.shape)} "
                "do not multiply"
            )
        alpha = None
        if "alpha" in parts:
            alpha_key, alpha_tensor, _ = parts["alpha"]
            if alpha_tensor.numel() != 1 or float(alpha_tensor.reshape(())) == 0:
                raise ValueError(
                    f"{source}: {alpha_key} must be one non-zero value (the scale is alpha / rank), got "
                    f"shape {tuple(alpha_tensor.shape)} {alpha_tensor.flatten()[:4].tolist()}"
                )
            alpha = float(alpha_tensor.reshape(()))
        out[name] = LoraModule(name, up.flatten(1), down.flatten(1), alpha, up_fmt)
    if not out:
        raise ValueError(f"{source}: the LoRA has no modules")
    return out


def lora_factors(
    lora: Mapping[str, Tensor], source: str = "the LoRA"
) -> dict[str, tuple[Tensor, Tensor, float]]:
    """``{module: (up, down, scale)}`` from a LoRA state dict in the format the pack writes (above);
    scale = alpha / r.

    Raises ValueError for everything ``lora_modules`` refuses, and for keys outside that format.
    """
    modules = lora_modules(lora, source)
    for name, module in modules.items():
        if not name.startswith(PREFIX) or module.format != "lora_up":
            suffix = UP if module.format == "lora_up" else PEFT_UP
            raise ValueError(
                f"{source}: LoRA key {name + suffix!r} is not in the format the pack writes: "
                f"{PREFIX!r}<module>{UP} / {DOWN} / {ALPHA}; it does not start with {PREFIX!r}"
                if not name.startswith(PREFIX)
                else f"{source}: LoRA key {name + suffix!r} is PEFT's format, not {UP} / {DOWN}"
            )
    return {name[len(PREFIX) :]: (m.up, m.down, m.scale) for name, m in modules.items()}


def save_lora_file(path: str | os.PathLike, lora: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``lora`` with ``metadata`` to ``path`` (must end in .safetensors) atomically."""
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(f"LoRA files are written as .safetensors only, not {target.name!r}")
    lora_factors(lora, f"the LoRA for {target.name}")  # refuse to write something loaders would misread
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


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_header(path: str | os.PathLike) -> dict:
    """The safetensors header of ``path`` as a dict, after checking it describes a readable LoRA
    file: LoraFileError naming the file and what is wrong (too short, a header length beyond the
    file or safetensors' limit, not JSON, a key twice, a non-float dtype, offsets that do not fit)."""
    source = Path(path)

    def fail(problem: str):
        raise LoraFileError(f"{source.name}: {problem}; {READS}")

    try:
        size = source.stat().st_size
        with source.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            raw = handle.read(min(length, MAX_HEADER_BYTES)) if size >= 8 else b""
    except OSError as error:
        raise LoraFileError(f"{source.name}: cannot be read ({error.strerror or error})") from error
    if size < 8:
        fail(f"it is {size} bytes long, too short for a safetensors file")
    if length > MAX_HEADER_BYTES:
        fail(
            f"its first 8 bytes give a header of {length} bytes, more than a safetensors header may have "
            f"({MAX_HEADER_BYTES}): it is not a safetensors file, or a damaged one"
        )
    if length > size - 8:
        fail(
            f"its header claims {length} bytes but only {size - 8} follow: the file is truncated or not "
            "a safetensors file"
        )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _Duplicate as duplicate:
        fail(f"its header names {duplicate.args[0]!r} twice")
    except (UnicodeDecodeError, ValueError):
        fail("its header is not JSON: it is not a safetensors file, or a damaged one")
    if not isinstance(header, dict):
        fail("its header is not a JSON object: it is not a safetensors file")
    data_bytes = size - 8 - length
    for key, info in header.items():
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                fail("its __metadata__ is not a map of strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            fail(f"tensor {key!r} has no dtype, shape and data_offsets entry")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in FILE_DTYPES:
            fail(f"tensor {key!r} is {dtype}; LoRA tensors must be F16, BF16, F32 or F64")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            fail(f"tensor {key!r} has the shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            fail(f"tensor {key!r} has the data offsets {offsets!r}")
        begin, end = offsets
        needed = math.prod(shape) * FILE_DTYPES[dtype]
        if end - begin != needed:
            fail(f"tensor {key!r} ({dtype} {shape}) needs {needed} bytes but its offsets span {end - begin}")
        if end > data_bytes:
            fail(
                f"tensor {key!r} ends at byte {end} of the data but the file holds only {data_bytes}: "
                "the file is truncated"
            )
    return header


def load_lora_file(path: str | os.PathLike) -> LoraStateDict:
    """Read a .safetensors LoRA (tensors and metadata) in any format the pack reads and check it
    (``check_header``, then ``lora_modules``); nothing is unpickled. LoraFileError names the file."""
    source = Path(path)
    if source.suffix != ".safetensors":
        raise LoraFileError(f"only .safetensors LoRA files are read, not {source.name!r}; {READS}")
    check_header(source)
    try:
        with safetensors.safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError, RuntimeError) as error:
        raise LoraFileError(f"{source.name}: cannot be read as safetensors ({error}); {READS}") from error
    try:
        lora_modules(tensors, source.name)
    except LoraFileError:
        raise
    except ValueError as error:
        raise LoraFileError(str(error)) from None
    return LoraStateDict(tensors, metadata)


def json_list(values) -> str:
    """Metadata encoding of a list of strings or pairs."""
    return json.dumps(list(values), ensure_ascii=False)
