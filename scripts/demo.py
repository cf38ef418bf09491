"""The demo: the toy-world workflow through a real ComfyUI server, on CPU.

Started by ``python scripts/dev.py demo`` (inside .venv, with ComfyUI set up). It lays out a
ComfyUI base directory under .cache/demo-host (the pack and the toy world's Wan 2.1 model linked
in), starts ComfyUI headless on a free port, loads workflows/toy_world_erasure.json as a user
would, converts it to the API graph the web UI would queue, and runs it: the same prompt and seed
sampled with the original model, the model erased by a refusal vector and the model with an
unlearning LoRA trained in the graph, decoded, checked with NudeNetCheck and read by the toy
world's detector. It saves one side-by-side picture, prints what each branch showed, and the
efficacy table that ``python scripts/dev.py bench efficacy`` measured.

``--serve`` only starts the host (with the tiny test models too) and keeps it running, so that the
web UI can be opened and the workflows tried.
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
import workflow_format  # noqa: E402

COMFYUI_DIR = Path(os.environ.get("VIDEO_UNLEARNING_COMFYUI") or comfyui_host.comfyui_dir())
DEMO_BASE = comfyui_host.CACHE_DIR / "demo-host"
WORKFLOW = REPO_ROOT / "workflows" / "toy_world_erasure.json"
EFFICACY_TABLE = REPO_ROOT / "benchmarks" / "results" / "efficacy_toy_world.md"
PICTURE_NAME = "toy_world_demo.png"


def write_tiny_models(base: Path) -> None:
    """Write the tests' tiny real-architecture models and tiny Wan 2.1 VAE (for trying workflows 1-4
    in the web UI: pick them in the loaders)."""
    sys.path.insert(0, str(COMFYUI_DIR))
    from comfy.cli_args import args

    args.cpu = True
    from fixtures import tiny_models, tiny_vae

    tiny_models.write_all(base / "models", variants=False)  # the demo runs no Wan variant
    tiny_vae.write(base / "models" / "vae")


def titles(workflow: dict) -> dict[str, str]:
    """{node id: title shown on the canvas} (the node type where it has no title)."""
    return {str(n["id"]): n.get("title") or n["type"] for n in workflow["nodes"]}


BRANCHES = ("original", "refusal vector", "unlearning LoRA")  # the stitched order, left to right


def side_by_side(image_paths: list[Path], readings: dict[str, list[str]], out: Path, scale: int = 2) -> Path:
    """One picture a person can read at a glance: a row per clip, a column per branch (the middle
    latent frame of each clip, from the workflow's stitched frames, enlarged ``scale`` times), each
    cell labelled with what the toy detector read in that clip."""
    from PIL import Image, ImageDraw

    clips = max(len(r) for r in readings.values())
    frames_per_clip = len(image_paths) // clips
    middles = [image_paths[k * frames_per_clip + frames_per_clip // 2] for k in range(clips)]
    frames = [Image.open(p).convert("RGB") for p in middles]
    frames = [f.resize((f.width * scale, f.height * scale), Image.BICUBIC) for f in frames]
    width, height = frames[0].size
    gap, top, label = 6, 22, 18
    row = height + label + gap
    sheet = Image.new("RGB", (width, top + clips * row - gap), "white")
    draw = ImageDraw.Draw(sheet)
    column = (width + 8 * scale) // len(BRANCHES)  # ImageStitch puts 8 px between branches
    for i, branch in enumerate(BRANCHES):
        draw.text((i * column + 4, 4), branch, fill="black")
    for k, frame in enumerate(frames):
        y = top + k * row
        sheet.paste(frame, (0, y))
        for i, branch in enumerate(BRANCHES):
            seen = readings.get(branch, [])
            draw.text(
                (i * column + 4, y + height + 2),
                f"clip {k}: {seen[k] if k < len(seen) else '?'}",
                fill="dimgray",
            )
    tmp = out.with_name(out.name + ".tmp.png")
    sheet.save(tmp)
    tmp.replace(out)
    return out


def run_demo(server: comfyui_host.ComfyServer) -> int:
    workflow = json.loads(WORKFLOW.read_text())
    graph = workflow_format.api_from_ui(workflow, server.get("/object_info"))
    names = titles(workflow)
    print(f"Queuing {WORKFLOW.relative_to(REPO_ROOT)} ({len(graph)} nodes) on {server.url} ...", flush=True)
    started = time.monotonic()
    entry = server.run_prompt(graph, timeout_s=1800)
    print(f"Done in {time.monotonic() - started:.0f}s.\n")
    images: list[Path] = []
    readings: dict[str, list[str]] = {}
    for node_id, outputs in sorted(entry["outputs"].items(), key=lambda kv: int(kv[0])):
        class_type = graph[node_id]["class_type"]
        if class_type == "UnlearnToyWorldDetect":
            print(f"{names[node_id]}:\n  " + outputs["text"][0].replace("\n", "\n  "))
            branch = names[node_id].partition("(")[2].rstrip(")")
            seen = [" ".join(v for v in (d["colour"], d["shape"]) if v) for d in outputs["detections"]]
            readings[branch] = [s or "nothing" for s in seen]
        elif class_type in ("NudeNetCheck", "NudeNetGate"):
            verdict = outputs.get("verdict", [{}])[0]
            print(f"{names[node_id]}: {json.dumps(verdict)[:300]}")
        elif class_type == "SaveImage":
            images += [server.base / "output" / i["subfolder"] / i["filename"] for i in outputs["images"]]
        elif "text" in outputs:
            print(f"{names[node_id]}:\n  " + "\n  ".join(str(t) for t in outputs["text"])[:1500])
    if not images:
        print("the workflow saved no images")
        return 1
    picture = side_by_side(sorted(images), readings, images[0].parent / PICTURE_NAME)
    print(f"\nSide by side (columns: {', '.join(BRANCHES)}; rows: clips, middle frame): {picture}")
    if EFFICACY_TABLE.is_file():
        print(f"\nEfficacy in the toy world ({EFFICACY_TABLE.relative_to(REPO_ROOT)}):\n")
        print(EFFICACY_TABLE.read_text())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="start the host and keep it running")
    options = parser.parse_args()
    base = comfyui_host.prepare_base_directory(DEMO_BASE)
    if options.serve:
        write_tiny_models(base)
    server = comfyui_host.ComfyServer(base, python=sys.executable, comfy=COMFYUI_DIR)
    print(f"Starting ComfyUI {COMFYUI_DIR} with base directory {base} ...", flush=True)
    with server:
        if options.serve:
            print(f"ComfyUI is running at {server.url} (log: {server.log_path}); Ctrl-C stops it.")
            try:
                while server.process.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            return 0
        code = run_demo(server)
    print(f"ComfyUI log: {server.log_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
