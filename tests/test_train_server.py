"""UnlearnTrainLoRA in a real ComfyUI server: with the stock training nodes, and cancelled mid-run."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import safetensors.torch
import torch

from fixtures.tiny_models import TINY_MODELS
from graphs import Graph, schema_defaults, tiny_text_to_video

WAN = TINY_MODELS["tiny_wan21_t2v"]
PROGRESS = "video_unlearning.train_progress"  # train_compat.PROGRESS_EVENT


def train_node(graph: Graph, model: str, clip: str, steps: int, prompts=None) -> str:
    """UnlearnTrainLoRA on the tiny Wan, making its own latents with one euler step."""
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    settings = schema_defaults(UnlearnTrainLoRA)
    settings.update(
        concept_prompts=prompts if prompts is not None else "nudity on a beach\na nudity scene in a bar",
        steps=steps,
        learning_rate=1e-3,
        rank=4,
        width=32,
        height=32,
        length=5,
        sampling_steps=1,
        sampled_clips=1,
    )
    return graph.node("UnlearnTrainLoRA", model=Graph.out(model), clip=Graph.out(clip), **settings)


def latent_of(host_base: Path, entry: dict, node: str) -> torch.Tensor:
    (file,) = entry["outputs"][node]["latents"]
    path = host_base / "output" / file["subfolder"] / file["filename"]
    return safetensors.torch.load_file(str(path))["latent_tensor"]


def lora_files(host_base: Path) -> set[str]:
    root = host_base / "models" / "loras"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_training_graph_works_with_stock_lora_and_loss_nodes(comfy_server, host_base):
    graph = Graph()
    ids = tiny_text_to_video(graph, WAN, "nudity on a beach", seed=1)
    augment = graph.node("UnlearnPromptAugment", concept="nudity", count=3, style="wan", seed=0)
    train = train_node(graph, ids["model"], ids["clip"], steps=3, prompts=Graph.out(augment))
    graph.node(
        "UnlearnSaveLoRA", lora=Graph.out(train, 1), filename_prefix="server/trained", save_dtype="fp32"
    )
    graph.node("SaveLoRA", lora=Graph.out(train, 1), prefix="loras/server_stock")
    graph.node("LossGraphNode", loss=Graph.out(train, 2), filename_prefix="server_loss")
    from comfy_extras.nodes_train import LoraModelLoader

    # Its inputs at their declared defaults (0.33 added ``bypass``), as a graph made in the UI has them.
    stock_model = graph.node(
        "LoraModelLoader",
        **dict(
            schema_defaults(LoraModelLoader),
            model=Graph.out(ids["model"]),
            lora=Graph.out(train, 1),
            strength_model=1.0,
        ),
    )
    saves = {}
    for name, model in (("ours", Graph.out(train, 0)), ("stock", Graph.out(stock_model))):
        sampler = graph.node("KSampler", **dict(graph.nodes[ids["sampler"]]["inputs"], model=model))
        saves[name] = graph.node("SaveLatent", samples=Graph.out(sampler), filename_prefix=f"server/{name}")
    entry = comfy_server.run_prompt(graph.nodes)

    assert any(f.startswith("server/trained_") for f in lora_files(host_base))
    assert list((host_base / "output" / "loras").glob("server_stock*.safetensors"))
    loss_images = [out for out in entry["outputs"].values() if out.get("images")]
    assert loss_images, entry["outputs"]
    ours, stock = latent_of(host_base, entry, saves["ours"]), latent_of(host_base, entry, saves["stock"])
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)
    base = latent_of(host_base, comfy_server.run_prompt(_sample_graph("server/base", "")), "7")
    assert (ours - base).abs().max() > 1e-3  # the LoRA changed what the model makes


def _sample_graph(prefix: str, negative: str) -> dict:
    """The tiny Wan sampling a clip with cfg 1 (the negative prompt is never used, so changing it
    only defeats ComfyUI's cache). The UNETLoader is node 1, as in every graph here."""
    graph = Graph()
    ids = tiny_text_to_video(graph, WAN, "nudity on a beach", seed=3)
    graph.nodes[ids["negative"]]["inputs"]["text"] = negative
    graph.node("SaveLatent", samples=Graph.out(ids["sampler"]), filename_prefix=prefix)
    return graph.nodes


async def _run_and_cancel(url: str, graph: dict, cancel_at_step: int) -> tuple[str, list[dict], dict]:
    """Queue ``graph``, watch the trainer's progress messages on the websocket, POST /interrupt once
    step ``cancel_at_step`` is reported, and return (prompt id, progress messages, final message)."""
    client = "train-cancel-test"
    progress: list[dict] = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client}") as ws:
            async with session.post(f"{url}/prompt", json={"prompt": graph, "client_id": client}) as resp:
                prompt_id = (await resp.json())["prompt_id"]
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                kind, data = message["type"], message.get("data") or {}
                if kind == PROGRESS:
                    progress.append(data)
                    if data["step"] == cancel_at_step:
                        async with session.post(f"{url}/interrupt", json={"prompt_id": prompt_id}):
                            pass
                elif kind in ("execution_interrupted", "execution_error", "execution_success"):
                    if data.get("prompt_id") == prompt_id:
                        return prompt_id, progress, message
    raise AssertionError("the websocket closed before the prompt finished")


def test_cancel_mid_run_writes_no_file_and_leaves_the_input_model_unchanged(comfy_server, host_base):
    before = comfy_server.run_prompt(_sample_graph("cancel/before", ""))
    files_before = lora_files(host_base)

    graph = Graph()
    model = graph.node("UNETLoader", unet_name=WAN.filename, weight_dtype="default")
    clip = graph.node("VideoUnlearningTestTinyTextEncoder", clip_name=WAN.text_encoder_file, type=WAN.family)
    train = train_node(graph, model, clip, steps=100000)
    graph.node("UnlearnSaveLoRA", lora=Graph.out(train, 1), filename_prefix="cancel/never", save_dtype="fp32")
    assert graph.nodes[model] == _sample_graph("x", "")[model]  # the same cached UNETLoader

    prompt_id, progress, final = asyncio.run(
        asyncio.wait_for(_run_and_cancel(comfy_server.url, graph.nodes, 2), 300)
    )
    assert final["type"] == "execution_interrupted", final
    assert [p["step"] for p in progress[:2]] == [1, 2]
    assert max(p["step"] for p in progress) <= 3  # stopped within one step of the cancel
    first = progress[0]
    assert first["steps"] == 100000 and first["node"] == train and first["eta_s"] > 0
    assert {"loss", "unlearn", "localization", "preservation"} <= set(first)
    deadline = time.monotonic() + 30
    while prompt_id not in comfy_server.get(f"/history/{prompt_id}") and time.monotonic() < deadline:
        time.sleep(0.2)
    status = comfy_server.get(f"/history/{prompt_id}")[prompt_id]["status"]
    assert status["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in status["messages"])
    assert lora_files(host_base) == files_before  # no LoRA, no temporary file

    after = comfy_server.run_prompt(_sample_graph("cancel/after", "changed"))
    assert torch.equal(latent_of(host_base, before, "7"), latent_of(host_base, after, "7"))


def test_the_packs_web_script_listens_to_the_trainer_progress_event(comfy_server):
    import urllib.request

    from video_unlearning.nodes.train_compat import PROGRESS_EVENT

    scripts = [u for u in comfy_server.get("/extensions") if u.startswith("/extensions/video_unlearning/")]
    sources = []
    for path in scripts:
        with urllib.request.urlopen(comfy_server.url + path, timeout=30) as resp:
            sources.append(resp.read().decode())
    assert any(f'"{PROGRESS_EVENT}"' in source for source in sources), scripts
