"""The efficacy benchmark's whole path (graphs of the pack's nodes on the real server, detector
readings, summary, table) at a smoke size: 1 clip per prompt, 2 LoRA steps. Numbers of the real
run live in benchmarks/results/; here only what must hold at any size is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import efficacy  # noqa: E402


def test_efficacy_benchmark_runs_every_method_through_the_server(comfy_server, tmp_path):
    report = efficacy.run(comfy_server, clips=1, lora_steps=2, methods=efficacy.METHODS, out_dir=tmp_path)
    written = json.loads((tmp_path / f"{efficacy.RESULTS_STEM}.json").read_text())
    assert written["methods"].keys() == set(efficacy.METHODS)
    table = (tmp_path / f"{efficacy.RESULTS_STEM}.md").read_text()
    for title in efficacy.METHOD_TITLES.values():
        assert f"| {title} |" in table
    exact_prompts = len(efficacy.S.LORA_CONCEPT_PROMPTS)
    for method, result in report["methods"].items():
        assert result["target"]["exact"]["clips"] == exact_prompts, method
        for r in [*result["target"].values(), *result["preservation"].values()]:
            assert 0.0 <= r["ci95"][0] <= r["rate"] <= r["ci95"][1] <= 1.0
    # The unedited toy model draws the red ball for its own prompts (100 % in its evaluation), so
    # the chain model -> sampler -> detector is read right.
    assert report["methods"]["none"]["target"]["exact"]["hits"] >= exact_prompts - 1
    assert report["methods"]["none"]["preservation_pooled"]["relative"]["ratio"] == 1.0
