"""Refusal-vector erasure: estimate a concept's direction from prompt pairs, fold its removal into
the weights in closed form, and hand the edit out as a standard LoRA.

UnlearnRefusalEstimate -> REFUSAL_VECTOR; UnlearnRefusalApply -> MODEL, LORA_MODEL.

Wan: the directions live in the text context (``text_embedding`` of the prompt's real tokens), the
input of every block's ``cross_attn.k`` and ``cross_attn.v``; no denoising pass is needed. Each Wan
2.2 A14B expert is its own MODEL with its own ``text_embedding``: estimate and apply once per
expert (a vector estimated on one expert is refused by the other). HunyuanVideo: the text stream in
the double blocks depends on timestep and video, so the inputs of ``txt_attn.qkv`` and ``txt_mlp.0``
are collected during a short real sampling run (``probe_steps`` steps) and each gets its own
directions; the pooled CLIP-L vector's entry into the modulation (``vector_in.in_layer``) gets one
too, since in the tiny model it carries 99 % of the difference between two prompts' velocities
(without it the edit left the velocity where it was: ratio 0.99-1.00). HunyuanVideo 1.5 has no
pooled vector and no single-stream blocks: its double blocks' ``txt_attn.qkv`` inputs carry all of the
difference between two prompts' velocities in the tiny model, and the default edit of them and
``txt_mlp.0`` moved held-out unsafe velocities 12-18 % of the way to the safe ones. LTX-Video:
as Wan, the context (``caption_projection`` of the T5-XXL rows, real tokens by the T5 mask) is the
input of every block's ``attn2.to_k`` and ``attn2.to_v``, which carry all of the difference between
two prompts' velocities in the tiny model; no denoising pass. LTX-2: the video and the audio
context (each the model's own text connector and caption projection of the Gemma 3 rows) are the
inputs of every block's ``attn2`` and ``audio_attn2`` ``to_k`` / ``to_v``; each gets its own
directions, with no denoising pass.

Defaults, measured on the tiny models (tests/test_refusal_nodes.py): rank 4; alpha 10 (alpha 1 left
10-25 % neutral change and, with a context-free encoder, moved two of four held-out velocities away
from the safe prompt; alpha 1000 reaches < 2 % but erases less); pooling ``centred_sum`` (see
erasure/directions.py).
"""

from __future__ import annotations

import json

from comfy_api.latest import io

from ..erasure import checks, presets
from ..erasure.edits import input_side_factors, pair_distance_ratio, parse_block_range, relative_output_change
from ..erasure.lora_format import build_lora, json_list, pack_version
from ..erasure.refusal_vector import Concept, RefusalVector, check_finite, estimate_site
from . import comfy_compat as compat

CATEGORY = "video_unlearning/refusal"
POOLING = "centred_sum"
PROBE_SEED = 0
RefusalVectorType = io.Custom("REFUSAL_VECTOR")


def site_activations(model, clip, prompts: list[str], probe_steps: int) -> dict:
    """{site name: activations[prompt][step]} for every site of the model's architecture."""
    arch = compat.detect_architecture(model)
    encoded = [compat.encode(clip, text) for text in prompts]
    if arch.family in compat.CONTEXT_PROJECTIONS:
        return {"context": compat.wan_context(model, encoded, arch.family)}
    if arch.family in compat.TEXT_ROW_FAMILIES:
        return {"text": compat.text_rows(encoded)}
    if arch.family == "ltxav":
        return compat.ltxav_contexts(model, encoded)
    return compat.sampled_inputs(
        model, encoded, compat.site_specs(arch), probe_steps, PROBE_SEED, compat.PROBE_LATENTS[arch.family]
    )


def estimate_vector(
    model, clip, concept: str, pairs: list, neutral: list[str], rank: int, alpha: float, probe_steps: int
) -> RefusalVector:
    """Encode every prompt, collect the activations at each site, estimate one direction per site."""
    arch = compat.detect_architecture(model)
    if not neutral:
        raise ValueError(
            "no neutral prompts: write a few everyday prompts (one a line) that lack the concept"
        )
    alpha = checks.finite_number("alpha", alpha)
    unsafe, safe = [u for u, _ in pairs], [s for _, s in pairs]
    acts = site_activations(model, clip, unsafe + safe + neutral, probe_steps)
    check_activations(acts, unsafe + safe + neutral)
    n = len(pairs)
    sites, results = [], []
    for spec in compat.site_specs(arch):
        per_prompt = acts[spec.name]
        site, result = estimate_site(
            spec.name,
            spec.modules,
            per_prompt[:n],
            per_prompt[n : 2 * n],
            per_prompt[2 * n :],
            rank,
            alpha,
            POOLING,
        )
        sites.append(site)
        results.append(result)
    # Sites differ in sample count (HunyuanVideo: pairs x steps in the text stream, one per pair for
    # the pooled vector); the concept records the smallest, where a clamp shows first.
    fewest = min(results, key=lambda r: r.samples)
    record = Concept(concept, tuple(pairs), rank, fewest.rank_used, fewest.samples)
    steps = probe_steps if arch.family in compat.PROBED_FAMILIES else 0
    return RefusalVector(
        arch.name,
        arch.width,
        arch.num_blocks,
        compat.fingerprint(model, arch),
        POOLING,
        alpha,
        steps,
        tuple(neutral),
        (record,),
        tuple(sites),
    )


def check_activations(acts: dict, prompts: list[str]) -> None:
    """ValueError naming the site and the prompt whose activations hold NaN or infinity."""
    for site, per_prompt in acts.items():
        for text, steps in zip(prompts, per_prompt, strict=True):
            for rows in steps:
                problem = checks.non_finite(rows)
                if problem:
                    raise ValueError(
                        f"the model's activations at {site} for the prompt {text!r} have {problem}: the "
                        "MODEL or CLIP computes non-finite values (broken weights, or fp16 overflow); "
                        "nothing was estimated"
                    )


def check_vector_fits(model, vector: RefusalVector) -> compat.Architecture:
    arch = compat.detect_architecture(model)
    if (vector.architecture, vector.width) != (arch.name, arch.width):
        raise ValueError(
            f"this refusal vector was estimated on {vector.architecture} (width {vector.width}) but the "
            f"MODEL is {arch.name} (width {arch.width}); estimate it again on this model"
        )
    if not compat.same_model(vector.fingerprint, compat.fingerprint(model, arch)):
        raise ValueError(
            "this refusal vector was estimated on a different model of the same architecture (each Wan "
            "2.2 A14B expert has its own text embedding and needs its own estimate); estimate it again "
            "on this model"
        )
    return arch


def describe_vector(vector: RefusalVector) -> str:
    lines = [f"refusal vector for {vector.architecture} (width {vector.width}), {len(vector.sites)} site(s)"]
    for c in vector.concepts:
        clamp = f" (rank {c.rank_requested} clamped to {c.rank_used}: only {c.samples} difference samples)"
        lines.append(
            f"- {c.name}: {len(c.pairs)} pairs, {c.samples} samples, rank {c.rank_used}"
            + (clamp if c.rank_clamped else "")
        )
    lines.append(
        f"{len(vector.neutral_prompts)} neutral prompts, alpha {vector.alpha}, pooling {vector.pooling}"
    )
    return "\n".join(lines)


def apply_vector(model, vector: RefusalVector, strength: float, blocks: str):
    """(patched clone, LORA_MODEL, report) for the chosen blocks."""
    strength = checks.finite_number("strength", strength)
    check_finite(vector, "refusal_vector")
    arch = check_vector_fits(model, vector)
    chosen = {*parse_block_range(blocks, arch.num_blocks), compat.NO_BLOCK}
    selected = [(site, module) for site in vector.sites for block, module in site.modules if block in chosen]
    factors, rows = {}, []
    for site, module in selected:  # one layer's float32 copy at a time
        weight, bias = compat.current_weights(model, [module])[module]
        checks.require_finite(
            {f"{module}.weight": weight, f"{module}.bias": bias if bias is not None else weight[:0]},
            "the MODEL",
            "the model is broken before the edit",
        )
        basis = site.basis
        factors[module] = input_side_factors(weight, basis, strength)
        ratio = pair_distance_ratio(weight, basis, strength, site.unsafe, site.safe)
        change = relative_output_change(weight, bias, basis, strength, site.neutral)
        rows.append((module, float(ratio.mean()), float(ratio.max()), change))
    patched = compat.add_lowrank_patches(model, factors)
    lora = build_lora(factors, lora_metadata(vector, strength, blocks))
    return patched, lora, report(vector, strength, blocks, rows)


def lora_metadata(vector: RefusalVector, strength: float, blocks: str) -> dict[str, str]:
    return {
        "method": "refusal_vector",
        "concept": ", ".join(c.name for c in vector.concepts),
        "prompts": json.dumps(
            {c.name: [list(p) for p in c.pairs] for c in vector.concepts}, ensure_ascii=False
        ),
        "neutral_prompts": json_list(vector.neutral_prompts),
        "strength": str(strength),
        "blocks": blocks,
        "rank": json.dumps({c.name: c.rank_used for c in vector.concepts}, ensure_ascii=False),
        "alpha": str(vector.alpha),
        "pooling": vector.pooling,
        "probe_steps": str(vector.probe_steps),
        "base_architecture": vector.architecture,
        "pack_version": pack_version(),
    }


def report(vector: RefusalVector, strength: float, blocks: str, rows: list) -> str:
    mean_ratio = sum(r[1] for r in rows) / len(rows)
    worst_ratio = max(r[2] for r in rows)
    worst_change = max(r[3] for r in rows)
    lines = [
        f"edited {len(rows)} layers (blocks {blocks}) at strength {strength}: "
        + ", ".join(c.name for c in vector.concepts),
        f"unsafe-to-safe distance after/before: mean {mean_ratio:.3f}, worst {worst_ratio:.3f} (0: same)",
        f"neutral prompts' output change: worst {100 * worst_change:.2f}%",
    ]
    lines += [
        f"  {m}: distance x{mean:.3f} (worst {worst:.3f}), neutral {100 * ch:.2f}%"
        for m, mean, worst, ch in rows
    ]
    return "\n".join(lines)


class UnlearnRefusalEstimate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnRefusalEstimate",
            display_name="Unlearn: Estimate Refusal Vector",
            category=CATEGORY,
            description=(
                "Finds the direction that carries a concept inside the model from unsafe/safe prompt pairs, "
                "cleaned by contrastive PCA against neutral prompts (Facchiano et al., ICLR 2026). "
                "No training."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip=(
                        "Wan 2.1 / 2.2 (each A14B expert separately), HunyuanVideo, HunyuanVideo 1.5 "
                        "or LTX-Video."
                    ),
                ),
                io.Clip.Input("clip", tooltip="The text encoder used with this model."),
                io.Combo.Input(
                    "preset",
                    options=presets.preset_names(),
                    default=presets.CUSTOM,
                    tooltip="Prompt pairs to start from; your pairs below are added. 'custom': only yours.",
                ),
                io.String.Input(
                    "name", default="", tooltip="The person's name for the person preset; else a label."
                ),
                io.String.Input(
                    "unsafe_prompts",
                    multiline=True,
                    default="",
                    tooltip="One prompt a line, with the concept: 'a nude woman on a beach'.",
                ),
                io.String.Input(
                    "safe_prompts",
                    multiline=True,
                    default="",
                    tooltip="Same line count: each unsafe prompt without the concept: 'a woman on a beach'.",
                ),
                io.String.Input(
                    "neutral_prompts",
                    multiline=True,
                    default=presets.default_neutral_prompts(),
                    tooltip="Everyday prompts without the concept: the edit steers clear of what they use.",
                ),
                io.Int.Input(
                    "rank",
                    default=4,
                    min=1,
                    max=256,
                    tooltip="Contrastive PCA rank k; clamped to the number of difference samples.",
                ),
                io.Float.Input(
                    "alpha",
                    default=10.0,
                    min=0.0,
                    max=1000.0,
                    step=0.1,
                    tooltip="Contrast weight: higher keeps neutral prompts more intact, erases less.",
                ),
                io.Int.Input(
                    "probe_steps",
                    default=4,
                    min=1,
                    max=50,
                    tooltip="HunyuanVideo and 1.5 only: sampling steps whose text-stream inputs are used.",
                ),
                RefusalVectorType.Input(
                    "add_to", optional=True, tooltip="Another concept's vector: the result erases both."
                ),
            ],
            outputs=[RefusalVectorType.Output(display_name="refusal_vector")],
        )

    @classmethod
    def execute(
        cls,
        model,
        clip,
        preset,
        name,
        unsafe_prompts,
        safe_prompts,
        neutral_prompts,
        rank,
        alpha,
        probe_steps,
        add_to=None,
    ) -> io.NodeOutput:
        concept, pairs = presets.concept_prompts(preset, name, unsafe_prompts, safe_prompts)
        neutral = presets.prompt_lines(neutral_prompts)
        if add_to is not None:
            check_finite(add_to, "add_to")
            check_vector_fits(model, add_to)
        vector = estimate_vector(model, clip, concept, pairs, neutral, rank, alpha, probe_steps)
        check_finite(vector, "the estimated refusal vector")
        if add_to is not None:
            vector = add_to.combined(vector)
        return io.NodeOutput(vector, ui={"text": [describe_vector(vector)]})


class UnlearnRefusalApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnRefusalApply",
            display_name="Unlearn: Apply Refusal Vector",
            category=CATEGORY,
            description=(
                "Removes the refusal vector's directions from the inputs of the chosen layers: "
                "W' = W - strength (W Q) Q^T, patched low-rank on a copy of the model (the input MODEL is "
                "not changed). Also outputs the edit as a standard LoRA."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the vector was estimated on."),
                RefusalVectorType.Input("refusal_vector"),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.0,
                    max=4.0,
                    step=0.05,
                    tooltip="1 removes the concept's component completely; below 1 partly.",
                ),
                io.String.Input(
                    "blocks", default="all", tooltip="'all', or block indices and ranges such as '0-9,28,29'."
                ),
            ],
            outputs=[
                io.Model.Output(display_name="model"),
                io.Custom("LORA_MODEL").Output(
                    display_name="lora",
                    tooltip="The same edit as a LoRA: Save LoRA, Load LoRA Model accept it.",
                ),
            ],
        )

    @classmethod
    def execute(cls, model, refusal_vector, strength, blocks) -> io.NodeOutput:
        patched, lora, text = apply_vector(model, refusal_vector, strength, blocks)
        return io.NodeOutput(patched, lora, ui={"text": [text]})


NODES = [UnlearnRefusalEstimate, UnlearnRefusalApply]
