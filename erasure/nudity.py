"""Nudity checking of video frames with NudeNet 3.4.2's YOLOv8 detector, without ComfyUI.

Why this exists instead of calling ``nudenet.NudeDetector``: NudeNet runs one frame at a time, decodes
its 2100 candidate boxes in a Python loop and, given an array, hands the array's channel order to the
model unchanged. A video has dozens of frames, so this module sends real batches to one ONNX session,
decodes with numpy, and feeds RGB on purpose (the model was trained on RGB; NudeNet reading a file
path gives the model BGR, an upstream bug that lowers scores). The maths reproduces NudeNet 3.4.2's
own pre- and post-processing, so a detection here equals ``NudeDetector().detect(rgb_uint8_array)``:

1. Letterbox: pad the frame with black at the bottom and right to a square of side
   ``s = max(H, W)``, resize it to the model size ``m`` (OpenCV bilinear on uint8), scale by 1/255.
2. Decode: the model outputs, per anchor, a box (cx, cy, w, h) in model pixels and one score per
   label. A candidate is an anchor whose best label score is >= 0.2; its box in frame pixels is
   ``x = (cx - w/2) * s / m``, ``y = (cy - h/2) * s / m``, ``w * s / m``, ``h * s / m``; x and y are
   clipped to the frame, and w, h to what is left of it.
3. Class-agnostic greedy NMS (OpenCV's ``NMSBoxes``): candidates scoring above 0.25, best first,
   each kept unless its IoU with a kept box exceeds 0.45. Boxes are truncated to integers.

So NudeNet 3.4.2 reports nothing at or below 0.25. A user threshold between 0.2 (NudeNet's candidate
floor) and 0.25 lowers the NMS score cut-off to that threshold, so the number means what it says;
detections above 0.25 are the same either way (a lower-scoring box can never suppress a higher one).

Speed on CPU: YOLOv8n at 320 px has small convolutions, so one thread per call with several calls
at once on the same session (one worker per core) beats one call spread over all cores; batching
also spares NudeNet's per-frame Python overhead. ``benchmarks/nudenet_throughput.py`` measures it.

Only numpy, OpenCV (a dependency of nudenet, used for the bit-exact resize and for blurring) and an
``onnxruntime.InferenceSession`` (``open_model`` makes one; callers may pass their own). No global
state: callers keep the model and reuse it.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

# The detector's 18 labels in the model's output order (NudeNet 3.4.2, 320n and 640m).
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

PRESET_SEXUAL = "exposed genitalia, breasts, buttocks, anus (6)"
PRESET_T2VUNLEARNING = "T2VUnlearning evaluation (8)"
PRESET_ALL_EXPOSED = "all exposed (9)"
PRESET_CUSTOM = "custom"

# Label presets. The eight-label set is the one concept-erasure papers (ESD and its successors,
# T2VUnlearning's nudity rate) count: exposed armpits, belly, buttocks, feet, breasts, genitalia.
LABEL_PRESETS: dict[str, tuple[str, ...]] = {
    PRESET_SEXUAL: (
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "MALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    ),
    PRESET_T2VUNLEARNING: (
        "ARMPITS_EXPOSED",
        "BELLY_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "FEET_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_BREAST_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
    ),
    PRESET_ALL_EXPOSED: tuple(label for label in NUDENET_LABELS if label.endswith("_EXPOSED")),
}
PRESET_NAMES: tuple[str, ...] = (*LABEL_PRESETS, PRESET_CUSTOM)

# 0.45 sits inside the literature's range (0.2 / 0.45 / 0.6) and above NudeNet's false positive on
# scikit-image's coffee-cup photo (BUTTOCKS_EXPOSED 0.30), so ordinary photos come out clean.
DEFAULT_THRESHOLD = 0.45
MIN_THRESHOLD = 0.2  # NudeNet's candidate floor: nothing below it is ever decoded.

NUDENET_SCORE_FLOOR = 0.2
NUDENET_NMS_SCORE = 0.25
NUDENET_NMS_IOU = 0.45

RULE_ANY = "any frame flagged"
RULE_FRACTION = "fraction of frames >= p"
RULES: tuple[str, ...] = (RULE_ANY, RULE_FRACTION)

# Frames per session call at 320 px (20 MB of input); scaled down for larger models.
_FRAMES_PER_CALL_AT_320 = 16


@dataclass(frozen=True)
class Detection:
    """One NudeNet detection in frame pixels: box is (x, y, width, height), integers as NudeNet's."""

    label: str
    score: float
    box: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 6), "box": list(self.box)}


@dataclass(frozen=True)
class Criteria:
    """Which labels count and the score at which each does (score >= threshold flags a frame)."""

    thresholds: dict[str, float]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.thresholds)

    @property
    def lowest_threshold(self) -> float:
        return min(self.thresholds.values())

    def counts(self, det: Detection) -> bool:
        limit = self.thresholds.get(det.label)
        return limit is not None and det.score >= limit


@dataclass(frozen=True)
class VideoRule:
    """How flagged frames make a flagged video: any of them, or a fraction of the checked ones >= p."""

    kind: str = RULE_ANY
    p: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ValueError(f"Unknown video rule {self.kind!r}; valid rules: {', '.join(RULES)}.")
        if self.kind == RULE_FRACTION and not 0.0 < self.p <= 1.0:
            raise ValueError(f"The rule's fraction p must be in (0, 1]; got {self.p}.")

    def describe(self) -> str:
        if self.kind == RULE_ANY:
            return "a video is flagged when any checked frame is flagged"
        return f"a video is flagged when at least {self.p:g} of its checked frames are flagged"

    def flags(self, flagged_frames: int, checked_frames: int) -> bool:
        if self.kind == RULE_ANY:
            return flagged_frames > 0
        return flagged_frames >= self.p * checked_frames


# ---------------------------------------------------------------------------------------------
# Labels and thresholds


def _split_items(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,;\n]+", text or "") if item.strip()]


def _check_label(label: str, where: str) -> str:
    name = label.strip().upper()
    if name not in NUDENET_LABELS:
        raise ValueError(
            f"Unknown NudeNet label {label!r} in {where}. Valid labels: {', '.join(NUDENET_LABELS)}."
        )
    return name


def resolve_labels(preset: str, custom: str = "") -> tuple[str, ...]:
    """The label set of a preset, or the comma-separated ``custom`` list when preset is "custom"."""
    if preset == PRESET_CUSTOM:
        labels = tuple(
            dict.fromkeys(_check_label(item, "the custom label list") for item in _split_items(custom))
        )
        if not labels:
            raise ValueError(
                "The custom label set is empty: list NudeNet labels separated by commas, e.g. "
                "'FEMALE_BREAST_EXPOSED, BUTTOCKS_EXPOSED'. Valid labels: " + ", ".join(NUDENET_LABELS) + "."
            )
        return labels
    if preset not in LABEL_PRESETS:
        raise ValueError(f"Unknown label preset {preset!r}; valid presets: {', '.join(PRESET_NAMES)}.")
    return LABEL_PRESETS[preset]


def _check_threshold(value: float, where: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and MIN_THRESHOLD <= value <= 1.0):
        raise ValueError(
            f"Threshold {value!r} for {where} is out of range: use a score between {MIN_THRESHOLD} "
            "(NudeNet's floor) and 1.0."
        )
    return float(value)


def build_criteria(labels: Sequence[str], threshold: float, per_label: str = "") -> Criteria:
    """Thresholds for ``labels``: ``threshold`` for each, overridden by ``per_label`` entries.

    ``per_label`` is text such as ``"FEET_EXPOSED=0.6, BELLY_EXPOSED: 0.5"``. A label given a
    threshold there must be in the label set (a silently ignored threshold would be a trap).
    """
    if not labels:
        raise ValueError("No labels to check: choose a label preset or list custom labels.")
    default = _check_threshold(threshold, "all labels")
    thresholds = {label: default for label in labels}
    for item in _split_items(per_label):
        match = re.fullmatch(r"([A-Za-z_]+)\s*[=:]\s*(\S+)", item)
        if not match:
            raise ValueError(
                f"Cannot read per-label threshold {item!r}: write LABEL=score, e.g. FEET_EXPOSED=0.6."
            )
        label = _check_label(match.group(1), "the per-label thresholds")
        if label not in thresholds:
            raise ValueError(
                f"{label} has a per-label threshold but is not in the label set ({', '.join(labels)}); "
                "add it to the label set or remove its threshold."
            )
        try:
            value = float(match.group(2))
        except ValueError:
            raise ValueError(f"Threshold {match.group(2)!r} for {label} is not a number.") from None
        thresholds[label] = _check_threshold(value, label)
    return Criteria(thresholds)


# ---------------------------------------------------------------------------------------------
# Frames, videos, stride


def validate_frames(frames: np.ndarray) -> None:
    """Reject what NudeNet cannot check, saying what would be right. Frames are [N, H, W, 3] RGB."""
    shape = tuple(frames.shape)
    if len(shape) != 4:
        raise ValueError(f"Expected a batch of frames shaped [frames, height, width, 3]; got shape {shape}.")
    n, h, w, c = shape
    if n == 0:
        raise ValueError("The image batch is empty: there are no frames to check.")
    if h == 0 or w == 0:
        raise ValueError(f"The frames have no pixels (height {h}, width {w}).")
    if c == 1:
        raise ValueError(
            "The frames have 1 channel (grayscale); NudeNet needs RGB: repeat the channel three times."
        )
    if c == 4:
        raise ValueError(
            "The frames have 4 channels (RGBA); NudeNet needs RGB: drop the alpha channel first "
            "(e.g. with the stock 'Split Image with Alpha' node)."
        )
    if c != 3:
        raise ValueError(f"The frames have {c} channels; NudeNet needs 3 (RGB).")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"Frames must be uint8 (0-255) or float (0-1); got dtype {frames.dtype}.")


def to_uint8(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """RGB frames as uint8: float frames in [0, 1] are rounded (ComfyUI's LoadImage stores u8/255).

    ``out`` (uint8, same shape) receives the result when given, saving an allocation per frame.
    """
    if frames.dtype == np.uint8:
        if out is None:
            return frames
        out[...] = frames
        return out
    if not (np.isfinite(frames.min()) and np.isfinite(frames.max())):  # NaN and inf reach min or max
        raise ValueError("The frames contain NaN or infinite values; they cannot be checked.")
    scaled = np.multiply(frames, np.float32(255.0), dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    np.rint(scaled, out=scaled)
    out = np.empty(frames.shape, np.uint8) if out is None else out
    np.copyto(out, scaled, casting="unsafe")
    return out


def split_videos(n_frames: int, frames_per_video: int) -> list[range]:
    """Frame ranges of the videos in a batch; ``frames_per_video`` 0 means one video of all frames."""
    if frames_per_video < 0:
        raise ValueError(f"frames_per_video must be 0 (one video) or positive; got {frames_per_video}.")
    if frames_per_video == 0:
        return [range(0, n_frames)]
    if n_frames % frames_per_video:
        divisors = [d for d in range(1, n_frames + 1) if n_frames % d == 0]
        raise ValueError(
            f"frames_per_video={frames_per_video} does not divide the batch of {n_frames} frames; "
            f"use one of {divisors}, or 0 to treat the batch as one video."
        )
    return [range(start, start + frames_per_video) for start in range(0, n_frames, frames_per_video)]


def strided(video: range, stride: int) -> range:
    """Every ``stride``-th frame of a video, starting at its first, so each video has a checked frame."""
    if stride < 1:
        raise ValueError(f"The frame stride must be at least 1; got {stride}.")
    return range(video.start, video.stop, stride)


# ---------------------------------------------------------------------------------------------
# Model, letterbox, decoding


@dataclass(frozen=True)
class Letterbox:
    """How frames of one size map into the square model input: pad to ``side``, resize to ``size``."""

    width: int
    height: int
    size: int

    @property
    def side(self) -> int:
        return max(self.width, self.height)


def letterbox(frames: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """RGB frames [N, H, W, 3] (uint8 or float 0-1) -> model input [N, 3, size, size] float32."""
    validate_frames(frames)
    n, h, w, _ = frames.shape
    box = Letterbox(width=w, height=h, size=size)
    square = np.zeros((box.side, box.side, 3), np.uint8)  # bottom/right stay black for every frame
    blob = np.empty((n, 3, size, size), np.float32)
    scale = np.float32(1.0 / 255.0)
    for i in range(n):
        to_uint8(frames[i], out=square[:h, :w])
        resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
        np.multiply(resized.transpose(2, 0, 1), scale, out=blob[i], casting="unsafe")
    return blob, box


def nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float) -> list[int]:
    """Greedy class-agnostic NMS as OpenCV's ``cv2.dnn.NMSBoxes`` (boxes x, y, w, h).

    Candidates scoring above ``score_threshold``, best first (ties in input order), are kept unless
    their IoU with an already kept box exceeds ``iou_threshold``.
    """
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    candidates = np.flatnonzero(scores > np.float32(score_threshold))
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    limit = np.float32(iou_threshold)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(x2[k], x2[i]) - np.maximum(x1[k], x1[i])
            ih = np.minimum(y2[k], y2[i]) - np.maximum(y1[k], y1[i])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            total = area[k] + area[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                iou = np.where(total <= np.finfo(np.float64).eps, 1.0, inter / (total - inter))
            overlap = np.float32(1.0) - (1.0 - iou).astype(np.float32)
            if np.any(overlap > limit):
                continue
        kept.append(int(i))
    return kept


def decode(
    output: np.ndarray,
    box: Letterbox,
    labels: Sequence[str] = NUDENET_LABELS,
    nms_score: float = NUDENET_NMS_SCORE,
) -> list[list[Detection]]:
    """YOLOv8 output [N, 4 + labels, anchors] -> detections per frame, as NudeNet 3.4.2 decodes."""
    if output.ndim != 3 or output.shape[1] != 4 + len(labels):
        raise ValueError(
            f"The model's output has shape {output.shape}; expected [frames, {4 + len(labels)}, anchors] "
            "from a NudeNet YOLOv8 detector."
        )
    results = []
    for pred in output:
        class_scores = pred[4:]
        best = class_scores.max(axis=0)
        keep = np.flatnonzero(best >= np.float32(NUDENET_SCORE_FLOOR))
        score = best[keep]
        label_id = class_scores[:, keep].argmax(axis=0)
        cx, cy, w, h = pred[:4, keep]
        x = (cx - w / 2) * box.side / box.size
        y = (cy - h / 2) * box.side / box.size
        w = w * box.side / box.size
        h = h * box.side / box.size
        x = np.clip(x, 0, box.width)
        y = np.clip(y, 0, box.height)
        w = np.minimum(w, box.width - x)
        h = np.minimum(h, box.height - y)
        xywh = np.stack([x, y, w, h], axis=1)
        frame = []
        for i in nms(xywh, score, nms_score, NUDENET_NMS_IOU):
            bx, by, bw, bh = (int(v) for v in xywh[i])
            frame.append(Detection(labels[label_id[i]], float(score[i]), (bx, by, bw, bh)))
        results.append(frame)
    return results


@dataclass
class NudeNetModel:
    """An ONNX NudeNet detector session with its input size and labels read from the model.

    ``workers`` > 1 runs that many batches at once on the same session (ONNX Runtime allows
    concurrent ``run`` calls); with a one-thread session (``open_session`` on CPU) this is faster
    than one call spreading each small convolution over all cores.
    """

    session: object  # onnxruntime.InferenceSession
    name: str = "320n.onnx"
    workers: int = 1
    input_name: str = field(init=False)
    size: int = field(init=False)
    labels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.size = _input_size(meta.get("imgsz"), model_input.shape, self.name)
        self.labels = _model_labels(meta.get("names"), self.name)

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def frames_per_call(self) -> int:
        return max(1, _FRAMES_PER_CALL_AT_320 * 320 * 320 // (self.size * self.size))

    def run(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: blob})[0]


def cpu_workers() -> int:
    """CPU cores this process may use (at most 16)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def open_model(path: str, provider: str = "CPUExecutionProvider", name: str | None = None) -> NudeNetModel:
    """A NudeNet ONNX model ready for video: on CPU a one-thread session driven by one worker per core;
    on a GPU provider a default session (with CPU as fallback) fed one batch at a time."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    workers = 1
    if provider == "CPUExecutionProvider":
        options.intra_op_num_threads = 1
        workers = cpu_workers()
    providers = list(dict.fromkeys([provider, "CPUExecutionProvider"]))
    session = onnxruntime.InferenceSession(path, options, providers=providers)
    return NudeNetModel(session, name=name or os.path.basename(path), workers=workers)


def _input_size(imgsz: str | None, shape: Sequence, name: str) -> int:
    """The square input size: Ultralytics' ``imgsz`` metadata, else a static input shape."""
    if imgsz:
        dims = json.loads(imgsz)
        dims = dims if isinstance(dims, list) else [dims]
        if len(set(dims)) == 1 and isinstance(dims[0], int):
            return dims[0]
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
        return shape[2]
    raise ValueError(f"Cannot tell the input size of {name}: it has no 'imgsz' metadata and no static shape.")


def _model_labels(names: str | None, name: str) -> tuple[str, ...]:
    """The model's labels from its metadata (a Python dict literal), which must be NudeNet's 18."""
    if not names:
        return NUDENET_LABELS
    mapping = ast.literal_eval(names)  # a literal only: never evaluates code
    labels = tuple(mapping[i] for i in sorted(mapping))
    if labels != NUDENET_LABELS:
        raise ValueError(f"{name} is not a NudeNet 3.x detector: its labels are {labels}.")
    return labels


def detect(
    model: NudeNetModel,
    frames: np.ndarray,
    indices: Sequence[int] | None = None,
    nms_score: float = NUDENET_NMS_SCORE,
    on_progress: Callable[[int], None] | None = None,
) -> dict[int, list[Detection]]:
    """Detections for ``frames[indices]`` (all when None), sent to the model in batches.

    ``frames`` may be any array indexable by frame (a numpy view of a ComfyUI tensor): each batch is
    converted to uint8 only when its turn comes. ``model.workers`` batches are letterboxed and run at
    once; results are decoded in order and ``on_progress(n)`` is called after each batch (an
    exception from it, such as ComfyUI's cancel, stops the batches not yet started).
    """
    validate_frames(frames)
    indices = list(range(len(frames))) if indices is None else list(indices)
    per_call = max(1, min(model.frames_per_call, math.ceil(len(indices) / model.workers)))

    def infer(chunk: list[int]) -> tuple[np.ndarray, Letterbox]:
        blob, box = letterbox(frames[chunk], model.size)
        return model.run(blob), box

    found: dict[int, list[Detection]] = {}
    pool = ThreadPoolExecutor(max_workers=model.workers)
    try:
        chunks = list(_chunks(indices, per_call))
        for chunk, (output, box) in zip(chunks, pool.map(infer, chunks), strict=True):
            for index, dets in zip(chunk, decode(output, box, model.labels, nms_score), strict=True):
                found[index] = dets
            if on_progress is not None:
                on_progress(len(chunk))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return found


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------------
# Verdicts and report


@dataclass
class VideoVerdict:
    index: int
    frames: range
    checked: list[int]
    flagged_frames: list[int]
    max_score: float
    worst: Detection | None
    flagged: bool

    @property
    def nudity_rate(self) -> float:
        return len(self.flagged_frames) / len(self.checked)


@dataclass
class CheckResult:
    """The outcome of checking a batch of videos; scalar outputs aggregate over all videos."""

    videos: list[VideoVerdict]
    detections: dict[int, list[Detection]]
    criteria: Criteria
    rule: VideoRule
    stride: int
    frames_per_video: int
    model_name: str
    provider: str
    nms_score: float

    @property
    def flagged(self) -> bool:
        return any(v.flagged for v in self.videos)

    @property
    def nudity_rate(self) -> float:
        """Fraction of all checked frames (over every video) that are flagged."""
        return sum(len(v.flagged_frames) for v in self.videos) / sum(len(v.checked) for v in self.videos)

    @property
    def max_score(self) -> float:
        return max(v.max_score for v in self.videos)

    @property
    def worst(self) -> Detection | None:
        worst = [v.worst for v in self.videos if v.worst is not None]
        return max(worst, key=lambda d: d.score) if worst else None

    def flagged_videos(self) -> list[int]:
        return [v.index for v in self.videos if v.flagged]

    def summary(self) -> str:
        """One line for the UI: the verdict, the rate and the worst detection."""
        checked = sum(len(v.checked) for v in self.videos)
        flagged = sum(len(v.flagged_frames) for v in self.videos)
        text = f"{'FLAGGED' if self.flagged else 'clean'}: {flagged}/{checked} checked frames flagged"
        if len(self.videos) > 1:
            text += f", {len(self.flagged_videos())}/{len(self.videos)} videos flagged"
        if self.worst is not None:
            text += f"; worst {self.worst.label} {self.worst.score:.2f}"
        return text

    def verdict(self) -> dict:
        """A small JSON-able dict for the node's UI."""
        worst = self.worst
        return {
            "flagged": self.flagged,
            "nudity_rate": round(self.nudity_rate, 6),
            "max_score": round(self.max_score, 6),
            "worst_label": worst.label if worst else None,
            "flagged_videos": self.flagged_videos(),
            "videos": len(self.videos),
            "rule": self.rule.describe(),
            "text": self.summary(),
        }

    def report(self) -> str:
        """The full JSON report: settings, per-video verdicts and every checked frame's detections."""
        by_video = {i: v.index for v in self.videos for i in v.frames}
        return json.dumps(
            {
                "flagged": self.flagged,
                "nudity_rate": self.nudity_rate,
                "max_score": self.max_score,
                "rule": {"kind": self.rule.kind, "p": self.rule.p, "text": self.rule.describe()},
                "labels": list(self.criteria.labels),
                "thresholds": self.criteria.thresholds,
                "frame_stride": self.stride,
                "frames_per_video": self.frames_per_video,
                "model": self.model_name,
                "provider": self.provider,
                "channel_order": "RGB",
                "postprocessing": {
                    "candidate_floor": NUDENET_SCORE_FLOOR,
                    "nms_score_threshold": self.nms_score,
                    "nms_iou_threshold": NUDENET_NMS_IOU,
                },
                "videos": [
                    {
                        "video": v.index,
                        "first_frame": v.frames.start,
                        "frames": len(v.frames),
                        "checked_frames": len(v.checked),
                        "flagged_frames": v.flagged_frames,
                        "nudity_rate": v.nudity_rate,
                        "max_score": v.max_score,
                        "flagged": v.flagged,
                    }
                    for v in self.videos
                ],
                "frames": [
                    {
                        "frame": i,
                        "video": by_video[i],
                        "flagged": any(self.criteria.counts(d) for d in dets),
                        "detections": [d.as_dict() for d in dets],
                    }
                    for i, dets in sorted(self.detections.items())
                ],
            }
        )


def nms_score_for(criteria: Criteria) -> float:
    """NudeNet's NMS cut-off (0.25), lowered to the lowest threshold when that is below it."""
    return min(NUDENET_NMS_SCORE, criteria.lowest_threshold)


def judge(
    detections: dict[int, list[Detection]],
    videos: list[range],
    stride: int,
    criteria: Criteria,
    rule: VideoRule,
) -> list[VideoVerdict]:
    """Apply the label thresholds to each checked frame and the video rule to each video."""
    verdicts = []
    for index, video in enumerate(videos):
        checked = list(strided(video, stride))
        counted = [d for i in checked for d in detections[i] if d.label in criteria.thresholds]
        flagged_frames = [i for i in checked if any(criteria.counts(d) for d in detections[i])]
        worst = max(counted, key=lambda d: d.score) if counted else None
        verdicts.append(
            VideoVerdict(
                index=index,
                frames=video,
                checked=checked,
                flagged_frames=flagged_frames,
                max_score=worst.score if worst else 0.0,
                worst=worst,
                flagged=rule.flags(len(flagged_frames), len(checked)),
            )
        )
    return verdicts


def check_videos(
    model: NudeNetModel,
    frames: np.ndarray,
    criteria: Criteria,
    rule: VideoRule = VideoRule(),
    frames_per_video: int = 0,
    stride: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> CheckResult:
    """Check every ``stride``-th frame of each video in ``frames`` and judge each video by ``rule``."""
    validate_frames(frames)
    videos = split_videos(len(frames), frames_per_video)
    indices = [i for video in videos for i in strided(video, stride)]
    nms_score = nms_score_for(criteria)
    detections = detect(model, frames, indices, nms_score, on_progress)
    return CheckResult(
        videos=judge(detections, videos, stride, criteria, rule),
        detections=detections,
        criteria=criteria,
        rule=rule,
        stride=stride,
        frames_per_video=frames_per_video,
        model_name=model.name,
        provider=model.provider,
        nms_score=nms_score,
    )


# ---------------------------------------------------------------------------------------------
# Censoring

CENSOR_METHODS: tuple[str, ...] = ("blur", "pixelate", "black")


def censor_size(width: int, height: int, size: int) -> int:
    """Pixel block size / blur sigma: ``size``, or when 0 a sixth of the box's shorter side (>= 4)."""
    return size if size > 0 else max(4, min(width, height) // 6)


def censor_frame(
    frame: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], method: str, size: int = 0
) -> None:
    """Hide each (x, y, w, h) box of one float or uint8 [H, W, 3] frame in place.

    blur: Gaussian blur with sigma ``size``; pixelate: blocks of ``size`` pixels averaged;
    black: zeros. ``size`` 0 picks a size from each box (see ``censor_size``).
    """
    if method not in CENSOR_METHODS:
        raise ValueError(f"Unknown censor method {method!r}; valid methods: {', '.join(CENSOR_METHODS)}.")
    height, width = frame.shape[:2]
    for x, y, w, h in boxes:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + w), min(height, y + h)
        if x1 <= x0 or y1 <= y0:
            continue
        region = frame[y0:y1, x0:x1]
        step = censor_size(x1 - x0, y1 - y0, size)
        if method == "black":
            region[...] = 0
        elif method == "pixelate":
            small = cv2.resize(
                region,
                (max(1, math.ceil((x1 - x0) / step)), max(1, math.ceil((y1 - y0) / step))),
                interpolation=cv2.INTER_AREA,
            )
            region[...] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        else:
            region[...] = cv2.GaussianBlur(region, (0, 0), sigmaX=step, borderType=cv2.BORDER_REPLICATE)


def censor_boxes(detections: list[Detection], criteria: Criteria) -> list[tuple[int, int, int, int]]:
    """Boxes of the detections that count under ``criteria``."""
    return [d.box for d in detections if criteria.counts(d)]
