"""Unlearning LoRA files: save where LoRA loaders read, and load with checks the stock loader lacks.

UnlearnSaveLoRA writes a LORA_MODEL to models/loras (the stock SaveLoRA writes under output/, where
no loader looks) with its metadata (concept, method, every hyperparameter, steps, base architecture,
pack version), under a numbered name that never overwrites, through a temporary file and a rename.

UnlearnLoadLoRA applies such a file to a MODEL at a strength, after checking that the file was made
for this architecture and that every one of its modules matches a layer of the model with the right
shape: the stock loader only logs "lora key not loaded", and a silently unapplied safety LoRA is
the worst failure this pack can have.

The file format and its checks are ``erasure.lora_format``'s; the patches ``comfy_compat``'s.
"""

from __future__ import annotations

import json
import os
import uuid

import folder_paths
import torch
from comfy_api.latest import io

from ..erasure import checks, lora_format
from . import comfy_compat, train_compat

CATEGORY = "video_unlearning/lora"
SAVE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# A LoRA made for one of these applies to the other: Wan 2.1 I2V is fine-tuned from T2V, same blocks.
COMPATIBLE_ARCHITECTURES = ({"wan21_t2v", "wan21_i2v"},)
SHOWN_METADATA = (
    "method",
    "concept",
    "base_architecture",
    "steps",
    "rank",
    "learning_rate",
    "eta",
    "pack_version",
)


def describe(metadata: dict[str, str]) -> str:
    shown = [f"{k}: {metadata[k]}" for k in SHOWN_METADATA if k in metadata]
    return "\n".join(shown) if shown else "(no unlearning metadata in this file)"


def save_numbered(lora: dict, metadata: dict[str, str], folder: str, prefix: str) -> str:
    """Save to ``<folder>/<prefix>_NNNNN_.safetensors`` with the first free number; never overwrite.

    ``lora_format.save_lora_file`` writes a staging file atomically in the same folder; a hard link
    then gives it its numbered name (failing, not overwriting, if a concurrent writer took it) and the
    staging name is removed. Returns the name relative to ``folder``.
    """
    root = os.path.realpath(folder)
    base = os.path.realpath(os.path.join(root, prefix))
    if base == root or os.path.commonpath([root, base]) != root:
        raise ValueError(f"filename_prefix {prefix!r} must name a file inside {root}")
    directory, stem = os.path.split(base)
    staging = os.path.join(directory, f".{stem}.{uuid.uuid4().hex}.staging.safetensors")
    lora_format.save_lora_file(staging, lora, metadata)
    try:
        numbers = [
            name[len(stem) + 1 : -len("_.safetensors")]
            for name in os.listdir(directory)
            if name.startswith(f"{stem}_") and name.endswith("_.safetensors")
        ]
        counter = max([int(n) for n in numbers if n.isdigit()], default=0) + 1
        while True:
            path = os.path.join(directory, f"{stem}_{counter:05}_.safetensors")
            try:
                os.link(staging, path)
                break
            except FileExistsError:
                counter += 1
    finally:
        os.unlink(staging)
    return os.path.relpath(path, root).replace(os.sep, "/")


def check_architecture(model, metadata: dict[str, str], source: str) -> None:
    """ValueError when the file's ``base_architecture`` names another architecture than the model's."""
    here = train_compat.supported_architecture(model, "Unlearn: Load LoRA", for_training=False).name
    made_for = metadata.get("base_architecture")
    if not made_for or made_for == here or any({made_for, here} <= g for g in COMPATIBLE_ARCHITECTURES):
        return
    raise ValueError(
        f"{source} was made for {made_for}, but this model is {here}: load it on a {made_for} model, "
        f"or make a LoRA for {here}."
    )


def match_layers(model, modules: dict[str, lora_format.LoraModule], source: str) -> dict[str, tuple]:
    """``{module name: (up, down, scale)}``: each of the file's layers mapped to the model's as
    ComfyUI's loader maps them (``comfy_compat.lora_layer_names``), with its shape checked.

    ValueError unless every layer of the file names a layer of the model (once) whose weight
    up @ down fits: ComfyUI matches patches by name only, logs the names it cannot map and, at load
    time, logs and skips a patch whose shape is wrong.
    """
    names = comfy_compat.lora_layer_names(model)
    dm = model.model.diffusion_model
    problems, factors, taken = [], {}, {}
    for name, m in modules.items():
        module = names.get(name)
        if module is None:
            problems.append(f"{name}: no such layer")
            continue
        if module in taken:
            problems.append(f"{name}: the same layer as {taken[module]}")
            continue
        taken[module] = name
        weight = dm.get_submodule(module).weight
        if weight is None or (m.up.shape[0], m.down.shape[1]) != (weight.shape[0], weight[0].numel()):
            shape = None if weight is None else tuple(weight.shape)
            problems.append(
                f"{name}: {tuple(m.up.shape)} x {tuple(m.down.shape)} does not fit its weight {shape}"
            )
            continue
        factors[module] = (m.up, m.down, m.scale)
    if problems:
        raise ValueError(
            f"{source}: {len(modules) - len(problems)} of {len(modules)} LoRA modules fit this model; "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            + ". The file was made for another model, or names its layers in a way ComfyUI does not map."
        )
    return factors


class UnlearnSaveLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnSaveLoRA",
            display_name="Unlearn: Save LoRA",
            category=CATEGORY,
            description=(
                "Saves a LoRA into models/loras (where LoRA loaders read) with its metadata. Never "
                "overwrites: names are numbered. Written to a temporary file and renamed, so a crash never "
                "leaves half a file."
            ),
            is_output_node=True,
            inputs=[
                io.Custom("LORA_MODEL").Input(
                    "lora", tooltip="From Unlearn: Train LoRA or Unlearn: Refusal Apply."
                ),
                io.String.Input(
                    "filename_prefix", default="unlearning/unlearn", tooltip="Path under models/loras."
                ),
                io.Combo.Input(
                    "save_dtype",
                    options=list(SAVE_DTYPES),
                    default="fp32",
                    tooltip="fp32 keeps the trained weights exactly; bf16/fp16 halve the file.",
                ),
            ],
            outputs=[
                io.String.Output(display_name="filename", tooltip="The file saved, relative to models/loras.")
            ],
        )

    @classmethod
    def execute(cls, lora, filename_prefix, save_dtype="fp32") -> io.NodeOutput:
        dtype = SAVE_DTYPES[save_dtype]
        lora_format.lora_factors(lora, "Unlearn: Save LoRA's lora input")
        tensors = {k: v if k.endswith(lora_format.ALPHA) else v.to(dtype) for k, v in lora.items()}
        for key, value in tensors.items():
            problem = checks.non_finite(value)
            if problem:
                raise ValueError(
                    f"Unlearn: Save LoRA: {key} has {problem} once stored as {save_dtype} (the largest "
                    f"{save_dtype} value is {torch.finfo(dtype).max:.4g}); save as bf16 or fp32. Nothing "
                    "was written."
                )
        metadata = dict(getattr(lora, "metadata", None) or {}, save_dtype=save_dtype)
        metadata.setdefault("pack_version", lora_format.pack_version())
        name = save_numbered(tensors, metadata, folder_paths.get_folder_paths("loras")[0], filename_prefix)
        return io.NodeOutput(name, ui={"text": [f"saved models/loras/{name}\n{describe(metadata)}"]})


class UnlearnLoadLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnLoadLoRA",
            display_name="Unlearn: Load LoRA",
            category=CATEGORY,
            description=(
                "Applies an unlearning LoRA from models/loras. Fails with a clear message when the file was "
                "made for another architecture or when any of its modules does not match the model (the "
                "stock loader silently skips them). Shows the file's metadata."
            ),
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("lora_name", options=folder_paths.get_filename_list("loras")),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.05),
            ],
            outputs=[
                io.Model.Output(display_name="model"),
                io.String.Output(display_name="metadata", tooltip="The file's metadata as JSON."),
            ],
        )

    @classmethod
    def execute(cls, model, lora_name, strength) -> io.NodeOutput:
        strength = checks.finite_number("Unlearn: Load LoRA's strength", strength)
        path = folder_paths.get_full_path_or_raise("loras", lora_name)
        lora = lora_format.load_lora_file(path)
        check_architecture(model, lora.metadata, lora_name)
        modules = lora_format.lora_modules(comfy_compat.converted_lora(lora), lora_name)
        factors = match_layers(model, modules, lora_name)
        scaled = {
            m: (up.float() * (scale * strength), down.float()) for m, (up, down, scale) in factors.items()
        }
        checks.require_finite(
            ((f"{m} up x alpha / rank x strength", up) for m, (up, _) in scaled.items()), lora_name
        )
        patched = comfy_compat.add_lowrank_patches(model, scaled)
        text = f"{lora_name}: {len(factors)} layers at strength {strength}\n{describe(lora.metadata)}"
        return io.NodeOutput(patched, json.dumps(lora.metadata, sort_keys=True), ui={"text": [text]})


NODES = [UnlearnSaveLoRA, UnlearnLoadLoRA]
