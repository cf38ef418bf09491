"""The refusal-vector nodes in a real ComfyUI server: estimate, apply, sample, save the LoRA with the
stock SaveLoRA; and a branch sampling with the original model gives the same bits whether or not
the erased branch ran."""

from __future__ import annotations

import json
import urllib.request

import safetensors.torch
import torch

from fixtures.tiny_models import TINY_MODELS

SPEC = TINY_MODELS["tiny_wan21_t2v"]
PROMPT = "a nude girl swimming in a lake"


def _original_branch(prefix: str) -> dict:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": SPEC.filename, "weight_dtype": "default"}},
        "2": {
            "class_type": "VideoUnlearningTestTinyTextEncoder",
            "inputs": {"clip_name": SPEC.text_encoder_file, "type": "wan"},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": PROMPT}},
        "4": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1},
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 3,
                "steps": 2,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["3", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["5", 0], "filename_prefix": f"latents/{prefix}"},
        },
    }


def _erased_branch() -> dict:
    return {
        "10": {
            "class_type": "UnlearnRefusalEstimate",
            "inputs": {
                "model": ["1", 0],
                "clip": ["2", 0],
                "preset": "nudity",
                "name": "",
                "unsafe_prompts": "",
                "safe_prompts": "",
                "neutral_prompts": "a dog in a park\na red car\nmountains under a blue sky",
                "rank": 4,
                "alpha": 10.0,
                "probe_steps": 2,
            },
        },
        "11": {
            "class_type": "UnlearnRefusalApply",
            "inputs": {"model": ["1", 0], "refusal_vector": ["10", 0], "strength": 1.0, "blocks": "all"},
        },
        "12": {
            "class_type": "KSampler",
            "inputs": {**_original_branch("")["5"]["inputs"], "model": ["11", 0]},
        },
        "13": {
            "class_type": "SaveLatent",
            "inputs": {"samples": ["12", 0], "filename_prefix": "latents/erased"},
        },
        "14": {"class_type": "SaveLoRA", "inputs": {"lora": ["11", 1], "prefix": "loras/refusal_server"}},
    }


def _latent(host_base, prefix: str) -> torch.Tensor:
    (path,) = sorted((host_base / "output" / "latents").glob(f"{prefix}_*.latent"))
    return safetensors.torch.load_file(str(path))["latent_tensor"]


def _run_uncached(server, graph: dict) -> dict:
    """Run ``graph`` after ComfyUI has dropped its cache of node outputs (POST /free; the flag is
    handled after the next prompt, so a throwaway prompt goes first)."""
    request = urllib.request.Request(
        server.url + "/free",
        data=json.dumps({"free_memory": True, "unload_models": True}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).close()  # answers with an empty body
    server.run_prompt(
        {
            "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 16, "height": 16, "batch_size": 1}},
            "2": {
                "class_type": "SaveLatent",
                "inputs": {"samples": ["1", 0], "filename_prefix": "latents/x"},
            },
        }
    )
    entry = server.run_prompt(graph)
    cached = [m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached"]
    assert cached == [[]], f"expected a fresh run, ComfyUI reused cached outputs of nodes {cached}"
    return entry


def test_erasure_graph_runs_and_leaves_the_original_branch_bit_identical(comfy_server, host_base):
    from video_unlearning.erasure.lora_format import load_lora_file

    _run_uncached(comfy_server, _original_branch("original_alone"))
    entry = _run_uncached(comfy_server, {**_original_branch("original_beside_erased"), **_erased_branch()})
    _run_uncached(comfy_server, _original_branch("original_after_erased"))

    report = entry["outputs"]["11"]["text"][0]
    assert "edited 4 layers (blocks all) at strength 1.0: nudity" in report
    assert "blocks.1.cross_attn.v" in report

    alone = _latent(host_base, "original_alone")
    assert torch.equal(_latent(host_base, "original_beside_erased"), alone)
    assert torch.equal(_latent(host_base, "original_after_erased"), alone)
    assert not torch.equal(_latent(host_base, "erased"), alone)

    (saved,) = sorted((host_base / "output" / "loras").glob("refusal_server_*.safetensors"))
    lora = load_lora_file(saved)
    assert len(lora) == 12  # 2 blocks x (k, v) x (up, down, alpha)
    assert lora["diffusion_model.blocks.0.cross_attn.k.lora_down.weight"].shape == (1, 256)
