"""Refusal-vector maths, LoRA files and presets, without ComfyUI (erasure/ only)."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from video_unlearning.erasure import presets
from video_unlearning.erasure.directions import (
    contrastive_direction,
    orthonormal_basis,
    pool_tokens,
    row_space,
)
from video_unlearning.erasure.edits import (
    edited_weight,
    input_side_factors,
    pair_distance_ratio,
    parse_block_range,
    relative_output_change,
)
from video_unlearning.erasure.lora_format import build_lora, load_lora_file, lora_factors, save_lora_file


def _bag_of_words(width: int, seed: int = 0):
    """Sentences as sets of word vectors that do not depend on context (a trained encoder's concept
    word, idealised): returns (word -> vector)."""
    gen = torch.Generator().manual_seed(seed)
    words = "a an the woman man girl beach room lake forest studio park dog tree car nude on in at of".split()
    return {w: torch.randn(width, generator=gen) + 0.5 for w in words}


def _tokens(vocab, sentence: str) -> torch.Tensor:
    return torch.stack([vocab[w] for w in sentence.split()])


def test_centred_sum_pooling_isolates_an_inserted_word_whatever_the_sentence():
    vocab = _bag_of_words(64)
    ref = torch.stack(list(vocab.values())).mean(0)
    for unsafe, safe in [("a nude woman on a beach", "a woman on a beach"), ("the nude man", "the man")]:
        diff = pool_tokens(_tokens(vocab, unsafe), ref) - pool_tokens(_tokens(vocab, safe), ref)
        torch.testing.assert_close(diff, vocab["nude"] - ref)
    # The plain mean mixes in the rest of the sentence (1/T terms), so the two differences disagree.
    d1 = pool_tokens(_tokens(vocab, "a nude woman on a beach"), ref, "mean") - pool_tokens(
        _tokens(vocab, "a woman on a beach"), ref, "mean"
    )
    d2 = pool_tokens(_tokens(vocab, "the nude man"), ref, "mean") - pool_tokens(
        _tokens(vocab, "the man"), ref, "mean"
    )
    assert torch.nn.functional.cosine_similarity(d1, d2, dim=0) < 0.99
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool_tokens(_tokens(vocab, "a dog"), ref, "max")
    with pytest.raises(ValueError, match="at least one token"):
        pool_tokens(torch.zeros(0, 64), ref)


def test_contrastive_direction_recovers_a_planted_concept_and_suppresses_held_out_pairs():
    """Premise of the method (a concept word encoded alike in every sentence, a real model's width):
    four pairs give a direction that erases held-out pairs and spares the neutral tokens."""
    width = 4096
    vocab = _bag_of_words(width, seed=1)
    ref_words = "a the dog tree car park on in at of".split()
    neutral = torch.stack([vocab[w] for w in ref_words])
    ref = neutral.mean(0)
    est = [
        "a nude woman on a beach",
        "a nude man in a room",
        "the nude girl at a lake",
        "a nude woman in a forest",
    ]
    held = ["the nude man on a lake", "a nude girl in a studio"]

    def diffs(sentences):
        return torch.stack(
            [
                pool_tokens(_tokens(vocab, s), ref) - pool_tokens(_tokens(vocab, s.replace("nude ", "")), ref)
                for s in sentences
            ]
        )

    result = contrastive_direction(diffs(est), neutral, rank=4, alpha=100.0)
    assert result.rank_used == 4 and not result.rank_clamped and result.samples == 4
    q = result.direction[:, None]
    weight = torch.randn(256, width) / width**0.5
    held_diffs = diffs(held)
    ratios = pair_distance_ratio(weight, q, 1.0, held_diffs, torch.zeros_like(held_diffs))
    assert ratios.max() <= 0.2
    assert relative_output_change(weight, None, q, 1.0, neutral) <= 0.02


@pytest.mark.parametrize("width", [256, 5120])  # the tiny models' width, Wan 14B's
def test_default_edit_meets_both_criteria_at_real_width_but_not_at_the_tiny_width(width):
    """Why the tiny models cannot show suppression <= 0.2 and neutral change <= 2 % together (the strict
    xfail in test_refusal_nodes.py): even with context-free words, a neutral token's share along any
    one direction is about 1/sqrt(width). At the defaults (rank 4, alpha 10) with 16 neutral prompts of
    7 words: width 256 changes neutral outputs by ~5 %, width 5120 by ~1.2 %; both suppress held-out
    pairs (ratio ~0.01-0.07)."""
    gen = torch.Generator().manual_seed(0)
    vocab = torch.randn(400, width, generator=gen) + 0.5 * torch.randn(width, generator=gen)
    nude, clothed = vocab[0], vocab[1]

    def words(n: int) -> torch.Tensor:
        return vocab[torch.randint(2, len(vocab), (n,), generator=gen)]

    neutral = torch.cat([words(7) for _ in range(16)])
    ref = neutral.mean(0)

    def pair_diffs(count: int) -> torch.Tensor:
        out = []
        for _ in range(count):
            context = words(6)
            unsafe = pool_tokens(torch.cat([context, nude[None]]), ref)
            out.append(unsafe - pool_tokens(torch.cat([context, clothed[None]]), ref))
        return torch.stack(out)

    q = contrastive_direction(pair_diffs(5), neutral, rank=4, alpha=10.0).direction[:, None]
    weight = torch.randn(width, width, generator=gen) / width**0.5
    held = pair_diffs(4)
    assert pair_distance_ratio(weight, q, 1.0, held, torch.zeros_like(held)).max() <= 0.2
    change = relative_output_change(weight, None, q, 1.0, neutral)
    assert (change <= 0.02) == (width >= 4096), change


def test_contrastive_direction_clamps_rank_and_refuses_identical_pairs():
    gen = torch.Generator().manual_seed(0)
    diffs, neutral = torch.randn(3, 32, generator=gen), torch.randn(20, 32, generator=gen)
    result = contrastive_direction(diffs, neutral, rank=100, alpha=1.0)
    assert (result.rank_requested, result.rank_used, result.rank_clamped) == (100, 3, True)
    assert torch.isclose(result.direction.norm(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="identical"):
        contrastive_direction(torch.zeros(3, 32), neutral, rank=2, alpha=1.0)
    with pytest.raises(ValueError, match="rank must be at least 1"):
        contrastive_direction(diffs, neutral, rank=0, alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        contrastive_direction(diffs, neutral, rank=1, alpha=-1.0)
    with pytest.raises(ValueError, match="do not match"):
        contrastive_direction(diffs, torch.randn(5, 16), rank=1, alpha=1.0)


@pytest.mark.parametrize("samples", [12, 60])  # fewer and more rows than the width: both Gram sides
def test_row_space_gives_orthonormal_coordinates_of_the_rows(samples):
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(samples, 7, generator=g) @ torch.randn(7, 40, generator=g)  # rank 7 in width 40
    coords, lift = row_space(rows)
    basis = rows.double().T @ lift
    assert coords.shape == (samples, 7) and basis.shape == (40, 7)
    torch.testing.assert_close(basis.T @ basis, torch.eye(7, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(coords @ basis.T, rows.double(), atol=1e-5, rtol=1e-5)  # float32 rows


@pytest.mark.parametrize("alpha", [0.0, 1.0, 30.0])
def test_contrastive_direction_equals_the_dense_width_d_computation(alpha):
    """The span-coordinate computation gives the direction of the docstring's D x D formula."""
    g = torch.Generator().manual_seed(4)
    diffs = torch.randn(6, 96, generator=g) + 2 * torch.randn(96, generator=g)
    neutral = torch.randn(50, 96, generator=g) @ torch.randn(96, 96, generator=g) / 10
    c_r = (diffs.T @ diffs).double() / 6
    c_e = (neutral.T @ neutral).double() / 50
    contrast = c_r / c_r.trace() - alpha * c_e / c_e.trace()
    span, singular, _ = torch.linalg.svd(torch.cat([diffs, neutral]).double().T, full_matrices=False)
    span = span[:, singular > singular[0] * 1e-6]
    top = span @ torch.linalg.eigh(span.T @ contrast @ span)[1][:, -4:]
    expected = top @ (top.T @ diffs.double().mean(dim=0))
    expected = (expected / expected.norm()).float()
    got = contrastive_direction(diffs, neutral, rank=4, alpha=alpha).direction
    assert abs(float(got @ expected)) > 1 - 1e-5
    assert float(got @ diffs.mean(dim=0)) > 0


def test_alpha_steers_the_direction_away_from_neutral_activations():
    gen = torch.Generator().manual_seed(3)
    neutral = torch.randn(200, 64, generator=gen) * torch.linspace(3, 0.1, 64)  # neutral energy in early dims
    diffs = torch.randn(6, 64, generator=gen) + 2.0
    energy = [
        float((neutral @ contrastive_direction(diffs, neutral, 3, a).direction).pow(2).mean())
        for a in (0, 1, 10)
    ]
    assert energy[0] > energy[1] > energy[2]


def test_orthonormal_basis_spans_several_concepts_and_rejects_duplicates():
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(3, 40, generator=gen), dim=1)
    q = orthonormal_basis(directions)
    torch.testing.assert_close(q.T @ q, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(q @ (q.T @ directions.T), directions.T, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="same direction"):
        orthonormal_basis(torch.stack([directions[0], -directions[0]]))


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_input_side_edit_is_a_rank_m_lora_that_scales_only_the_concept_component(strength):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 40, generator=gen).to(torch.bfloat16)
    q = orthonormal_basis(torch.randn(2, 40, generator=gen))
    up, down = input_side_factors(weight, q, strength)
    assert up.dtype == down.dtype == torch.float32 and up.shape == (48, 2) and down.shape == (2, 40)
    w = weight.float()
    edited = edited_weight(weight, q, strength)
    torch.testing.assert_close(edited, w + up @ down)
    torch.testing.assert_close(edited @ q, (1 - strength) * (w @ q), atol=1e-4, rtol=1e-4)
    other = torch.randn(40, generator=gen)
    other = other - q @ (q.T @ other)
    torch.testing.assert_close(edited @ other, w @ other, atol=1e-4, rtol=1e-4)
    assert torch.linalg.matrix_rank(edited - w) == 2


def test_block_ranges():
    assert parse_block_range("all", 30) == list(range(30))
    assert parse_block_range(" 0-3, 28,29 ,2", 30) == [0, 1, 2, 3, 28, 29]
    for spec, message in [
        ("0-30", "outside the model: blocks are numbered 0-29"),
        ("31", "outside the model"),
        ("5-2", "runs backwards; write it as '2-5'"),
        ("first", "cannot read 'first'"),
        ("", "empty block selection"),
        ("1,,2", "cannot read ''"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_block_range(spec, 30)


def test_lora_files_round_trip_with_metadata_and_refuse_bad_content(tmp_path):
    gen = torch.Generator().manual_seed(0)
    factors = {"blocks.0.cross_attn.k": (torch.randn(8, 2, generator=gen), torch.randn(2, 6, generator=gen))}
    lora = build_lora(factors, {"method": "refusal_vector", "strength": 1.0})
    assert set(lora) == {
        "diffusion_model.blocks.0.cross_attn.k.lora_up.weight",
        "diffusion_model.blocks.0.cross_attn.k.lora_down.weight",
        "diffusion_model.blocks.0.cross_attn.k.alpha",
    }
    assert lora.metadata == {"method": "refusal_vector", "strength": "1.0"}
    up, down, scale = lora_factors(lora)["blocks.0.cross_attn.k"]
    assert scale == 1.0 and torch.equal(up, factors["blocks.0.cross_attn.k"][0])

    path = save_lora_file(tmp_path / "sub" / "erase.safetensors", lora, lora.metadata)
    assert sorted(p.name for p in path.parent.iterdir()) == ["erase.safetensors"]  # no temporary left
    loaded = load_lora_file(path)
    assert loaded.metadata == lora.metadata
    assert all(torch.equal(loaded[k], lora[k]) for k in lora)

    with pytest.raises(ValueError, match="only .safetensors"):
        load_lora_file(tmp_path / "erase.ckpt")
    with pytest.raises(ValueError, match="written as .safetensors only"):
        save_lora_file(tmp_path / "erase.pt", lora, {})
    broken = dict(lora)
    del broken["diffusion_model.blocks.0.cross_attn.k.lora_down.weight"]
    with pytest.raises(ValueError, match="lacks its lora_down.weight"):
        save_lora_file(tmp_path / "broken.safetensors", broken, {})
    assert not (tmp_path / "broken.safetensors").exists()
    safetensors.torch.save_file(
        {"model.diffusion_model.x.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors")
    )
    with pytest.raises(ValueError, match=r"other.safetensors: 1 key\(s\) are no LoRA entry the pack reads"):
        load_lora_file(tmp_path / "other.safetensors")
    safetensors.torch.save_file(
        {"model.x.lora_up.weight": torch.zeros(2, 1), "model.x.lora_down.weight": torch.zeros(1, 2)},
        str(tmp_path / "other.safetensors"),
    )
    with pytest.raises(ValueError, match="does not start with 'diffusion_model.'"):
        lora_factors(load_lora_file(tmp_path / "other.safetensors"))
    mismatched = {**lora, "diffusion_model.blocks.0.cross_attn.k.lora_down.weight": torch.zeros(3, 6)}
    with pytest.raises(ValueError, match="do not multiply"):
        lora_factors(mismatched)


def test_presets_are_data_files_and_prompt_lists_are_checked():
    names = presets.preset_names()
    assert names[0] == "custom" and {"nudity", "gore_violence", "person"} <= set(names)
    for name in names[1:]:
        data = json.loads((presets.PRESET_DIR / f"{name}.json").read_text())
        assert len(data["pairs"]) >= 5 and all(len(p) == 2 and p[0] != p[1] for p in data["pairs"])
    label, pairs = presets.concept_prompts("person", "Jane Roe", "", "")
    assert label == "Jane Roe" and "a photo of Jane Roe smiling" in [u for u, _ in pairs]
    assert all("{name}" not in u + s for u, s in pairs)
    label, pairs = presets.concept_prompts("nudity", "", "a nude dog", "a dog")
    assert label == "nudity" and pairs[-1] == ("a nude dog", "a dog")
    assert len(presets.prompt_lines(presets.default_neutral_prompts())) >= 8

    with pytest.raises(ValueError, match="needs a person's name"):
        presets.concept_prompts("person", " ", "", "")
    with pytest.raises(ValueError, match="2 unsafe prompt\\(s\\) but 1 safe prompt\\(s\\)"):
        presets.concept_prompts("custom", "", "a\nb", "c")
    with pytest.raises(ValueError, match="no prompts: with preset 'custom'"):
        presets.concept_prompts("custom", "", "\n  \n", "")
    with pytest.raises(ValueError, match="same unsafe and safe prompt"):
        presets.concept_prompts("custom", "", "a dog", "a dog")
    with pytest.raises(ValueError, match="unknown preset 'violence'"):
        presets.concept_prompts("violence", "", "", "")
