"""Efficacy of both erasure methods in the toy world, through the pack's nodes on a real ComfyUI.

    python scripts/dev.py bench efficacy [--quick] [--clips 8] [--kept-clips 2] [--readme]

Starts ComfyUI (CPU) with the pack and the toy world's Wan 2.1 model, and queues one API graph per
job, built from the same nodes users run: UNETLoader + the toy MiniLM text encoder, then

* ``none``: the unedited model (one job, every concept measured);
* ``negative_prompt``: the unedited model, the targets named in the negative prompt;
* ``refusal_vector``: UnlearnRefusalEstimate (chained through ``add_to``, one per target) ->
  UnlearnRefusalApply;
* ``unlearning_lora``: UnlearnTrainLoRA (the node samples its own concept clips);

then CLIPTextEncode + EmptyHunyuanLatentVideo + KSampler per prompt and UnlearnToyWorldDetect.
Jobs: each method erases every concept in turn (8 jobs) and three concepts at once
(``erasure_settings.MULTI_TARGETS``). Settings come from ``toy_world/erasure_settings.py``
(shared with workflow 5 and the demo), the same for every job.

What a method is given and what it is judged on never meet:

* given: the target's pair prompts ("exact") and ``GIVEN_PER_CONCEPT`` training-vocabulary
  phrasings of every kept concept (neutral = preserve prompts);
* judged: the exact prompts (the old, weaker measure), unseen phrasings of the target (sentences
  of the training vocabulary that no method was given and the toy model never trained on), the
  kept concepts' given prompts (the old "given prompts" preservation) and unseen phrasings of every
  kept concept (the honest one). The unedited model is also measured on the held-out vocabulary
  (new words in new sentence shapes, ``text.HELD_OUT``): whether the world understands new words
  at all, which decides whether erasure on new words can be measured in it.

Rates are shares of clips where the detector reads the target's (or kept concept's) coloured
object, with 95 % Wilson intervals, per target and pooled over targets; preservation is also given
relative to the unedited model on the same prompts. Writes benchmarks/results/efficacy_toy_world
.json and .md; ``--readme`` also puts the table into README.md between the efficacy markers.
"""

from __future__ import annotations

import argparse
import functools
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
from graphs import Graph  # noqa: E402
from toy_world import erasure_settings as S  # noqa: E402
from toy_world import text, world  # noqa: E402
from toy_world.detector import wilson_interval  # noqa: E402

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
GOALS = {"exact": 0.10, "unseen": 0.20, "preservation": 0.90, "understanding": 0.90}
CLIPS_PER_PROMPT = 2  # one KSampler batch per prompt
EVAL_POOL = 3  # the held-out draw the benchmark samples (the toy model's own evaluation uses another)
QUICK = {"targets": ("red ball", "green star"), "clips": 4, "kept_clips": 2, "multi": False}  # ~15 min


@dataclass(frozen=True)
class PromptSet:
    """Prompts sampled for one measurement; ``concept`` is what the detector is asked about."""

    kind: str  # "exact", "unseen" (a target), "given", "kept_unseen" (a kept concept), "new_words"
    concept: world.Concept
    prompts: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.concept.identity}"


def _prompts(prompts: list[str] | tuple[str, ...], clips: int) -> tuple[str, ...]:
    """Enough prompts of a set for ``clips`` clips at CLIPS_PER_PROMPT each (cycling when short)."""
    count = max(1, math.ceil(clips / CLIPS_PER_PROMPT))
    return tuple(prompts[i % len(prompts)] for i in range(count))


def _given(targets: tuple[world.Concept, ...]) -> set[str]:
    """Every prompt a job's method is given (pairs and neutral / preserve prompts)."""
    return {p for t in targets for pair in S.refusal_pairs(t) for p in pair} | set(S.neutral_prompts(targets))


@functools.cache
def _given_to_any_job() -> frozenset[str]:
    """Every prompt any single-target job's method is given (the same for every run: computed once)."""
    return frozenset(p for c in world.CONCEPTS for p in _given((c,)))


def _unseen(concept: world.Concept, clips: int, pool: int) -> tuple[str, ...]:
    """Phrasings of ``concept`` no method of any job is given and the toy model never trained on."""
    return _prompts(text.unseen_phrasings(concept, clips, pool, exclude=set(_given_to_any_job())), clips)


def _target_sets(t: world.Concept, clips: int, pool: int) -> list[PromptSet]:
    return [
        PromptSet("exact", t, _prompts(S.exact_prompts((t,)), clips)),
        PromptSet("unseen", t, _unseen(t, clips, pool)),
    ]


def _kept_sets(c: world.Concept, kept_clips: int, pool: int) -> list[PromptSet]:
    return [
        PromptSet("given", c, _prompts(S.given_prompts(c), kept_clips)),
        PromptSet("kept_unseen", c, _unseen(c, kept_clips, pool)),
    ]


def job_sets(targets: tuple[world.Concept, ...], clips: int, kept_clips: int, pool: int) -> list[PromptSet]:
    """What one job samples: each target's exact prompts and unseen phrasings, each kept concept's
    given prompts and unseen phrasings (never among what the method was given)."""
    sets = [s for t in targets for s in _target_sets(t, clips, pool)]
    return sets + [s for c in S.kept_concepts(targets) for s in _kept_sets(c, kept_clips, pool)]


def baseline_sets(
    targets: tuple[world.Concept, ...], clips: int, kept_clips: int, pool: int
) -> list[PromptSet]:
    """The unedited model on every set a job on ``targets`` samples, and on the held-out vocabulary
    (new words in new sentence shapes: what the world can understand at all)."""
    sets = [s for t in targets for s in _target_sets(t, clips, pool)]
    for c in world.CONCEPTS:
        sets += _kept_sets(c, kept_clips, pool)
        sets.append(PromptSet("new_words", c, _prompts(text.held_out_prompts(c, clips, pool), clips)))
    return sets


@dataclass(frozen=True)
class Job:
    method: str
    targets: tuple[world.Concept, ...]

    @property
    def name(self) -> str:
        return " + ".join(t.identity for t in self.targets) if self.targets else "all"


def erased_model(graph: Graph, job: Job, model: str, clip: str, settings: dict, sampling_steps: int) -> str:
    """The node whose output 0 is the MODEL the job samples with."""
    if job.method in ("none", "negative_prompt"):
        return model
    neutral = "\n".join(S.neutral_prompts(job.targets))
    if job.method == "refusal_vector":
        vector = None
        for target in job.targets:
            pairs = S.refusal_pairs(target)
            inputs = dict(
                model=Graph.out(model),
                clip=Graph.out(clip),
                preset="custom",
                name=target.identity,
                unsafe_prompts="\n".join(u for u, _ in pairs),
                safe_prompts="\n".join(s for _, s in pairs),
                neutral_prompts=neutral,
                rank=settings["refusal"]["rank"],
                alpha=settings["refusal"]["alpha"],
                probe_steps=4,
            )
            if vector is not None:
                inputs["add_to"] = Graph.out(vector)
            vector = graph.node("UnlearnRefusalEstimate", **inputs)
        return graph.node(
            "UnlearnRefusalApply",
            model=Graph.out(model),
            refusal_vector=Graph.out(vector),
            strength=settings["refusal"]["strength"],
            blocks=settings["refusal"]["blocks"],
        )
    if job.method == "unlearning_lora":
        # Steps and self-sampled clips per target: each concept gets a one-concept LoRA's updates.
        lora = dict(
            settings["lora"],
            concept=S.concept_words(job.targets),
            steps=settings["lora"]["steps"] * len(job.targets),
        )
        return graph.node(
            "UnlearnTrainLoRA",
            model=Graph.out(model),
            clip=Graph.out(clip),
            concept_prompts="\n".join(S.exact_prompts(job.targets)),
            preserve_prompts=neutral,
            width=S.LATENT["width"],
            height=S.LATENT["height"],
            length=S.LATENT["length"],
            sampling_steps=sampling_steps,
            sampled_clips=S.LORA_SAMPLED_CLIPS * len(job.targets),
            **lora,
        )
    raise ValueError(f"unknown method {job.method!r}; expected one of {METHODS}")


def sample_clips(
    graph: Graph, model: str, positive: str, negative: str, sampling: dict, seed: int, batch: int
) -> str:
    """EmptyHunyuanLatentVideo (the toy world's clip size) + KSampler with ``sampling``: the node of
    ``batch`` clips."""
    latent = graph.node("EmptyHunyuanLatentVideo", **S.LATENT, batch_size=batch)
    return graph.node(
        "KSampler",
        model=Graph.out(model),
        positive=Graph.out(positive),
        negative=Graph.out(negative),
        latent_image=Graph.out(latent),
        seed=seed,
        denoise=1.0,
        **sampling,
    )


def job_graph(job: Job, sets: list[PromptSet], settings: dict):
    """(graph, {detect node id: set key}) for one job."""
    graph = Graph()
    model = graph.node("UNETLoader", unet_name=MODEL_FILE, weight_dtype="default")
    clip = graph.node("UnlearnToyWorldTextEncoder")
    sampling = settings["sampling"]
    sampling_model = erased_model(graph, job, model, clip, settings, sampling["steps"])
    negative_text = S.negative_prompt(job.targets) if job.method == "negative_prompt" else ""
    negative = graph.node("CLIPTextEncode", clip=Graph.out(clip), text=negative_text)
    detects = {}
    for prompt_set in sets:
        for i, prompt in enumerate(prompt_set.prompts):
            positive = graph.node("CLIPTextEncode", clip=Graph.out(clip), text=prompt)
            samples = sample_clips(
                graph, sampling_model, positive, negative, sampling, SEED_BASE + i, CLIPS_PER_PROMPT
            )
            node = graph.node(
                "UnlearnToyWorldDetect", samples=Graph.out(samples), concept=prompt_set.concept.name
            )
            detects[node] = prompt_set.key
    return graph, detects


def rate(hits: int, total: int) -> dict:
    low, high = wilson_interval(hits, total)
    return {"hits": hits, "clips": total, "rate": hits / total if total else 0.0, "ci95": [low, high]}


def count_hits(entry: dict, detects: dict, sets: list[PromptSet]) -> dict[str, dict]:
    """{set key: rate of clips showing the set's concept} from a finished prompt's history."""
    by_key = {s.key: s for s in sets}
    tallies: dict[str, list[int]] = {s.key: [0, 0] for s in sets}
    for node, key in detects.items():
        concept = by_key[key].concept
        for reading in entry["outputs"][node]["detections"]:
            tallies[key][0] += (reading["colour"], reading["shape"]) == (concept.colour, concept.shape)
            tallies[key][1] += 1
    return {key: rate(*tally) for key, tally in tallies.items()}


def pooled(rates: list[dict]) -> dict:
    return rate(sum(r["hits"] for r in rates), sum(r["clips"] for r in rates))


def relative(edited: dict, unedited: dict) -> dict:
    """Edited accuracy over unedited accuracy on the same prompts; the interval is the edited Wilson
    interval scaled by the unedited point estimate (the unedited model's own spread is beside it)."""
    base = unedited["rate"]
    if base == 0:
        return {"ratio": None, "ci95": [None, None]}
    return {"ratio": edited["rate"] / base, "ci95": [edited["ci95"][0] / base, edited["ci95"][1] / base]}


def job_summary(rates: dict[str, dict], targets: tuple[world.Concept, ...], base: dict[str, dict]) -> dict:
    """Target and preservation rates of one job, pooled over its targets and kept concepts."""
    kept = S.kept_concepts(targets)
    out = {}
    for kind in ("exact", "unseen"):
        out[kind] = pooled([rates[f"{kind}:{t.identity}"] for t in targets])
    for kind, name in (("given", "kept_given"), ("kept_unseen", "kept_unseen")):
        edited = pooled([rates[f"{kind}:{c.identity}"] for c in kept])
        unedited = pooled([base[f"{kind}:{c.identity}"] for c in kept])
        out[name] = dict(edited, unedited=unedited, relative=relative(edited, unedited))
    return out


def goals_met(summary: dict) -> dict[str, bool]:
    ratio = summary["kept_unseen"]["relative"]["ratio"]
    return {
        "exact": summary["exact"]["rate"] <= GOALS["exact"],
        "unseen": summary["unseen"]["rate"] <= GOALS["unseen"],
        "preservation": ratio is not None and ratio >= GOALS["preservation"],
    }


def pool_jobs(summaries: list[dict]) -> dict:
    """Pooled over jobs: clips of every job summed, relative to the unedited model on the same sets."""
    out = {k: pooled([s[k] for s in summaries]) for k in ("exact", "unseen")}
    for k in ("kept_given", "kept_unseen"):
        edited = pooled([s[k] for s in summaries])
        unedited = pooled([s[k]["unedited"] for s in summaries])
        out[k] = dict(edited, unedited=unedited, relative=relative(edited, unedited))
    return out


def summarise(raw: dict[str, dict], jobs: list[Job]) -> dict:
    """Per method: each single-target job, the pool over them, the multi-target job; goals."""
    base = raw["none:all"]
    out: dict = {}
    for method in dict.fromkeys(j.method for j in jobs if j.method != "none"):
        singles = {j.name: job_summary(raw[f"{method}:{j.name}"], j.targets, base)
                   for j in jobs if j.method == method and len(j.targets) == 1}  # fmt: skip
        multi = [j for j in jobs if j.method == method and len(j.targets) > 1]
        entry = {"per_target": singles}
        if singles:
            entry["pooled"] = pool_jobs(list(singles.values()))
            entry["goals_met"] = goals_met(entry["pooled"])
        if multi:
            m = multi[0]
            entry["multi"] = dict(job_summary(raw[f"{method}:{m.name}"], m.targets, base), targets=m.name)
            entry["multi"]["goals_met"] = goals_met(entry["multi"])
        out[method] = entry
    return out


def understanding(base: dict[str, dict]) -> dict:
    """The unedited model's accuracy on each vocabulary, pooled over concepts (issue 16, goal 1)."""
    return {
        "exact": pooled([v for k, v in base.items() if k.startswith("exact:")]),
        "unseen_phrasings": pooled([v for k, v in base.items() if k.startswith(("unseen:", "kept_unseen:"))]),
        "new_words": pooled([v for k, v in base.items() if k.startswith("new_words:")]),
    }


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def interval(r: dict) -> str:
    return f"{percent(r['rate'])} ({percent(r['ci95'][0])}-{percent(r['ci95'][1])})"


def _kept(r: dict) -> str:
    return f"{percent(r['relative']['ratio'])} ({percent(r['rate'])} vs {percent(r['unedited']['rate'])})"


def _goals(goals: dict[str, bool]) -> str:
    missed = [k.replace("_", "-") for k, ok in goals.items() if not ok]
    return "met" if not missed else "missed: " + ", ".join(missed)


def markdown(report: dict) -> str:
    u = report["understanding"]
    targets = report["targets"]
    lines = [
        f"Toy world, every concept a target in turn ({len(targets)} erasure(s) per method"
        + (f", plus {report['multi_targets']} at once" if report.get("multi_targets") else "")
        + f"); {report['clips']} clips per target set, {report['kept_clips']} per kept concept and set; "
        "seeds fixed; 95 % Wilson intervals. *Found*: share of clips where the detector still reads the "
        "target (lower is better), for the exact prompts the method was given and for unseen phrasings "
        "(sentences no method was given and the toy model never trained on). *Kept*: detector accuracy "
        "on the other concepts relative to the unedited model on the same prompts (edited vs unedited "
        "accuracy), for the prompts the method was given and for unseen phrasings.",
        "",
        f"The unedited model draws the asked-for concept for {interval(u['exact'])} of exact prompts, "
        f"{interval(u['unseen_phrasings'])} of unseen phrasings and {interval(u['new_words'])} of "
        "wordings in the held-out vocabulary (new colour, object and motion words in new sentence "
        f"shapes; goal at least {percent(GOALS['understanding'])}: "
        + (
            "met"
            if u["new_words"]["rate"] >= GOALS["understanding"]
            else "**missed**, so erasure and preservation on new words cannot be measured in this world"
        )
        + ").",
        "",
        "| method | found: exact | found: unseen | kept: given prompts | kept: unseen | goals |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, r in report["methods"].items():
        if "pooled" in r:
            p = r["pooled"]
            lines.append(
                f"| {METHOD_TITLES[method]} (pooled over targets) | {interval(p['exact'])} | "
                f"{interval(p['unseen'])} | {_kept(p['kept_given'])} | {_kept(p['kept_unseen'])} | "
                f"{_goals(r['goals_met'])} |"
            )
        if "multi" in r:
            m = r["multi"]
            lines.append(
                f"| {METHOD_TITLES[method]}, {m['targets']} at once | {interval(m['exact'])} | "
                f"{interval(m['unseen'])} | {_kept(m['kept_given'])} | {_kept(m['kept_unseen'])} | "
                f"{_goals(m['goals_met'])} |"
            )
    methods = [m for m, r in report["methods"].items() if r.get("per_target")]
    lines += [
        "",
        "Per target, found (exact / unseen) and kept (unseen):",
        "",
        "| target | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
        "| --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for t in targets:
        cells = []
        for m in methods:
            r = report["methods"][m]["per_target"][t]
            cells.append(
                f"{percent(r['exact']['rate'])} / {percent(r['unseen']['rate'])}, "
                f"kept {percent(r['kept_unseen']['relative']['ratio'])}"
            )
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Goals (issue 16), pooled over targets: found in at most {percent(GOALS['exact'])} of clips for "
        f"exact prompts and {percent(GOALS['unseen'])} for unseen phrasings, preservation on unseen "
        "phrasings at "
        f"least {percent(GOALS['preservation'])} of the unedited accuracy. Settings: the same for every "
        "job, chosen on a validation draw of unseen phrasings (pool 5; these results: pool "
        f"{report.get('pool', EVAL_POOL)}), see erasure_settings.py. {report['machine']}; "
        f"{report['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.replace(path)


def update_readme(table: str, start: str = README_START, end: str = README_END) -> None:
    """Put ``table`` into README.md between the markers ``start`` and ``end``."""
    readme = README.read_text()
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the markers {start} / {end}")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    write_atomic(README, f"{head}{start}\n{table}{end}{tail}")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, CPU"


def plan(methods: tuple[str, ...], targets: tuple[world.Concept, ...], multi: bool) -> list[Job]:
    """The jobs: the baseline once, then each method on each target and (``multi``) on three at once."""
    jobs = [Job("none", ())]
    for method in methods:
        if method == "none":
            continue
        jobs += [Job(method, (t,)) for t in targets]
        if multi:
            jobs.append(Job(method, S.MULTI_TARGETS))
    return jobs


def job_key(job: Job) -> str:
    """The job's key in the report's ``raw`` and ``seconds_per_job``: "method:target[ + target...]"."""
    return f"{job.method}:{job.name}"


def _rerun_base(
    out_dir: Path, jobs: list[Job], rerun: tuple[str, ...], options: dict, settings: dict
) -> dict:
    """The report in ``out_dir`` that a ``rerun`` replaces jobs in, checked to have been made with the
    same jobs, options and settings (ValueError naming what differs); with ``rerun_keys`` added.
    ``multi`` in a key stands for the three-at-once targets."""
    multi_name = Job("", S.MULTI_TARGETS).name
    keys = {k.replace(":multi", f":{multi_name}") for k in rerun}
    known = {job_key(j) for j in jobs}
    if "none:all" in keys or keys - known:
        bad = sorted(keys - known | ({"none:all"} & keys))
        raise ValueError(
            f"--rerun: {bad} are not rerunnable jobs; expected some of {sorted(known - {'none:all'})}"
        )
    path = out_dir / f"{RESULTS_STEM}.json"
    if not path.exists():
        raise ValueError(f"--rerun: there is no report to replace jobs in at {path}")
    earlier = json.loads(path.read_text())
    differ = [k for k, v in options.items() if earlier.get(k) != v]
    differ += [
        f"settings.{k}" for k in ("sampling", "refusal", "lora") if earlier["settings"].get(k) != settings[k]
    ]
    if set(earlier["raw"]) != known:
        differ.append("jobs (methods or targets)")
    if differ:
        raise ValueError(f"--rerun: {path} was made with other {', '.join(differ)}; run every job instead")
    return dict(earlier, rerun_keys=keys)


def run(
    server,
    *,
    methods: tuple[str, ...] = METHODS,
    targets: tuple[world.Concept, ...] = world.CONCEPTS,
    multi: bool = True,
    clips: int = 8,
    kept_clips: int = 2,
    lora_steps: int | None = None,
    sampling_steps: int | None = None,
    pool: int = EVAL_POOL,
    overrides: dict[str, dict] | None = None,
    rerun: tuple[str, ...] = (),
    out_dir: Path = RESULTS_DIR,
) -> dict:
    """Run every job on ``server`` (a started ComfyServer whose base has the toy model); write results.

    ``pool``: which seeded draw of unseen phrasings to judge on (EVAL_POOL for results; another
    one, a validation draw, when choosing settings). ``overrides``: {"refusal"|"lora": {key: value}}
    over ``erasure_settings`` (for choosing settings on a validation pool, never on EVAL_POOL).
    ``rerun``: job keys ("unlearning_lora:red ball", "refusal_vector:multi"): only these run, and
    replace theirs in the report already in ``out_dir``, which must have been made with the same
    methods, targets, clips, pool and settings (``_rerun_base``); the other jobs are kept.
    """
    text.check_vocabularies()
    started = time.monotonic()
    jobs = plan(methods, targets, multi)
    overrides = overrides or {}
    settings = {
        "sampling": dict(S.SAMPLING, steps=sampling_steps or S.SAMPLING["steps"]),  # fewer: smoke runs
        "refusal": dict(S.REFUSAL, **overrides.get("refusal", {})),
        "lora": dict(S.LORA, **overrides.get("lora", {}), **({"steps": lora_steps} if lora_steps else {})),
    }
    all_targets = tuple(dict.fromkeys([*targets, *(S.MULTI_TARGETS if multi else ())]))
    raw: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    earlier = None
    if rerun:
        earlier = _rerun_base(
            out_dir, jobs, rerun, dict(pool=pool, clips=clips, kept_clips=kept_clips), settings
        )
        raw = {k: v for k, v in earlier["raw"].items() if k not in earlier["rerun_keys"]}
        seconds = {k: v for k, v in earlier["seconds_per_job"].items() if k not in earlier["rerun_keys"]}
        started -= sum(seconds.values())  # the report's wall time: kept jobs' time plus this run's
    for job in jobs:
        if earlier is not None and job_key(job) not in earlier["rerun_keys"]:
            continue
        sets = (
            baseline_sets(all_targets, clips, kept_clips, pool)
            if job.method == "none"
            else job_sets(job.targets, clips, kept_clips, pool)
        )
        graph, detects = job_graph(job, sets, settings)
        t0 = time.monotonic()
        entry = server.run_prompt(graph.nodes, timeout_s=3600)
        key = job_key(job)
        seconds[key] = time.monotonic() - t0
        raw[key] = count_hits(entry, detects, sets)
        print(f"{key}: {len(graph.nodes)} nodes in {seconds[key]:.0f}s", flush=True)
    report = {
        "targets": [t.identity for t in targets],
        "multi_targets": S.concept_words(S.MULTI_TARGETS) if multi else None,
        "pool": pool,
        "settings": {
            **settings,
            "latent": S.LATENT,
            "lora_sampled_clips_per_target": S.LORA_SAMPLED_CLIPS,
            "lora_steps_per_target": True,  # settings["lora"]["steps"] times the job's targets
            "given_per_concept": S.GIVEN_PER_CONCEPT,
            "how_chosen": (S.__doc__ or "").split("The hyperparameters", 1)[-1].strip(),
        },
        "given": {
            t.identity: {
                "pairs": [list(p) for p in S.refusal_pairs(t)],
                "neutral": list(S.neutral_prompts((t,))),
            }
            for t in targets
        },
        "judged": {s.key: list(s.prompts) for s in baseline_sets(all_targets, clips, kept_clips, pool)},
        "clips": clips,
        "kept_clips": kept_clips,
        "machine": machine(),
        "seconds": time.monotonic() - started,
        "seconds_per_job": seconds,
        "understanding": understanding(raw["none:all"]),
        "methods": summarise(raw, jobs),
        "raw": {k: raw[k] for k in map(job_key, jobs)},
    }
    if earlier is not None:
        report["rerun"] = sorted(earlier["rerun_keys"])
    write_atomic(out_dir / f"{RESULTS_STEM}.json", json.dumps(report, indent=1) + "\n")
    write_atomic(out_dir / f"{RESULTS_STEM}.md", markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK}")
    parser.add_argument("--clips", type=int, default=8, help="clips per target set")
    parser.add_argument("--kept-clips", type=int, default=2, help="clips per kept concept and set")
    parser.add_argument("--lora-steps", type=int, help="override the LoRA's training steps (smoke runs)")
    parser.add_argument("--targets", help="comma-separated concept identities (default: all 8)")
    parser.add_argument("--no-multi", action="store_true", help="skip the three-at-once jobs")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated; 'none' always runs (the baseline)"
    )
    parser.add_argument(
        "--pool", type=int, default=EVAL_POOL, help=f"draw of unseen phrasings (results: {EVAL_POOL})"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="override a setting, e.g. refusal.strength=1.0 (choose settings with --pool other than "
        f"{EVAL_POOL})",
    )
    parser.add_argument(
        "--rerun",
        action="append",
        default=[],
        metavar="METHOD:TARGETS",
        help="run only this job (e.g. unlearning_lora:multi, refusal_vector:red ball) and replace it in "
        "the report in --out, made with the same options",
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
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if method not in ("refusal", "lora") or name not in getattr(S, method.upper()) or not value:
            parser.error(f"--set {item!r}: expected refusal.KEY=VALUE or lora.KEY=VALUE with KEY one of "
                         f"{sorted(S.REFUSAL)} / {sorted(S.LORA)}")  # fmt: skip
        overrides.setdefault(method, {})[name] = json.loads(value) if value[0] in "0123456789-[{tf" else value
    options = dict(
        pool=args.pool,
        overrides=overrides,
        clips=args.clips,
        kept_clips=args.kept_clips,
        lora_steps=args.lora_steps,
        multi=not args.no_multi,
        rerun=tuple(args.rerun),
    )
    names = args.targets.split(",") if args.targets else None
    if args.quick:
        options.update({k: v for k, v in QUICK.items() if k != "targets"})
        names = names or list(QUICK["targets"])
    try:
        targets = tuple(world.concept_named(n) for n in names) if names else world.CONCEPTS
    except KeyError as error:
        parser.error(str(error))
    base = comfyui_host.prepare_base_directory(HOST_BASE, with_test_nodes=False)
    with comfyui_host.ComfyServer(base, python=sys.executable) as server:
        report = run(server, methods=methods, targets=targets, out_dir=args.out, **options)
    table = markdown(report)
    print(table)
    if args.readme:
        update_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
