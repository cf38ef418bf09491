"""The gate in a real ComfyUI graph run by the server: a flagged video never reaches Save."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

FACE = dict(
    label_set="custom",
    custom_labels="FACE_FEMALE",
    threshold=0.45,
    label_thresholds="",
    frames_per_video=0,
    video_rule="any frame flagged",
    p=0.5,
    frame_stride=1,
    model="320n.onnx (bundled with nudenet)",
    provider="auto",
)


@pytest.fixture(scope="module")
def photos(host_base: Path) -> dict[str, str]:
    """scikit-image photos saved as PNG in the host's input folder, for stock LoadImage."""
    names = {}
    for name in ("astronaut", "coffee"):
        filename = f"nudenet_{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(host_base / "input" / filename)
        names[name] = filename
    return names


def gate_graph(first: str, second: str, prefix: str, **settings) -> dict:
    """LoadImage x2 -> ImageBatch (a two-frame video) -> NudeNetGate -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": first}},
        "2": {"class_type": "LoadImage", "inputs": {"image": second}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {
            "class_type": "NudeNetGate",
            "inputs": {"images": ["3", 0], "on_flagged": "block", **FACE, **settings},
        },
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": prefix}},
    }


def saved(host_base: Path, prefix: str) -> list[Path]:
    return sorted((host_base / "output").glob(f"{prefix}*.png"))


def test_flagged_video_is_blocked_before_save_and_clean_one_is_saved(comfy_server, host_base, photos):
    flagged = comfy_server.run_prompt(gate_graph(photos["coffee"], photos["astronaut"], "nudenet_flagged"))
    assert saved(host_base, "nudenet_flagged") == []
    (verdict,) = flagged["outputs"]["4"]["verdict"]
    assert verdict["action"] == "blocked" and "FACE_FEMALE" in verdict["reason"]
    assert "5" not in flagged["outputs"]

    clean = comfy_server.run_prompt(gate_graph(photos["coffee"], photos["coffee"], "nudenet_clean"))
    assert len(saved(host_base, "nudenet_clean")) == 2  # both frames of the video
    assert clean["outputs"]["4"]["verdict"][0]["action"] == "passed"


def test_a_video_that_cannot_be_checked_fails_the_run_and_is_not_saved(comfy_server, host_base, photos):
    graph = gate_graph(photos["coffee"], photos["coffee"], "nudenet_unchecked", frames_per_video=3)
    with pytest.raises(RuntimeError, match="failed") as failure:
        comfy_server.run_prompt(graph)
    prompt_id = re.search(r"prompt (\S+) failed", str(failure.value)).group(1)
    messages = comfy_server.get(f"/history/{prompt_id}")[prompt_id]["status"]["messages"]
    (error,) = [data for kind, data in messages if kind == "execution_error"]
    assert error["node_id"] == "4" and "does not divide the batch of 2 frames" in error["exception_message"]
    assert saved(host_base, "nudenet_unchecked") == []


def test_check_node_reports_through_the_server(comfy_server, photos):
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": photos["astronaut"]}},
        "2": {"class_type": "NudeNetCheck", "inputs": {"images": ["1", 0], **FACE}},
    }
    entry = comfy_server.run_prompt(graph)
    (verdict,) = entry["outputs"]["2"]["verdict"]
    assert verdict["flagged"] and verdict["nudity_rate"] == 1.0 and verdict["max_score"] > 0.75
    assert set(comfy_server.get("/object_info/NudeNetGate")["NudeNetGate"]["input"]["required"]) >= {
        "on_flagged"
    }
