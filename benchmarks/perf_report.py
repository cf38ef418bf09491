"""The performance benchmark's markdown report: one table per part, ratios next to their goals, the
machine named (``benchmarks/perf.py`` writes it beside the JSON; the README quotes it)."""

from __future__ import annotations


def verdict(ok: bool) -> str:
    return "pass" if ok else "**MISSED**"


def seconds(value: float) -> str:
    if value >= 100:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.2f} ms"


def percent(value: float) -> str:
    if value < 0.001:
        return f"{100 * value:.4f} %"
    return f"{100 * value:.2f} %" if value < 0.1 else f"{100 * value:.0f} %"


def count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M"


def when(parts: list[dict]) -> str:
    """When the parts were measured and the machine's 1-minute load average meanwhile."""
    dates = sorted({p["measured"] for p in parts if "measured" in p})
    loads = [x for p in parts for x in p.get("load_average", []) if x is not None]
    text = "measured " + (f"{dates[0]} to {dates[-1]}" if len(dates) > 1 else dates[0]) if dates else ""
    if loads:
        text += f", load average {min(loads)}-{max(loads)}"
    return text


def machine_line(machine: dict) -> str:
    gpu = f", GPU {machine['gpu']} ({machine.get('gpu_memory_gb')} GB)" if machine.get("gpu") else ""
    return (
        f"{machine['cpu']} ({machine['cores']} cores, {machine['ram_gb']} GB RAM){gpu}; torch "
        f"{machine['torch']} ({machine['torch_threads']} torch thread(s)), ComfyUI {machine['comfyui']}, "
        f"Python {machine['python']}"
    )


def refusal_table(runs: dict) -> list[str]:
    rows = [
        "| Model | One forward pass | Direction maths (sites) | Share of that pass "
        "| Share at generation size (FLOP-scaled; goal < 1 %) "
        "| Estimate | x pass | Apply (layers) | x pass | Vector + patch memory |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for run in runs.values():
        r = run.get("refusal")
        if not r:
            continue
        f, e, a, ratios = r["forward"], r["estimate"], r["apply"], r["ratios"]
        how = "measured" if f["method"].startswith("measured") else "extrapolated"
        estimate = e["estimate_s"] + r.get("probe_run", {}).get("seconds", 0.0)
        star = "*" if "probe_run" in r else ""
        rows.append(
            f"| {run['model']} | {seconds(f['seconds'])} ({how}) | {seconds(e['direction_maths_s'])} "
            f"({e['sites']}) | {percent(ratios['direction_maths'])} "
            f"| {percent(r['generation_size']['direction_maths_share_flop_scaled'])} "
            f"{verdict(r['goal']['pass'])} "
            f"| {seconds(estimate)}{star} | {ratios['estimate']:.3g} | {seconds(a['seconds'])} "
            f"({a['layers']}) | {ratios['apply']:.3g} | {e['vector_mb']:.2f} + {a['patch_mb']:.2f} MB |"
        )
        if "extrapolated_from_one_block_s" in f:
            notes.append(
                f"{run['model']}: the one-block extrapolation gives "
                f"{seconds(f['extrapolated_from_one_block_s'])} for the pass measured at "
                f"{seconds(f['seconds'])}."
            )
        gsize = r["generation_size"]
        notes.append(
            f"{run['model']}: a pass at {gsize['video']} does {gsize['flops_multiple']:.0f}x the work "
            f"(FLOPs) of the measured clip; the goal (stated at real shapes) is judged on the direction "
            f"maths' share of that pass, {percent(gsize['direction_maths_share_flop_scaled'])} "
            "(an estimate, not measured; the measured clip's share is an upper bound)."
        )
        if "probe_run" in r:
            p = r["probe_run"]
            notes.append(
                f"\\* {run['model']}: estimate = direction maths + the probe sampling run, extrapolated "
                f"({p['passes']} passes of {seconds(p['forward_s'])} at latent {p['latent']}): "
                f"{seconds(p['seconds'])}."
            )
        peak = max(e["peak_extra_mb"], a["peak_extra_mb"])
        live = [x for x in (e.get("live_extra_mb"), a.get("live_extra_mb")) if x is not None]
        live_text = f" RSS, +{max(live):.0f} MB live heap" if live else ""
        notes.append(
            f"{run['model']}: {count(r['parameters']['instantiated'])} of "
            f"{count(r['parameters']['architecture'])} parameters instantiated; peak memory while estimating "
            f"or applying: +{peak:.0f} MB{live_text}."
        )
    return rows + [""] + [f"- {n}" for n in notes] if len(rows) > 2 else []


def generation_table(run: dict) -> list[str]:
    g = run["generation"]
    merged = g["merged_into_weights"]
    kinds = [k for k in ("live", "rss", "cuda") if f"{k}_extra_mb" in g["refusal"]]
    names = {"live": "Extra live heap", "rss": "Extra RSS", "cuda": "Extra GPU memory"}
    rows = [
        f"{run['model']}, KSampler {g['sampler']}, cfg {g['cfg']}, {g['steps']} steps on {g['video']}, "
        f"{g['rounds']} round(s), the three models taking turns; times are {g['clock']}. ComfyUI merges "
        f"the edit into the weights when it loads the model (checked on an edited weight at the first "
        f"step: refusal {merged['refusal']}, LoRA {merged['lora']}); the first step of each call (load + "
        f"patch) is left out of the time per step. The original's own step times spread "
        f"{percent(g['noise'])}: the band around 1.00 a ratio must stay in is that or 3 %, whichever is "
        "larger. Extra memory: peak while sampling (after the load) minus the original's in the same round.",
        "",
        "| Model | Time per step | vs original (goal 1.00) | Range over rounds | Wall-time ratio "
        "| Load + patch, once a load | " + " | ".join(names[k] for k in kinds) + " |",
        "| --- | --- | --- | --- | --- | --- |" + " --- |" * len(kinds),
    ]
    labels = {
        "original": "original",
        "refusal": f"refusal-vector edit ({g['refusal_layers']} layers, rank 4)",
        "lora": f"unlearning LoRA ({g['lora_patch']['layers']} layers, rank {g['lora_patch']['rank']})",
    }
    for variant, label in labels.items():
        v = g[variant]
        base = variant == "original"
        goal = "" if base else f" {verdict(g['goal']['pass'][variant])}"
        low, high = v["step_ratio_range"]
        extras = " | ".join("-" if base else signed_mb(v[f"{k}_extra_mb"]) for k in kinds)
        rows.append(
            f"| {label} | {seconds(v['step_s'])} | {v['step_ratio']:.3f}{goal} | {low:.3f}-{high:.3f} "
            f"| {v['step_wall_ratio']:.3f} | {seconds(max(0.0, v['load_patch_s']))} | {extras} |"
        )
    return rows


def signed_mb(value: float) -> str:
    return f"{value:+.0f} MB"


def training_table(run: dict) -> list[str]:
    t = run["training"]
    arms = t["arms"]
    stock = arms["stock"]
    key = t["memory_measure"]
    measure = {
        "cuda_peak_mb": "GPU max_memory_allocated",
        "live_peak_mb": "live C heap",
        "rss_peak_mb": "peak RSS",
    }[key]
    rows = [
        f"{run['model']}, rank {t['rank']}, {t['video']}, training dtype {t['training_dtype']}, gradient "
        f"checkpointing on, {stock['steps'] - 1} steps timed after a warm-up step, times in "
        f"{stock['clock']}. TrainLoraNode trains every layer with weights (LoRA on each linear, full "
        f"diffs of norms and biases); UnlearnTrainLoRA trains '{t['targets']['unlearn']}'. Memory: "
        f"the goal is judged on the {measure} peak; peak RSS (what the machine must have, including "
        "freed memory the allocator keeps) beside it.",
        "",
        f"| Node | Time per step | vs TrainLoraNode | Goal | Wall-time ratio | Peak memory ({measure}) "
        "| Over the loaded model | vs TrainLoraNode | Goal | Peak RSS | RSS vs TrainLoraNode |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {
        "stock": "TrainLoraNode (ComfyUI)",
        "unlearn": "UnlearnTrainLoRA, preservation off",
        "unlearn_preserve": "UnlearnTrainLoRA, preservation on",
        "unlearn_robust": "UnlearnTrainLoRA, preservation on, robust (attack steps per step)",
    }
    extra_key = key.replace("_peak_mb", "_extra_mb")
    for arm, label in labels.items():
        a = arms.get(arm)
        if a is None:  # results written before the arm existed
            continue
        if arm == "unlearn_robust":
            label = label.replace("attack steps", f"{a['attack_steps']} attack steps")
            share = a.get("adversarial", {}).get("adversarial_clean_share")
            if share:  # the plain prompt in the student batch beside the attacked one
                label = label.replace(" per step)", f" per step, plain prompt's share {share:g})")
            ratio = f"{a['step_ratio']:.2f}x ({a['step_ratio_vs_plain']:.2f}x the plain trainer's)"
            goal = wall = memory_ratio = memory_goal = rss_ratio = "-"
        elif arm == "stock":
            ratio = goal = wall = memory_ratio = memory_goal = rss_ratio = "-"
        else:
            g = a["goal"]
            ratio, memory_ratio = f"{a['step_ratio']:.2f}x", f"{a['memory_ratio']:.3f}x"
            wall, rss_ratio = f"{a['step_wall_ratio']:.2f}x", f"{a['rss_ratio']:.3f}x"
            goal = f"<= {g['step_ratio_max']}x {verdict(g['step_pass'])}"
            memory_goal = f"<= {g['memory_ratio_max']}x {verdict(g['memory_pass'])}"
        m = a["memory"]
        rows.append(
            f"| {label} | {seconds(a['step_median_s'])} | {ratio} | {goal} | {wall} | {m[key]:.0f} MB "
            f"| +{m[extra_key]:.0f} MB | {memory_ratio} | {memory_goal} | {m['rss_peak_mb']:.0f} MB "
            f"| {rss_ratio} |"
        )
    return rows


def nudenet_table(n: dict) -> list[str]:
    return [
        f"{n['frames']} frames of {n['size']}, NudeNet {n['model']}, onnxruntime {n['onnxruntime']}, "
        f"best of {n['repeats']}; the pack on {n['provider_pack']} with {n['workers_pack']} worker(s). "
        f"Identical detections on {n['identical_frames']}/{n['frames']} frames.",
        "",
        "| Path | Frames per second | ms per frame | Speed-up |",
        "| --- | --- | --- | --- |",
        f"| NudeNet's per-frame `detect` | {n['nudenet_fps']:.1f} | {1000 / n['nudenet_fps']:.1f} | 1.00x |",
        f"| the pack, batched | {n['pack_fps']:.1f} | {1000 / n['pack_fps']:.1f} | {n['speedup']:.2f}x |",
    ]


def markdown(data: dict) -> str:
    """The whole report for one results file."""
    device = data["device"]
    runs = data.get("runs", {})
    lines = [
        f"# Performance benchmark ({device.upper()})",
        "",
        f"Written by `python scripts/dev.py bench perf --device {device} --model ...` "
        "(benchmarks/perf.py); the JSON beside this file holds every number. Random weights at the real "
        "shapes (speed and memory do not depend on their values); every ratio is against a baseline "
        "measured side by side on the same machine.",
        "",
        "Machines:",
        "",
    ]
    for name, run in runs.items():
        stamps = [run[p] for p in ("refusal", "generation", "training") if p in run]
        lines.append(f"- {name}: {machine_line(run['machine'])}; {when(stamps)}.")
    if "nudenet" in data:
        lines.append(f"- NudeNet: {machine_line(data['nudenet']['machine'])}; {when([data['nudenet']])}.")
    table = refusal_table(runs)
    if table:
        lines += ["", "## 1. Refusal vector, against one forward pass of the same model", "", *table]
        clips = {run["video"] for run in runs.values() if "refusal" in run}
        clocks = {run["refusal"].get("clock", "") for run in runs.values() if "refusal" in run}
        lines += [
            f"- One forward pass: batch 1 on the run's clip ({', '.join(sorted(clips))}); at real video "
            "sizes a pass is far longer, so these shares are upper bounds. Text encoding is left out "
            f"(umT5-XXL is not available here). Times: {', '.join(sorted(clocks))}."
        ]
    for name, run in runs.items():
        if "generation" in run:
            lines += ["", f"## 2. Generation overhead ({name})", "", *generation_table(run)]
    for name, run in runs.items():
        if "training" in run:
            lines += ["", f"## 3. Training ({name})", "", *training_table(run)]
    if "nudenet" in data:
        lines += ["", "## 4. NudeNet", "", *nudenet_table(data["nudenet"])]
    return "\n".join(lines) + "\n"
