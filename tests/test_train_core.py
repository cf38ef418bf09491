"""The unlearning trainer's plain-torch parts: objective, masks, prompt augmentation, adapters."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from video_unlearning.erasure import masks, objectives, prompt_augment, training


@pytest.mark.parametrize("parameterisation", objectives.PARAMETERISATIONS)
def test_a_perfect_denoisers_prediction_is_the_denoising_target(parameterisation):
    """Rectified flow: x_t = (1 - s) x0 + s n and the prediction n - x0; k-diffusion: x_t = x0 + s n
    and the prediction n; the denoising loss of that prediction is 0."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    sigma = torch.tensor([0.25, 0.9] if parameterisation == objectives.FLOW else [0.25, 40.0])
    x_t = objectives.noised_latent(x0, noise, sigma, parameterisation)
    s = sigma.reshape(-1, 1, 1)
    expected = (1 - s) * x0 + s * noise if parameterisation == objectives.FLOW else x0 + s * noise
    torch.testing.assert_close(x_t, expected)
    v = objectives.flow_velocity(x_t, x0, sigma)  # a perfect denoiser
    target = objectives.denoising_target(x0, noise, parameterisation)
    torch.testing.assert_close(target, noise - x0 if parameterisation == objectives.FLOW else noise)
    torch.testing.assert_close(v, target, rtol=1e-5, atol=1e-5)
    assert float(objectives.denoising_loss(v, target)) < 1e-10
    assert float(objectives.denoising_loss(v + 1.0, target)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sigma > 0"):
        objectives.flow_velocity(x_t, x0, torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="unknown parameterisation"):
        objectives.noised_latent(x0, noise, sigma, "ddim")


def test_negative_target_and_losses_follow_the_equations():
    v_e, v_c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    v_neg = objectives.negative_target(v_e, v_c, eta=3.0)
    assert v_neg.tolist() == [1.0 - 3.0 * 2.0, 2.0 - 3.0 * -1.0]
    assert float(objectives.unlearning_loss(v_neg, v_neg)) == 0.0
    assert float(objectives.unlearning_loss(v_neg + 2.0, v_neg)) == pytest.approx(4.0)
    assert float(objectives.preservation_loss(v_c + 1.0, v_c)) == pytest.approx(1.0)
    losses = objectives.combine_losses(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), 5.0, 0.5)
    assert float(losses.total) == pytest.approx(1.0 + 5.0 * 2.0 + 0.5 * 3.0)
    assert losses.as_floats()["localization"] == 2.0


def test_localization_loss_counts_only_the_energy_outside_the_mask():
    out = torch.randn(1, 6, 8)
    energy = objectives.adapter_token_energy(out)
    assert energy.shape == (1, 6)
    torch.testing.assert_close(energy, out.pow(2).mean(-1))
    inside = torch.ones(1, 6)
    assert float(objectives.localization_loss([energy], [inside])) == 0.0
    half = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    expected = (energy[0, 3:].sum() / 6 + energy.mean()) / 2
    got = objectives.localization_loss([energy, energy], [half, torch.zeros(1, 6)])
    torch.testing.assert_close(got, expected)
    # ||o * (1 - M)||^2 with a binary mask equals the masked energy
    direct = (out * (1 - half)[..., None]).pow(2).mean()
    torch.testing.assert_close(objectives.localization_loss([energy], [half]), direct)
    with pytest.raises(ValueError, match="does not match"):
        objectives.localization_loss([energy], [torch.ones(1, 5)])


def test_concept_attention_matches_an_explicit_softmax():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 3, 10, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g)
    bias = torch.zeros(2, 7)
    bias[:, 6] = float("-inf")  # a padding key
    probs = torch.softmax(torch.einsum("bhnd,bhld->bhnl", q, k) / 8**0.5 + bias[:, None, None], dim=-1)
    expected = probs[..., [1, 4]].sum(-1).mean(1)
    got = masks.concept_attention(q, k, [1, 4], key_bias=bias, chunk=3)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="outside"):
        masks.concept_attention(q, k, [7])


def test_concept_mask_is_min_max_normalised_per_frame_then_thresholded():
    a = torch.tensor([[0.0, 1.0, 2.0, 10.0, 10.5, 20.0]])
    normed = masks.per_frame_minmax(a, frames=2)
    torch.testing.assert_close(normed, torch.tensor([[0.0, 0.5, 1.0, 0.0, 0.05, 1.0]]))
    assert masks.concept_mask(a, 2, tau=0.1).tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]]
    assert masks.per_frame_minmax(torch.ones(1, 4), 2).abs().sum() == 0  # constant frame -> zeros
    with pytest.raises(ValueError, match="latent frames"):
        masks.per_frame_minmax(a, frames=4)


def test_concept_tokens_are_found_after_stripping_the_template():
    empty = [100, 101, 1, 0, 0, 0]  # template prefix, end token, padding
    nudity = masks.strip_template([100, 101, 7, 1, 0, 0], empty)
    assert nudity == [7]
    assert masks.strip_template([100, 101, 5, 6, 1, 0], empty) == [5, 6]
    left_padded = [0, 0, 0, 0, 2]  # padding on the left, then the start token (Gemma 3 for LTX-2)
    assert masks.strip_template([0, 0, 0, 2, 651], left_padded) == [651]
    assert masks.strip_template([0, 2, 5, 6], left_padded) == [5, 6]
    assert masks.common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    prompt = [100, 101, 3, 7, 9, 5, 6, 7, 1, 0]
    assert masks.find_concept_positions(prompt, [[7], [5, 6]]) == [3, 5, 6, 7]
    assert masks.find_concept_positions(prompt, [[8]]) == []
    assert masks.concept_words("a nude person") == ["nude", "person"]
    assert masks.concept_words("the") == ["the"]


@pytest.mark.parametrize("style", prompt_augment.STYLES)
def test_prompt_augment_is_deterministic_per_seed_and_differs_across_seeds(style):
    a = prompt_augment.augment_prompts("nudity", 12, style, seed=3)
    assert a == prompt_augment.augment_prompts("nudity", 12, style, seed=3)
    b = prompt_augment.augment_prompts("nudity", 12, style, seed=4)
    assert a != b and len(set(a) - set(b)) >= 6
    assert len(set(a)) == 12
    assert all("nudity" in p.lower() and "\n" not in p for p in a)


def test_prompt_augment_caption_styles_differ_in_length():
    wan = prompt_augment.augment_prompts("a red car", 20, "wan", 0)
    hunyuan = prompt_augment.augment_prompts("a red car", 20, "hunyuan_video", 0)
    assert min(len(p.split()) for p in wan) >= 50  # long, detailed captions
    assert max(len(p.split()) for p in hunyuan) <= 35
    assert all(p.count(". ") <= 1 for p in hunyuan)  # one or two sentences
    assert all(p.count(". ") >= 3 for p in wan)


def test_prompt_augment_rejects_bad_input():
    with pytest.raises(ValueError, match="concept is empty"):
        prompt_augment.augment_prompts("  ", 4, "wan", 0)
    with pytest.raises(ValueError, match="unknown caption style"):
        prompt_augment.augment_prompts("nudity", 4, "sdxl", 0)
    with pytest.raises(ValueError, match="count"):
        prompt_augment.augment_prompts("nudity", 0, "wan", 0)


class _Block(nn.Module):
    """A HunyuanVideo-like block: it updates its input in place after a norm saved it for backward."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8, elementwise_affine=False)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        x += self.proj(self.norm(x))
        return x


def _toy_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(_Block(), _Block())
    model.requires_grad_(False)
    return model


def _adapters(model, marker, rank=2):
    targets = [training.AdapterTarget(f"{i}.proj", str(i), "video") for i in range(2)]
    return training.AdapterSet(dict(model.named_modules()), targets, rank, float(rank), 0, marker)


def test_adapter_hook_adds_the_same_delta_as_a_merged_lora_weight():
    model, marker = _toy_model(), training.MarkedRow()
    adapters = _adapters(model, marker)
    for a in adapters.adapters.values():
        a.up.data.normal_()
    x = torch.randn(3, 5, 8)
    proj = model[0].proj
    adapters.attach()
    try:
        hooked = proj(x)
        adapters.enabled = False
        plain = proj(x)
    finally:
        adapters.detach()
    a = adapters.adapters["0.proj"]
    merged = nn.functional.linear(x, proj.weight + (a.alpha / a.rank) * a.up @ a.down, proj.bias)
    torch.testing.assert_close(hooked, merged, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, proj(x))
    assert not proj._forward_hooks
    up, down = adapters.factors()["0.proj"]
    assert up.shape == (8, 2) and down.shape == (2, 8)
    torch.testing.assert_close(up @ down, (a.alpha / a.rank) * a.up.detach() @ a.down.detach())


@contextlib.contextmanager
def _wrapped_toy(checkpoint: bool):
    """The toy model with its adapters attached and its blocks wrapped as training wraps them;
    yields (model, marker, adapters, input)."""
    model, marker = _toy_model(), training.MarkedRow()
    adapters = _adapters(model, marker)
    capture = training.ConceptMaskCapture(0.1, marker)
    blocks = {str(i): b for i, b in enumerate(model)}
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(6))
    norms = [b.norm for b in model]
    with training.cloned_inputs(norms), training.wrapped_blocks(blocks, capture, marker, checkpoint):
        adapters.attach()
        try:
            yield model, marker, adapters, x
        finally:
            adapters.detach()
    assert all("forward" not in b.__dict__ for b in model)  # the wrappers are gone


def _grads(checkpoint: bool) -> list[torch.Tensor]:
    with _wrapped_toy(checkpoint) as (model, _, adapters, x):
        for a in adapters.adapters.values():
            a.up.data.normal_(generator=torch.Generator().manual_seed(5))
        model(x.clone()).pow(2).mean().backward()
    return [p.grad.clone() for p in adapters.parameters()]


def test_in_place_blocks_train_with_and_without_checkpointing_to_the_same_gradients():
    model = _toy_model()
    x = torch.randn(2, 4, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="inplace"):
        model(x * 1.0).pow(2).mean().backward()  # what the wrappers protect against
    plain, checkpointed = _grads(False), _grads(True)
    assert all(g.abs().sum() > 0 for g in plain)
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b)


class _FunctionalNormBlock(nn.Module):
    """An LTX-Video-like block: functional rms_norm (no module a hook could reach), then in-place
    updates of its input, ``x += ...`` and ``x.addcmul_(...)``; ``in_place=False`` is the same
    function written out of place, the reference."""

    def __init__(self, in_place: bool = True) -> None:
        super().__init__()
        self.attn, self.ff = nn.Linear(8, 8), nn.Linear(8, 8)
        self.in_place, self.calls = in_place, 0

    def forward(self, x):
        self.calls += 1
        norm = nn.functional.rms_norm
        if not self.in_place:
            x = x + self.attn(norm(x, (8,)))
            y = norm(x, (8,))
            return x + self.ff(y) * y
        x += self.attn(norm(x, (8,)))
        y = norm(x, (8,))
        x.addcmul_(self.ff(y), y)
        return x


def _functional_norm_grads(in_place: bool, checkpoint: bool | None) -> tuple[list[torch.Tensor], list[int]]:
    """Adapter gradients of the two-block model; ``checkpoint`` None: blocks not wrapped at all."""
    torch.manual_seed(0)
    model = nn.Sequential(_FunctionalNormBlock(in_place), _FunctionalNormBlock(in_place))
    model.requires_grad_(False)
    marker = training.MarkedRow()
    targets = [training.AdapterTarget(f"{i}.{m}", str(i), "video") for i in range(2) for m in ("attn", "ff")]
    adapters = training.AdapterSet(dict(model.named_modules()), targets, 2, 2.0, 0, marker)
    for a in adapters.adapters.values():
        a.up.data.normal_(generator=torch.Generator().manual_seed(5))
    capture = training.ConceptMaskCapture(0.1, marker)
    blocks = {str(i): b for i, b in enumerate(model)}
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(6))
    wrapped = (
        contextlib.nullcontext()
        if checkpoint is None
        else training.wrapped_blocks(
            blocks, capture, marker, checkpoint, copy_inputs=False, copy_saved_inputs=True
        )
    )
    with wrapped:
        adapters.attach()
        try:
            model(x.clone()).pow(2).mean().backward()
        finally:
            adapters.detach()
    return [p.grad.clone() for p in adapters.parameters()], [b.calls for b in model]


def test_functional_norm_blocks_train_on_saved_copies_with_and_without_checkpointing():
    """Saved copies of the tensors that share the block input's storage make the in-place block
    trainable, with exactly the reference's gradients, and checkpointing still recomputes each block
    (the copies are handed on to the checkpoint's own saved-tensor hooks, not kept instead)."""
    with pytest.raises(RuntimeError, match="inplace"):
        _functional_norm_grads(in_place=True, checkpoint=None)
    reference, _ = _functional_norm_grads(in_place=False, checkpoint=None)
    plain, plain_calls = _functional_norm_grads(in_place=True, checkpoint=False)
    checkpointed, checkpointed_calls = _functional_norm_grads(in_place=True, checkpoint=True)
    assert all(g.abs().sum() > 0 for g in reference)
    assert (plain_calls, checkpointed_calls) == ([1, 1], [2, 2])
    for ref, a, b in zip(reference, plain, checkpointed, strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_checkpoint_recomputation_does_not_record_adapter_energy_again():
    """The energies in the loss come from the first pass; a recomputed block must not replace them
    (the replacement would keep that block's recomputed graph alive until the step ends)."""
    with _wrapped_toy(checkpoint=True) as (model, marker, adapters, x):
        adapters.video_tokens = 4
        marker.row = 1
        out = model(x.clone())
        first = dict(adapters.energy)
        assert set(first) == {"0.proj", "1.proj"}
        (out.pow(2).mean() + sum(e.sum() for e in first.values())).backward()
        marker.row = None
    assert all(adapters.energy[name] is energy for name, energy in first.items())
    assert not marker.recomputing
    assert all(p.grad is not None for p in adapters.parameters())


def test_predict_grouped_batches_equal_signatures_and_marks_the_concept_row():
    marker, seen = training.MarkedRow(), []

    def forward(group):
        seen.append((list(group), marker.row))
        return torch.tensor([[float(ord(p[0]))] for p in group])

    shapes = {"e": 1, "c": 1, "p": 2}
    out = training.predict_grouped(forward, ["e", "c", "p"], shapes.get, marker, "c")
    assert out[:, 0].tolist() == [ord("e"), ord("c"), ord("p")]
    assert seen == [(["e", "c"], 1), (["p"], None)]
    assert marker.row is None


@pytest.mark.parametrize("clean", [0.0, 0.25, 1.0])
def test_robust_step_takes_the_clean_share_of_l_unlearn_on_the_plain_prompt(clean):
    """With an attacked prompt ``a`` of the concept ``c``: ``L_unlearn = (1 - w) || v(a) - v_neg ||^2 +
    w || v(c) - v_neg ||^2`` with v_neg from the frozen model on ``c``; L_pre on the preserve prompt
    whatever the student batch holds."""
    frozen_values = {"": 0.5, "c": 1.0, "p": 3.0}
    student_values = {"c": 2.0, "a": 4.0, "p": 3.5}
    layer = nn.Linear(4, 4)
    adapters = training.AdapterSet(
        {"k": layer}, [training.AdapterTarget("k", "0", "text")], 1, 1.0, 0, training.MarkedRow()
    )
    asked = []

    def predict(prompts, marked):
        values = student_values if adapters.enabled else frozen_values
        asked.append((adapters.enabled, list(prompts), marked))
        return torch.stack([torch.full((1, 3), values[p]) for p in prompts])

    capture = training.ConceptMaskCapture(0.1, training.MarkedRow())
    weights = training.LossWeights(eta=3.0, alpha=5.0, beta=2.0, clean=clean)
    losses = training.unlearning_step(predict, adapters, capture, "", "c", "p", weights, attacked="a")
    v_neg = 0.5 - 3.0 * (1.0 - 0.5)
    expected = (1 - clean) * (4.0 - v_neg) ** 2 + clean * (2.0 - v_neg) ** 2
    assert losses.unlearn.item() == pytest.approx(expected)
    assert losses.preservation.item() == pytest.approx((3.5 - 3.0) ** 2)
    student = [prompts for enabled, prompts, _ in asked if enabled]
    assert student == [["a", "c", "p"] if clean else ["a", "p"]]  # the plain prompt only when it counts
    assert asked[0] == (False, ["", "c", "p"], "c") and all(m == "a" for e, _, m in asked if e)
