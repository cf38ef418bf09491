"""The NudeNet nodes executed in-process by a real ComfyUI, with the real 320n model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import nudenet
import numpy as np
import pytest
import skimage.data
import torch

SETTINGS = dict(
    label_set="exposed genitalia, breasts, buttocks, anus (6)",
    custom_labels="",
    threshold=0.45,
    label_thresholds="",
    model="320n.onnx (bundled with nudenet)",
    provider="auto",
)
VIDEO = dict(frames_per_video=0, video_rule="any frame flagged", p=0.5, frame_stride=1)
FACE = SETTINGS | dict(label_set="custom", custom_labels="FACE_FEMALE")


def frames(*names: str, size: tuple[int, int] = (416, 240)) -> torch.Tensor:
    """scikit-image photos as a ComfyUI IMAGE batch (RGB float in [0, 1])."""
    images = [cv2.resize(getattr(skimage.data, n)(), size, interpolation=cv2.INTER_AREA) for n in names]
    return torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)


@pytest.fixture(scope="module")
def nn(comfy):
    from video_unlearning.nodes import nudenet_nodes

    return nudenet_nodes


def test_nodes_are_registered_with_their_contract_ids(nn):
    from video_unlearning.nodes import all_nodes

    ids = {node.GET_SCHEMA().node_id for node in all_nodes()}  # GET_SCHEMA validates as ComfyUI does
    assert {"NudeNetCheck", "NudeNetCensor", "NudeNetGate"} <= ids
    schema = nn.NudeNetCheck.define_schema()
    assert [o.io_type for o in schema.outputs] == ["IMAGE", "BOOLEAN", "FLOAT", "FLOAT", "STRING"]
    threshold = next(i for i in schema.inputs if i.id == "threshold")
    assert threshold.default == 0.45 and "0.2 to 0.6" in threshold.tooltip


def test_check_flags_the_astronauts_face_and_shows_the_verdict(nn):
    images = frames("coffee", "astronaut", "chelsea")
    out = nn.NudeNetCheck.execute(images, **FACE, **VIDEO)
    passed, flagged, rate, max_score, report = out.args
    assert passed is images
    assert flagged is True and rate == pytest.approx(1 / 3) and max_score > 0.6
    data = json.loads(report)
    assert data["labels"] == ["FACE_FEMALE"] and data["videos"][0]["flagged_frames"] == [1]
    (verdict,) = out.ui["verdict"]
    assert verdict["flagged"] and verdict["worst_label"] == "FACE_FEMALE"
    json.dumps(out.ui)  # the UI payload must be JSON-able


def test_check_default_labels_leave_photos_clean(nn):
    out = nn.NudeNetCheck.execute(frames("coffee", "chelsea", "astronaut"), **SETTINGS, **VIDEO)
    assert out.args[1:4] == (False, 0.0, 0.0)
    assert not out.ui["verdict"][0]["flagged"]


def test_one_session_is_reused_across_runs(nn):
    first = nn.load_model(SETTINGS["model"], "CPU")
    nn.NudeNetCheck.execute(frames("coffee"), **SETTINGS, **VIDEO)
    assert nn.load_model(SETTINGS["model"], "auto") is first
    assert first.provider == "CPUExecutionProvider"


def test_cuda_without_onnxruntime_gpu_is_a_clear_error(nn):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(ValueError, match="install onnxruntime-gpu for CUDA, or choose CPU"):
        nn.NudeNetCheck.execute(frames("coffee"), **(SETTINGS | {"provider": "CUDA"}), **VIDEO)


def test_models_folder_is_registered_and_its_onnx_files_are_offered(nn, host_base: Path):
    import folder_paths

    folder = host_base / "models" / "nudenet"
    assert str(folder) in folder_paths.get_folder_paths("nudenet")
    folder.mkdir(exist_ok=True)
    link = folder / "my_detector.onnx"
    if not link.exists():
        os.symlink(Path(nudenet.__file__).parent / "320n.onnx", link)
    (folder / "notes.txt").write_text("not a model")
    model = next(i for i in nn.NudeNetCheck.define_schema().inputs if i.id == "model")
    assert "my_detector.onnx" in model.options and "notes.txt" not in model.options
    out = nn.NudeNetCheck.execute(frames("astronaut"), **(FACE | {"model": "my_detector.onnx"}), **VIDEO)
    assert out.args[1] is True and json.loads(out.args[4])["model"] == "my_detector.onnx"


def test_gate_passes_a_clean_video(nn):
    images = frames("coffee", "chelsea")
    out = nn.NudeNetGate.execute(images, on_flagged="block", **SETTINGS, **VIDEO)
    assert out.args[0] is images
    assert out.ui["verdict"][0]["action"] == "passed"


def test_gate_blocks_a_flagged_video_and_says_why(nn):
    from comfy_execution.graph_utils import ExecutionBlocker

    out = nn.NudeNetGate.execute(frames("coffee", "astronaut"), on_flagged="block", **FACE, **VIDEO)
    assert isinstance(out.args[0], ExecutionBlocker)
    (verdict,) = out.ui["verdict"]
    assert verdict["action"] == "blocked" and "FACE_FEMALE" in verdict["reason"]


def test_gate_black_frames_only_for_the_flagged_video(nn):
    images = frames("coffee", "chelsea", "astronaut", "coffee")
    out = nn.NudeNetGate.execute(
        images, on_flagged="black frames", **FACE, **(VIDEO | {"frames_per_video": 2})
    )
    result = out.args[0]
    assert torch.equal(result[:2], images[:2]) and not result[2:].any()
    assert out.ui["verdict"][0]["flagged_videos"] == [1]


@pytest.mark.parametrize(
    ("images", "settings", "message"),
    [
        (torch.zeros(0, 64, 64, 3), {}, "batch is empty"),
        (torch.zeros(2, 64, 64, 4), {}, "RGBA"),
        (torch.zeros(2, 64, 64, 1), {}, "1 channel"),
        (torch.zeros(3, 64, 64, 3), {"frames_per_video": 2}, "does not divide the batch of 3 frames"),
        (
            torch.zeros(2, 64, 64, 3),
            {"label_set": "custom", "custom_labels": "NUDITY"},
            "Unknown NudeNet label",
        ),
        (torch.full((2, 64, 64, 3), float("nan")), {}, "NaN"),
    ],
)
def test_gate_never_passes_a_video_it_could_not_check(nn, images, settings, message):
    with pytest.raises(ValueError, match=message):
        nn.NudeNetGate.execute(images, on_flagged="black frames", **(SETTINGS | VIDEO | settings))


def test_censor_changes_the_face_box_on_every_frame_and_nothing_else(nn):
    images = frames("astronaut", "coffee", "astronaut", size=(512, 512))
    (out,) = nn.NudeNetCensor.execute(images, **FACE, method="black", size=0).args
    assert out.shape == images.shape and out.dtype == images.dtype
    changed = (out != images).any(dim=-1)
    assert changed[0].any() and changed[2].any() and not changed[1].any()
    ys, xs = torch.nonzero(changed[0], as_tuple=True)
    assert 150 < xs.float().mean() < 300 and 60 < ys.float().mean() < 200  # the face, not elsewhere
    assert not out[0][changed[0]].any()
    assert torch.equal(images, frames("astronaut", "coffee", "astronaut", size=(512, 512)))  # input untouched
