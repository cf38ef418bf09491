"""Every ComfyUI internal the refusal-vector nodes touch, in one thin module.

* which architecture a MODEL is (by its ComfyUI model config class and the structure of its
  diffusion model together) and its width and block count;
* prompts encoded with the user's CLIP, and their real (non-padding) token rows;
* text-side activations: Wan's context (the model's own ``text_embedding`` on the prompt's real
  tokens, no denoising needed) and, for HunyuanVideo and HunyuanVideo 1.5, the inputs of
  text-stream layers collected during a short real sampling run (a DIFFUSION_MODEL wrapper on a
  clone hooks the layers while the sampler calls the model);
* weights as the model computes them (its own patches applied, float32), low-rank LoRA patches on
  a clone through ``comfy.weight_adapter.LoRAAdapter`` with the matched keys counted.

Key names are the diffusion model's module names ("blocks.3.cross_attn.k"); ComfyUI state-dict
keys prefix them with "diffusion_model." and end in ".weight".
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import comfy.lora
import comfy.lora_convert
import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import torch
import torch.nn.functional as F
from comfy.weight_adapter import LoRAAdapter
from torch import Tensor

from ..erasure.checks import require_finite


@dataclass(frozen=True)
class Variant:
    """A ComfyUI model config class the nodes accept: our name for it and what it is."""

    name: str  # architecture name: in refusal vectors and in LoRA metadata (base_architecture)
    # which text path is edited: "wan", "hunyuan_video", "hunyuan_video15", "ltxv", "ltxav", "kandinsky5",
    # "cogvideox"
    family: str
    label: str  # for people, in messages
    # Why Unlearn: Train LoRA cannot train it ("": it can). The refusal-vector nodes need no
    # sampling on Wan and a plain text-prompted one on HunyuanVideo, so they take every variant.
    untrainable: str = ""


# ComfyUI model config class (comfy.supported_models) -> what it is. Accepted only when the
# diffusion model also has the family's text path (``text_path_problem``). Wan 2.2 A14B experts
# (high and low noise) are Wan 2.1 14B architecture and are detected as WAN21_T2V / WAN21_I2V. The
# Wan variants below (all in ComfyUI 0.3.75 but Animate 2, Causal AR, SCAIL, SCAIL-2 and WanDancer,
# which came later) keep Wan's text path unchanged: umT5 rows -> ``text_embedding`` -> every
# block's ``cross_attn.k`` / ``.v`` (VACE's extra ``vace_blocks`` read the same context and are
# edited too); what they add (VACE context, camera, audio, music, pose and face inputs, image keys)
# never enters it. HunyuanVideo 1.5 (one config class for T2V and I2V: its I2V image goes in as
# concat channels and SigLIP rows) is its own family: Qwen2.5-VL rows through the token refiner
# into the double blocks' text stream, byT5 glyph rows joining that stream, no pooled vector. Left
# out on purpose: WAN21_FlowRVS (it outputs segmentation masks, not video), HunyuanVideo 1.5's
# super-resolution model (HunyuanVideo15_SR_Distilled: it refines a low-resolution video, its text
# path is 1.5's) and HunyuanImage.
VARIANTS: dict[str, Variant] = {
    "WAN21_T2V": Variant("wan21_t2v", "wan", "Wan 2.1 T2V"),
    "WAN21_I2V": Variant("wan21_i2v", "wan", "Wan 2.1 I2V"),
    "WAN22_T2V": Variant("wan22_5b", "wan", "Wan 2.2 5B"),
    # VACE trains on its main blocks (its VACE strength list reaches the model as a constant, as
    # LTX-Video's frame rate does); its vace_blocks get no adapters.
    "WAN21_Vace": Variant("wan21_vace", "wan", "Wan 2.1 VACE"),
    "WAN21_FunControl2V": Variant("wan21_fun_control", "wan", "Wan 2.1 Fun Control"),
    "WAN21_Camera": Variant("wan21_camera", "wan", "Wan 2.1 Fun Camera"),
    "WAN22_Camera": Variant("wan22_camera", "wan", "Wan 2.2 Fun Camera"),
    "WAN21_HuMo": Variant("wan21_humo", "wan", "Wan 2.1 HuMo"),
    "WAN22_S2V": Variant("wan22_s2v", "wan", "Wan 2.2 S2V"),
    "WAN22_Animate": Variant("wan22_animate", "wan", "Wan 2.2 Animate"),
    "WAN_Animate2": Variant(
        "wan_animate2",
        "wan",
        "Wan Animate 2",
        "its blocks run through their own pose/generation entry points, which the trainer's block "
        "wrapper (concept masks, checkpointing) does not see",
    ),
    "WAN21_CausalAR_T2V": Variant("wan21_causal_ar_t2v", "wan", "Wan 2.1 Causal AR T2V"),
    "WAN21_SCAIL": Variant("wan21_scail", "wan", "Wan 2.1 SCAIL"),
    "WAN21_SCAIL2": Variant("wan21_scail2", "wan", "Wan 2.1 SCAIL-2"),
    "WAN22_WanDancer": Variant(
        "wan22_wandancer",
        "wan",
        "Wan 2.2 WanDancer",
        "without a CLIP vision reference its image cross-attention has no keys, which the trainer's "
        "attention capture cannot read",
    ),
    "HunyuanVideo": Variant("hunyuan_video", "hunyuan_video", "HunyuanVideo"),
    "HunyuanVideoI2V": Variant(
        "hunyuan_video_i2v",
        "hunyuan_video",
        "HunyuanVideo I2V",
        "ComfyUI builds its image channels from a latent image, which the trainer does not pass to the model",
    ),
    "HunyuanVideoSkyreelsI2V": Variant(
        "hunyuan_video_skyreels_i2v",
        "hunyuan_video",
        "SkyReels I2V (HunyuanVideo)",
        "ComfyUI builds its image channels from a latent image, which the trainer does not pass to the model",
    ),
    "HunyuanVideo15": Variant("hunyuan_video15", "hunyuan_video15", "HunyuanVideo 1.5"),
    # LTX-Video 0.9 (T2V and I2V, one config class): T5-XXL rows through ``caption_projection``
    # into every block's cross attention ``attn2``; the context depends on neither timestep nor
    # video (as in Wan). LTX-2 (LTXAV, audio + video) is another family.
    "LTXV": Variant("ltxv", "ltxv", "LTX-Video"),
    # LTX-2 (ComfyUI 0.7 and later): Gemma 3 rows through two text connectors (in the model's
    # extra_conds, outside its forward pass), then ``caption_projection`` into every block's video
    # cross attention ``attn2`` and ``audio_caption_projection`` into its audio cross attention
    # ``audio_attn2``; neither context depends on timestep or video. The trainer takes its packed
    # video + audio latent as ComfyUI's sampler packs it (``train_compat.TrainingClips``).
    "LTXAV": Variant("ltxav", "ltxav", "LTX-2"),
    # Kandinsky 5 video (Lite and Pro, T2V and I2V: one config class; ComfyUI 0.33 and later):
    # Qwen2.5-VL rows through ``text_embeddings`` and the text transformer blocks, whose
    # modulation reads the timestep and the pooled CLIP-L vector, into every visual block's
    # ``cross_attention`` keys and values; the pooled vector also enters the timestep embedding
    # (``pooled_text_embeddings``). Kandinsky5Image (the 2560-wide text-to-image model) is left out:
    # an image model, and too wide to be built tiny and tested here.
    "Kandinsky5": Variant("kandinsky5", "kandinsky5", "Kandinsky 5"),
    # CogVideoX 1.0 / 1.5 (ComfyUI 0.33 and later): T5-XXL rows (226, padding included: its T5
    # runs without an attention mask) through ``patch_embed.text_proj`` into a joint [text, video]
    # sequence; every later layer is shared by text and video tokens. CogVideoX_Inpaint (VOID) is
    # left out.
    "CogVideoX_T2V": Variant("cogvideox_t2v", "cogvideox", "CogVideoX T2V"),
    "CogVideoX_I2V": Variant(
        "cogvideox_i2v",
        "cogvideox",
        "CogVideoX I2V",
        "ComfyUI builds its image channels from a latent image, which the trainer does not pass to the model",
    ),
}
ARCHITECTURES = {config: variant.name for config, variant in VARIANTS.items()}
SUPPORTED_TEXT = (
    "Wan 2.1 T2V/I2V (1.3B, 14B), Wan 2.2 5B, Wan 2.2 A14B experts, the Wan variants with Wan's text "
    "path (VACE, Fun Control, Fun Camera 2.1/2.2, HuMo, S2V, Animate, Animate 2, Causal AR T2V, SCAIL, "
    "SCAIL-2, WanDancer, where your ComfyUI has them), HunyuanVideo, HunyuanVideo I2V, SkyReels I2V, "
    "HunyuanVideo 1.5 (T2V/I2V), LTX-Video 0.9, LTX-2, Kandinsky 5 video (T2V/I2V), CogVideoX (T2V/I2V)"
)

WAN_TARGETS = ("cross_attn.k", "cross_attn.v")
HUNYUAN_TARGETS = ("txt_attn.qkv", "txt_mlp.0")
HUNYUAN_POOLED = "vector_in.in_layer"  # takes the pooled CLIP-L vector into the modulation
HUNYUAN_FAMILIES = ("hunyuan_video", "hunyuan_video15")  # double-stream text path
LTXV_TARGETS = ("attn2.to_k", "attn2.to_v")
LTXAV_AUDIO_TARGETS = ("audio_attn2.to_k", "audio_attn2.to_v")
# LTX-2's contexts: (site, projection of the connector's output in the model, cross-attention layers)
LTXAV_STREAMS = (
    ("context", "caption_projection", LTXV_TARGETS),
    ("audio_context", "audio_caption_projection", LTXAV_AUDIO_TARGETS),
)
KANDINSKY_TARGETS = ("cross_attention.to_key", "cross_attention.to_value")
KANDINSKY_POOLED = "pooled_text_embeddings.in_layer"  # the pooled CLIP-L vector into the time embedding
# Families whose cross-attention context is a fixed projection of the text rows (no probe run):
# the projection's (first linear, activation, second linear) module names.
CONTEXT_PROJECTIONS = {
    "wan": ("text_embedding.0", "text_embedding.1", "text_embedding.2"),
    "ltxv": ("caption_projection.linear_1", "caption_projection.act_1", "caption_projection.linear_2"),
}
# Families whose text features depend on the timestep (and, for HunyuanVideo, the video): their
# activations are read during a short probe sampling run.
PROBED_FAMILIES = (*HUNYUAN_FAMILIES, "kandinsky5")
# The first layer that reads the text rows, per family: its weight fingerprints the model.
TEXT_INPUT = {
    "wan": "text_embedding.0",
    "ltxv": "caption_projection.linear_1",
    "ltxav": "caption_projection.linear_1",
    "hunyuan_video": "txt_in.input_embedder",
    "hunyuan_video15": "txt_in.input_embedder",
    "kandinsky5": "text_embeddings.in_layer",
    "cogvideox": "patch_embed.text_proj",
}
# Families whose only text-only layer is the projection of the text encoder's rows into a joint
# [text, video] sequence (every later layer is shared): the edit goes on that projection's input,
# the encoder's rows themselves (no denoising pass).
TEXT_ROW_FAMILIES = ("cogvideox",)
NO_BLOCK = -1  # block index of a layer outside the blocks: edited whatever blocks are chosen
# Latent probed for HunyuanVideo's text stream: 5 frames of 128 x 128 pixels (128 video tokens);
# HunyuanVideo 1.5's VAE is 16x spatially and its patch 1x1x1: 5 frames of 128 x 128 as well.
HUNYUAN_PROBE_LATENT = (2, 16, 16)
# Kandinsky 5 uses HunyuanVideo's VAE and patch size 1x2x2: the same latent, 128 video tokens.
PROBE_LATENTS = {
    "hunyuan_video": HUNYUAN_PROBE_LATENT,
    "hunyuan_video15": (2, 8, 8),
    "kandinsky5": HUNYUAN_PROBE_LATENT,
}
_CAPTURE_KEY = "video_unlearning.refusal_capture"
_FINGERPRINT_VALUES = 256


@dataclass(frozen=True)
class Architecture:
    name: str  # one of ARCHITECTURES' values
    family: str  # a Variant's family
    width: int  # input width of the edited layers
    num_blocks: int  # blocks that can be chosen
    config: str = ""  # the ComfyUI model config class
    # Other Wan blocks that read the text context, as (index of the block they run after, module
    # prefix): VACE's ``vace_blocks.n``; chosen with that block.
    side_blocks: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class SiteSpec:
    """An activation site: where to read it and which layers take it as input."""

    name: str
    modules: tuple[tuple[int, str], ...]
    per_step: bool = False  # the activation changes from one sampling step to the next
    read_at: str = ""  # the module whose input is the activation ("": the module named ``name``)

    @property
    def probed_module(self) -> str:
        return self.read_at or self.name


def _config_name(model) -> str:
    config = getattr(getattr(model, "model", None), "model_config", None)
    return type(config).__name__ if config is not None else type(model).__name__


def _linear_shape(dm, module: str) -> tuple[int, int] | tuple[None, None]:
    """(output width, input width) of the linear layer ``module`` of ``dm``; (None, None) when
    there is no such layer."""
    try:
        weight = dm.get_submodule(module).weight
    except AttributeError:
        return None, None
    return (
        (int(weight.shape[0]), int(weight.shape[1]))
        if weight is not None and weight.ndim == 2
        else (None, None)
    )


def _in_width(dm, module: str) -> int | None:
    return _linear_shape(dm, module)[1]


def _out_width(dm, module: str) -> int | None:
    return _linear_shape(dm, module)[0]


def _side_blocks(dm) -> tuple[tuple[int, str], ...]:
    """VACE's blocks, each with the index of the main block after which it runs."""
    vace = getattr(dm, "vace_blocks", None)
    if vace is None:
        return ()
    after = {n: i for i, n in getattr(dm, "vace_layers_mapping", {}).items()}
    return tuple((after.get(n, n), f"vace_blocks.{n}") for n in range(len(vace)))


def text_path_problem(dm, family: str) -> str | None:
    """What the diffusion model lacks of its family's text path (None: it has all of it).

    Wan: ``text_embedding`` (Linear, GELU, Linear) ending at the model width, every block's (and
    VACE block's) ``cross_attn.k`` / ``.v`` taking that width. HunyuanVideo: the token refiner
    ``txt_in``, each double block's ``txt_attn.qkv`` and ``txt_mlp.0`` taking the hidden width, and
    the pooled vector's ``vector_in.in_layer``. HunyuanVideo 1.5: the same without the pooled vector
    (it has none). LTX-Video: ``caption_projection`` (Linear, GELU, Linear) ending at the model
    width, every block's ``attn2.to_k`` / ``.to_v`` taking that width, and no timestep modulation
    of the text in the cross attention (``cross_attention_adaln``, which newer LTX models use).
    CogVideoX: ``patch_embed.text_proj`` ending at the model width (its only text-only layer).
    Kandinsky 5: ``text_embeddings.in_layer`` and ``pooled_text_embeddings.in_layer`` (the text
    rows' and the pooled vector's entries), every visual block's ``cross_attention.to_key`` /
    ``.to_value`` taking the model width. LTX-2: the two text connectors and ``caption_projection`` /
    ``audio_caption_projection`` ending at the video / audio width, every block's ``attn2`` and
    ``audio_attn2`` ``to_k`` / ``to_v`` taking those widths, the projections after the connectors
    (LTX-2.3 moves them before, into ``extra_conds``) and no timestep modulation of the text.
    """
    if family == "ltxav":
        return _ltxav_text_path_problem(dm)
    if family == "cogvideox":
        width = getattr(dm, "dim", None)
        if not isinstance(width, int) or not getattr(dm, "blocks", None):
            return "no CogVideoX blocks"
        if _out_width(dm, TEXT_INPUT["cogvideox"]) != width:
            return f"no {TEXT_INPUT['cogvideox']} ending at the model width {width}"
        return None
    if family == "kandinsky5":
        width = getattr(dm, "model_dim", None)
        blocks = getattr(dm, "visual_transformer_blocks", None)
        if not isinstance(width, int) or not blocks:
            return "no Kandinsky 5 visual transformer blocks"
        for module in (TEXT_INPUT["kandinsky5"], KANDINSKY_POOLED):
            if _in_width(dm, module) is None:
                return f"no {module}"
        prefixes = [f"visual_transformer_blocks.{i}" for i in range(len(blocks))]
        expected = KANDINSKY_TARGETS
    elif family == "ltxv":
        width = getattr(dm, "inner_dim", None)
        blocks = getattr(dm, "transformer_blocks", None)
        if not isinstance(width, int) or not blocks:
            return "no LTX-Video transformer blocks"
        first, _, last = CONTEXT_PROJECTIONS["ltxv"]
        if _in_width(dm, first) is None or _out_width(dm, last) != width:
            return f"no caption_projection ending at the model width {width}"
        if any(getattr(block, "cross_attention_adaln", False) for block in blocks):
            return "its cross attention modulates the text by timestep (cross_attention_adaln)"
        prefixes = [f"transformer_blocks.{i}" for i in range(len(blocks))]
        expected = LTXV_TARGETS
    elif family == "wan":
        width = getattr(dm, "dim", None)
        blocks = getattr(dm, "blocks", None)
        if not isinstance(width, int) or not blocks:
            return "no Wan blocks"
        if _in_width(dm, "text_embedding.0") is None or _out_width(dm, "text_embedding.2") != width:
            return f"no text_embedding ending at the model width {width}"
        prefixes = [f"blocks.{i}" for i in range(len(blocks))] + [m for _, m in _side_blocks(dm)]
        expected = WAN_TARGETS
    else:
        width = getattr(dm, "hidden_size", None)
        blocks = getattr(dm, "double_blocks", None)
        if not isinstance(width, int) or not blocks:
            return "no HunyuanVideo double blocks"
        entry = (
            ("txt_in.input_embedder",)
            if family == "hunyuan_video15"
            else ("txt_in.input_embedder", HUNYUAN_POOLED)
        )
        for module in entry:
            if _in_width(dm, module) is None:
                return f"no {module}"
        prefixes = [f"double_blocks.{i}" for i in range(len(blocks))]
        expected = HUNYUAN_TARGETS
    return _width_problem(dm, [f"{prefix}.{target}" for prefix in prefixes for target in expected], width)


def _width_problem(dm, modules: Sequence[str], width: int) -> str | None:
    """The first of ``modules`` that is missing or does not take ``width`` inputs (None: none)."""
    for module in modules:
        found = _in_width(dm, module)
        if found is None:
            return f"{module} is missing"
        if found != width:
            return f"{module} is {found} wide, not {width} wide"
    return None


def _ltxav_text_path_problem(dm) -> str | None:
    blocks = getattr(dm, "transformer_blocks", None)
    widths = {
        "context": getattr(dm, "inner_dim", None),
        "audio_context": getattr(dm, "audio_inner_dim", None),
    }
    if not blocks or not all(isinstance(w, int) for w in widths.values()):
        return "no LTX-2 audio-video transformer blocks"
    if not callable(getattr(dm, "preprocess_text_embeds", None)):
        return "no text connectors (preprocess_text_embeds)"
    if getattr(dm, "caption_proj_before_connector", False):
        return (
            "its caption projections run before the text connectors (the LTX-2.3 layout), which the "
            "nodes do not read"
        )
    if any(getattr(block, "cross_attention_adaln", False) for block in blocks):
        return "its cross attention modulates the text by timestep (cross_attention_adaln)"
    for site, projection, targets in LTXAV_STREAMS:
        width = widths[site]
        if _out_width(dm, f"{projection}.linear_2") != width:
            return f"no {projection} ending at the width {width}"
        modules = [f"transformer_blocks.{i}.{target}" for i in range(len(blocks)) for target in targets]
        problem = _width_problem(dm, modules, width)
        if problem:
            return problem
    return None


_BLOCK_CALL = re.compile(r"\bblock(?:\.forward\w*)?\((?:[^()]|\([^()]*\))*\)")


def blocks_take_transformer_options(dm) -> bool:
    """Whether the diffusion model's forward pass hands each block its ``transformer_options``
    (where the trainer's attention override travels), read from the source of ``forward_orig``:
    ComfyUI 0.3.75's Wan S2V model calls its blocks without them, newer ones with them. True when
    the source cannot be read."""
    try:
        source = inspect.getsource(type(dm).forward_orig)
    except (AttributeError, OSError, TypeError):
        return True
    return all("transformer_options" in call for call in _BLOCK_CALL.findall(source))


def training_problem(model, arch: Architecture) -> str | None:
    """Why Unlearn: Train LoRA cannot train this MODEL (None: it can): the variant's own reason
    (``Variant.untrainable``), or blocks that never see the trainer's attention override."""
    reason = VARIANTS[arch.config].untrainable
    if reason:
        return reason
    dm = model.model.diffusion_model
    if not blocks_take_transformer_options(dm):
        return (
            f"in this ComfyUI its {type(dm).__name__} calls its blocks without transformer_options, so the "
            "trainer never sees their attention (newer ComfyUI passes them: update it to train this model)"
        )
    return None


def detect_architecture(model) -> Architecture:
    """The architecture of a MODEL, or ValueError naming what it is and what is supported.

    A MODEL is accepted when its ComfyUI config class is one of ``VARIANTS`` and its diffusion
    model has that family's text path (``text_path_problem``), the layers the edit reads and writes.
    """
    config = _config_name(model)
    variant = VARIANTS.get(config)
    if variant is None:
        raise ValueError(
            f"this MODEL is {config}, which the refusal-vector nodes do not support; "
            f"supported: {SUPPORTED_TEXT}"
        )
    dm = model.model.diffusion_model
    problem = text_path_problem(dm, variant.family)
    if problem is not None:
        raise ValueError(
            f"this MODEL is {config}, but its diffusion model ({type(dm).__name__}) does not have the "
            f"text path the nodes edit: {problem}; supported: {SUPPORTED_TEXT}"
        )
    if variant.family in HUNYUAN_FAMILIES:
        return Architecture(variant.name, variant.family, dm.hidden_size, len(dm.double_blocks), config)
    if variant.family in ("ltxv", "ltxav"):
        return Architecture(variant.name, variant.family, dm.inner_dim, len(dm.transformer_blocks), config)
    if variant.family == "cogvideox":
        return Architecture(variant.name, variant.family, dm.dim, len(dm.blocks), config)
    if variant.family == "kandinsky5":
        blocks = len(dm.visual_transformer_blocks)
        return Architecture(variant.name, variant.family, dm.model_dim, blocks, config)
    return Architecture(variant.name, variant.family, dm.dim, len(dm.blocks), config, _side_blocks(dm))


def site_specs(arch: Architecture) -> list[SiteSpec]:
    """Wan: one site, the text context, feeding every block's cross_attn.k and .v (the I2V image
    keys k_img / v_img are left alone), and those of VACE's blocks, which read the same context.
    HunyuanVideo: each double block's txt_attn.qkv and txt_mlp.0 inputs, one site each, plus the
    pooled CLIP-L vector's entry into the modulation (vector_in), which carries most of the
    prompt's effect on the velocity in the tiny model. HunyuanVideo 1.5: the same text-stream sites
    (it has no pooled vector); they see the byT5 glyph rows too, which join the text stream before
    the double blocks, but the directions are estimated on the Qwen2.5-VL rows of the prompt.
    LTX-Video: one site, the context (``caption_projection`` of the T5-XXL rows), feeding every
    block's attn2.to_k and .to_v. Kandinsky 5: the context after the text transformer blocks (it
    changes with the timestep, through their modulation), one site read at block 0's
    cross_attention.to_key and feeding every visual block's to_key and to_value (all read the same
    context), plus the pooled CLIP-L vector's entry into the time embedding (pooled_text_embeddings),
    which modulates every block. CogVideoX: one site, the T5-XXL rows themselves, edited at
    ``patch_embed.text_proj`` (outside the blocks): after it the text joins the video in layers
    both share, where an input-side edit would move the video tokens too. LTX-2: two sites, the
    video context (feeding every block's attn2.to_k and .to_v) and the audio context (every block's
    audio_attn2.to_k and .to_v): each stream reads the prompt through its own connector and
    projection, so each gets its own directions."""
    if arch.family == "ltxav":
        return [
            SiteSpec(
                site,
                tuple((i, f"transformer_blocks.{i}.{t}") for i in range(arch.num_blocks) for t in targets),
            )
            for site, _, targets in LTXAV_STREAMS
        ]
    if arch.family == "cogvideox":
        return [SiteSpec("text", ((NO_BLOCK, TEXT_INPUT["cogvideox"]),))]
    if arch.family == "kandinsky5":
        modules = tuple(
            (i, f"visual_transformer_blocks.{i}.{t}")
            for i in range(arch.num_blocks)
            for t in KANDINSKY_TARGETS
        )
        read_at = f"visual_transformer_blocks.0.{KANDINSKY_TARGETS[0]}"
        return [
            SiteSpec("context", modules, per_step=True, read_at=read_at),
            SiteSpec(KANDINSKY_POOLED, ((NO_BLOCK, KANDINSKY_POOLED),)),
        ]
    if arch.family == "ltxv":
        modules = tuple(
            (i, f"transformer_blocks.{i}.{t}") for i in range(arch.num_blocks) for t in LTXV_TARGETS
        )
        return [SiteSpec("context", modules)]
    if arch.family == "wan":
        blocks = [(i, f"blocks.{i}") for i in range(arch.num_blocks)] + list(arch.side_blocks)
        modules = tuple((i, f"{prefix}.{t}") for i, prefix in blocks for t in WAN_TARGETS)
        return [SiteSpec("context", modules)]
    stream = [
        SiteSpec(f"double_blocks.{i}.{t}", ((i, f"double_blocks.{i}.{t}"),), per_step=True)
        for i in range(arch.num_blocks)
        for t in HUNYUAN_TARGETS
    ]
    if arch.family == "hunyuan_video15":
        return stream
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
    module = TEXT_INPUT[arch.family]
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
    else:  # Wan's umT5 zeroes its padding rows and sends no mask (LTX-Video's T5-XXL sends one)
        real = cond[0].abs().sum(dim=-1) > 0
    if not real.any():
        raise ValueError(f"the prompt {text!r} encodes to no tokens")
    return conditioning, real


def wan_context(
    model, conditionings: Sequence[tuple[list, Tensor]], family: str = "wan"
) -> list[list[Tensor]]:
    """The cross-attention context for each prompt of a family in ``CONTEXT_PROJECTIONS``: Wan's
    ``text_embedding`` or LTX-Video's ``caption_projection`` (Linear, GELU, Linear) of the prompt's
    real token rows, computed in float32 with the model's weights (no denoising pass).
    Returns activations[prompt][0] = [T_real, width]."""
    dm = model.model.diffusion_model
    first, act, last = CONTEXT_PROJECTIONS[family]
    weights = current_weights(model, [first, last])
    (w0, b0), (w2, b2) = weights[first], weights[last]
    activation = dm.get_submodule(act)
    return [[F.linear(activation(F.linear(rows, w0, b0)), w2, b2)] for (rows,) in text_rows(conditionings)]


def ltxav_contexts(model, conditionings: Sequence[tuple[list, Tensor]]) -> dict[str, list[list[Tensor]]]:
    """LTX-2's two cross-attention contexts for each prompt, as the model computes them: its
    ``preprocess_text_embeds`` (the video and audio text connectors, which ComfyUI runs in
    ``extra_conds``) on the prompt's rows, then ``caption_projection`` / ``audio_caption_projection``
    (run in the forward pass), with the MODEL's weights and patches (it is loaded as for sampling).
    No denoising pass: neither context depends on timestep or video. Every row is kept: the
    connectors append learnable registers up to 1024 rows and mix the prompt into them by
    self-attention, and the cross attention reads them all.
    Returns ``{"context": acts, "audio_context": acts}``, acts[prompt][0] = [rows, stream width]."""
    comfy.model_management.load_models_gpu([model])
    dm = model.model.diffusion_model
    device, dtype = model.load_device, model.model.get_dtype_inference()
    out: dict[str, list[list[Tensor]]] = {site: [] for site, _, _ in LTXAV_STREAMS}
    with torch.no_grad():
        for conditioning, _real in conditionings:
            cond, extras = conditioning[0]
            unprocessed = bool(extras.get("unprocessed_ltxav_embeds", False))
            context = dm.preprocess_text_embeds(cond.to(device=device, dtype=dtype), unprocessed=unprocessed)
            streams = torch.split(context, [dm.caption_channels, context.shape[-1] - dm.caption_channels], -1)
            for (site, projection, _), rows in zip(LTXAV_STREAMS, streams, strict=True):
                projected = dm.get_submodule(projection)(rows)
                out[site].append([projected[0].to(device="cpu", dtype=torch.float32)])
    return out


def text_rows(conditionings: Sequence[tuple[list, Tensor]]) -> list[list[Tensor]]:
    """The text encoder's real rows of each prompt in float32 on the CPU (the site of a family in
    ``TEXT_ROW_FAMILIES``, and what ``wan_context`` projects). Returns activations[prompt][0] =
    [T_real, text width]."""
    return [
        [conditioning[0][0][0][real].to(device="cpu", dtype=torch.float32)]
        for conditioning, real in conditionings
    ]


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
    model,
    conditionings: Sequence[tuple[list, Tensor]],
    specs: Sequence[SiteSpec],
    steps: int,
    seed: int = 0,
    latent_size: Sequence[int] = HUNYUAN_PROBE_LATENT,
) -> dict[str, list[list[Tensor]]]:
    """Inputs of each site's layer during a short real sampling run per prompt (euler, ``steps``
    steps, cfg 1 so only the prompt's own branch runs, same seed for every prompt) on a latent of
    ``latent_size`` (frames, height, width).

    Returns ``{site: activations}``, activations[prompt][step] = [T_real, width] (text-stream
    sites, every step) or [1, width] (a per-prompt vector, first step only). The prompt's rows are
    the last ones of the text stream: HunyuanVideo 1.5 puts byT5 glyph rows (and I2V's SigLIP rows)
    before them.
    """
    modules = [spec.probed_module for spec in specs]
    latent_format = model.get_model_object("latent_format")
    latent = torch.zeros((1, latent_format.latent_channels, *latent_size))
    noise = comfy.sample.prepare_noise(latent, seed)
    out: dict[str, list[list[Tensor]]] = {spec.name: [] for spec in specs}
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
            seen = store[spec.probed_module]
            if len(seen) != steps:
                raise RuntimeError(f"expected {steps} calls of {spec.name} while sampling, saw {len(seen)}")
            if spec.per_step:
                out[spec.name].append([rows[rows.shape[0] - real.shape[0] :][real] for rows in seen])
            else:
                out[spec.name].append([seen[0].reshape(1, -1)])
    return out


def add_lowrank_patches(model, factors: dict[str, tuple[Tensor, Tensor]]):
    """A clone of ``model`` with ``W += up @ down`` on each module, as LoRA adapters (alpha = rank,
    scale 1), never a dense copy. Raises when any key fails to match (ComfyUI skips them silently),
    and, before anything is patched, when a factor holds NaN or infinity."""
    require_finite(
        (
            (f"{module} {side}", t)
            for module, (up, down) in factors.items()
            for side, t in (("up", up), ("down", down))
        ),
        "the patch",
    )
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


def lora_layer_names(model) -> dict[str, str]:
    """``{name a LoRA file may give a layer: the layer's module name}`` for this MODEL's diffusion
    model, as ComfyUI's own LoRA loader maps them (``comfy.lora.model_lora_keys_unet``: the module's
    state-dict name, kohya's ``lora_unet_`` form, HunyuanVideo's diffusion-pipe ``transformer.``
    names, ...). Only whole-weight targets: ComfyUI's slice targets (a part of a fused weight) are
    left out, so a LoRA using them is refused by name rather than half applied."""
    names = {}
    for name, target in comfy.lora.model_lora_keys_unet(model.model, {}).items():
        if isinstance(target, str) and target.startswith("diffusion_model.") and target.endswith(".weight"):
            names[name] = target[len("diffusion_model.") : -len(".weight")]
    return names


def converted_lora(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The LoRA's keys renamed as ComfyUI's loader renames them before mapping (e.g. Wan Fun's
    ``lora_unet__`` prefix)."""
    return comfy.lora_convert.convert_lora(dict(tensors))
