"""Part 3 of the performance benchmark: UnlearnTrainLoRA against ComfyUI's own TrainLoraNode.

Three arms, each in its own process (so each one's peak memory is its own), on the same model file,
rank, clip and gradient checkpointing (on, both nodes' default), with the same training dtype
(CPU: fp32 compute over the bf16 weights, as ComfyUI computes on a CPU; CUDA: bf16):

* ``stock``: ``comfy_extras.nodes_train.TrainLoraNode`` called as a graph calls it (every input a
  list), one latent, one prompt, batch 1, Adam, MSE, LoRA in fp32 (the pack's adapters are fp32);
* ``unlearn``: ``UnlearnTrainLoRA`` without preservation (no preserve prompts, weight 0);
* ``unlearn_preserve``: ``UnlearnTrainLoRA`` with preservation (one preserve prompt, weight 1);
* ``unlearn_robust``: as ``unlearn_preserve`` with the robust option on, with the adversarial settings
  chosen in the toy world (``ROBUST``: attack steps on the concept conditioning before each step,
  AdvUnlearn-style, and the plain prompt's share of the loss): its cost per step is reported against
  ``unlearn_preserve``, the plain trainer with the same terms.

The other UnlearnTrainLoRA inputs are the node's defaults (16 augmented concept prompts,
localization on). Per-step time: between consecutive ticks of the node's progress bar (both nodes
tick after each optimizer step), the first step (model load, warm-up) left out, on the run's clock
(``perf_setup.now``). Peak memory, from after the model and text encoder are loaded (loading's own
peak is not counted), whole and as the increase over the loaded model: the live C-heap peak on a CPU
(the goal's measure; ``perf_setup.MemoryPeak``) with peak RSS beside it, and
``torch.cuda.max_memory_allocated`` on CUDA (the model is moved to the GPU inside the node, so it
is counted). ComfyUI 0.3.75's TrainLoraNode fails on a single LATENT input, so both nodes get the
run's clip twice over: two clips of the same size, one trained on per step.

    python benchmarks/perf_train.py --arm stock --base-dir DIR --model-file NAME ...   (perf.py runs it)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))  # appended: the repo's nodes/ must not shadow ComfyUI's nodes.py

import torch  # noqa: E402

from benchmarks import perf_setup as setup  # noqa: E402
from toy_world import erasure_settings as S  # noqa: E402

ARMS = ("stock", "unlearn", "unlearn_preserve", "unlearn_robust")
ROBUST = S.ROBUST_ADVERSARIAL  # the robust arm's adversarial inputs (its step count is the run's)
GOALS = {"unlearn": 1.8, "unlearn_preserve": 3.2}  # step time against the stock node's
MEMORY_GOAL = 1.15
LEARNING_RATE = 1e-4
CONCEPT_PROMPT = "a nude woman walking on a beach"
PRESERVE_PROMPT = "a person"
CLIPS = 2


def training_dtype(device: str) -> str:
    return "bf16" if device == "cuda" else "fp32"


def trained(node_cls, output) -> dict:
    """Loss series and LoRA size from a training node's outputs, read by output type (TrainLoraNode
    returns MODEL, LORA_MODEL, LOSS_MAP, INT in 0.3.75 and drops the MODEL in 0.33)."""
    kinds = [o.io_type for o in node_cls.GET_SCHEMA().outputs]
    result = dict(zip(kinds, output.result, strict=True))
    return {"loss": list(result["LOSS_MAP"]["loss"]), "lora_tensors": len(result["LORA_MODEL"])}


def run_stock(model, positive: list, latent: torch.Tensor, steps: int, rank: int, device: str) -> dict:
    from comfy_extras.nodes_train import TrainLoraNode

    inputs = dict(
        model=model,
        positive=positive,
        batch_size=1,
        grad_accumulation_steps=1,
        steps=steps,
        learning_rate=LEARNING_RATE,
        rank=rank,
        optimizer="Adam",
        loss_function="MSE",
        seed=0,
        training_dtype=training_dtype(device),
        lora_dtype="fp32",
        algorithm="LoRA",
        gradient_checkpointing=True,
        existing_lora="[None]",
    )
    # Inputs a newer TrainLoraNode added (0.33: bucket_mode) at their declared defaults, as a graph
    # made in the UI would send them.
    from graphs import schema_defaults

    inputs = dict(schema_defaults(TrainLoraNode), **inputs)
    lists = {k: [v] for k, v in inputs.items()}  # is_input_list: a graph hands every input as a list
    # The clips as two LATENT items: ComfyUI 0.3.75's TrainLoraNode fails on a single latent input
    # (``multi_res`` is only set on its list path).
    lists["latents"] = [{"samples": clip[None]} for clip in latent]
    output = TrainLoraNode.execute(**lists)
    return trained(TrainLoraNode, output)


def run_unlearn(
    model,
    clip,
    latent: torch.Tensor,
    steps: int,
    rank: int,
    targets: str,
    device: str,
    preserve: bool,
    adversarial: dict | None = None,
):
    from graphs import schema_defaults
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    inputs = dict(schema_defaults(UnlearnTrainLoRA))
    inputs.update(
        steps=steps,
        rank=rank,
        learning_rate=LEARNING_RATE,
        target_modules=targets,
        gradient_checkpointing=True,
        training_dtype=training_dtype(device),
        preservation_weight=1.0 if preserve else 0.0,
        preserve_prompts=PRESERVE_PROMPT if preserve else "",
        concept_prompts="",
        **(adversarial or {}),
    )
    output = UnlearnTrainLoRA.execute(model=model, clip=clip, latents={"samples": latent}, **inputs)
    return trained(UnlearnTrainLoRA, output)


def worker(args: argparse.Namespace) -> dict:
    """One arm in this process: load, reset the peak-memory mark, train, report."""
    setup.bootstrap(args.device, Path(args.base_dir), args.threads)
    model = setup.load_model_file(args.model_file)
    clip = setup.text_encoder()
    # Two clips of the run's size (each step trains on one of them, in both nodes).
    shape = (CLIPS, *args.latent[1:])
    latent = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    steps = args.steps
    with torch.inference_mode():
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(CONCEPT_PROMPT))
    with (
        setup.memory_peak(args.device) as memory,
        setup.step_clock(args.device) as clock,
        torch.inference_mode(),
    ):
        if args.arm == "stock":
            out = run_stock(model, positive, latent, steps, args.rank, args.device)
        else:
            preserve = args.arm in ("unlearn_preserve", "unlearn_robust")
            adversarial = ROBUST if args.arm == "unlearn_robust" else None
            out = run_unlearn(
                model, clip, latent, steps, args.rank, args.targets, args.device, preserve, adversarial
            )
        setup.sync(args.device)
        end, end_wall = setup.now(), time.perf_counter()
    step_s, step_wall_s = clock.intervals(), clock.intervals(wall=True)
    return {
        "arm": args.arm,
        "steps": steps,
        "step_s": step_s,
        "step_median_s": setup.median(step_s),
        "step_wall_s": step_wall_s,
        "step_wall_median_s": setup.median(step_wall_s),
        "first_step_s": clock.ticks[0] - clock.start,
        "total_s": end - clock.start,
        "total_wall_s": end_wall - clock.start_wall,
        "clock": setup.clock_name(),
        "memory": memory.as_dict(),
        "loss": out["loss"],
        "lora_tensors": out["lora_tensors"],
        "load_average": setup.load_average(),
    }


def run_arm(
    arm: str, base_dir: Path, model_file: str, device: str, sizes: setup.Sizes, rank: int, targets: str
):
    """Start one arm in a fresh process and read its JSON back."""
    out = base_dir / f"train_{arm}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--arm={arm}",
        f"--base-dir={base_dir}",
        f"--model-file={model_file}",
        f"--device={device}",
        f"--steps={1 + sizes.train_steps}",
        f"--rank={rank}",
        f"--targets={targets}",
        f"--out={out}",
        f"--threads={torch.get_num_threads()}",
        "--latent",
        *[str(n) for n in sizes.latent],
    ]
    subprocess.run(cmd, check=True, env=dict(os.environ))
    return json.loads(out.read_text())


def memory_key(device: str, memory: dict) -> str:
    """The peak the memory goal is judged on: GPU allocations on CUDA; on a CPU the live C-heap peak
    (what the code holds; see ``perf_setup.MemoryPeak``), or peak RSS where that is not available."""
    if device == "cuda":
        return "cuda_peak_mb"
    return "live_peak_mb" if "live_peak_mb" in memory else "rss_peak_mb"


def measure(
    base_dir: Path, model_file: str, device: str, sizes: setup.Sizes, rank: int, targets: str
) -> dict:
    """Part 3: the three arms, then their ratios to the stock node and the goals."""
    arms = {}
    for arm in ARMS:
        print(f"  [3] training arm '{arm}': 1 + {sizes.train_steps} steps on {sizes.video}", flush=True)
        arms[arm] = run_arm(arm, base_dir, model_file, device, sizes, rank, targets)
        print(
            f"  [3] {arm}: {arms[arm]['step_median_s']:.2f} s/step, peak RSS "
            f"{arms[arm]['memory']['rss_peak_mb']:.0f} MB",
            flush=True,
        )
    stock = arms["stock"]
    key = memory_key(device, stock["memory"])
    for arm in ("unlearn", "unlearn_preserve"):
        entry = arms[arm]
        entry["step_ratio"] = entry["step_median_s"] / stock["step_median_s"]
        entry["step_wall_ratio"] = entry["step_wall_median_s"] / stock["step_wall_median_s"]
        entry["memory_ratio"] = entry["memory"][key] / stock["memory"][key]
        entry["rss_ratio"] = entry["memory"]["rss_peak_mb"] / stock["memory"]["rss_peak_mb"]
        entry["goal"] = {
            "step_ratio_max": GOALS[arm],
            "memory_ratio_max": MEMORY_GOAL,
            "step_pass": entry["step_ratio"] <= GOALS[arm],
            "memory_pass": entry["memory_ratio"] <= MEMORY_GOAL,
        }
    robust, plain = arms["unlearn_robust"], arms["unlearn_preserve"]
    robust["step_ratio"] = robust["step_median_s"] / stock["step_median_s"]
    robust["step_ratio_vs_plain"] = robust["step_median_s"] / plain["step_median_s"]
    robust["attack_steps"] = ROBUST["adversarial_steps"]
    robust["adversarial"] = ROBUST
    return {
        "arms": arms,
        "rank": rank,
        "targets": {
            "stock": "every layer with weights: LoRA on each linear/conv, full diffs on norms and biases",
            "unlearn": targets,
        },
        "training_dtype": training_dtype(device),
        "gradient_checkpointing": True,
        "latent": list(sizes.latent),
        "video": sizes.video,
        "memory_measure": key,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="One training arm of benchmarks/perf.py (part 3).")
    parser.add_argument("--arm", choices=ARMS, required=True)
    parser.add_argument("--base-dir", required=True)
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--targets", required=True)
    parser.add_argument("--latent", type=int, nargs=5, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    result = worker(args)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
