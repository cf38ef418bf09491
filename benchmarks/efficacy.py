"""Efficacy of both erasure methods in the toy world, through the pack's nodes on a real ComfyUI.

    python scripts/dev.py bench efficacy [--clips 20] [--readme]

Starts ComfyUI (CPU) with the pack and the toy world's Wan 2.1 model, and for each method queues
one API graph built from the same nodes users run: UNETLoader + the toy MiniLM text encoder, then

* ``none``: the unedited model;
* ``negative_prompt``: the unedited model, the target named in the negative prompt (ordinary CFG);
* ``refusal_vector``: UnlearnRefusalEstimate -> UnlearnRefusalApply;
* ``unlearning_lora``: UnlearnTrainLoRA (the node samples its own concept clips);

then CLIPTextEncode + EmptyHunyuanLatentVideo + KSampler for every prompt, and
UnlearnToyWorldDetect reading what each clip shows. Settings (target, pairs, hyperparameters,
sampler) come from ``benchmarks/toy_world/erasure_settings.py``, shared with workflow 5 and the
demo. Seeds are fixed: prompt i of a set samples a batch from seed ``SEED_BASE + i``.

Measured, per method, with 95 % Wilson intervals:

* erasure: the fraction of clips in which the detector still finds the target's coloured object,
  for the exact prompts the methods were given, held-out paraphrases, and long caption-style
  prompts;
* preservation: detector accuracy on each other concept's own prompt, and relative to the
  unedited model (pooled over the other concepts; the close concepts, same colour or same object,
  listed on their own).

Writes benchmarks/results/efficacy_toy_world.json and .md; ``--readme`` also replaces the table
in README.md between the efficacy markers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT))  # appended: the repo's nodes/ must not shadow ComfyUI's nodes.py
sys.path.insert(0, str(REPO_ROOT / "scripts"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
import comfyui_host  # noqa: E402
from benchmarks.toy_world import erasure_settings as S  # noqa: E402
from benchmarks.toy_world import text, world  # noqa: E402
from benchmarks.toy_world.detector import wilson_interval  # noqa: E402
from graphs import Graph  # noqa: E402

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_STEM = "efficacy_toy_world"
README = REPO_ROOT / "README.md"
README_START = "<!-- efficacy-table:start -->"
README_END = "<!-- efficacy-table:end -->"
HOST_BASE = comfyui_host.CACHE_DIR / "efficacy-host"
MODEL_FILE = "toy_world_wan21_t2v.safetensors"
METHODS = ("none", "negative_prompt", "refusal_vector", "unlearning_lora")
METHOD_TITLES = {
    "none": "no erasure",
    "negative_prompt": "negative prompt",
    "refusal_vector": "refusal vector",
    "unlearning_lora": "unlearning LoRA",
}
SEED_BASE = 100
GOALS = {"exact": 0.10, "paraphrase": 0.20, "preservation": 0.90}


@dataclass(frozen=True)
class PromptSet:
    """Prompts sampled for one measurement; ``concept`` is what the detector is asked about."""

    name: str  # "exact", "paraphrase", "caption", or the preserved concept's identity
    concept: world.Concept
    prompts: tuple[str, ...]


def target_sets() -> list[PromptSet]:
    t = S.TARGET
    return [
        PromptSet("exact", t, tuple(S.LORA_CONCEPT_PROMPTS)),
        PromptSet("paraphrase", t, tuple(text.paraphrases(t))),
        PromptSet("caption", t, tuple(text.captions(t))),
    ]


def preservation_sets() -> list[PromptSet]:
    return [PromptSet(c.identity, c, (c.prompt,)) for c in world.CONCEPTS if c != S.TARGET]


def clips_per_prompt(prompt_set: PromptSet, clips: int) -> int:
    """Split ``clips`` over a set's prompts (rounding up, so every prompt gets the same number)."""
    return math.ceil(clips / len(prompt_set.prompts))


def erased_model(graph: Graph, method: str, model: str, clip: str, lora_steps: int | None) -> str:
    """The node whose output 0 is the MODEL the method samples with."""
    if method in ("none", "negative_prompt"):
        return model
    if method == "refusal_vector":
        vector = graph.node(
            "UnlearnRefusalEstimate",
            model=Graph.out(model),
            clip=Graph.out(clip),
            preset="custom",
            name=S.TARGET.identity,
            unsafe_prompts="\n".join(u for u, _ in S.REFUSAL_PAIRS),
            safe_prompts="\n".join(s for _, s in S.REFUSAL_PAIRS),
            neutral_prompts="\n".join(S.NEUTRAL_PROMPTS),
            rank=S.REFUSAL["rank"],
            alpha=S.REFUSAL["alpha"],
            probe_steps=4,
        )
        return graph.node(
            "UnlearnRefusalApply",
            model=Graph.out(model),
            refusal_vector=Graph.out(vector),
            strength=S.REFUSAL["strength"],
            blocks=S.REFUSAL["blocks"],
        )
    if method == "unlearning_lora":
        settings = dict(S.LORA, steps=lora_steps or S.LORA["steps"])
        return graph.node(
            "UnlearnTrainLoRA",
            model=Graph.out(model),
            clip=Graph.out(clip),
            concept_prompts="\n".join(S.LORA_CONCEPT_PROMPTS),
            preserve_prompts="\n".join(S.LORA_PRESERVE_PROMPTS),
            width=S.LATENT["width"],
            height=S.LATENT["height"],
            length=S.LATENT["length"],
            sampling_steps=S.SAMPLING["steps"],
            sampled_clips=S.LORA_SAMPLED_CLIPS,
            **settings,
        )
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def method_graph(method: str, sets: list[PromptSet], clips: int, lora_steps: int | None):
    """(graph, {detect node id: (set name, concept name)}) for one method."""
    graph = Graph()
    model = graph.node("UNETLoader", unet_name=MODEL_FILE, weight_dtype="default")
    clip = graph.node("UnlearnToyWorldTextEncoder")
    sampling_model = erased_model(graph, method, model, clip, lora_steps)
    negative_text = S.NEGATIVE_PROMPT if method == "negative_prompt" else ""
    negative = graph.node("CLIPTextEncode", clip=Graph.out(clip), text=negative_text)
    detects = {}
    for prompt_set in sets:
        batch = clips_per_prompt(prompt_set, clips)
        for i, prompt in enumerate(prompt_set.prompts):
            positive = graph.node("CLIPTextEncode", clip=Graph.out(clip), text=prompt)
            latent = graph.node("EmptyHunyuanLatentVideo", **S.LATENT, batch_size=batch)
            samples = graph.node(
                "KSampler",
                model=Graph.out(sampling_model),
                positive=Graph.out(positive),
                negative=Graph.out(negative),
                latent_image=Graph.out(latent),
                seed=SEED_BASE + i,
                denoise=1.0,
                **S.SAMPLING,
            )
            node = graph.node(
                "UnlearnToyWorldDetect", samples=Graph.out(samples), concept=prompt_set.concept.name
            )
            detects[node] = prompt_set.name
    return graph, detects


def rate(hits: int, total: int) -> dict:
    low, high = wilson_interval(hits, total)
    return {"hits": hits, "clips": total, "rate": hits / total if total else 0.0, "ci95": [low, high]}


def count_hits(entry: dict, detects: dict, sets: list[PromptSet]) -> dict[str, dict]:
    """{set name: rate of clips showing the set's concept} from a finished prompt's history."""
    by_name = {s.name: s for s in sets}
    tallies: dict[str, list[int]] = {s.name: [0, 0] for s in sets}
    for node, set_name in detects.items():
        concept = by_name[set_name].concept
        for reading in entry["outputs"][node]["detections"]:
            tallies[set_name][0] += (reading["colour"], reading["shape"]) == (concept.colour, concept.shape)
            tallies[set_name][1] += 1
    return {name: rate(*tally) for name, tally in tallies.items()}


def relative(edited: dict, unedited: dict) -> dict:
    """Edited accuracy over unedited accuracy; the interval is the edited Wilson interval scaled
    by the unedited point estimate (the unedited model's own spread is reported beside it)."""
    base = unedited["rate"]
    if base == 0:
        return {"ratio": None, "ci95": [None, None]}
    return {"ratio": edited["rate"] / base, "ci95": [edited["ci95"][0] / base, edited["ci95"][1] / base]}


def pooled(rates: list[dict]) -> dict:
    return rate(sum(r["hits"] for r in rates), sum(r["clips"] for r in rates))


def summarise(raw: dict[str, dict[str, dict]]) -> dict:
    """Per method: target rates, preservation per concept, pooled and relative, goals met."""
    kept = [s.name for s in preservation_sets()]
    close = [c.identity for c in S.CLOSE_CONCEPTS]
    base_pool = pooled([raw["none"][k] for k in kept])
    out = {}
    for method, rates in raw.items():
        pool = pooled([rates[k] for k in kept])
        preservation = {k: dict(rates[k], relative=relative(rates[k], raw["none"][k])["ratio"]) for k in kept}
        rel = relative(pool, base_pool)
        goals = {
            "exact": rates["exact"]["rate"] <= GOALS["exact"],
            "paraphrase": rates["paraphrase"]["rate"] <= GOALS["paraphrase"],
            "preservation": rel["ratio"] is not None and rel["ratio"] >= GOALS["preservation"],
        }
        out[method] = {
            "target": {k: rates[k] for k in ("exact", "paraphrase", "caption")},
            "preservation": preservation,
            "preservation_pooled": dict(pool, relative=rel),
            "close_concepts": {k: preservation[k] for k in close},
            "goals_met": goals,
        }
    return out


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def interval(r: dict) -> str:
    return f"{percent(r['rate'])} ({percent(r['ci95'][0])}-{percent(r['ci95'][1])})"


def markdown(report: dict) -> str:
    t = S.TARGET.identity
    close = [c.identity for c in S.CLOSE_CONCEPTS]
    lines = [
        f"Toy world, target **{t}**; {report['clips_per_set']} clips per prompt set, seeds fixed; 95 % "
        "Wilson intervals. Target: share of clips where the detector still finds it (lower is better). "
        "Kept: detector accuracy on the 7 other concepts, relative to no erasure (goal >= 90 %).",
        "",
        f"| method | {t}: exact prompts | paraphrases | captions | other concepts kept | "
        + " | ".join(f"{c} kept" for c in close)
        + " | goals |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in close) + " | --- |",
    ]
    for method, r in report["methods"].items():
        pool = r["preservation_pooled"]
        goals = (
            "n/a"
            if method == "none"
            else ("met" if all(r["goals_met"].values()) else "missed: ")
            + ", ".join(k for k, ok in r["goals_met"].items() if not ok)
        )
        cells = [
            METHOD_TITLES[method],
            interval(r["target"]["exact"]),
            interval(r["target"]["paraphrase"]),
            interval(r["target"]["caption"]),
            f"{percent(pool['relative']['ratio'])} (accuracy {interval(pool)})",
            *(
                f"{percent(r['close_concepts'][c]['relative'])} ({percent(r['close_concepts'][c]['rate'])})"
                for c in close
            ),
            goals.rstrip(": "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Goals (issue 5): target in at most {percent(GOALS['exact'])} of clips for its exact prompts and "
        f"{percent(GOALS['paraphrase'])} for paraphrases, other concepts at least "
        f"{percent(GOALS['preservation'])} of the unedited accuracy. {report['machine']}; "
        f"{report['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.replace(path)


def update_readme(table: str) -> None:
    readme = README.read_text()
    if README_START not in readme or README_END not in readme:
        raise SystemExit(f"README.md lacks the markers {README_START} / {README_END}")
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    write_atomic(README, f"{head}{README_START}\n{table}{README_END}{tail}")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, CPU"


def measure(server, clips: int, lora_steps: int | None, methods: tuple[str, ...]) -> tuple[dict, dict]:
    """({method: {set name: rate}}, {method: seconds}) from one graph per method on ``server``."""
    sets = target_sets() + preservation_sets()
    raw: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for method in methods:
        graph, detects = method_graph(method, sets, clips, lora_steps)
        t0 = time.monotonic()
        entry = server.run_prompt(graph.nodes, timeout_s=3600)
        seconds[method] = time.monotonic() - t0
        raw[method] = count_hits(entry, detects, sets)
        exact = raw[method]["exact"]
        print(f"{method}: {len(graph.nodes)} nodes in {seconds[method]:.0f}s; target (exact) "
              f"{exact['hits']}/{exact['clips']}", flush=True)  # fmt: skip
    return raw, seconds


def run(server, clips: int, lora_steps: int | None, methods: tuple[str, ...], out_dir: Path) -> dict:
    """Measure on ``server`` (a started ComfyServer whose base has the toy model) and write results."""
    started = time.monotonic()
    raw, seconds = measure(server, clips, lora_steps, methods)
    sets = target_sets() + preservation_sets()
    report = {
        "world": {"target": S.TARGET.identity, "close_concepts": [c.identity for c in S.CLOSE_CONCEPTS]},
        "settings": {
            "sampling": S.SAMPLING,
            "latent": S.LATENT,
            "refusal": dict(
                S.REFUSAL, pairs=[list(p) for p in S.REFUSAL_PAIRS], neutral=list(S.NEUTRAL_PROMPTS)
            ),
            "lora": dict(
                S.LORA, steps=lora_steps or S.LORA["steps"], concept_prompts=list(S.LORA_CONCEPT_PROMPTS)
            ),
            "negative_prompt": S.NEGATIVE_PROMPT,
        },
        "prompt_sets": {s.name: list(s.prompts) for s in sets},
        "clips_per_set": clips,
        "machine": machine(),
        "seconds": time.monotonic() - started,
        "seconds_per_method": seconds,
        "methods": summarise(raw) if "none" in raw else {},
        "raw": raw,
    }
    write_atomic(out_dir / f"{RESULTS_STEM}.json", json.dumps(report, indent=1) + "\n")
    if report["methods"]:
        write_atomic(out_dir / f"{RESULTS_STEM}.md", markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=20, help="clips per prompt set (split over its prompts)")
    parser.add_argument("--lora-steps", type=int, help="override the LoRA's training steps (smoke runs)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated; 'none' is the baseline"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON and markdown")
    parser.add_argument("--readme", action="store_true", help="also put the table into README.md")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="only rewrite the markdown (and README) from the JSON in --out",
    )
    args = parser.parse_args(argv)
    if args.table_only:
        report = json.loads((args.out / f"{RESULTS_STEM}.json").read_text())
        table = markdown(report)
        write_atomic(args.out / f"{RESULTS_STEM}.md", table)
        if args.readme:
            update_readme(table)
        print(table)
        return 0
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; expected some of {METHODS}")
    base = comfyui_host.prepare_base_directory(HOST_BASE, with_test_nodes=False)
    with comfyui_host.ComfyServer(base, python=sys.executable) as server:
        report = run(server, args.clips, args.lora_steps, methods, args.out)
    if report["methods"]:
        table = markdown(report)
        print(table)
        if args.readme:
            update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
