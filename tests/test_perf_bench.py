"""Smoke test of the performance benchmark (``benchmarks/perf.py``, issue 7).

Runs its whole code path (all four parts, the full-model and the layers-only paths, the training
arms in their own processes) on the test suite's tiny architectures, in a subprocess as
``python scripts/dev.py bench perf`` runs it, and checks that the results file has every part with
sane values. It never compares a timing with a limit: timings live in benchmarks/results/.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tiny", "tiny-wan14b", "tiny-hunyuan")
ARMS = ("stock", "unlearn", "unlearn_preserve", "unlearn_robust")
VARIANTS = ("original", "refusal", "lora")
NUDENET_FRAMES = 2


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def run_benchmark(out: Path) -> dict:
    cmd = [
        sys.executable,
        str(REPO_ROOT / "benchmarks" / "perf.py"),
        "--device=cpu",
        "--model",
        *MODELS,
        f"--results-dir={out}",
        f"--cache-dir={out / 'models'}",
        "--threads=1",  # tiny ops on a shared CPU: one thread is faster than two
        "--train-steps=1",
        f"--nudenet-frames={NUDENET_FRAMES}",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads((out / "perf_cpu.json").read_text())


def check_refusal(name: str, r: dict) -> None:
    assert positive(r["forward"]["seconds"]), name
    assert r["forward"]["method"].startswith("extrapolated" if name != "tiny" else "measured"), name
    e, a = r["estimate"], r["apply"]
    assert positive(e["estimate_s"]) and positive(e["direction_maths_s"]), name
    assert e["sites"] >= 1 and e["pairs"] > 0 and e["neutral_prompts"] > 0, name
    assert a["layers"] > 0 and positive(a["seconds"]) and positive(a["patch_mb"]), name
    assert positive(e["vector_mb"]), name
    assert all(positive(v) for v in r["ratios"].values()), name
    share = r["generation_size"]["direction_maths_share_flop_scaled"]
    assert r["generation_size"]["flops_multiple"] >= 1 and share <= r["ratios"]["direction_maths"], name
    assert r["goal"]["pass"] == (share < 0.01), name  # judged at generation size, as the goal is stated
    params = r["parameters"]
    if name == "tiny":
        assert params["instantiated"] == params["architecture"]
        assert positive(r["forward"]["extrapolated_from_one_block_s"])
    else:
        assert 0 < params["instantiated"] < params["architecture"], name


def test_perf_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    data = run_benchmark(tmp_path)

    assert data["device"] == "cpu"
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and positive(machine["ram_gb"])
    assert machine["torch"] and machine["comfyui"]
    assert set(data["runs"]) == set(MODELS)

    for name in MODELS:
        check_refusal(name, data["runs"][name]["refusal"])
    probe = data["runs"]["tiny-hunyuan"]["refusal"]["probe_run"]
    estimate = data["runs"]["tiny-hunyuan"]["refusal"]["estimate"]
    assert probe["passes"] == estimate["prompts"] * estimate["probe_steps"] and positive(probe["seconds"])
    assert "generation" not in data["runs"]["tiny-wan14b"], "layers-only models run part 1 only"

    generation = data["runs"]["tiny"]["generation"]
    for variant in VARIANTS:
        v = generation[variant]
        assert positive(v["step_s"]) and positive(v["step_ratio"]) and positive(v["rss_peak_mb"]), variant
    assert generation["original"]["step_ratio"] == 1.0
    assert generation["merged_into_weights"] == {"refusal": True, "lora": True}
    assert generation["lora_patch"]["layers"] > generation["refusal_layers"] > 0

    training = data["runs"]["tiny"]["training"]
    for arm in ARMS:
        a = training["arms"][arm]
        assert positive(a["step_median_s"]) and len(a["loss"]) == a["steps"] == 2, arm
        assert all(math.isfinite(x) for x in a["loss"]), arm
        assert a["memory"]["rss_peak_mb"] >= a["memory"]["rss_before_mb"] > 0, arm
        assert a["lora_tensors"] > 0, arm
    for arm in ("unlearn", "unlearn_preserve"):
        a = training["arms"][arm]
        assert positive(a["step_ratio"]) and positive(a["memory_ratio"]), arm
        assert set(a["goal"]) == {"step_ratio_max", "memory_ratio_max", "step_pass", "memory_pass"}
    robust = training["arms"]["unlearn_robust"]
    # The toy world's chosen robust settings, as UnlearnTrainLoRA gets them.
    from video_unlearning.toy_world import erasure_settings

    chosen = erasure_settings.ROBUST_ADVERSARIAL
    assert positive(robust["step_ratio_vs_plain"]) and robust["adversarial"] == chosen
    assert robust["attack_steps"] == chosen["adversarial_steps"] > 0

    nudenet = data["nudenet"]
    assert nudenet["frames"] == NUDENET_FRAMES and nudenet["size"] == "480x832"
    assert positive(nudenet["pack_fps"]) and positive(nudenet["nudenet_fps"])
    assert nudenet["identical_frames"] == NUDENET_FRAMES

    report = (tmp_path / "perf_cpu.md").read_text()
    for heading in ("## 1. Refusal vector", "## 2. Generation overhead", "## 3. Training", "## 4. NudeNet"):
        assert heading in report
    assert machine["cpu"] in report
