"""The efficacy benchmark's whole path at a smoke size: the baseline, every method on one target
and on three targets at once (the refusal vectors chained through add_to, one LoRA for all three),
through the pack's nodes on the real server; detector readings, summary, goals, table. One clip
batch per prompt, 4 sampling steps, 2 LoRA steps: numbers of the real run live in
benchmarks/results/; here only what must hold at any size is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import efficacy  # noqa: E402

# The benchmark's own copy of the toy world (it runs outside ComfyUI, so not as video_unlearning.*).
text, world = efficacy.text, efficacy.world


def test_efficacy_benchmark_runs_every_method_and_three_targets_at_once(comfy_server, tmp_path):
    target = world.concept_named("green star")
    report = efficacy.run(
        comfy_server,
        targets=(target,),
        clips=1,
        kept_clips=1,
        lora_steps=2,
        sampling_steps=4,
        out_dir=tmp_path,
    )
    written = json.loads((tmp_path / f"{efficacy.RESULTS_STEM}.json").read_text())
    assert written["methods"].keys() == set(efficacy.METHODS) - {"none"}
    table = (tmp_path / f"{efficacy.RESULTS_STEM}.md").read_text()
    for method in ("negative_prompt", "refusal_vector", "unlearning_lora"):
        title = efficacy.METHOD_TITLES[method]
        assert f"| {title} (pooled over targets) |" in table
        assert f"| {title}, red ball + blue cube + yellow star at once |" in table
        result = report["methods"][method]
        assert result["per_target"].keys() == {"green star"}
        assert result["multi"]["exact"]["clips"] == 3 * efficacy.CLIPS_PER_PROMPT
        # Five kept concepts, one prompt of each per set.
        assert result["multi"]["kept_unseen"]["clips"] == 5 * efficacy.CLIPS_PER_PROMPT
        for r in (*result["pooled"].values(), *result["multi"].values()):
            if isinstance(r, dict) and "ci95" in r:
                assert 0.0 <= r["ci95"][0] <= r["rate"] <= r["ci95"][1] <= 1.0
        assert set(result["goals_met"]) == {"exact", "unseen", "preservation"}
    # Judged and given prompts never meet: no prompt a method was given (pairs, neutral / preserve
    # prompts) or the toy model trained on is among the unseen phrasings; the new-word sets hold no
    # training attribute word.
    train_words = text.TRAIN.words()
    given = {
        p
        for g in written["given"].values()
        for p in [*g["neutral"], *(x for pair in g["pairs"] for x in pair)]
    }
    trained = {p for c in world.CONCEPTS for p in text.model_training_prompts(c)}
    for key, prompts in written["judged"].items():
        if "unseen" in key:
            assert not (given | trained) & set(prompts), key
        if key.startswith("new_words:"):
            for prompt in prompts:
                assert not set(prompt.lower().replace(",", " ").replace(":", " ").split()) & train_words
    assert written["understanding"]["new_words"]["clips"] == 8 * efficacy.CLIPS_PER_PROMPT

    # --rerun: only the named job runs; every other job's readings are kept from the report.
    options = dict(targets=(target,), clips=1, kept_clips=1, lora_steps=2, sampling_steps=4, out_dir=tmp_path)
    rerun = efficacy.run(comfy_server, rerun=("unlearning_lora:multi",), **options)
    multi_key = "unlearning_lora:red ball + blue cube + yellow star"
    assert rerun["rerun"] == [multi_key]
    assert list(rerun["raw"]) == list(written["raw"])
    assert {k: v for k, v in rerun["raw"].items() if k != multi_key} == {
        k: v for k, v in written["raw"].items() if k != multi_key
    }
    assert rerun["seconds_per_job"].keys() == written["seconds_per_job"].keys()
    with pytest.raises(ValueError, match="made with other clips; run every job"):
        efficacy.run(comfy_server, rerun=("unlearning_lora:multi",), **dict(options, clips=2))
    with pytest.raises(ValueError, match="'none:all'.* not rerunnable"):
        efficacy.run(comfy_server, rerun=("none:all",), **options)
    with pytest.raises(ValueError, match="'lora:green star'.* not rerunnable"):
        efficacy.run(comfy_server, rerun=("lora:green star",), **options)


def test_a_lora_for_several_concepts_trains_each_one_s_steps_and_clips():
    settings = {
        "sampling": dict(efficacy.S.SAMPLING),
        "refusal": dict(efficacy.S.REFUSAL),
        "lora": dict(efficacy.S.LORA),
    }
    for targets in ((world.concept_named("green star"),), efficacy.S.MULTI_TARGETS):
        job = efficacy.Job("unlearning_lora", targets)
        graph, _ = efficacy.job_graph(job, efficacy.job_sets(targets, 1, 1, efficacy.EVAL_POOL), settings)
        (trainer,) = [n["inputs"] for n in graph.nodes.values() if n["class_type"] == "UnlearnTrainLoRA"]
        assert trainer["steps"] == len(targets) * efficacy.S.LORA["steps"]
        assert trainer["sampled_clips"] == len(targets) * efficacy.S.LORA_SAMPLED_CLIPS
