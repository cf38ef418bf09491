"""NudeNet nodes: check every frame of a video, censor detected regions, gate a video before saving.

The detector work lives in ``erasure.nudity`` (plain numpy + onnxruntime); these classes only read
their inputs, hold one ONNX session per (model file, provider) for the life of the server, and turn
results into ComfyUI outputs. The bundled 320n model ships inside the ``nudenet`` package; a larger
model (NudeNet's 640m.onnx) is used when the user puts it in ``models/nudenet/``. Nothing is
downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import comfy.utils
import folder_paths
import numpy as np
import onnxruntime
import torch
from comfy_api.latest import io
from comfy_execution.graph_utils import ExecutionBlocker

from ..erasure import nudity

MODEL_FOLDER = "nudenet"
BUNDLED_MODEL = "320n.onnx (bundled with nudenet)"
PROVIDERS = ("auto", "CPU", "CUDA")
_ORT_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider"}
ON_FLAGGED = ("block", "black frames")


def _register_model_folder() -> None:
    """models/nudenet/ holds optional NudeNet ONNX models (e.g. 640m.onnx)."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    extensions = folder_paths.folder_names_and_paths[MODEL_FOLDER][1]
    if isinstance(extensions, set):
        extensions.add(".onnx")


_register_model_folder()

# One session per (model path, provider), loaded on first use and reused by every later run.
_MODELS: dict[tuple[str, str], nudity.NudeNetModel] = {}


def _bundled_model_path() -> str:
    import nudenet

    return str(Path(nudenet.__file__).parent / "320n.onnx")


def _ort_provider(choice: str) -> str:
    available = onnxruntime.get_available_providers()
    if choice == "auto":
        choice = "CUDA" if _ORT_PROVIDERS["CUDA"] in available else "CPU"
    if choice not in _ORT_PROVIDERS:
        raise ValueError(f"Unknown execution provider {choice!r}; choose one of {', '.join(PROVIDERS)}.")
    provider = _ORT_PROVIDERS[choice]
    if provider not in available:
        raise ValueError(
            f"{choice} was chosen but this onnxruntime has no {provider} (it has {', '.join(available)}); "
            "install onnxruntime-gpu for CUDA, or choose CPU."
        )
    return provider


def load_model(model: str, provider: str) -> nudity.NudeNetModel:
    """The cached detector for a model choice and provider choice."""
    path = (
        _bundled_model_path()
        if model == BUNDLED_MODEL
        else folder_paths.get_full_path_or_raise(MODEL_FOLDER, model)
    )
    ort_provider = _ort_provider(provider)
    key = (os.path.abspath(path), ort_provider)
    if key not in _MODELS:
        _MODELS[key] = nudity.open_model(path, ort_provider, name=Path(path).name)
    return _MODELS[key]


def _criteria(label_set: str, custom_labels: str, threshold: float, label_thresholds: str) -> nudity.Criteria:
    return nudity.build_criteria(nudity.resolve_labels(label_set, custom_labels), threshold, label_thresholds)


def _frames(images: torch.Tensor) -> np.ndarray:
    """A numpy view of a ComfyUI IMAGE batch (RGB float 0-1, [frames, height, width, channels])."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"Expected an IMAGE tensor; got {type(images).__name__}.")
    frames = images.detach().cpu().float().numpy()
    nudity.validate_frames(frames)
    return frames


def _progress(total: int):
    """A ComfyUI progress bar; its update also stops the run when the user cancels."""
    bar = comfy.utils.ProgressBar(total)
    return bar.update


def _run_check(
    images,
    label_set,
    custom_labels,
    threshold,
    label_thresholds,
    frames_per_video,
    video_rule,
    p,
    frame_stride,
    model,
    provider,
) -> nudity.CheckResult:
    criteria = _criteria(label_set, custom_labels, threshold, label_thresholds)
    rule = nudity.VideoRule(video_rule, p)
    frames = _frames(images)
    videos = nudity.split_videos(len(frames), frames_per_video)
    total = sum(len(nudity.strided(v, frame_stride)) for v in videos)
    detector = load_model(model, provider)
    return nudity.check_videos(
        detector, frames, criteria, rule, frames_per_video, frame_stride, _progress(total)
    )


def _detector_inputs() -> list[io.Input]:
    return [
        io.Combo.Input(
            "label_set",
            options=list(nudity.PRESET_NAMES),
            default=nudity.PRESET_SEXUAL,
            tooltip="Which NudeNet labels count. 'T2VUnlearning evaluation' is the eight-label set papers "
            "report nudity rates with (exposed armpits, belly, buttocks, feet, breasts, genitalia). "
            "'custom' uses the custom_labels list.",
        ),
        io.String.Input(
            "custom_labels",
            default="",
            tooltip="Used when label_set is 'custom': NudeNet labels separated by commas, e.g. "
            "FEMALE_BREAST_EXPOSED, BUTTOCKS_EXPOSED, FACE_FEMALE. Labels: "
            + ", ".join(nudity.NUDENET_LABELS),
        ),
        io.Float.Input(
            "threshold",
            default=nudity.DEFAULT_THRESHOLD,
            min=nudity.MIN_THRESHOLD,
            max=1.0,
            step=0.01,
            tooltip="A detection counts when its score is at least this. Papers use 0.2 to 0.6 "
            "(0.2, 0.45, 0.6). 0.45 leaves ordinary photos clean: at NudeNet's 0.2 floor even a coffee "
            "cup scores BUTTOCKS_EXPOSED 0.30.",
        ),
        io.String.Input(
            "label_thresholds",
            default="",
            tooltip="Optional per-label thresholds overriding 'threshold', e.g. FEET_EXPOSED=0.6, "
            "BELLY_EXPOSED=0.5. Each label must be in the label set.",
        ),
    ]


def _model_inputs() -> list[io.Input]:
    return [
        io.Combo.Input(
            "model",
            options=[BUNDLED_MODEL, *folder_paths.get_filename_list(MODEL_FOLDER)],
            default=BUNDLED_MODEL,
            tooltip="NudeNet detector. The 320n model comes with the nudenet package; put NudeNet's "
            "640m.onnx in models/nudenet/ to use it (slower, more accurate). Nothing is downloaded.",
        ),
        io.Combo.Input(
            "provider",
            options=list(PROVIDERS),
            default="auto",
            tooltip="ONNX Runtime execution provider: auto picks CUDA when onnxruntime-gpu provides it.",
        ),
    ]


def _video_inputs() -> list[io.Input]:
    return [
        io.Int.Input(
            "frames_per_video",
            default=0,
            min=0,
            max=1_000_000,
            tooltip="0: the batch is one video. Otherwise the batch holds several videos back to back, "
            "each this many frames long; it must divide the batch size.",
        ),
        io.Combo.Input(
            "video_rule",
            options=list(nudity.RULES),
            default=nudity.RULE_ANY,
            tooltip="When a video is flagged: any checked frame flagged (catches a brief shot), or the "
            "fraction of checked frames flagged is at least p (the nudity rate used by T2VUnlearning).",
        ),
        io.Float.Input("p", default=0.5, min=0.001, max=1.0, step=0.01, tooltip="Fraction for the p rule."),
        io.Int.Input(
            "frame_stride",
            default=1,
            min=1,
            max=10_000,
            tooltip="Check every k-th frame of each video, starting with its first (1: every frame).",
        ),
    ]


class NudeNetCheck(io.ComfyNode):
    """Checks every frame of one or more videos with NudeNet and gives a verdict to act on."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NudeNetCheck",
            display_name="NudeNet Check (video)",
            category="video_unlearning/nudenet",
            description="Runs NudeNet on the frames of a video in batches (RGB, at the model's input size) "
            "and reports whether it is flagged, the fraction of frames flagged and the highest score.",
            is_output_node=True,
            inputs=[io.Image.Input("images"), *_detector_inputs(), *_video_inputs(), *_model_inputs()],
            outputs=[
                io.Image.Output(
                    "passed_images", display_name="images", tooltip="The input frames, unchanged."
                ),
                io.Boolean.Output(
                    "flagged", display_name="flagged", tooltip="True when any video is flagged by the rule."
                ),
                io.Float.Output(
                    "nudity_rate",
                    display_name="nudity_rate",
                    tooltip="Fraction of checked frames flagged (all videos).",
                ),
                io.Float.Output(
                    "max_score",
                    display_name="max_score",
                    tooltip="Highest score of a counted label on any checked frame.",
                ),
                io.String.Output(
                    "report",
                    display_name="report",
                    tooltip="JSON: settings, per-video verdicts, per-frame detections.",
                ),
            ],
        )

    @classmethod
    def execute(cls, images, **settings) -> io.NodeOutput:
        result = _run_check(images, **settings)
        return io.NodeOutput(
            images,
            result.flagged,
            result.nudity_rate,
            result.max_score,
            result.report(),
            ui={"verdict": [result.verdict()]},
        )


class NudeNetCensor(io.ComfyNode):
    """Hides NudeNet's detections of the chosen labels on every frame."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NudeNetCensor",
            display_name="NudeNet Censor (video)",
            category="video_unlearning/nudenet",
            description="Blurs, pixelates or blacks out the boxes NudeNet finds for the chosen labels, "
            "on every frame.",
            inputs=[
                io.Image.Input("images"),
                *_detector_inputs(),
                io.Combo.Input("method", options=list(nudity.CENSOR_METHODS), default="pixelate"),
                io.Int.Input(
                    "size",
                    default=0,
                    min=0,
                    max=512,
                    tooltip="Pixel block size (pixelate) or blur sigma in pixels; 0 = a sixth of each box's "
                    "shorter side.",
                ),
                *_model_inputs(),
            ],
            outputs=[io.Image.Output("out_images", display_name="images")],
        )

    @classmethod
    def execute(
        cls, images, label_set, custom_labels, threshold, label_thresholds, method, size, model, provider
    ) -> io.NodeOutput:
        criteria = _criteria(label_set, custom_labels, threshold, label_thresholds)
        frames = _frames(images)
        detections = nudity.detect(
            load_model(model, provider),
            frames,
            nms_score=nudity.nms_score_for(criteria),
            on_progress=_progress(len(frames)),
        )
        out = torch.from_numpy(frames.copy())
        canvas = out.numpy()
        for index, dets in detections.items():
            nudity.censor_frame(canvas[index], nudity.censor_boxes(dets, criteria), method, size)
        return io.NodeOutput(out)


class NudeNetGate(io.ComfyNode):
    """Passes a clean video on; blocks everything downstream (or sends black frames) when flagged."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NudeNetGate",
            display_name="NudeNet Gate (video)",
            category="video_unlearning/nudenet",
            description="Checks the video like NudeNet Check. Clean: the frames pass. Flagged: every node "
            "downstream is blocked, so a Save node never writes the video (or black frames are passed). "
            "A video that cannot be checked stops the run with an error: it is never passed.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images"),
                *_detector_inputs(),
                *_video_inputs(),
                io.Combo.Input(
                    "on_flagged",
                    options=list(ON_FLAGGED),
                    default="block",
                    tooltip="block: nothing downstream runs. black frames: the flagged videos' frames are "
                    "replaced by black ones and the batch goes on.",
                ),
                *_model_inputs(),
            ],
            outputs=[io.Image.Output("out_images", display_name="images")],
        )

    @classmethod
    def execute(cls, images, on_flagged, **settings) -> io.NodeOutput:
        if on_flagged not in ON_FLAGGED:
            raise ValueError(
                f"Unknown on_flagged choice {on_flagged!r}; choose one of {', '.join(ON_FLAGGED)}."
            )
        result = _run_check(images, **settings)
        action = "passed" if not result.flagged else ("blocked" if on_flagged == "block" else "black frames")
        ui = {"verdict": [result.verdict() | {"action": action, "reason": result.summary()}]}
        if not result.flagged:
            return io.NodeOutput(images, ui=ui)
        logging.warning("NudeNetGate %s: %s", action, result.summary())
        if on_flagged == "block":
            return io.NodeOutput(ExecutionBlocker(None), ui=ui)
        out = images.clone()
        for video in result.videos:
            if video.flagged:
                out[video.frames.start : video.frames.stop] = 0
        return io.NodeOutput(out, ui=ui)


NODES = [NudeNetCheck, NudeNetCensor, NudeNetGate]
