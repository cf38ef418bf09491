"""Every ComfyUI internal the refusal-vector nodes touch, in one thin module.

* which architecture a MODEL is (by its ComfyUI model config) and its width and block count;
* prompts encoded with the user's CLIP, and their real (non-padding) token rows;
* text-side activations: Wan's context (the model's own ``text_embedding`` on the prompt's real
  tokens, no denoising needed) and, for HunyuanVideo, the inputs of text-stream layers collected
  during a short real sampling run (a DIFFUSION_MODEL wrapper on a clone hooks the layers while
  the sampler calls the model);
* weights as the model computes them (its own patches applied, float32), low-rank LoRA patches on
  a clone through ``comfy.weight_adapter.LoRAAdapter`` with the matched keys counted.

Key names are the diffusion model's module names ("blocks.3.cross_attn.k"); ComfyUI state-dict
keys prefix them with "diffusion_model." and end in ".weight".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import comfy.lora
import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import torch
import torch.nn.functional as F
from comfy.weight_adapter import LoRAAdapter
from torch import Tensor

# ComfyUI model config class -> our architecture name. Wan 2.2 A14B experts (high and low noise)
# are Wan 2.1 14B architecture and are detected as WAN21_T2V / WAN21_I2V.
ARCHITECTURES = {
    "WAN21_T2V": "wan21_t2v",
    "WAN21_I2V": "wan21_i2v",
    "WAN22_T2V": "wan22_5b",
    "HunyuanVideo": "hunyuan_video",
}
SUPPORTED_TEXT = "Wan 2.1 T2V/I2V (1.3B, 14B), Wan 2.2 5B, Wan 2.2 A14B experts, HunyuanVideo"
WAN_TARGETS = ("cross_attn.k", "cross_attn.v")
HUNYUAN_TARGETS = ("txt_attn.qkv", "txt_mlp.0")
HUNYUAN_POOLED = "vector_in.in_layer"  # takes the pooled CLIP-L vector into the modulation
NO_BLOCK = -1  # block index of a layer outside the blocks: edited whatever blocks are chosen
# Latent probed for HunyuanVideo's text stream: 5 frames of 128 x 128 pixels (128 video tokens).
HUNYUAN_PROBE_LATENT = (2, 16, 16)
_CAPTURE_KEY = "video_unlearning.refusal_capture"
_FINGERPRINT_VALUES = 256


@dataclass(frozen=True)
class Architecture:
    name: str  # one of ARCHITECTURES' values
    family: str  # "wan" or "hunyuan_video"
    width: int  # input width of the edited layers
    num_blocks: int  # blocks that can be chosen


@dataclass(frozen=True)
class SiteSpec:
    """An activation site: where to read it and which layers take it as input."""

    name: str
    modules: tuple[tuple[int, str], ...]
    per_step: bool = False  # the activation changes from one sampling step to the next


def _config_name(model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    return type(config).__name__ if config is not None else type(model).__name__


def detect_architecture(model) -> Architecture:
    """The architecture of a MODEL, or ValueError naming what it is and what is supported."""
    config = _config_name(model)
    name = ARCHITECTURES.get(config)
    if name is None:
        raise ValueError(
            f"this MODEL is {config}, which the refusal-vector nodes do not support; "
            f"supported: {SUPPORTED_TEXT}"
        )
    dm = model.model.diffusion_model
    if name == "hunyuan_video":
        return Architecture(name, "hunyuan_video", dm.hidden_size, len(dm.double_blocks))
    return Architecture(name, "wan", dm.dim, len(dm.blocks))


def site_specs(arch: Architecture) -> list[SiteSpec]:
    """Wan: one site, the text context, feeding every block's cross_attn.k and .v (the I2V image
    keys k_img / v_img are left alone). HunyuanVideo: each double block's txt_attn.qkv and txt_mlp.0
    inputs, one site each, plus the pooled CLIP-L vector's entry into the modulation (vector_in),
    which carries most of the prompt's effect on the velocity in the tiny model."""
    if arch.family == "wan":
        modules = tuple((i, f"blocks.{i}.{t}") for i in range(arch.num_blocks) for t in WAN_TARGETS)
        return [SiteSpec("context", modules)]
    stream = [
        SiteSpec(f"double_blocks.{i}.{t}", ((i, f"double_blocks.{i}.{t}"),), per_step=True)
        for i in range(arch.num_blocks)
        for t in HUNYUAN_TARGETS
    ]
    return [*stream, SiteSpec(HUNYUAN_POOLED, ((NO_BLOCK, HUNYUAN_POOLED),))]


def weight_key(module: str) -> str:
    return f"diffusion_model.{module}.weight"


def current_weights(model, modules: Sequence[str]) -> dict[str, tuple[Tensor, Tensor | None]]:
    """``{module: (weight, bias)}`` in float32 on the CPU as the model computes them: the stored
    weight (the un-patched backup when the model is loaded) with the MODEL's own patches applied."""
    keys = model.get_key_patches("diffusion_model.")
    out = {}
    for module in modules:
        tensors = []
        for key in (weight_key(module), f"diffusion_model.{module}.bias"):
            if key not in keys:
                if key.endswith(".bias"):
                    tensors.append(None)
                    continue
                raise KeyError(f"the model has no layer {module!r}")
            (stored, convert), *patches = keys[key]
            value = convert(stored.detach().to(device="cpu", dtype=torch.float32, copy=True), inplace=True)
            if patches:
                value = comfy.lora.calculate_weight(patches, value, key)
            tensors.append(value)
        out[module] = (tensors[0], tensors[1])
    return out


def fingerprint(model, arch: Architecture) -> Tensor:
    """Evenly sampled values of the model's text-input weight: tells apart two models of one
    architecture (the two Wan 2.2 A14B experts) while surviving fp8/fp16/bf16 storage."""
    module = "text_embedding.0" if arch.family == "wan" else "txt_in.input_embedder"
    weight = current_weights(model, [module])[module][0].flatten()
    # Integer spacing: float32 linspace rounds past the end once numel > 2**24 (Wan 14B: 4096 x 5120).
    index = torch.arange(_FINGERPRINT_VALUES) * (weight.numel() - 1) // (_FINGERPRINT_VALUES - 1)
    return weight[index].clone()


def same_model(a: Tensor, b: Tensor) -> bool:
    return bool(F.cosine_similarity(a.float(), b.float(), dim=0) > 0.98)


def encode(clip, text: str) -> tuple[list, Tensor]:
    """(CONDITIONING, real-token mask [T]) of one prompt."""
    conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    cond, extras = conditioning[0]
    mask = extras.get("attention_mask")
    if mask is not None:
        real = mask.reshape(-1).bool()
    else:  # Wan's umT5 zeroes its padding rows and sends no mask
        real = cond[0].abs().sum(dim=-1) > 0
    if not real.any():
        raise ValueError(f"the prompt {text!r} encodes to no tokens")
    return conditioning, real


def wan_context(model, conditionings: Sequence[tuple[list, Tensor]]) -> list[list[Tensor]]:
    """Wan's cross-attention context for each prompt: ``text_embedding`` (Linear, GELU, Linear) of
    the prompt's real token rows, computed in float32 with the model's weights (no denoising pass).
    Returns activations[prompt][0] = [T_real, width]."""
    dm = model.model.diffusion_model
    weights = current_weights(model, ["text_embedding.0", "text_embedding.2"])
    (w0, b0), (w2, b2) = weights["text_embedding.0"], weights["text_embedding.2"]
    activation = dm.text_embedding[1]
    out = []
    for conditioning, real in conditionings:
        rows = conditioning[0][0][0][real].to(device="cpu", dtype=torch.float32)
        out.append([F.linear(activation(F.linear(rows, w0, b0)), w2, b2)])
    return out


def _capture_wrapper(modules: Sequence[str], store: dict[str, list[Tensor]]) -> Callable:
    def wrapper(executor, *args, **kwargs):
        dm = executor.class_obj
        hooks = []
        for name in modules:

            def hook(_module, inputs, name=name):
                store[name].append(inputs[0].detach()[0].to(device="cpu", dtype=torch.float32))

            hooks.append(dm.get_submodule(name).register_forward_pre_hook(hook))
        try:
            return executor(*args, **kwargs)
        finally:
            for handle in hooks:
                handle.remove()

    return wrapper


def sampled_inputs(
    model, conditionings: Sequence[tuple[list, Tensor]], specs: Sequence[SiteSpec], steps: int, seed: int = 0
) -> dict[str, list[list[Tensor]]]:
    """Inputs of each site's layer during a short real sampling run per prompt (euler, ``steps``
    steps, cfg 1 so only the prompt's own branch runs, same seed for every prompt).

    Returns ``{site: activations}``, activations[prompt][step] = [T_real, width] (text-stream
    sites, every step) or [1, width] (a per-prompt vector, first step only).
    """
    modules = [spec.name for spec in specs]
    latent_format = model.get_model_object("latent_format")
    latent = torch.zeros((1, latent_format.latent_channels, *HUNYUAN_PROBE_LATENT))
    noise = comfy.sample.prepare_noise(latent, seed)
    out: dict[str, list[list[Tensor]]] = {name: [] for name in modules}
    for conditioning, real in conditionings:
        comfy.model_management.throw_exception_if_processing_interrupted()
        store: dict[str, list[Tensor]] = {name: [] for name in modules}
        probe = model.clone()
        probe.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, _CAPTURE_KEY, _capture_wrapper(modules, store)
        )
        comfy.sample.sample(
            probe,
            noise,
            steps,
            1.0,
            "euler",
            "simple",
            conditioning,
            conditioning,
            latent,
            disable_pbar=True,
            seed=seed,
        )
        for spec in specs:
            seen = store[spec.name]
            if len(seen) != steps:
                raise RuntimeError(f"expected {steps} calls of {spec.name} while sampling, saw {len(seen)}")
            if spec.per_step:
                out[spec.name].append([rows[real] for rows in seen])
            else:
                out[spec.name].append([seen[0].reshape(1, -1)])
    return out


def add_lowrank_patches(model, factors: dict[str, tuple[Tensor, Tensor]]):
    """A clone of ``model`` with ``W += up @ down`` on each module, as LoRA adapters (alpha = rank,
    scale 1), never a dense copy. Raises when any key fails to match (ComfyUI skips them silently)."""
    patched = model.clone()
    patches = {
        weight_key(module): LoRAAdapter(set(), (up, down, float(down.shape[0]), None, None, None))
        for module, (up, down) in factors.items()
    }
    matched = set(patched.add_patches(patches, 1.0))
    missing = sorted(set(patches) - matched)
    if not patches or missing:
        raise RuntimeError(
            f"only {len(matched)} of {len(patches)} layers could be patched; missing: {missing[:5]}"
            if patches
            else "nothing to patch: no layer was selected"
        )
    return patched
