"""Performance benchmark at real model scale (issue 7): what the pack costs at generation time and
when erasing, as ratios against a baseline measured side by side.

    python scripts/dev.py bench perf [--device cpu|cuda] [--model wan1.3b [wan14b hunyuan ...]]

1. Refusal vector (``perf_refusal``): time to estimate and apply, and the extra memory, against one
   forward pass of the same model; the direction maths alone must stay under 1 % of that pass.
2. Generation overhead (``perf_generation``): KSampler time of the erased model and of a model with
   an unlearning LoRA against the original (goal 1.00: ComfyUI merges the edit into the weights).
3. Training (``perf_train``): time per step and peak memory of UnlearnTrainLoRA against ComfyUI's
   TrainLoraNode (goals: 1.8x without preservation, 3.2x with it; memory 1.15x).
4. NudeNet: frames per second on an 81-frame 480x832 video, the pack's batches against NudeNet's
   per-frame calls (``benchmarks/nudenet_throughput.py``'s video and timing loop).

Models have random weights at the real shapes (speed and memory do not depend on the values):
``wan1.3b`` runs all four parts; ``wan14b`` and ``hunyuan`` run part 1 on the layers the edit
touches (the full models do not fit this machine), with one forward pass extrapolated from one
block. ``tiny``, ``tiny-wan14b`` and ``tiny-hunyuan`` run the same code on the test suite's tiny
architectures, in seconds (the smoke test). Results go to ``benchmarks/results/perf_<device>.json``
and ``.md`` (a run of one model replaces that model's entry and keeps the others); tiny runs write
under ``.cache/perf-tiny/`` unless ``--results-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # appended: the repo's nodes/ must not shadow ComfyUI's nodes.py

from benchmarks import perf_setup as setup  # noqa: E402

PARTS = (1, 2, 3, 4)
TINY_RESULTS_DIR = REPO_ROOT / ".cache" / "perf-tiny"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", nargs="+", choices=setup.MODEL_NAMES, default=["wan1.3b"])
    parser.add_argument("--parts", default="1,2,3,4", help="comma list of parts to run (default: all)")
    parser.add_argument("--results-dir", type=Path, help="default: benchmarks/results")
    parser.add_argument("--cache-dir", type=Path, default=setup.CACHE_DIR, help="random model files")
    parser.add_argument("--rank", type=int, default=32, help="LoRA rank of part 2's LoRA and part 3")
    parser.add_argument(
        "--train-targets",
        default="attention+ffn",
        choices=("attention", "attention+ffn"),
        help="UnlearnTrainLoRA's target_modules (attention+ffn: every block linear, as the stock node)",
    )
    parser.add_argument("--latent", type=int, nargs=3, metavar=("T", "H", "W"), help="latent frames, h, w")
    parser.add_argument("--sample-steps", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--train-steps", type=int, help="measured steps, after one warm-up step")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--nudenet-frames", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 on a CPU, whose times are CPU time; torch's own on CUDA)",
    )
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.device == "cpu" else 0
    args.parts = sorted({int(p) for p in args.parts.split(",") if p.strip()})
    if not set(args.parts) <= set(PARTS):
        parser.error(f"--parts takes numbers from {PARTS}")
    tiny = [m in setup.TINY_NAMES for m in args.model]
    if any(tiny) and not all(tiny):
        parser.error("tiny models and real models go in separate runs (they write separate results)")
    return args


def sizes_for(model_name: str, args: argparse.Namespace) -> setup.Sizes:
    """The device's (or the smoke test's) sizes, with the command line's overrides."""
    sizes = setup.SIZES["tiny" if model_name in setup.TINY_NAMES else args.device]
    overrides = {
        "sample_steps": args.sample_steps,
        "rounds": args.rounds,
        "train_steps": args.train_steps,
        "repeats": args.repeats,
        "nudenet_frames": args.nudenet_frames,
    }
    if args.latent:
        overrides["latent"] = (1, 16, *args.latent)
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


# --- part 4 ---------------------------------------------------------------------------------------


def nudenet_part(frames: int, repeats: int, device: str) -> dict:
    """Frames per second of the pack's batched detector against NudeNet's own per-frame ``detect`` on
    the video of ``benchmarks/nudenet_throughput.py`` (best of ``repeats``, the two taking turns), and
    how many frames got identical detections."""
    import nudenet
    import numpy as np
    import onnxruntime

    from benchmarks import nudenet_throughput as nt
    from video_unlearning.erasure import nudity

    video_u8 = nt.make_video(frames)
    video = video_u8.astype(np.float32) / 255.0  # what a ComfyUI IMAGE batch holds
    path = str(Path(nudenet.__file__).parent / "320n.onnx")
    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    provider = "CUDAExecutionProvider" if device == "cuda" and cuda else "CPUExecutionProvider"
    model = nudity.open_model(path, provider)
    reference = nudenet.NudeDetector()
    runs = {
        "nudenet": lambda: [reference.detect(frame) for frame in video_u8],
        "pack": lambda: nudity.detect(model, video),
    }
    for run in runs.values():
        run()  # warm up both sessions
    best, results = nt.interleaved_best(runs, repeats)
    same = sum(
        [(d.label, round(d.score, 4), list(d.box)) for d in results["pack"][i]]
        == [(t["class"], round(t["score"], 4), t["box"]) for t in results["nudenet"][i]]
        for i in range(frames)
    )
    return {
        "frames": frames,
        "size": f"{nt.HEIGHT}x{nt.WIDTH}",
        "model": "320n.onnx",
        "provider_pack": model.provider,
        "provider_nudenet": "CPUExecutionProvider (NudeNet 3.4.2 ignores its providers argument)",
        "workers_pack": model.workers,
        "nudenet_fps": frames / best["nudenet"],
        "pack_fps": frames / best["pack"],
        "speedup": best["nudenet"] / best["pack"],
        "identical_frames": same,
        "repeats": repeats,
        "onnxruntime": onnxruntime.__version__,
    }


# --- one model --------------------------------------------------------------------------------------


def model_parts(name: str, args: argparse.Namespace) -> list[int]:
    """Parts 1-3 asked for that this model runs (layers-only models: part 1 only)."""
    wanted = [p for p in args.parts if p in (1, 2, 3)]
    return [p for p in wanted if p == 1] if setup.model_spec(name).layers_only else wanted


def stamp(result: dict, load_before: float | None) -> dict:
    """When a part was measured and how busy the machine was (a later run may keep it)."""
    result["measured"] = time.strftime("%Y-%m-%d %H:%M %Z")
    result["load_average"] = [load_before, setup.load_average()]
    return result


def run_model(name: str, args: argparse.Namespace, base_dir: Path, clip) -> dict:
    """The requested parts for one model; returns its results entry."""
    from benchmarks import perf_generation, perf_refusal, perf_train

    spec = setup.model_spec(name)
    sizes = sizes_for(name, args)
    parts = model_parts(name, args)
    entry: dict = {
        "model": spec.label,
        "sizes": dataclasses.asdict(sizes),
        "video": sizes.video,
        "parts": parts,
    }
    started = time.perf_counter()
    model_file = None
    if not spec.layers_only:
        model_file = setup.install_model_file(setup.ensure_model_file(spec, args.cache_dir), base_dir)
    if 3 in parts:  # first, in fresh processes, before this one holds the model
        load = setup.load_average()
        result = perf_train.measure(base_dir, model_file, args.device, sizes, args.rank, args.train_targets)
        entry["training"] = stamp(result, load)
    if 1 in parts or 2 in parts:
        model = setup.load_model_file(model_file) if model_file else None
        load = setup.load_average()
        patched, refusal = perf_refusal.measure(model, clip, spec, sizes, args.device)
        if 1 in parts:
            entry["refusal"] = stamp(refusal, load)
        if 2 in parts:
            load = setup.load_average()
            result = perf_generation.measure(
                model, patched, clip, spec.family, sizes, args.rank, args.train_targets, args.device
            )
            entry["generation"] = stamp(result, load)
        del model, patched
    entry["wall_s"] = time.perf_counter() - started
    return entry


# --- results --------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def update_results(results_dir: Path, device: str, machine: dict, runs: dict, nudenet: dict | None) -> Path:
    """Merge this run's entries into ``perf_<device>.json`` (other models' entries are kept) and
    rewrite ``perf_<device>.md`` from the whole file."""
    from benchmarks import perf_report

    path = results_dir / f"perf_{device}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("runs", {})
    data.update(benchmark="benchmarks/perf.py", device=device, machine=machine)
    for name, entry in runs.items():  # parts not run this time keep their earlier results
        old = data["runs"].get(name, {})
        parts = sorted(set(old.get("parts", [])) | set(entry["parts"]))
        data["runs"][name] = {**old, **entry, "parts": parts, "machine": machine}
    if nudenet is not None:
        data["nudenet"] = dict(nudenet, machine=machine)
    write_atomic(path, json.dumps(data, indent=1, default=float) + "\n")
    write_atomic(path.with_suffix(".md"), perf_report.markdown(data))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup.require_device(args.device)
    env = setup.steady_malloc_env(args.device)
    if env is not None:  # glibc reads these at start-up: run again with them (see perf_setup)
        os.execve(sys.executable, [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)], env)
    tiny = args.model[0] in setup.TINY_NAMES
    results_dir = args.results_dir or (TINY_RESULTS_DIR if tiny else setup.RESULTS_DIR)
    base_dir = Path(tempfile.mkdtemp(prefix="video-unlearning-perf-"))
    try:
        setup.bootstrap(args.device, base_dir, args.threads)
        machine = setup.machine(args.device)
        print(
            f"perf benchmark on {machine['cpu']} ({machine['cores']} cores), device {args.device}", flush=True
        )
        clip = setup.text_encoder()
        runs = {}
        for name in args.model:
            parts = model_parts(name, args)
            if not parts:
                continue
            print(f"== {name}: parts {', '.join(map(str, parts))}", flush=True)
            runs[name] = run_model(name, args, base_dir, clip)
            update_results(results_dir, args.device, machine, runs, None)
        nudenet = None
        if 4 in args.parts and any(not setup.model_spec(m).layers_only for m in args.model):
            sizes = sizes_for(args.model[0], args)
            print(f"== NudeNet on {sizes.nudenet_frames} frames", flush=True)
            load = setup.load_average()
            nudenet = stamp(nudenet_part(sizes.nudenet_frames, max(3, sizes.repeats), args.device), load)
        path = update_results(results_dir, args.device, machine, runs, nudenet)
        print(f"results: {path} and {path.with_suffix('.md')}")
        print(path.with_suffix(".md").read_text())
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
