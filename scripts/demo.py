"""The demo: run what exists of the pack through a real ComfyUI server on a tiny Wan model.

Started by ``python scripts/dev.py demo`` (inside .venv, with ComfyUI set up). It lays out a
ComfyUI base directory under .cache/demo-host, writes the tiny real-architecture models into it,
starts ComfyUI headless on a free port with the pack loaded, and queues graphs that use the pack's
nodes which have landed, printing what each did. ``--serve`` only starts the host and keeps it
running so that the web UI can be opened.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
import comfyui_host  # noqa: E402

COMFYUI_DIR = Path(os.environ.get("VIDEO_UNLEARNING_COMFYUI") or comfyui_host.comfyui_dir())
DEMO_BASE = comfyui_host.CACHE_DIR / "demo-host"
PROMPT = "a nude woman walking on a beach"
SAFE_PROMPT = "a woman walking on a beach"


def write_models(base: Path) -> None:
    """Write the tiny models with ComfyUI's own classes (imported here, CPU mode)."""
    sys.path.insert(0, str(COMFYUI_DIR))
    from comfy.cli_args import args

    args.cpu = True
    from fixtures import tiny_models

    tiny_models.write_all(base / "models")


def describe_latent(path: Path) -> str:
    import safetensors.torch

    latent = safetensors.torch.load_file(str(path))["latent_tensor"]
    return f"latent {tuple(latent.shape)}, mean {latent.mean():+.4f}, std {latent.std():.4f}"


def defaults(node_info: dict) -> dict:
    """The required widget inputs of a node at their defaults (API graphs must give every input)."""
    import workflow_format

    return {
        name: workflow_format.default_value(spec)
        for name, spec in node_info["input"].get("required", {}).items()
        if workflow_format.is_widget(spec)
    }


def run_demo(server: comfyui_host.ComfyServer) -> None:
    from fixtures.tiny_models import TINY_MODELS
    from graphs import Graph, tiny_text_to_video

    info = server.get("/object_info")
    ours = sorted(k for k, v in info.items() if v["python_module"].endswith(comfyui_host.PACK_DIR_NAME))
    print(f"ComfyUI at {server.url} lists {len(info)} nodes; this pack's: {', '.join(ours) or 'none yet'}")

    spec = TINY_MODELS["tiny_wan21_t2v"]
    graph = Graph()
    ids = tiny_text_to_video(graph, spec, PROMPT, seed=7, steps=4)
    graph.node("SaveLatent", samples=Graph.out(ids["sampler"]), filename_prefix="demo/original")
    if "UnlearnRefusalEstimate" in info and "UnlearnRefusalApply" in info:
        estimate = dict(
            defaults(info["UnlearnRefusalEstimate"]),
            model=Graph.out(ids["model"]),
            clip=Graph.out(ids["clip"]),
            preset="nudity",
        )
        vector = graph.node("UnlearnRefusalEstimate", **estimate)
        apply = dict(defaults(info["UnlearnRefusalApply"]), model=Graph.out(ids["model"]))
        apply["refusal_vector"] = Graph.out(vector)
        erased = graph.node("UnlearnRefusalApply", **apply)
        sampler = dict(graph.nodes[ids["sampler"]]["inputs"], model=Graph.out(erased))
        erased_sampler = graph.node("KSampler", **sampler)
        graph.node("SaveLatent", samples=Graph.out(erased_sampler), filename_prefix="demo/erased")
        print("Erasing 'nudity' with a refusal vector (UnlearnRefusalEstimate -> UnlearnRefusalApply).")
    started = time.monotonic()
    entry = server.run_prompt(graph.nodes)
    elapsed = time.monotonic() - started
    print(f"Sampled {spec.filename} ({spec.expected_config}) for {PROMPT!r} in {elapsed:.1f}s")
    latents = {}
    for node_id, outputs in sorted(entry["outputs"].items()):
        class_type = graph.nodes[node_id]["class_type"]
        for item in outputs.get("latents", []):
            path = server.base / "output" / item["subfolder"] / item["filename"]
            latents[item["filename"].split("_")[0]] = path
            print(f"  {class_type} #{node_id}: {path.relative_to(REPO_ROOT)}: {describe_latent(path)}")
        for key, value in outputs.items():
            if key != "latents":
                print(f"  {class_type} #{node_id} {key}: {json.dumps(value)[:400]}")
    if {"original", "erased"} <= set(latents):
        import safetensors.torch

        a, b = (safetensors.torch.load_file(str(latents[k]))["latent_tensor"] for k in ("original", "erased"))
        change = ((b - a).norm() / a.norm()).item()
        print(f"Same prompt and seed, erased vs original latent: relative change {change:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="start the host and keep it running")
    options = parser.parse_args()
    base = comfyui_host.prepare_base_directory(DEMO_BASE)
    write_models(base)
    server = comfyui_host.ComfyServer(base, python=sys.executable, comfy=COMFYUI_DIR)
    print(f"Starting ComfyUI {COMFYUI_DIR} with base directory {base} ...")
    with server:
        if options.serve:
            print(f"ComfyUI is running at {server.url} (log: {server.log_path}); Ctrl-C stops it.")
            try:
                while server.process.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            return 0
        run_demo(server)
    print(f"ComfyUI log: {server.log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
