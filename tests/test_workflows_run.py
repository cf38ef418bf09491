"""Every example workflow runs end to end on the real ComfyUI host, converted to API format by
``workflow_format.api_from_ui``, with the tiny test models (and the toy world's real model for the
demo workflow) standing in for the real files (see ``workflow_runs``)."""

from __future__ import annotations

import re

import pytest
import safetensors
import torch
import workflow_runs
from workflow_runs import nodes_of

from fixtures import tiny_models, tiny_vae
from fixtures.tiny_models import TINY_MODELS, needs_family

TEST_LORA = "video_unlearning_tests/tiny_hunyuan_video_unlearning.safetensors"


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module")
def stand_ins(host_base, comfy):
    """The tiny VAEs, the tiny LTX-Video and LTX-2 checkpoints and a LoRA for the tiny HunyuanVideo in
    the host's models/ folder."""
    from video_unlearning.erasure import lora_format

    tiny_vae.write(host_base / "models" / "vae")
    tiny_vae.write(host_base / "models" / "vae", "hunyuan_video15")
    tiny_models.write_ltxv_checkpoint(host_base / "models" / "checkpoints")
    tiny_models.write_ltxav_checkpoint(host_base / "models" / "checkpoints")  # where LTX-2 is there
    model_file = host_base / "models" / "diffusion_models" / TINY_MODELS["tiny_hunyuan_video"].filename
    generator = torch.Generator().manual_seed(0)
    factors = {}
    with safetensors.safe_open(str(model_file), "pt") as handle:
        for module in ("double_blocks.0.img_attn.qkv", "double_blocks.0.txt_attn.qkv"):
            out_features, in_features = handle.get_slice(f"{module}.weight").get_shape()
            up = torch.randn(out_features, 4, generator=generator) * 0.01
            factors[module] = (up, torch.randn(4, in_features, generator=generator) * 0.01)
    lora = lora_format.build_lora(factors, {"method": "test", "base_architecture": "hunyuan_video"})
    lora_format.save_lora_file(host_base / "models" / "loras" / TEST_LORA, lora, lora.metadata)
    return host_base


def run(comfy_server, name, object_info, lora_name=None):
    graph, notes = workflow_runs.runnable(name, object_info, lora_name)
    try:
        outputs = comfy_server.run_prompt(graph, timeout_s=300)["outputs"]
    except Exception as error:
        raise AssertionError(f"{name} failed with stand-ins: {notes}") from error
    return graph, outputs


def verdicts(graph, outputs, class_type):
    return [outputs[node_id]["verdict"][0] for node_id in nodes_of(graph, class_type)]


def test_wan21_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    graph, outputs = run(comfy_server, "wan21_t2v_refusal_nudity", object_info)
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1  # one animated WEBP of the two videos side by side


def test_wan21_lora_training_workflow_saves_the_lora_and_plots_its_loss(comfy_server, object_info, stand_ins):
    graph, outputs = run(comfy_server, "wan21_t2v_train_unlearning_lora", object_info)
    [save] = nodes_of(graph, "UnlearnSaveLoRA")
    prefix = graph[save]["inputs"]["filename_prefix"]
    saved = outputs[save]["text"][0]
    assert re.search(rf"{re.escape(prefix)}_\d{{5}}_\.safetensors", saved), saved
    [plot] = nodes_of(graph, "LossGraphNode")
    assert len(outputs[plot]["images"]) == 1
    [train] = nodes_of(graph, "UnlearnTrainLoRA")
    assert "latents given: 2 clips" in outputs[train]["text"][0]


def test_hunyuan_lora_gate_workflow_passes_a_clean_video_to_save(comfy_server, object_info, stand_ins):
    graph, outputs = run(comfy_server, "hunyuan_video_unlearning_lora_gate", object_info, TEST_LORA)
    [check] = verdicts(graph, outputs, "NudeNetCheck")
    [gate] = verdicts(graph, outputs, "NudeNetGate")
    assert not check["flagged"] and gate["action"] == "passed"  # the tiny model's frames are noise
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1


def test_wan22_both_experts_workflow_runs_the_two_stage_sampler(comfy_server, object_info, stand_ins):
    graph, outputs = run(comfy_server, "wan22_a14b_refusal_both_experts", object_info)
    stages = [graph[n]["inputs"] for n in nodes_of(graph, "KSamplerAdvanced")]
    assert [(s["start_at_step"], s["end_at_step"], s["add_noise"]) for s in stages] == [
        (0, 2, "enable"),
        (2, 10000, "disable"),
    ]
    assert len(verdicts(graph, outputs, "NudeNetCheck")) == 1
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert outputs[save]["images"][0]["filename"].endswith(".webp")


def test_toy_world_demo_workflow_runs(comfy_server, object_info, stand_ins):
    """Fewer and shorter runs than the demo's (the browser test queues it as it is)."""
    graph, outputs = run(comfy_server, "toy_world_erasure", object_info)
    reports = [outputs[node_id]["text"][0] for node_id in nodes_of(graph, "UnlearnToyWorldDetect")]
    assert len(reports) == 3 and all(re.search(r": \d+ of 2 clips$", r) for r in reports), reports
    assert len(verdicts(graph, outputs, "NudeNetCheck")) == 3
    [save] = nodes_of(graph, "SaveImage")
    assert len(outputs[save]["images"]) == 6  # 2 clips x 3 frames, each three videos wide
    [plot] = nodes_of(graph, "LossGraphNode")
    assert len(outputs[plot]["images"]) == 1


def test_hunyuan_video15_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    """HunyuanVideo 1.5's example, with the file names of ComfyUI's own 1.5 template."""
    graph, outputs = run(comfy_server, "hunyuan_video15_refusal_nudity", object_info)
    [unet] = nodes_of(graph, "UNETLoader")
    assert graph[unet]["inputs"]["unet_name"] == TINY_MODELS["tiny_hunyuan_video15"].filename
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1


def test_ltxv_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    """LTX-Video 0.9's example, with the file names and sampling nodes of ComfyUI's own LTX-Video
    example: a checkpoint (model and VAE) and T5-XXL, LTXVConditioning, LTXVScheduler, SamplerCustom."""
    graph, outputs = run(comfy_server, "ltxv_refusal_nudity", object_info)
    [checkpoint] = nodes_of(graph, "CheckpointLoaderSimple")
    assert graph[checkpoint]["inputs"]["ckpt_name"] == tiny_models.LTXV_CHECKPOINT
    assert len(nodes_of(graph, "SamplerCustom")) == 2
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1


@needs_family("kandinsky5")
def test_kandinsky5_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    """Kandinsky 5's example, with the file names and nodes of ComfyUI's Kandinsky 5 T2V template:
    UNETLoader, DualCLIPLoader type kandinsky5, Kandinsky5ImageToVideo making the conditioning and
    the latent, KSampler; the refusal vector probed over a short run."""
    graph, outputs = run(comfy_server, "kandinsky5_refusal_nudity", object_info)
    [unet] = nodes_of(graph, "UNETLoader")
    assert graph[unet]["inputs"]["unet_name"] == TINY_MODELS["tiny_kandinsky5"].filename
    [latent] = nodes_of(graph, "Kandinsky5ImageToVideo")
    assert all(graph[k]["inputs"]["latent_image"] == [latent, 2] for k in nodes_of(graph, "KSampler"))
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1


@needs_family("cogvideox")
def test_cogvideox_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    """CogVideoX's example: UNETLoader, CLIPLoader type cogvideox (T5-XXL padded to 226 tokens),
    EmptyHunyuanLatentVideo, KSampler; the refusal vector on the T5 rows, no probe run."""
    graph, outputs = run(comfy_server, "cogvideox_refusal_nudity", object_info)
    [unet] = nodes_of(graph, "UNETLoader")
    assert graph[unet]["inputs"]["unet_name"] == TINY_MODELS["tiny_cogvideox"].filename
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1


@needs_family("ltxav")
def test_ltxav_refusal_workflow_runs(comfy_server, object_info, stand_ins):
    """LTX-2's example, with the file names and the first sampling stage of ComfyUI's own LTX-2
    text-to-video template: one checkpoint read by CheckpointLoaderSimple and LTXVAudioVAELoader (the
    tiny LTX-2 one), the text encoder (the tiny LTX-2 one in place of LTXAVTextEncoderLoader), video
    and audio latents joined, CFGGuider + SamplerCustomAdvanced, separated, the video decoded and
    checked, the audio decoded; each video saved with its audio, both side by side."""
    import av

    graph, outputs = run(comfy_server, "ltxav_refusal_nudity", object_info)
    [checkpoint] = nodes_of(graph, "CheckpointLoaderSimple")
    [audio_vae] = nodes_of(graph, "LTXVAudioVAELoader")
    assert graph[checkpoint]["inputs"]["ckpt_name"] == tiny_models.LTXAV_CHECKPOINT
    assert graph[audio_vae]["inputs"]["ckpt_name"] == tiny_models.LTXAV_CHECKPOINT
    assert not nodes_of(graph, "LTXAVTextEncoderLoader")
    [concat] = nodes_of(graph, "LTXVConcatAVLatent")
    samplers = nodes_of(graph, "SamplerCustomAdvanced")
    assert len(samplers) == 2 and all(graph[s]["inputs"]["latent_image"] == [concat, 0] for s in samplers)
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [webp] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[webp]["images"]) == 1
    saved = [outputs[n] for n in nodes_of(graph, "SaveVideo")]
    assert len(saved) == 2, outputs
    for node_id in nodes_of(graph, "SaveVideo"):
        [video] = outputs[node_id]["images"]
        path = stand_ins / "output" / video["subfolder"] / video["filename"]
        assert path.suffix == ".mp4", video
        with av.open(str(path)) as container:  # the video and its audio, both written
            kinds = sorted(stream.type for stream in container.streams)
            assert kinds == ["audio", "video"], (path, kinds)
            assert container.streams.audio[0].sample_rate == 16000  # the tiny vocoder's rate


def test_wan21_attack_workflow_runs(comfy_server, object_info, stand_ins):
    """The attack on the refusal-erased Wan 2.1: the attacker's clips from the original model, the
    prompt attack on the erased model (its steps cut to the harness's training steps), the plain and
    the attacked prompt sampled by the erased model, both checked with NudeNet, the loss plotted."""
    graph, notes = workflow_runs.runnable("wan21_t2v_attack_refusal_nudity", object_info)
    [attack] = nodes_of(graph, "UnlearnAttackPrompt")
    assert graph[attack]["inputs"]["steps"] == 100
    steps = workflow_runs.SMALL["train_steps"]
    graph[attack]["inputs"]["steps"] = steps
    try:
        outputs = comfy_server.run_prompt(graph, timeout_s=300)["outputs"]
    except Exception as error:
        raise AssertionError(f"the attack workflow failed with stand-ins: {notes}") from error
    summary = outputs[attack]["text"][0]
    assert f": {steps} Adam steps of " in summary, summary  # one loss point per step
    [plot] = nodes_of(graph, "LossGraphNode")
    assert graph[plot]["inputs"]["loss"] == [attack, 1] and len(outputs[plot]["images"]) == 1
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
    [save] = nodes_of(graph, "SaveAnimatedWEBP")
    assert len(outputs[save]["images"]) == 1  # the plain and the attacked prompt side by side


def test_wan21_robust_training_workflow_trains_against_the_attack_and_attacks_it(
    comfy_server, object_info, stand_ins
):
    """Workflow 12: the robust LoRA trained with the toy world's adversarial settings on the original
    model's clips, saved and plotted, then the prompt attack of workflow 8 on the robust model with
    the attacker's own clips (another seed), the plain and the attacked prompt both checked."""
    from video_unlearning.toy_world import erasure_settings

    graph, notes = workflow_runs.runnable("wan21_t2v_train_robust_unlearning_lora", object_info)
    [train] = nodes_of(graph, "UnlearnTrainLoRA")
    adversarial = erasure_settings.ROBUST_ADVERSARIAL
    assert adversarial["adversarial_steps"] > 0
    assert {k: graph[train]["inputs"][k] for k in adversarial} == adversarial
    [attack] = nodes_of(graph, "UnlearnAttackPrompt")
    assert graph[attack]["inputs"]["model"] == [train, 0]
    made = {
        graph[n]["inputs"]["seed"]: n
        for n in nodes_of(graph, "KSampler")
        if n in {graph[train]["inputs"]["latents"][0], graph[attack]["inputs"]["latents"][0]}
    }
    assert sorted(made) == [0, 1]  # the trainer's clips and the attacker's are different draws
    steps = workflow_runs.SMALL["train_steps"]
    graph[attack]["inputs"]["steps"] = steps
    try:
        outputs = comfy_server.run_prompt(graph, timeout_s=300)["outputs"]
    except Exception as error:
        raise AssertionError(f"the robust training workflow failed with stand-ins: {notes}") from error
    summary = outputs[train]["text"][0]
    assert f"adversarial: {adversarial['adversarial_steps']} attack steps" in summary, summary
    [save] = nodes_of(graph, "UnlearnSaveLoRA")
    assert re.search(r"wan21_t2v_nudity_robust_\d{5}_\.safetensors", outputs[save]["text"][0])
    plots = nodes_of(graph, "LossGraphNode")
    assert sorted(graph[p]["inputs"]["loss"] for p in plots) == sorted([[train, 2], [attack, 1]])
    assert all(len(outputs[p]["images"]) == 1 for p in plots)
    assert f": {steps} Adam steps of " in outputs[attack]["text"][0]
    checks = verdicts(graph, outputs, "NudeNetCheck")
    assert len(checks) == 2 and all("nudity_rate" in v for v in checks)
