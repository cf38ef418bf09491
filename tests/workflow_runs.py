"""Run the shipped example workflows on the test host, with the tiny test models standing in.

``runnable(name, object_info)`` loads ``workflows/<name>.json``, converts it to API format with
``workflow_format.api_from_ui`` (what ``scripts/demo.py`` does), and then swaps what the host does
not have:

* UNETLoader: each real model file becomes the tiny random-weight model of the same architecture
  (``fixtures.tiny_models``); the toy world's model is real and stays. CheckpointLoaderSimple (LTX-Video):
  the tiny LTXV checkpoint, the tiny LTXV model with a tiny LTX-Video VAE inside; LTX-2's (also read
  by LTXVAudioVAELoader): the tiny LTX-2 checkpoint, the tiny LTX-2 model with the tiny LTX-Video VAE
  and a tiny LTX-2 audio VAE and vocoder inside.
* CLIPLoader (wan, ltxv, cogvideox), DualCLIPLoader (hunyuan_video, 1.5, kandinsky5) and
  LTXAVTextEncoderLoader (LTX-2's Gemma 3): the test node VideoUnlearningTestTinyTextEncoder with the
  tiny text encoder of that family (a real ComfyUI CLIP object; LTX-2's is ComfyUI's own LTXAVTEModel
  around a tiny Gemma 3).
* VAELoader: the tiny Wan 2.1 VAE (``fixtures.tiny_vae``), for HunyuanVideo, Kandinsky 5 and
  CogVideoX too (same latent shape; ComfyUI's HunyuanVideo VAE cannot be built small); for
  HunyuanVideo 1.5 (32 channels, 16x) the tiny seeded TAEHV decoder of its latents.
* LoRA loaders: ``lora_name`` becomes a LoRA file the test wrote for the tiny model.
* Sizes, steps and prompt lists shrink (``SMALL``) so that a workflow runs in seconds on CPU (most of
  the time goes into the tiny umT5, which pads every prompt to 512 tokens: a refusal preset's pairs
  become its first two, as a custom list, and the neutral and training prompts two). The toy-world demo
  keeps its clip size (the toy model and detector are made for it) and only runs fewer and shorter
  (``SMALL_TOY``): the browser test queues it as it is.

Every swap is listed in the returned notes, so a failure says what ran.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import build_workflows
import workflow_format
from fixtures import tiny_vae
from fixtures.tiny_models import LTXAV_CHECKPOINT, LTXV_CHECKPOINT, TEXT_ENCODER_FILES, TINY_MODELS
from video_unlearning.erasure import presets
from video_unlearning.erasure.prompt_augment import augment_prompts

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"
TINY_UNETS = {
    build_workflows.WAN21_T2V: TINY_MODELS["tiny_wan21_t2v"].filename,
    build_workflows.HUNYUAN: TINY_MODELS["tiny_hunyuan_video"].filename,
    build_workflows.WAN22_HIGH: TINY_MODELS["tiny_wan22_a14b_high_noise"].filename,
    build_workflows.WAN22_LOW: TINY_MODELS["tiny_wan22_a14b_low_noise"].filename,
    build_workflows.HUNYUAN15: TINY_MODELS["tiny_hunyuan_video15"].filename,
    build_workflows.KANDINSKY5: TINY_MODELS["tiny_kandinsky5"].filename,
    build_workflows.COGVIDEOX: TINY_MODELS["tiny_cogvideox"].filename,
}
TINY_CHECKPOINTS = {
    build_workflows.LTXV_CHECKPOINT: LTXV_CHECKPOINT,
    build_workflows.LTXAV_CHECKPOINT: LTXAV_CHECKPOINT,
}
# Loaders that read a checkpoint's other parts (LTX-2's audio VAE and vocoder).
CHECKPOINT_PART_LOADERS = {"LTXVAudioVAELoader"}
TEXT_ENCODER_TYPES = {
    "CLIPLoader": {"wan", "ltxv", "cogvideox"},
    "DualCLIPLoader": {"hunyuan_video", "hunyuan_video_15", "kandinsky5"},
}
# ComfyUI's text encoder type -> the tiny text encoder's kind.
TEXT_ENCODER_KINDS = {"hunyuan_video_15": "hunyuan_video15"}
TINY_VAES = {build_workflows.HUNYUAN15_VAE: tiny_vae.HV15_FILENAME}
SMALL = {"width": 32, "height": 32, "length": 5, "batch_size": 2, "steps": 2, "train_steps": 3, "prompts": 2}
SMALL_TOY = {"batch_size": 2, "steps": 4, "train_steps": 3}


def load(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / f"{name}.json").read_text())


def _scaled_step(step: int, steps: int, small: int) -> int:
    return step if step >= 10000 else round(step * small / steps)


def substitute(graph: dict[str, dict], lora_name: str | None = None, shrink: dict | None = SMALL):
    """(graph for the test host, notes on every swap). ``graph`` is not changed. ``shrink``: the
    sizes and steps to cap (``SMALL``, ``SMALL_TOY``; None: as they are)."""
    graph = copy.deepcopy(graph)
    notes = []
    for node_id, node in graph.items():
        kind, inputs = node["class_type"], node["inputs"]
        where = f"{node_id} {kind}"
        if kind == "UNETLoader":
            name = inputs["unet_name"]
            if name in TINY_UNETS:
                inputs["unet_name"] = TINY_UNETS[name]
                notes.append(f"{where}: {name} -> {inputs['unet_name']}")
            elif name != build_workflows.toy_world_settings()[1]:
                raise KeyError(f"{where}: no stand-in for model file {name!r}")
        elif kind == "LTXAVTextEncoderLoader":  # Gemma 3 12B and the checkpoint's text projection
            family = "ltxav"
            node["class_type"] = "VideoUnlearningTestTinyTextEncoder"
            node["inputs"] = {"clip_name": TEXT_ENCODER_FILES[family], "type": family}
            notes.append(f"{where} ({family}) -> tiny text encoder {TEXT_ENCODER_FILES[family]}")
        elif kind == "CheckpointLoaderSimple" or kind in CHECKPOINT_PART_LOADERS:
            name = inputs["ckpt_name"]
            if name not in TINY_CHECKPOINTS:
                raise KeyError(f"{where}: no stand-in for checkpoint {name!r}")
            inputs["ckpt_name"] = TINY_CHECKPOINTS[name]
            notes.append(f"{where}: {name} -> {inputs['ckpt_name']}")
        elif kind in TEXT_ENCODER_TYPES:
            if inputs["type"] not in TEXT_ENCODER_TYPES[kind]:
                raise KeyError(f"{where}: no tiny text encoder for type {inputs['type']!r}")
            family = TEXT_ENCODER_KINDS.get(inputs["type"], inputs["type"])
            node["class_type"] = "VideoUnlearningTestTinyTextEncoder"
            node["inputs"] = {"clip_name": TEXT_ENCODER_FILES[family], "type": family}
            notes.append(f"{where} ({family}) -> tiny text encoder {TEXT_ENCODER_FILES[family]}")
        elif kind == "VAELoader":
            stand_in = TINY_VAES.get(inputs["vae_name"], tiny_vae.FILENAME)
            notes.append(f"{where}: {inputs['vae_name']} -> {stand_in}")
            inputs["vae_name"] = stand_in
        elif kind in ("UnlearnLoadLoRA", "LoraLoaderModelOnly"):
            if lora_name is None:
                raise ValueError(f"{where} loads a LoRA: give the test's LoRA file name")
            notes.append(f"{where}: {inputs['lora_name']} -> {lora_name}")
            inputs["lora_name"] = lora_name
        if shrink:
            _shrink(kind, inputs, shrink)
    if shrink:
        notes.append(f"sizes and steps capped at {shrink}")
    return graph, notes


def _shrink(kind: str, inputs: dict, small: dict) -> None:
    sizes = [k for k in ("width", "height", "length") if k in small]
    if kind in ("EmptyHunyuanLatentVideo", "EmptyHunyuanVideo15Latent", "Kandinsky5ImageToVideo"):
        for key in [*sizes, "batch_size"]:
            inputs[key] = min(inputs[key], small[key])
    elif kind == "EmptyLTXVLatentVideo":  # its width and height are at least 64 (2 latent pixels)
        for key in sizes:
            inputs[key] = max(min(inputs[key], small[key]), 64 if key != "length" else 1)
        inputs["batch_size"] = min(inputs["batch_size"], small["batch_size"])
    elif kind == "LTXVEmptyLatentAudio":  # as long as the shrunk video
        if "length" in small:
            inputs["frames_number"] = min(inputs["frames_number"], small["length"])
        inputs["batch_size"] = min(inputs["batch_size"], small["batch_size"])
    elif kind in ("KSampler", "LTXVScheduler"):
        inputs["steps"] = min(inputs["steps"], small["steps"])
    elif kind == "KSamplerAdvanced":
        steps, fewer = inputs["steps"], 2 * small["steps"]
        inputs["start_at_step"] = _scaled_step(inputs["start_at_step"], steps, fewer)
        inputs["end_at_step"] = _scaled_step(inputs["end_at_step"], steps, fewer)
        inputs["steps"] = fewer
    elif kind == "UnlearnTrainLoRA":
        inputs.update(steps=small["train_steps"], sampling_steps=small["steps"])
        inputs["sampled_clips"] = min(inputs["sampled_clips"], small["batch_size"])
        inputs.update({k: small[k] for k in sizes})
        if "prompts" in small:
            if not inputs["concept_prompts"].strip():  # else 16 are generated
                inputs["concept_prompts"] = "\n".join(
                    augment_prompts(inputs["concept"], small["prompts"], "wan", 0)
                )
            inputs["preserve_prompts"] = _first_lines(inputs["preserve_prompts"], small["prompts"])
    elif kind == "UnlearnRefusalEstimate":
        inputs["probe_steps"] = min(inputs["probe_steps"], small["steps"])
        if "prompts" in small:
            if inputs["preset"] != presets.CUSTOM:
                args = (inputs["name"], inputs["unsafe_prompts"], inputs["safe_prompts"])
                label, pairs = presets.concept_prompts(inputs["preset"], *args)
                pairs = pairs[: small["prompts"]]
                inputs.update(preset=presets.CUSTOM, name=label)
                inputs["unsafe_prompts"] = "\n".join(u for u, _ in pairs)
                inputs["safe_prompts"] = "\n".join(s for _, s in pairs)
            inputs["neutral_prompts"] = _first_lines(inputs["neutral_prompts"], small["prompts"])


def _first_lines(text: str, count: int) -> str:
    return "\n".join(presets.prompt_lines(text)[:count])


def runnable(name: str, object_info: dict, lora_name: str | None = None):
    """(API graph of workflows/<name>.json for the test host, notes on what was swapped)."""
    graph = workflow_format.api_from_ui(load(name), object_info)
    return substitute(graph, lora_name, SMALL_TOY if name == build_workflows.DEMO_WORKFLOW else SMALL)


def nodes_of(graph: dict[str, dict], class_type: str) -> list[str]:
    return [node_id for node_id, node in graph.items() if node["class_type"] == class_type]
