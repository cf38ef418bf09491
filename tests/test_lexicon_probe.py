"""The lexicon probe (benchmarks/lexicon_probe.py): WordNet read right, vocabularies kept apart, the
whole path at small sizes."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import lexicon_probe as probe  # noqa: E402
from toy_world import text, world  # noqa: E402


def _texts(word: str) -> list[str]:
    return [probe.sense_text(pos, offset, relations=True) for pos, offset in probe.lemma_senses(word)]


def test_wordnet_definitions_are_read_from_the_bundled_data_files():
    # Nouns, adjectives (satellites point to their head: "&"), verbs, and WordNet's exception lists.
    assert _texts("pentagram")[0].startswith("pentacle, pentagram, pentangle: a star with 5 points")
    assert _texts("dice")[0].startswith("die, dice: a small cube with 1 to 6 spots on the six faces")
    assert any(t.startswith("azure, cerulean, sapphire") and t.endswith("; blue") for t in _texts("cerulean"))
    assert _texts("hopping")[0].startswith("hop, skip")  # verb.exc: hopping -> hop
    assert _texts("globules")[0].startswith("globule: a small globe or ball")  # plural rule
    # Examples after the definition are dropped; a word WordNet lacks has no senses.
    assert all('"' not in t for t in _texts("crate"))
    assert probe.lemma_senses("portward") == []


def test_validation_vocabulary_is_disjoint_from_training_and_held_out_words(monkeypatch):
    text.check_vocabularies()
    assert not text.VALIDATION.words() & (text.TRAIN.words() | text.HELD_OUT.words())
    clash = dataclasses.replace(text.VALIDATION, colours={**text.VALIDATION.colours, "red": ("vermilion",)})
    monkeypatch.setattr(text, "VALIDATION", clash)
    with pytest.raises(ValueError, match="'vermilion' overlaps training words \\['vermilion'\\]"):
        text.check_vocabularies()


def test_gloss_features_add_the_mean_of_each_known_word_s_definitions():
    encoder = probe.Encoder()
    prompt = "a vermilion orb hopping"
    plain = probe.features(encoder, [prompt], "minilm")
    glossed = probe.features(encoder, [prompt], "+gloss3")
    assert plain.shape == (1, text.MINILM_DIM) and glossed.shape == (1, 2 * text.MINILM_DIM)
    assert torch.equal(glossed[0, : text.MINILM_DIM], plain[0])
    words = [probe.word_gloss(encoder, w, 3, relations=False) for w in ("vermilion", "orb", "hopping")]
    assert torch.allclose(glossed[0, text.MINILM_DIM :], torch.stack(words).mean(0), atol=1e-6)
    rows, mask = probe.features(encoder, [prompt, "a pearl"], "rows+gloss3")
    assert rows.shape == (2, 4, text.MINILM_DIM) and mask.tolist() == [[True] * 4, [True, True, False, False]]


def test_probe_runs_end_to_end_and_chooses_on_validation_only(tmp_path):
    report = probe.run(tmp_path, train_per_concept=24, judged_per_concept=6, variants=("minilm", "+gloss3"))
    saved = json.loads((tmp_path / f"{probe.RESULTS_STEM}.json").read_text())
    assert saved["chosen_on_validation"] == report["chosen_on_validation"]
    variants = report["variants"]
    assert report["chosen_on_validation"] == max(variants, key=lambda v: variants[v]["validation"])
    assert report["judged_prompts"] == {
        "validation": 6 * len(world.CONCEPTS),
        "held_out": 6 * len(world.CONCEPTS),
    }
    for entry in variants.values():
        assert entry["train_accuracy"] > 0.9  # 192 prompts, 384+ features: separable
        assert 0.0 <= entry["held_out"] <= 1.0 and set(entry["held_out_per_concept"]) == {
            c.identity for c in world.CONCEPTS
        }
    markdown = (tmp_path / f"{probe.RESULTS_STEM}.md").read_text()
    assert "(chosen)" in markdown and "held-out vocabulary" in markdown
