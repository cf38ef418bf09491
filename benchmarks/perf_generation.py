"""Part 2 of the performance benchmark: what an erased model costs at generation time.

Three MODELs sample the same clip with ComfyUI's KSampler (``nodes.common_ksampler``: euler, simple
schedule, Wan's cfg 5 with an empty negative prompt, same seed):

* ``original``: the model as loaded;
* ``refusal``: UnlearnRefusalApply's output (part 1's patched clone, rank-4 edit of every block's
  cross_attn.k and .v);
* ``lora``: the model with an unlearning LoRA of the shape UnlearnTrainLoRA outputs (the run's rank
  and target modules; random factors) applied as the node applies it
  (``comfy_compat.add_lowrank_patches``).

They take turns within each round, so load from other processes hits all three alike. ComfyUI merges
a MODEL's patches into the weights when it loads that MODEL (and restores the weights when another
MODEL of the same network is loaded), so each call pays one merge; the sampling steps after it should
cost exactly what the original's do. Each call is timed from the KSampler's progress callback:
``step_s`` are the steps after the first (pure sampling), ``first_step_s`` is load + patch + the
first step. Each call also reads one edited weight at its first step, to prove the edit was merged.
Memory: peak RSS during each call (on CUDA also ``max_memory_allocated``); patched layers keep a
backup of their original weight while the patch is merged (ComfyUI's LoRA mechanism).
"""

from __future__ import annotations

import time

import torch

from benchmarks import perf_setup as setup

CFG = 5.0  # Wan's default guidance: cond and uncond run as one batch of two
PROMPT = "a woman walking on a beach at sunset"
VARIANTS = ("original", "refusal", "lora")
PROBES = {"refusal": "blocks.0.cross_attn.k", "lora": "blocks.0.self_attn.q"}


def lora_model(model, family: str, rank: int, targets: str, seed: int = 0):
    """``model`` with a random LoRA of UnlearnTrainLoRA's output shape (rank, targets), patched on a
    clone the way the node does it."""
    from video_unlearning.nodes import comfy_compat, train_compat

    dm = model.model.diffusion_model
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for target in train_compat.adapter_targets(dm, family, targets):
        out_features, in_features = dm.get_submodule(target.name).weight.shape
        up = torch.randn(out_features, rank, generator=generator) * 1e-3
        down = torch.randn(rank, in_features, generator=generator) * in_features**-0.5
        factors[target.name] = (up, down)
    return comfy_compat.add_lowrank_patches(model, factors)


def _at_first_step(dm, probes: dict, memory: setup.MemoryPeak, device: str) -> None:
    """At the first step callback (the MODEL is loaded and patched): read the probed weights and
    restart the peak-memory mark, so the peak covers the sampling steps with this MODEL in place."""
    for variant, module in PROBES.items():
        probes[variant] = float(dm.get_submodule(module).weight.detach().float().sum())
    memory.restart(device)


def sample_once(model, positive, negative, latent: torch.Tensor, steps: int, device: str) -> dict:
    """One KSampler call, timed per step, with its memory while sampling and the probed weights."""
    import nodes

    probes: dict = {}
    dm = model.model.diffusion_model
    with setup.memory_peak(device) as memory:
        with (
            setup.step_clock(device, on_first=lambda: _at_first_step(dm, probes, memory, device)) as clock,
            torch.inference_mode(),
        ):
            nodes.common_ksampler(
                model, 0, steps, CFG, "euler", "simple", positive, negative, {"samples": latent}
            )
            setup.sync(device)
            end, end_wall = setup.now(), time.perf_counter()
    return {
        "total_s": end - clock.start,
        "total_wall_s": end_wall - clock.start_wall,
        "first_step_s": clock.ticks[0] - clock.start,
        "step_s": clock.intervals(),
        "step_wall_s": clock.intervals(wall=True),
        "memory": memory.as_dict(),
        "probes": probes,
    }


def spread(values: list[float]) -> float:
    """max / min - 1: how far repeated timings of the same thing fall apart on this machine."""
    return max(values) / min(values) - 1 if values and min(values) > 0 else 0.0


def _round_ratios(calls: dict, variant: str, key: str) -> list[float]:
    """The variant's median step time over the original's, round by round."""
    return [
        setup.median(c[key]) / setup.median(o[key])
        for c, o in zip(calls[variant], calls["original"], strict=True)
    ]


def _memory(calls: dict, variant: str, device: str) -> dict:
    """Peak memory during the sampling steps (resident set; on CUDA also GPU allocations): the
    variant's highest, and its median excess over the original's in the same round."""
    out = {}
    for kind in ("live", "rss", "cuda"):
        key = f"{kind}_peak_mb"
        if key not in calls["original"][0]["memory"]:
            continue
        own, base = calls[variant], calls["original"]
        out[key] = max(c["memory"][key] for c in own)
        excess = [c["memory"][key] - o["memory"][key] for c, o in zip(own, base, strict=True)]
        out[f"{kind}_extra_mb"] = round(setup.median(excess), 1)
    return out


def summarise(calls: dict[str, list[dict]], rounds: int, device: str) -> dict:
    """Per variant: median step time and its ratio to the original's in the same round (median over
    rounds, with their range; on the run's clock and in wall time), what the load and patch added to
    the first step, and the peak memory during the steps against the original's in the same round."""
    out: dict = {}
    noise = spread([s for c in calls["original"] for s in c["step_s"]])
    for variant in VARIANTS:
        ratios = _round_ratios(calls, variant, "step_s")
        own = calls[variant]
        out[variant] = {
            "step_s": setup.median([s for c in own for s in c["step_s"]]),
            "step_ratio": setup.median(ratios),
            "step_ratio_range": [min(ratios), max(ratios)],
            "step_wall_s": setup.median([s for c in own for s in c["step_wall_s"]]),
            "step_wall_ratio": setup.median(_round_ratios(calls, variant, "step_wall_s")),
            # what loading the MODEL (merging its patches) added to its first step
            "load_patch_s": setup.median([c["first_step_s"] - setup.median(c["step_s"]) for c in own]),
            **_memory(calls, variant, device),
        }
    merged = {v: all(c["probes"][v] != calls["original"][0]["probes"][v] for c in calls[v]) for v in PROBES}
    band = max(0.03, noise)
    out["noise"] = noise
    out["merged_into_weights"] = merged
    out["goal"] = {
        "step_ratio": 1.0,
        "band": band,
        "pass": {v: abs(out[v]["step_ratio"] - 1.0) <= band for v in VARIANTS if v != "original"},
    }
    out["rounds"] = rounds
    return out


def measure(
    model, refusal_model, clip, family: str, sizes: setup.Sizes, rank: int, targets: str, device: str
):
    """Part 2: the three MODELs in turn for ``sizes.rounds`` rounds, after one warm-up call."""
    with torch.inference_mode():
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = torch.zeros(sizes.latent)
    models = {"original": model, "refusal": refusal_model, "lora": lora_model(model, family, rank, targets)}
    print(f"  [2] KSampler warm-up ({sizes.video}, {sizes.sample_steps} steps, cfg {CFG})", flush=True)
    sample_once(model, positive, negative, latent, 2, device)
    calls: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(sizes.rounds):
        for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:  # a different order each round
            call = sample_once(models[variant], positive, negative, latent, sizes.sample_steps, device)
            calls[variant].append(call)
            print(
                f"  [2] round {r + 1}/{sizes.rounds} {variant:8s}: {call['total_s']:.2f} s, steps "
                + ", ".join(f"{s:.2f}" for s in call["step_s"]),
                flush=True,
            )
    result = summarise(calls, sizes.rounds, device)
    result.update(
        latent=list(sizes.latent),
        video=sizes.video,
        steps=sizes.sample_steps,
        cfg=CFG,
        sampler="euler / simple",
        lora_patch={"rank": rank, "targets": targets, "layers": len(models["lora"].patches)},
        refusal_layers=len(refusal_model.patches),
        calls=calls,
        load_average=setup.load_average(),
        clock=setup.clock_name(),
    )
    return result
