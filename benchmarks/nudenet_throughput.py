"""NudeNet throughput on CPU: the pack's batched path vs nudenet's own per-frame ``detect`` calls.

An 81-frame 480x832 video (Wan's default length and size) made of scikit-image photos shifted a
little from frame to frame. The pack starts from ComfyUI's float frames (its uint8 conversion is
timed); nudenet gets uint8 RGB arrays one call per frame. Both use one ONNX session on the bundled
320n model. The detections of both paths are compared, so the speed-up is for the same answer.

    .venv/bin/python benchmarks/nudenet_throughput.py [--frames 81] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import nudenet
import numpy as np
import onnxruntime
import skimage.data

sys.path.append(str(Path(__file__).resolve().parents[1]))  # never ahead of ComfyUI's nodes.py
from erasure import nudity  # noqa: E402

HEIGHT, WIDTH = 480, 832


def make_video(n_frames: int) -> np.ndarray:
    """uint8 RGB frames [n, 480, 832, 3]: four photos, each drifting a few pixels per frame."""
    photos = [
        cv2.resize(getattr(skimage.data, n)(), (WIDTH + 64, HEIGHT + 64)) for n in ("astronaut", "coffee")
    ]
    photos += [
        cv2.resize(getattr(skimage.data, n)(), (WIDTH + 64, HEIGHT + 64)) for n in ("chelsea", "rocket")
    ]
    frames = []
    for i in range(n_frames):
        photo = photos[(i * len(photos)) // n_frames]
        dx, dy = (3 * i) % 64, (2 * i) % 64
        frames.append(photo[dy : dy + HEIGHT, dx : dx + WIDTH])
    return np.ascontiguousarray(np.stack(frames))


def interleaved_best(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall time of each run over ``repeats`` rounds, the runs taking turns within a round so
    that load from other processes on the machine hits both alike."""
    best = dict.fromkeys(runs, float("inf"))
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    video_u8 = make_video(args.frames)
    video = video_u8.astype(np.float32) / 255.0  # what a ComfyUI IMAGE batch holds
    model_path = str(Path(nudenet.__file__).parent / "320n.onnx")
    model = nudity.open_model(model_path)  # the pack's CPU set-up: one session, one worker per core
    # The same batches, one call at a time on a default session (ONNX Runtime's threads inside a call).
    single = nudity.NudeNetModel(onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"]))
    reference = nudenet.NudeDetector()

    runs = {
        "nudenet": lambda: [reference.detect(frame) for frame in video_u8],
        "pack": lambda: nudity.detect(model, video),
        "pack_single": lambda: nudity.detect(single, video),
    }
    for run in runs.values():  # warm up the sessions
        run()
    best, results = interleaved_best(runs, args.repeats)

    ours, theirs = results["pack"], results["nudenet"]
    same = sum(
        [(d.label, round(d.score, 4), list(d.box)) for d in ours[i]]
        == [(t["class"], round(t["score"], 4), t["box"]) for t in theirs[i]]
        for i in range(args.frames)
    )
    n = args.frames
    print(
        f"video: {n} frames of {HEIGHT}x{WIDTH}, model 320n, CPU ({nudity.cpu_workers()} cores), "
        f"onnxruntime {onnxruntime.__version__}, best of {args.repeats}"
    )
    lines = {
        "nudenet": "nudenet per-frame detect",
        "pack_single": "pack, batches of 16, one call at a time",
        "pack": f"pack, batches on {model.workers} workers",
    }
    for key, label in lines.items():
        print(f"{label:42s}: {n / best[key]:6.1f} frames/s ({1000 * best[key] / n:5.1f} ms/frame)")
    print(f"speed-up of the pack over nudenet: {best['nudenet'] / best['pack']:.2f}x (goal >= 1.5x)")
    print(f"frames with identical detections: {same}/{n}")


if __name__ == "__main__":
    main()
