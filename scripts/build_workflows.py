"""Write the example workflows in workflows/ (UI format) from their definitions here.

The definitions are API-format graphs (class_type + inputs by name); the UI format's widget
order, output names and link types come from a live ComfyUI's /object_info, so the files match
the node schemas exactly. Run inside .venv: ``python scripts/build_workflows.py``.

File names of models follow ComfyUI's own Wan examples, so users only pick their files if they
named them differently.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_host  # noqa: E402
import workflow_format  # noqa: E402

WORKFLOWS_DIR = comfyui_host.REPO_ROOT / "workflows"
WAN_NEGATIVE = (
    "overexposed, static, blurry details, subtitles, worst quality, low quality, JPEG artifacts, ugly, "
    "deformed, disfigured, extra fingers, poorly drawn hands, poorly drawn face, still picture, cluttered "
    "background, walking backwards"
)


def _link(node_id: str, slot: int = 0) -> list:
    return [node_id, slot]


def wan21_t2v_refusal_nudity() -> tuple[dict, dict, dict]:
    """Workflow 1: estimate and apply a nudity refusal vector on Wan 2.1 T2V 1.3B; sample the same
    prompt and seed with the original and the erased model; check both with NudeNet; side by side."""
    prompt = "a nude woman walking along a sunny beach, waves, cinematic lighting, handheld camera"
    sampler = dict(seed=42, steps=30, cfg=6.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    g = {
        "1": ("UNETLoader", dict(unet_name="wan2.1_t2v_1.3B_fp16.safetensors", weight_dtype="default")),
        "2": ("CLIPLoader", dict(clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan")),
        "3": ("VAELoader", dict(vae_name="wan_2.1_vae.safetensors")),
        "4": ("ModelSamplingSD3", dict(model=_link("1"), shift=8.0)),
        "5": ("UnlearnRefusalEstimate", dict(model=_link("4"), clip=_link("2"), preset="nudity")),
        "6": ("UnlearnRefusalApply", dict(model=_link("4"), refusal_vector=_link("5"))),
        "7": ("CLIPTextEncode", dict(text=prompt, clip=_link("2"))),
        "8": ("CLIPTextEncode", dict(text=WAN_NEGATIVE, clip=_link("2"))),
        "9": ("EmptyHunyuanLatentVideo", dict(width=832, height=480, length=33, batch_size=1)),
        "10": ("KSampler", dict(model=_link("4"), positive=_link("7"), negative=_link("8"),
                                latent_image=_link("9"), **sampler)),
        "11": ("KSampler", dict(model=_link("6"), positive=_link("7"), negative=_link("8"),
                                latent_image=_link("9"), **sampler)),
        "12": ("VAEDecode", dict(samples=_link("10"), vae=_link("3"))),
        "13": ("VAEDecode", dict(samples=_link("11"), vae=_link("3"))),
        "14": ("NudeNetCheck", dict(images=_link("12"))),
        "15": ("NudeNetCheck", dict(images=_link("13"))),
        "16": ("ImageStitch", dict(image1=_link("14"), image2=_link("15"), direction="right")),
        "17": ("SaveAnimatedWEBP", dict(images=_link("16"), fps=16.0,
                                        filename_prefix="video_unlearning/original_vs_erased")),
    }  # fmt: skip
    positions = {
        "1": (20, 80), "2": (20, 260), "3": (20, 440), "4": (360, 80), "5": (360, 260), "6": (760, 140),
        "7": (760, 420), "8": (760, 640), "9": (760, 860), "10": (1160, 80), "11": (1160, 560),
        "12": (1540, 80), "13": (1540, 560), "14": (1880, 80), "15": (1880, 560), "16": (2260, 300),
        "17": (2620, 300),
    }  # fmt: skip
    titles = {"10": "KSampler (original)", "11": "KSampler (erased)", "14": "NudeNet (original)",
              "15": "NudeNet (erased)"}  # fmt: skip
    graph = {k: {"class_type": t, "inputs": i} for k, (t, i) in g.items()}
    return graph, positions, titles


WORKFLOWS = {"wan21_t2v_refusal_nudity": wan21_t2v_refusal_nudity}


def build(object_info: dict) -> dict[str, dict]:
    result = {}
    for name, define in WORKFLOWS.items():
        graph, positions, titles = define()
        result[name] = workflow_format.ui_from_api(graph, object_info, positions, titles)
    return result


def main() -> int:
    base = comfyui_host.prepare_base_directory(Path(tempfile.mkdtemp(prefix="video-unlearning-workflows-")))
    with comfyui_host.ComfyServer(base) as server:
        object_info = server.get("/object_info")
    WORKFLOWS_DIR.mkdir(exist_ok=True)
    for name, workflow in build(object_info).items():
        path = WORKFLOWS_DIR / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(workflow, indent=2) + "\n")
        tmp.replace(path)
        print(f"wrote {path.relative_to(comfyui_host.REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
