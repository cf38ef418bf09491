"""The attack benchmark's whole path at a smoke size: every method (no erasure, negative prompt,
refusal vector, unlearning LoRA, robust LoRA) on one target through the pack's nodes on the real
server: the attacker's clips from the original model, UnlearnAttackPrompt, another sampler,
re-injection with ComfyUI's own TrainLoraNode, held-out preservation; summary and table. Numbers of
the real run live in benchmarks/results/; here only what must hold at any size is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import attacks  # noqa: E402


def test_attack_benchmark_runs_every_method_and_condition(comfy_server, tmp_path):
    target = attacks.world.concept_named("green star")
    report = attacks.run(
        comfy_server,
        targets=(target,),
        prompts_per_target=1,
        clips_per_prompt=1,
        kept_clips=1,
        attack_steps=2,
        budgets={"unbounded": 0.0},
        variants={"cfg 7": {"cfg": 7.0}},
        reinjection_steps=(1,),
        lora_steps=2,
        sampling_steps=4,
        out_dir=tmp_path,
    )
    written = json.loads((tmp_path / f"{attacks.RESULTS_STEM}.json").read_text())
    assert written["methods"].keys() == set(attacks.METHODS)
    table = (tmp_path / f"{attacks.RESULTS_STEM}.md").read_text()
    for method in attacks.METHODS:
        assert f"| {attacks.METHOD_TITLES[method]} |" in table
        pooled = report["methods"][method]["pooled"]
        for condition in ("before", "attack:unbounded", "sampler:cfg 7", "reinject:1"):
            r = pooled[condition]
            assert r["clips"] == 1 and 0.0 <= r["ci95"][0] <= r["rate"] <= r["ci95"][1] <= 1.0, condition
        assert report["methods"][method]["steps_to_return"].keys() == {"green star"}
    for method in attacks.KEPT_METHODS:  # seven kept concepts, one prompt of two clips each
        assert report["methods"][method]["pooled"]["kept"]["clips"] == 7 * 2
    assert set(report["methods"]["robust_lora"]["goals_met"]) == {"attack_success", "preservation"}
    # The attacked prompts are unseen phrasings: never given to a method, never in the toy model's training.
    given = {p for pair in attacks.S.refusal_pairs(target) for p in pair} | set(
        attacks.S.neutral_prompts((target,))
    )
    trained = set(attacks.text.model_training_prompts(target))
    assert not (given | trained) & set(written["attacked_prompts"]["green star"])
