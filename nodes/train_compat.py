"""The ComfyUI internals the unlearning trainer touches, kept in one thin place.

* which modules of Wan / HunyuanVideo / LTX-Video get adapters, which transformer block each
  belongs to, which norm layers see their input updated in place (and whether the blocks need
  autograd to save copies instead, LTX-Video's), and the latent geometry;
* conditioning: prompts encoded with the user's CLIP, turned into the model's inputs with the
  model's own ``extra_conds`` (so Wan I2V's concat channels, HunyuanVideo's pooled vector and
  guidance, LTX-Video's T5 attention mask and frame rate come out as in sampling), and the rows
  of the concept's tokens in the text stream;
* the forward pass: ``BaseModel.apply_model`` with ``transformer_options`` carrying an
  ``optimized_attention_override`` that shows q and k of every attention call to the mask capture
  (the blocks themselves are wrapped with ``erasure.training.wrapped_blocks``, not through the
  host's ``patches_replace``, whose block closures bind late and would recompute the wrong block
  under checkpointing);
* frozen weights usable by autograd without a copy (ComfyUI loads them as inference tensors);
* the optional short sampling run that makes concept latents, and progress messages to the UI.

Architecture detection and LoRA patches are ``comfy_compat``'s.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

import comfy.model_management
import comfy.sample
import torch
from torch import Tensor, nn

from ..erasure.masks import common_prefix_length, concept_words, find_concept_positions, strip_template
from ..erasure.objectives import FLOW, K_DIFFUSION, flow_velocity
from ..erasure.training import (
    AdapterSet,
    AdapterTarget,
    ConceptMaskCapture,
    MarkedRow,
    cloned_inputs,
    wrapped_blocks,
)
from . import comfy_compat

PROGRESS_EVENT = "video_unlearning.train_progress"
TARGET_PRESETS = ("attention", "attention+ffn")
_LTXV_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
_KANDINSKY_ATTENTION = ("to_query", "to_key", "to_value", "out_layer")
# The tokenizer stream whose tokens become the rows of the text conditioning, per model family.
TEXT_STREAM = {
    "wan": "umt5xxl",
    "hunyuan_video": "llama",
    "hunyuan_video15": "qwen25_7b",
    "ltxv": "t5xxl",
    "ltxav": "gemma3_12b",
    "kandinsky5": "qwen25_7b",
    "cogvideox": "t5xxl",
}
# Caption style of the prompts the trainer writes itself (``erasure.prompt_augment``): HunyuanVideo
# 1.5's encoder template asks for long descriptions (content, objects, actions, setting, camera),
# LTX-Video's prompt guide long, detailed ones too, and Kandinsky 5's template (camera, location,
# characters, actions, style); CogVideoX was trained on long captions.
PROMPT_STYLE = {
    "wan": "wan",
    "hunyuan_video": "hunyuan_video",
    "hunyuan_video15": "wan",
    "ltxv": "wan",
    "ltxav": "wan",
    "kandinsky5": "wan",
    "cogvideox": "wan",
}
# Spatial downscaling of the family's VAE (Wan 2.2 5B's is 16x: see ``latent_downscale``; LTX-Video's
# model says its own VAE's, ``vae_scale_factors``).
_VAE_DOWNSCALE = {"wan": 8, "hunyuan_video": 8, "hunyuan_video15": 16, "kandinsky5": 8, "cogvideox": 8}
# frames per latent frame (after the first) of the Wan and HunyuanVideo VAEs (Kandinsky 5's), CogVideoX's
_VAE_FRAMES = 4
# LTX-Video's and LTX-2's VAE geometry is the model's own (``vae_scale_factors``).
_LTX_FAMILIES = ("ltxv", "ltxav")
# Frame rate of LTX-2's self-sampled clips: the model's default when the conditioning names none
# (``model_base.LTXAV.extra_conds``), which sets how many audio latents a clip of N frames has.
LTXAV_FRAME_RATE = 25.0


# --- architecture ---------------------------------------------------------------------------------


def supported_architecture(
    model, node: str, for_training: bool = True, purpose: str = "train"
) -> comfy_compat.Architecture:
    """The MODEL's architecture (``comfy_compat.detect_architecture``), or a ValueError that names
    ``node``, what the MODEL is and what is supported. With ``for_training`` (the trainer, and the
    prompt attack, which differentiates the model the same way: ``purpose`` "attack"), a variant the
    refusal-vector nodes take but the trainer cannot train (``comfy_compat.training_problem``:
    Animate 2, WanDancer, the HunyuanVideo I2V models and CogVideoX I2V, and S2V in ComfyUI 0.3.75)
    is refused too, saying why, before any work."""
    try:
        arch = comfy_compat.detect_architecture(model)
    except ValueError:
        config = type(getattr(model.model, "model_config", model.model)).__name__
        variant = comfy_compat.VARIANTS.get(config)
        problem = variant and comfy_compat.text_path_problem(model.model.diffusion_model, variant.family)
        detail = f", but its diffusion model lacks the text path: {problem}" if problem else ""
        raise ValueError(
            f"{node} supports {comfy_compat.SUPPORTED_TEXT}; this MODEL is {config}{detail}. "
            "Load a Wan, HunyuanVideo, LTX-2, Kandinsky 5 or CogVideoX diffusion model with UNETLoader "
            "(Load Diffusion Model), or an LTX-Video checkpoint."
        ) from None
    problem = comfy_compat.training_problem(model, arch) if for_training else None
    if problem:
        label = comfy_compat.VARIANTS[arch.config].label
        hint = (
            "Erase the concept from this MODEL with Unlearn: Refusal Estimate and Unlearn: Refusal Apply, "
            "which need no training."
            if purpose == "train"
            else "The attack runs the model's backward pass as the trainer does, which this model's code "
            "does not allow here."
        )
        raise ValueError(f"{node} cannot {purpose} {label} models ({arch.config}): {problem}. {hint}")
    return arch


def adapter_targets(diffusion_model: nn.Module, family: str, preset: str) -> list[AdapterTarget]:
    """Modules that get a LoRA.

    "attention" - Wan: ``blocks.i.self_attn.{q,k,v,o}`` and ``blocks.i.cross_attn.{q,k,v,o}`` (the I2V
    image keys ``k_img``/``v_img`` stay untouched); HunyuanVideo: ``double_blocks.i.{img,txt}_attn.
    {qkv,proj}`` and ``single_blocks.i.linear1/linear2`` (the single-stream blocks fuse their
    attention and MLP projections into these two layers). "attention+ffn" adds Wan's ``ffn.0/ffn.2``
    and HunyuanVideo's ``{img,txt}_mlp.0/2``. LTX-Video: ``transformer_blocks.i.attn1`` (self) and
    ``attn2`` (cross: its to_k/to_v read the text) ``{to_q,to_k,to_v,to_out.0}``; with ffn,
    ``ff.net.0.proj`` and ``ff.net.2``. Kandinsky 5: ``visual_transformer_blocks.i.self_attention``
    and ``cross_attention`` (its to_key/to_value read the text) ``{to_query,to_key,to_value,
    out_layer}``; with ffn, ``feed_forward.in_layer`` and ``.out_layer``. The text transformer
    blocks get none, as Wan's text_embedding gets none: the concept mask localises the video tokens.
    CogVideoX: ``blocks.i.{q,k,v,attn_out}`` (with ffn, ``ff_proj`` and ``ff_out``), each run on the
    joint [text, video] sequence. LTX-2: LTX-Video's video-stream modules, plus each block's
    ``audio_attn2.to_k/to_v`` (the audio stream's keys and values of the text rows: text tokens, so
    not localised); the audio stream's own queries, self-attention and MLP get none, as the concept
    mask is over the video tokens and an adapter there could not be kept to the concept's region.
    """
    if preset not in TARGET_PRESETS:
        raise ValueError(f"unknown target modules {preset!r}: use one of {', '.join(TARGET_PRESETS)}")
    ffn = preset == "attention+ffn"
    targets: list[AdapterTarget] = []
    if family == "cogvideox":
        names = ("q", "k", "v", "attn_out", *(("ff_proj", "ff_out") if ffn else ()))
        return [
            AdapterTarget(f"blocks.{i}.{name}", f"blocks.{i}", "joint")
            for i in range(len(diffusion_model.blocks))
            for name in names
        ]
    if family == "kandinsky5":
        for i in range(len(diffusion_model.visual_transformer_blocks)):
            block = f"visual_transformer_blocks.{i}"
            targets += [
                AdapterTarget(f"{block}.self_attention.{p}", block, "video") for p in _KANDINSKY_ATTENTION
            ]
            targets += [
                AdapterTarget(
                    f"{block}.cross_attention.{p}", block, "text" if p in ("to_key", "to_value") else "video"
                )
                for p in _KANDINSKY_ATTENTION
            ]
            if ffn:
                targets += [
                    AdapterTarget(f"{block}.feed_forward.{j}", block, "video")
                    for j in ("in_layer", "out_layer")
                ]
        return targets
    if family in _LTX_FAMILIES:
        for i in range(len(diffusion_model.transformer_blocks)):
            block = f"transformer_blocks.{i}"
            targets += [AdapterTarget(f"{block}.attn1.{p}", block, "video") for p in _LTXV_ATTENTION]
            targets += [
                AdapterTarget(f"{block}.attn2.{p}", block, "text" if p in ("to_k", "to_v") else "video")
                for p in _LTXV_ATTENTION
            ]
            if family == "ltxav":  # the audio stream's keys and values of the text rows
                targets += [
                    AdapterTarget(f"{block}.audio_attn2.{p}", block, "text") for p in ("to_k", "to_v")
                ]
            if ffn:
                targets += [AdapterTarget(f"{block}.ff.net.{j}", block, "video") for j in ("0.proj", "2")]
        return targets
    if family == "wan":
        for i in range(len(diffusion_model.blocks)):
            block = f"blocks.{i}"
            targets += [AdapterTarget(f"{block}.self_attn.{p}", block, "video") for p in "qkvo"]
            targets += [
                AdapterTarget(f"{block}.cross_attn.{p}", block, "text" if p in "kv" else "video")
                for p in "qkvo"
            ]
            if ffn:
                targets += [AdapterTarget(f"{block}.ffn.{j}", block, "video") for j in (0, 2)]
        return targets
    for i in range(len(diffusion_model.double_blocks)):
        block = f"double_blocks.{i}"
        for stream, tokens in (("img", "video"), ("txt", "text")):
            targets += [AdapterTarget(f"{block}.{stream}_attn.{p}", block, tokens) for p in ("qkv", "proj")]
            if ffn:
                targets += [AdapterTarget(f"{block}.{stream}_mlp.{j}", block, tokens) for j in (0, 2)]
    for i in range(len(diffusion_model.single_blocks)):
        block = f"single_blocks.{i}"
        targets += [AdapterTarget(f"{block}.linear{j}", block, "joint") for j in (1, 2)]
    return targets


def block_modules(diffusion_model: nn.Module, family: str) -> dict[str, nn.Module]:
    """The transformer blocks by name: Wan's ``blocks.i``, HunyuanVideo's ``double_blocks.i`` and
    ``single_blocks.i``, LTX-Video's ``transformer_blocks.i`` (the names ``adapter_targets`` uses
    for ``AdapterTarget.block``), Kandinsky 5's ``visual_transformer_blocks.i``."""
    if family == "kandinsky5":
        return {
            f"visual_transformer_blocks.{i}": b
            for i, b in enumerate(diffusion_model.visual_transformer_blocks)
        }
    if family in _LTX_FAMILIES:
        return {f"transformer_blocks.{i}": b for i, b in enumerate(diffusion_model.transformer_blocks)}
    if family in ("wan", "cogvideox"):
        return {f"blocks.{i}": b for i, b in enumerate(diffusion_model.blocks)}
    blocks = {f"double_blocks.{i}": b for i, b in enumerate(diffusion_model.double_blocks)}
    blocks.update({f"single_blocks.{i}": b for i, b in enumerate(diffusion_model.single_blocks)})
    return blocks


def inplace_updated_norms(diffusion_model: nn.Module, family: str) -> list[nn.Module]:
    """Norm layers whose input the block then updates in place (``img += ...`` in HunyuanVideo's
    double and single blocks): under autograd they must save a copy (``erasure.training.cloned_inputs``).
    None for Wan, Kandinsky 5 and CogVideoX, whose blocks never change their inputs, and for LTX-Video
    and LTX-2, whose norms are functional (see ``saves_inputs_updated_in_place``)."""
    if family in ("wan", *_LTX_FAMILIES, "kandinsky5", "cogvideox"):
        return []
    norms = [
        getattr(block, name)
        for block in diffusion_model.double_blocks
        for name in ("img_norm1", "img_norm2", "txt_norm1", "txt_norm2")
    ]
    return norms + [block.pre_norm for block in diffusion_model.single_blocks]


def saves_inputs_updated_in_place(family: str) -> bool:
    """Whether the family's blocks change their input in place after autograd saved it in a way no
    module hook can reach: LTX-Video's blocks call functional ``rms_norm(x)`` (and the attention
    projections read x), then update x with ``x += ...`` and ``x.addcmul_(...)``. The trainer then
    has autograd save copies of those tensors (``erasure.training.saved_as_copies``). LTX-2's blocks
    do the same to their video and audio tokens (``vx.addcmul_``, ``ax.add_``)."""
    return family in _LTX_FAMILIES


def text_first(diffusion_model: nn.Module, family: str) -> bool:
    """Whether the joint [text, video] sequence of the HunyuanVideo blocks puts the text first:
    ComfyUI 0.3.x builds HunyuanVideo's double blocks with ``flipped_img_txt`` (video first), newer
    ComfyUI always puts the text first. CogVideoX's joint sequence always has the text first; False
    for Wan, LTX-Video and Kandinsky 5 (no joint sequence)."""
    if family == "cogvideox":
        return True
    if family not in comfy_compat.HUNYUAN_FAMILIES:
        return False
    return not getattr(diffusion_model.double_blocks[0], "flipped_img_txt", False)


def text_attention_call(family: str) -> int:
    """Which attention call of a block is its text cross-attention, read by the concept mask
    (``ConceptMaskCapture.text_call``): the second in an LTX-2 block (video self-attention, video
    cross-attention, then the audio and audio-video calls), the last in every other family's."""
    return 1 if family == "ltxav" else -1


def parameterisation(model) -> str:
    """How the MODEL noises a latent, from its ComfyUI ``model_sampling``: ``FLOW`` (CONST: Wan,
    HunyuanVideo, LTX-Video, Kandinsky 5) or ``K_DIFFUSION`` (EPS and its v-prediction kinds,
    ``x_t = x0 + sigma n``: CogVideoX's V_PREDICTION_DDPM); ValueError for another."""
    import comfy.model_sampling as sampling

    found = model.model.model_sampling
    if isinstance(found, sampling.CONST):
        return FLOW
    k_diffusion = tuple(
        getattr(sampling, name) for name in ("EPS", "V_PREDICTION_DDPM") if hasattr(sampling, name)
    )
    if isinstance(found, k_diffusion):
        return K_DIFFUSION
    raise ValueError(
        f"this MODEL's sampling ({type(found).__name__}) is neither rectified flow nor k-diffusion noise "
        "levels; the trainer and the attack cannot noise its latents"
    )


def latent_downscale(model, family: str) -> int:
    """Pixels per latent pixel of the family's VAE (Wan 2.2 5B: 16, its latents have 48 channels;
    LTX-Video: 32, from the model's ``vae_scale_factors``)."""
    if family in _LTX_FAMILIES:
        return int(model.model.diffusion_model.vae_scale_factors[1])
    return 16 if int(model.model.latent_format.latent_channels) == 48 else _VAE_DOWNSCALE[family]


def latent_frames(model, family: str, length: int) -> int:
    """Latent frames of a ``length``-frame video: the first frame, then one per 4 frames (Wan,
    HunyuanVideo), or per the model's ``vae_scale_factors[0]`` (LTX-Video: 8), as ComfyUI's empty
    latent nodes count them."""
    if family in _LTX_FAMILIES:
        per_frame = int(model.model.diffusion_model.vae_scale_factors[0])
    else:
        per_frame = _VAE_FRAMES
    return (length - 1) // per_frame + 1


def latent_geometry(model) -> tuple[int, tuple[int, int, int]]:
    """(latent channels, patch size (t, h, w)) of a MODEL (LTX-Video's patch size is its
    patchifier's; CogVideoX's is one spatial size, with ``patch_size_t`` frames or 1)."""
    dm = model.model.diffusion_model
    patcher = getattr(dm, "patchifier", None)
    patch = patcher.patch_size if patcher is not None else dm.patch_size
    if isinstance(patch, int):
        patch = (getattr(dm, "patch_size_t", None) or 1, patch, patch)
    return int(model.model.latent_format.latent_channels), tuple(int(p) for p in patch)


# --- frozen weights usable by autograd ------------------------------------------------------------


@contextlib.contextmanager
def autograd_usable_weights(module: nn.Module) -> Iterator[int]:
    """Make every inference-mode parameter/buffer of ``module`` usable by autograd, without copying.

    ComfyUI builds models inside ``torch.inference_mode()``, and autograd refuses to save inference
    tensors for backward. For the duration of the block, each such tensor is replaced by a normal
    tensor over the *same storage* (same data_ptr, no copy), wrapped in a new frozen Parameter, as
    ComfyUI itself swaps Parameters when it patches weights; the original objects are put back on
    exit, also on error or Cancel. Parameters that are normal tensors but require grad get
    ``requires_grad=False`` for the duration. Must run outside inference mode. Yields the number
    swapped.
    """
    swapped: list[tuple[nn.Module, str, bool, Tensor]] = []
    frozen: list[Tensor] = []

    def alias(t: Tensor) -> Tensor:
        view = torch.empty(0, dtype=t.dtype, device=t.device)
        return view.set_(t.untyped_storage(), t.storage_offset(), t.size(), t.stride())

    try:
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if p is not None and p.is_inference():
                    sub._parameters[name] = nn.Parameter(alias(p), requires_grad=False)
                    swapped.append((sub, name, True, p))
                elif p is not None and p.requires_grad:
                    p.requires_grad_(False)  # never compute gradients for the frozen weights
                    frozen.append(p)
            for name, b in list(sub._buffers.items()):
                if b is not None and b.is_inference():
                    sub._buffers[name] = alias(b)
                    swapped.append((sub, name, False, b))
        yield len(swapped)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for sub, name, is_param, original in reversed(swapped):
            (sub._parameters if is_param else sub._buffers)[name] = original


@contextlib.contextmanager
def differentiable(
    model, family: str, capture: ConceptMaskCapture, marker: MarkedRow, checkpoint: bool
) -> Iterator[None]:
    """While active, forward passes of a loaded MODEL (``load_for_training``) can be differentiated:
    ComfyUI's training flag (``training_mode``), its frozen inference-mode weights usable by autograd
    without a copy (``autograd_usable_weights``), the family's in-place updates made safe (copies
    for ``inplace_updated_norms``, saved copies where ``saves_inputs_updated_in_place``), and every
    transformer block wrapped for the mask capture and optional activation checkpointing
    (``erasure.training.wrapped_blocks``). The trainer and the prompt attack both run inside it."""
    dm = model.model.diffusion_model
    norms = inplace_updated_norms(dm, family)
    with (
        training_mode(),
        autograd_usable_weights(dm),
        cloned_inputs(norms),
        wrapped_blocks(
            block_modules(dm, family),
            capture,
            marker,
            checkpoint,
            copy_inputs=bool(norms),
            copy_saved_inputs=saves_inputs_updated_in_place(family),
        ),
    ):
        yield


# --- prompts and conditioning ---------------------------------------------------------------------


def text_stream(clip, family: str) -> str:
    """The tokenizer stream whose tokens become the conditioning rows.

    HunyuanVideo's CLIP has two streams (LLaVA-Llama rows, CLIP-L pooled), so its must be named;
    HunyuanVideo 1.5's gives Qwen2.5-VL rows and, for quoted text, byT5 glyph rows. A Wan model
    reads the rows of one encoder: umT5, or any single-stream encoder whose rows fit it (the toy
    world's MiniLM).
    """
    streams = sorted(clip.tokenize(""))
    wanted = TEXT_STREAM[family]
    if wanted in streams:
        return wanted
    if family == "wan" and len(streams) == 1:
        return streams[0]
    raise ValueError(
        f"The CLIP input gives {streams} tokens, not the '{wanted}' tokens this model's text "
        "stream needs: load the text encoder that belongs to the model (umT5 for Wan, the "
        "HunyuanVideo LLaVA-Llama + CLIP-L pair for HunyuanVideo, Qwen2.5-VL + byT5 with type "
        "hunyuan_video_15 for HunyuanVideo 1.5, T5-XXL with type ltxv for LTX-Video, Gemma 3 12B with "
        "LTXAVTextEncoderLoader for LTX-2, Qwen2.5-VL + CLIP-L with type kandinsky5 for Kandinsky 5, "
        "T5-XXL with type cogvideox for CogVideoX)."
    )


def _token_ids(clip, text: str, stream: str) -> list[int]:
    tokens = clip.tokenize(text)
    return [int(t[0]) for batch in tokens[stream] for t in batch if isinstance(t[0], int)]


def concept_token_sequences(clip, concept: str, stream: str) -> list[list[int]]:
    """Token sequences of each concept word as it appears at a sentence start and after a word."""
    empty = _token_ids(clip, "", stream)
    lead = strip_template(_token_ids(clip, "a", stream), empty)
    sequences = []
    for word in concept_words(concept):
        for form in {word, word.lower(), word[:1].upper() + word[1:]}:
            sequences.append(strip_template(_token_ids(clip, form, stream), empty))
            after = strip_template(_token_ids(clip, f"a {form}", stream), empty)
            if after[: len(lead)] == lead:
                sequences.append(after[len(lead) :])
    return [s for s in sequences if s]


@dataclass
class EncodedPrompt:
    """One prompt: its CONDITIONING, the rows of its concept tokens, and (once built) its model inputs."""

    text: str
    conditioning: list  # as CLIPTextEncode gives it: [[cond, extras]]
    text_len: int
    concept_rows: list[int]
    concept_found: bool
    conds: dict[str, Tensor] = field(default_factory=dict)
    stream_prefix: int = 0  # rows before the prompt's in the model's text stream (byT5 glyphs)


def _clone_tree(value, device):
    if isinstance(value, Tensor):
        return value.detach().clone().to(device)
    if isinstance(value, dict):
        return {k: _clone_tree(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone_tree(v, device) for v in value)
    return value


def encode_prompts(clip, texts: Sequence[str], concept: str | None, family: str) -> list[EncodedPrompt]:
    """Encode ``texts`` with the user's CLIP and find the concept's token rows in each.

    ``concept`` None skips the token search (the empty and preserve prompts). When the concept's
    words are not among a prompt's tokens, its mask falls back to all of its real text tokens
    (``concept_found`` False) so training goes on with a weaker localization; the node reports it.
    Run outside inference mode: the conditioning is cloned into normal tensors here.
    """
    stream = text_stream(clip, family)
    empty_ids = _token_ids(clip, "", stream)
    sequences = concept_token_sequences(clip, concept, stream) if concept else []
    out = []
    for text in texts:
        conditioning = _clone_tree(
            clip.encode_from_tokens_scheduled(clip.tokenize(text), show_pbar=False), "cpu"
        )
        cond, extras = conditioning[0][0], conditioning[0][1]
        text_len = int(cond.shape[1])
        rows: list[int] = []
        if sequences:
            ids = _token_ids(clip, text, stream)
            offset = common_prefix_length(ids, empty_ids)
            rows = [p - offset for p in find_concept_positions(ids, sequences) if 0 <= p - offset < text_len]
        found = bool(rows)
        if not found:
            real = cond[0].abs().sum(dim=-1) > 0
            mask = extras.get("attention_mask")
            if mask is not None:
                real = real & (mask.reshape(-1)[:text_len] > 0)
            rows = torch.nonzero(real).flatten().tolist() or list(range(text_len))
        out.append(EncodedPrompt(text, conditioning, text_len, rows, found))
    return out


def _stream_prefix(diffusion_model: nn.Module, conds: dict[str, Tensor]) -> int:
    """Rows that HunyuanVideo 1.5 puts before the prompt's rows in its text stream: byT5 glyph rows
    (when the model has ``byt5_in``) and SigLIP image rows."""
    rows = 0
    if "txt_byt5" in conds and getattr(diffusion_model, "byt5_in", None) is not None:
        rows += int(conds["txt_byt5"].shape[1])
    if "clip_fea" in conds and getattr(diffusion_model, "vision_in", None) is not None:
        rows += int(conds["clip_fea"].shape[1])
    return rows


def with_attended_rows(extras: dict, rows: int, new_rows: int) -> dict:
    """``extras`` of a CONDITIONING entry whose text grew from ``rows`` to ``new_rows`` rows (soft
    tokens appended): an ``attention_mask`` over the old rows gets ones for the new ones, so the
    model attends to them (HunyuanVideo and LTX-Video mask their text padding). Other extras as they are."""
    mask = extras.get("attention_mask")
    if new_rows <= rows or not isinstance(mask, Tensor) or mask.shape[-1] != rows:
        return extras
    ones = torch.ones((*mask.shape[:-1], new_rows - rows), dtype=mask.dtype, device=mask.device)
    return dict(extras, attention_mask=torch.cat([mask, ones], dim=-1))


def model_conds(
    model,
    entry: Sequence,
    latent_shape: Sequence[int],
    device,
    cross_attn: Tensor | None = None,
    stream_shapes: Sequence[Sequence[int]] | None = None,
):
    """The model's inputs (batch 1, on ``device``) for one CONDITIONING entry ``[cond, extras]``, from
    the model's own ``extra_conds`` as the sampler builds them for a latent of ``latent_shape``
    (``stream_shapes``: LTX-2's ``latent_shapes``, see ``TrainingClips``).

    ``cross_attn`` replaces the entry's text rows (a prompt attack's ``c'``, which may carry a
    gradient: nothing here detaches it); where it has more rows than the entry and the entry has an
    ``attention_mask`` over its rows, the mask is extended to let the new rows be attended to."""
    cond, extras = entry[0], entry[1]
    if cross_attn is None:
        cross_attn = cond
    extras = with_attended_rows(_clone_tree(extras, device), int(cond.shape[1]), int(cross_attn.shape[1]))
    if stream_shapes is not None:
        extras["latent_shapes"] = [torch.Size(s) for s in stream_shapes]
    noise = torch.zeros((1, *latent_shape[1:]), device=device)
    params = dict(extras, cross_attn=cross_attn.to(device), noise=noise, device=device)
    out = {}
    for k, v in model.model.extra_conds(**params).items():
        value = v.process_cond(batch_size=1, area=None, device=device).cond
        # Constants (LTX-Video's frame_rate) go to the model as they are, once per batch.
        out[k] = value.to(device) if isinstance(value, Tensor) else value
    return out


def build_model_inputs(
    model,
    prompts: Sequence[EncodedPrompt],
    latent_shape: Sequence[int],
    device,
    stream_shapes: Sequence[Sequence[int]] | None = None,
) -> None:
    """Fill each prompt's ``conds`` (batch 1, on ``device``) with the model's own ``extra_conds``,
    as the sampler builds them for a latent of ``latent_shape`` (and LTX-2's ``stream_shapes``).
    Where the model's text stream puts other rows before the prompt's (HunyuanVideo 1.5's byT5 glyph
    rows), ``text_len`` and ``concept_rows`` are made to count in that stream. LTX-2's text
    connectors (run by its ``extra_conds``) give the blocks more rows than the CLIP did: the prompt's
    rows first, then the connectors' registers; ``text_len`` becomes that count."""
    for prompt in prompts:
        prompt.conds = model_conds(
            model, prompt.conditioning[0], latent_shape, device, stream_shapes=stream_shapes
        )
        if hasattr(model.model.diffusion_model, "preprocess_text_embeds"):
            prompt.text_len = int(prompt.conds["c_crossattn"].shape[1])
        prefix = _stream_prefix(model.model.diffusion_model, prompt.conds)
        if prefix and not prompt.stream_prefix:
            prompt.stream_prefix = prefix
            prompt.text_len += prefix
            prompt.concept_rows = [r + prefix for r in prompt.concept_rows]


# --- the forward pass -----------------------------------------------------------------------------


def _key_bias(mask: Tensor | None, n_keys: int) -> Tensor | None:
    """An attention mask as an additive bias over the keys, [B or 1, n_keys] (first query's row)."""
    if mask is None:
        return None
    m = mask.reshape(mask.shape[0] if mask.ndim > 2 else 1, -1, mask.shape[-1])[:, 0]
    if m.dtype == torch.bool:
        m = torch.zeros_like(m, dtype=torch.float32).masked_fill(~m, float("-inf"))
    return m[:, -n_keys:].float()


def attention_override(capture: ConceptMaskCapture, previous: Callable | None) -> Callable:
    """An ``optimized_attention_override`` that shows q and k of each call to ``capture`` first."""

    def override(func, *args, **kwargs):
        if capture.active:
            q, k = args[0], args[1]
            heads = kwargs["heads"] if "heads" in kwargs else args[3]
            if not kwargs.get("skip_reshape", False):
                b = q.shape[0]
                q = q.reshape(b, q.shape[1], heads, -1).transpose(1, 2)
                k = k.reshape(b, k.shape[1], heads, -1).transpose(1, 2)
            # ComfyUI 0.3.x's optimized_attention_masked (LTX-Video's cross attention) passes the mask
            # positionally, after heads.
            mask = kwargs["mask"] if "mask" in kwargs else (args[4] if len(args) > 4 else None)
            capture.observe(q, k, _key_bias(mask, k.shape[2]))
        if previous is not None:
            return previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    return override


class VelocityModel:
    """``v(x_t, sigma, prompts)`` of a loaded ComfyUI model, with an attention override for the masks.

    ``forward(group)`` runs ``BaseModel.apply_model`` once on a batch of prompts (all with this step's
    x_t and sigma) and converts the denoised output to the flow velocity. The model's own
    ``transformer_options`` are kept; an ``optimized_attention_override`` (chained to any existing
    one) shows q and k of every attention call to the mask capture.
    """

    def __init__(self, model, prompts: dict[Hashable, EncodedPrompt], capture: ConceptMaskCapture) -> None:
        self.model = model
        self.prompts = prompts
        self.x_t: Tensor | None = None
        self.sigma: Tensor | None = None
        options = dict(model.model_options.get("transformer_options", {}))
        options["optimized_attention_override"] = attention_override(
            capture, options.get("optimized_attention_override")
        )
        self.transformer_options = options

    def signature(self, prompt: Hashable) -> tuple:
        """Prompts batch together when their tensors have the same shapes and constants are equal."""
        return tuple(
            sorted(
                (k, tuple(v.shape) if isinstance(v, Tensor) else repr(v))
                for k, v in self.prompts[prompt].conds.items()
            )
        )

    def forward(self, group: list[Hashable]) -> Tensor:
        n = len(group)
        first = self.prompts[group[0]].conds
        conds = {
            k: torch.cat([self.prompts[p].conds[k] for p in group]) if isinstance(v, Tensor) else v
            for k, v in first.items()
        }
        x = self.x_t.expand(n, *self.x_t.shape[1:])
        sigma = self.sigma.expand(n)
        options = dict(self.transformer_options, sigmas=sigma)
        denoised = self.model.model.apply_model(x, sigma, transformer_options=options, **conds)
        return flow_velocity(x, denoised, sigma)


# --- latents, progress ----------------------------------------------------------------------------


def _streams(samples) -> list[Tensor]:
    """The tensors of a LATENT's samples: a NestedTensor's streams (LTX-2's video and audio), or the one."""
    return list(samples.unbind()) if getattr(samples, "is_nested", False) else [samples]


def audio_latent_shape(model, length: int) -> tuple[int, int, int, int]:
    """``[1, channels, latents, frequency bins]`` of the audio of a ``length``-frame LTX-2 clip at
    ``LTXAV_FRAME_RATE``, counted as ``LTXVEmptyLatentAudio`` counts it: ``round(length / fps *
    latents_per_second)``, with ``latents_per_second = sample_rate / (hop_length * downsample)`` read
    from the model's audio patchifier (the audio VAE's, 25 for LTX-2), channels and bins from the model."""
    dm = model.model.diffusion_model
    p = dm.a_patchifier
    per_second = p.sample_rate / (p.hop_length * p.audio_latent_downsample_factor)
    latents = max(1, round(length / LTXAV_FRAME_RATE * per_second))
    return (1, int(dm.num_audio_channels), latents, int(dm.audio_frequency_bins))


@dataclass(frozen=True)
class TrainingClips:
    """Concept clips as the model takes them in training: ``x0`` [N, C, T, H, W] (after the latent
    format's ``process_in``), or LTX-2's video and audio streams packed into [N, 1, L] as ComfyUI's
    sampler packs a NestedTensor latent (``comfy.utils.pack_latents``); ``stream_shapes`` are then the
    streams' shapes (batch 1), which the model gets as ``latent_shapes`` to unpack them. LTX-2 gets
    ``latent_shapes`` for a video alone too (its model indexes the streams), with ``x0`` unpacked."""

    x0: Tensor
    stream_shapes: tuple[tuple[int, ...], ...] | None = None

    @property
    def video_shape(self) -> tuple[int, ...]:
        """[1, C, T, H, W] of the video stream."""
        if self.stream_shapes is not None:
            return self.stream_shapes[0]
        return (1, *self.x0.shape[1:])


def training_clips(model, family: str, samples) -> TrainingClips:
    """``samples`` (a LATENT's, checked) as ``TrainingClips`` for the MODEL's family."""
    import comfy.utils

    streams = [s.detach().clone().float() for s in _streams(samples)]
    if family != "ltxav":
        return TrainingClips(model.model.process_latent_in(streams[0]))
    shapes = tuple((1, *(int(n) for n in s.shape[1:])) for s in streams)
    packed = comfy.utils.pack_latents(streams)[0] if len(streams) > 1 else streams[0]
    return TrainingClips(model.model.process_latent_in(packed), shapes)


def sample_concept_latents(
    model,
    conditionings: Sequence[list],
    negative: list,
    shapes: Sequence[Sequence[int]],
    steps: int,
    cfg: float,
    seed: int,
):
    """Latents the (unchanged) model makes for the concept prompts: one short euler run per prompt.
    ``shapes``: the latent's (batch 1), or for LTX-2 its video's and its audio's, which are sampled
    together as one NestedTensor latent (as LTXVConcatAVLatent gives KSampler) and come back as one
    NestedTensor of N clips."""
    streams: list[list[Tensor]] = [[] for _ in shapes]
    for i, positive in enumerate(conditionings):
        throw_if_cancelled()
        clip_seed = (seed + i) % 2**64
        latent = _empty_latent(shapes)
        noise = comfy.sample.prepare_noise(latent, clip_seed)
        out = comfy.sample.sample(
            model,
            noise,
            steps,
            cfg,
            "euler",
            "simple",
            positive,
            negative,
            latent,
            seed=clip_seed,
            disable_pbar=True,
        )
        for kept, clip in zip(streams, _streams(out), strict=True):
            kept.append(clip)
    if len(streams) == 1:
        return torch.cat(streams[0])
    return _nested([torch.cat(s) for s in streams])


def _nested(tensors: Sequence[Tensor]):
    import comfy.nested_tensor

    return comfy.nested_tensor.NestedTensor(list(tensors))


def _empty_latent(shapes: Sequence[Sequence[int]]):
    if len(shapes) == 1:
        return torch.zeros(tuple(shapes[0]))
    return _nested([torch.zeros(tuple(s)) for s in shapes])


def check_trainable(model, node: str) -> None:
    """Refuse, before any work, a MODEL whose weights ComfyUI streams layer by layer.

    New ComfyUI's default memory manager on NVIDIA GPUs (dynamic VRAM, ``ModelPatcherDynamic``)
    never loads a model fully (its ``load`` refuses a full load) and casts each weight onto the
    device only for the op that uses it; the trainer needs every frozen weight resident where
    autograd can see it for the whole run. On the CPU ComfyUI never uses it.
    """
    is_dynamic = getattr(model, "is_dynamic", None)
    if callable(is_dynamic) and is_dynamic():
        raise RuntimeError(
            f"{node} cannot train on this MODEL: ComfyUI streams its weights to the GPU layer by layer "
            "(dynamic VRAM, the default memory manager of new ComfyUI), and training needs the whole "
            "model loaded. Restart ComfyUI with --disable-dynamic-vram to train; the LoRA it makes "
            "works with dynamic VRAM on again."
        )


def load_for_training(model) -> None:
    """Load the model fully onto its device (patches applied), as ComfyUI does before sampling."""
    comfy.model_management.load_models_gpu([model], force_full_load=True)


@contextlib.contextmanager
def training_mode() -> Iterator[None]:
    """ComfyUI told that a model is being trained, for the block's duration only.

    New ComfyUI (0.8 and later) runs RoPE, modulation and other pieces through comfy_kitchen
    kernels that have no autograd formula (they raise on backward, or give wrong gradients on
    some GPUs) unless ``comfy.model_management.in_training`` is set; then it takes plain torch
    ops. The previous value comes back on exit, also on error or Cancel, so sampling afterwards
    runs the fast kernels again. ComfyUI versions without the flag have no such kernels.
    """
    management = comfy.model_management
    if not hasattr(management, "in_training"):
        yield
        return
    previous = management.in_training
    management.in_training = True
    try:
        yield
    finally:
        management.in_training = previous


def throw_if_cancelled() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()


def send_progress(payload: dict) -> None:
    """Send ``payload`` to the web UI as a ``PROGRESS_EVENT`` message; no-op without a running server."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return
    instance.send_sync(PROGRESS_EVENT, payload, getattr(instance, "client_id", None))


def make_adapters(model, targets, rank: int, alpha: float, seed: int, marker: MarkedRow) -> AdapterSet:
    modules = dict(model.model.diffusion_model.named_modules())
    return AdapterSet(modules, targets, rank, alpha, seed, marker, device=model.load_device)
