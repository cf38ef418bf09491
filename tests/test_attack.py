"""The prompt attack: erasure.attacks' maths, and UnlearnAttackPrompt on the tiny real-architecture models
(Wan 2.1, HunyuanVideo, HunyuanVideo 1.5, LTX-Video 0.9), in-process (CPU)."""

from __future__ import annotations

import pytest
import torch
from test_train_lora import MODELS, Probe, given_latents, latent, load, one_thread  # noqa: F401  (fixture)

# --- erasure.attacks: pure torch ---------------------------------------------------------------------


def test_project_rows_bounds_each_rows_rms_and_zero_means_unbounded():
    from video_unlearning.erasure.attacks import project_rows

    u = torch.randn(1, 5, 16) * torch.tensor([0.1, 1.0, 3.0, 10.0, 0.5]).reshape(1, 5, 1)
    bounded = project_rows(u, 1.0)
    rms = bounded.pow(2).mean(dim=-1).sqrt().flatten()
    assert torch.all(rms <= 1.0 + 1e-6)
    small = u.pow(2).mean(dim=-1).sqrt().flatten() <= 1.0
    assert torch.equal(bounded[0, small], u[0, small])  # rows inside the bound are not touched
    assert torch.equal(project_rows(u, 0.0), u)


def test_attacked_rows_shift_or_append_in_units_of_the_prompts_rms():
    from video_unlearning.erasure.attacks import AttackSettings, attacked_rows, initial_variable, row_scale

    cond = torch.cat([torch.full((1, 3, 8), 2.0), torch.zeros(1, 2, 8)], dim=1)  # 2 zero padding rows
    assert row_scale(cond) == pytest.approx(2.0)  # padding rows do not count
    u = torch.ones(1, 5, 8)
    assert torch.equal(attacked_rows(cond, u, 2.0, "prompt_embedding"), cond + 2.0)
    soft = AttackSettings(mode="soft_tokens", soft_tokens=3)
    v = initial_variable(cond, soft)
    assert v.shape == (1, 3, 8) and torch.equal(v, initial_variable(cond, soft))  # seeded
    out = attacked_rows(cond, v, 2.0, "soft_tokens")
    assert out.shape == (1, 8, 8) and torch.equal(out[:, :5], cond) and torch.allclose(out[:, 5:], 2.0 * v)
    assert torch.equal(initial_variable(cond, AttackSettings()), torch.zeros(1, 5, 8))


def test_optimise_attack_minimises_and_touches_only_its_variable():
    from video_unlearning.erasure.attacks import AttackSettings, optimise_attack, pgd_step

    target = torch.randn(1, 4, 8)
    other = torch.nn.Parameter(torch.ones(()))  # a parameter the loss also uses (an adapter)
    steps_seen = []

    def loss_at(u, i):
        return ((u * other - target) ** 2).mean()

    u, history = optimise_attack(
        loss_at,
        torch.zeros(1, 4, 8),
        AttackSettings(steps=300, learning_rate=0.05),
        lambda i, v: steps_seen.append(i),
    )
    assert history[-1] < 1e-3 * history[0] and torch.allclose(u, target, atol=0.05)
    assert other.grad is None and steps_seen == list(range(1, 301))
    bounded, _ = optimise_attack(loss_at, torch.zeros(1, 4, 8), AttackSettings(steps=200, max_change=0.1))
    assert float(bounded.pow(2).mean(dim=-1).sqrt().max()) <= 0.1 + 1e-6

    w = torch.zeros(1, 4, 8, requires_grad=True)
    after = pgd_step(((w - target) ** 2).mean(), w, 0.01, 0.0)
    assert torch.equal(after, -0.01 * torch.sign(-target))  # one signed step toward the target
    with pytest.raises(FloatingPointError, match="step 1"):
        optimise_attack(lambda u, i: (u * float("nan")).sum(), torch.zeros(2), AttackSettings(steps=3))
    for bad, match in (
        (dict(steps=0), "steps"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(mode="tokens"), "mode"),
        (dict(mode="soft_tokens", soft_tokens=0), "soft_tokens"),
        (dict(max_change=-1.0), "max_change"),
    ):
        with pytest.raises(ValueError, match=match):
            AttackSettings(**bad).validate()


# --- UnlearnAttackPrompt -------------------------------------------------------------------------------

ATTACK = dict(
    steps=25, learning_rate=0.05, soft_tokens=3, max_change=0.0, seed=0, gradient_checkpointing=True
)


def attack(model, positive, latents, **overrides):
    from video_unlearning.nodes.attack_nodes import UnlearnAttackPrompt

    args = dict(ATTACK, **dict(dict(mode="prompt_embedding"), **overrides))
    with torch.inference_mode():
        return UnlearnAttackPrompt.execute(model=model, positive=positive, latents=latents, **args)


def run_attack(model, positive, latents, **overrides):
    """``attack_nodes.attack_prompt`` itself: its result also carries the losses before and after."""
    from video_unlearning.erasure.attacks import AttackSettings
    from video_unlearning.nodes.attack_nodes import attack_prompt

    args = dict(ATTACK, **dict(dict(mode="prompt_embedding"), **overrides))
    checkpointing = args.pop("gradient_checkpointing")
    with torch.inference_mode():
        return attack_prompt(model, positive, latents, AttackSettings(**args), checkpointing)


def encode(clip, text: str):
    with torch.inference_mode():
        return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def untouched(model, probe: Probe, before, params) -> None:
    dm = model.model.diffusion_model
    assert not model.patches
    assert all(p is params[n] for n, p in dm.named_parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in dm.modules())
    for a, b in zip(before, probe.velocities(model, "nudity"), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("mode", ["prompt_embedding", "soft_tokens"])
def test_attack_lowers_the_denoising_loss_and_never_changes_the_model(comfy, family, mode):
    import comfy.sample

    model, clip = load(MODELS[family])
    probe = Probe(family, clip)
    before = probe.velocities(model, "nudity")
    params = dict(model.model.diffusion_model.named_parameters())
    positive = encode(clip, "a person walking")
    clips = {"samples": given_latents(family, batch=2, generator=torch.Generator().manual_seed(3))}
    result = run_attack(model, positive, clips, mode=mode)
    conditioning, loss_map = result.conditioning, result.loss_map
    print(f"{family} {mode}: {result.summary}")
    # The tiny random models let the text move the velocity only a little: any real decrease counts.
    # The tiny LTX-2 least of all: 1017 of its 1024 context rows are the connectors' random registers,
    # so a prompt moves its velocity by about 0.6 % (tests/test_refusal_nodes.py measures it).
    assert result.loss_after < (0.999 if family == "ltxav" else 0.995) * result.loss_before, result.summary
    assert len(loss_map["loss"]) == ATTACK["steps"] and all(v > 0 for v in loss_map["loss"])
    cond, extras = conditioning[0]
    rows = positive[0][0].shape[1]
    assert cond.shape[1] == rows + (ATTACK["soft_tokens"] if mode == "soft_tokens" else 0)
    assert cond.dtype == positive[0][0].dtype and not cond.requires_grad
    if "attention_mask" in positive[0][1]:
        assert extras["attention_mask"].shape[-1] == cond.shape[1]
        assert torch.all(extras["attention_mask"][..., rows:] == 1)
    assert not torch.equal(cond[:, :rows], positive[0][0]) or mode == "soft_tokens"
    assert torch.equal(positive[0][0], encode(clip, "a person walking")[0][0])  # the input is not changed
    untouched(model, probe, before, params)
    # The attacked conditioning samples with the stock sampler (LTX-2: video and audio together).
    empty = given_latents(family) * 0.0
    with torch.inference_mode():
        noise = comfy.sample.prepare_noise(empty, 0)
        samples = comfy.sample.sample(
            model, noise, 2, 1.0, "euler", "simple", conditioning, encode(clip, ""), empty, seed=0,
            disable_pbar=True,
        )  # fmt: skip
    streams = samples.unbind() if getattr(samples, "is_nested", False) else [samples]
    assert len(streams) == (2 if family == "ltxav" else 1) and all(torch.isfinite(t).all() for t in streams)


def test_attack_differentiates_the_erased_weights_not_the_original_ones(comfy):
    """On a refusal-erased Wan MODEL (low-rank patches), the attack's loss with the plain prompt is the
    erased model's own denoising loss, computed here with ComfyUI's apply_model on the same draws, and
    not the original model's: the attack runs on the erasure it is meant to test."""
    import comfy.model_management

    from video_unlearning.erasure.objectives import denoising_loss
    from video_unlearning.nodes.attack_nodes import EVALUATION_DRAWS, _draw
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalApply, UnlearnRefusalEstimate

    model, clip = load(MODELS["wan"])
    pairs = [("a nude person", "a clothed person"), ("naked woman", "dressed woman"), ("nudity", "clothing")]
    with torch.inference_mode():
        vector = UnlearnRefusalEstimate.execute(
            model=model, clip=clip, preset="custom", name="nudity",
            unsafe_prompts="\n".join(u for u, _ in pairs), safe_prompts="\n".join(s for _, s in pairs),
            neutral_prompts="a cat\na house", rank=2, alpha=10.0,
            probe_steps=2,
        ).result[0]  # fmt: skip
        erased = UnlearnRefusalApply.execute(
            model=model, refusal_vector=vector, strength=20.0, blocks="all"
        ).result[0]
    positive = encode(clip, "a nude person on a beach")
    clips = {"samples": latent("wan", batch=2, generator=torch.Generator().manual_seed(5))}
    result = run_attack(erased, positive, clips, steps=3)

    def own_loss(m) -> float:
        comfy.model_management.load_models_gpu([m])
        generator = torch.Generator().manual_seed(ATTACK["seed"] + 1)
        x0_all = m.model.process_latent_in(clips["samples"].clone())
        total = 0.0
        with torch.inference_mode():
            for _ in range(EVALUATION_DRAWS):
                x0, noise, sigma = _draw(x0_all, m.model.model_sampling, generator, "cpu")
                x_t = (1 - sigma) * x0 + sigma * noise
                denoised = m.model.apply_model(x_t, sigma, c_crossattn=positive[0][0])
                total += float(denoising_loss((x_t - denoised) / sigma, noise - x0))
        return total / EVALUATION_DRAWS

    erased_loss, original_loss = own_loss(erased), own_loss(model)
    print(
        f"plain-prompt loss: attack {result.loss_before:.6g}, erased {erased_loss:.6g}, "
        f"original {original_loss:.6g}"
    )
    assert abs(result.loss_before - erased_loss) < 0.01 * abs(erased_loss - original_loss)


def test_attack_cancel_stops_within_a_step(comfy, monkeypatch):
    import comfy.model_management

    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS["ltxv"])
    probe = Probe("ltxv", clip)
    before = probe.velocities(model, "nudity")
    params = dict(model.model.diffusion_model.named_parameters())
    steps_seen = []

    def progress(payload):
        steps_seen.append(payload["step"])
        assert set(payload) == {"node", "loss", "step", "steps", "elapsed_s", "eta_s"}
        if payload["step"] == 2:
            comfy.model_management.interrupt_current_processing(True)

    monkeypatch.setattr(train_compat, "send_progress", progress)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        attack(model, encode(clip, "nudity"), {"samples": latent("ltxv")}, steps=50)
    comfy.model_management.interrupt_current_processing(False)
    assert steps_seen == [1, 2]
    untouched(model, probe, before, params)


def test_attack_bad_inputs_get_clear_errors(comfy):
    model, clip = load(MODELS["wan"])
    positive = encode(clip, "nudity")
    clips = {"samples": latent("wan")}
    with pytest.raises(ValueError, match="48 channels but this model.s latents have 16"):
        attack(model, positive, {"samples": torch.randn(1, 48, 2, 8, 8)})
    with pytest.raises(ValueError, match="one prompt"):
        attack(model, positive + encode(clip, "a cat"), clips)
    with pytest.raises(ValueError, match="learning_rate"):
        attack(model, positive, clips, learning_rate=float("nan"))
    with pytest.raises(ValueError, match="max_change"):
        attack(model, positive, clips, max_change=float("inf"))


# --- UnlearnTrainLoRA's robust option (adversarial training) --------------------------------------------


@pytest.mark.parametrize("family", ["wan", "hunyuan_video", "ltxv", "ltxav", "kandinsky5", "cogvideox"])
def test_robust_training_trains_and_its_lora_round_trips_through_the_stock_loader(comfy, family):
    """adversarial_steps > 0: the inner attack runs before each step (also through the in-place blocks
    of HunyuanVideo and LTX-Video), the plain prompt keeps its share of the loss beside the attacked
    one (both in the student batch), the LoRA differs from plain training's, and LoraModelLoader gives
    the same model back from it."""
    from comfy_extras.nodes_train import LoraModelLoader
    from test_train_lora import SAMPLED_SIZE, prompts, train

    model, clip = load(MODELS[family])
    concept = prompts(family)[0][:3]
    clips = {"samples": given_latents(family, batch=2, generator=torch.Generator().manual_seed(4))}
    quick = dict(steps=6, gradient_checkpointing=True, **SAMPLED_SIZE.get(family, {}))
    plain = train(model, clip, concept, latents=clips, **quick).result
    robust_out = train(
        model, clip, concept, latents=clips, adversarial_steps=2, adversarial_clean_share=0.5, **quick
    )
    robust = robust_out.result
    assert "adversarial: 2 attack steps" in robust_out.ui["text"][0]
    lora = robust[1]
    assert lora.metadata["adversarial_steps"] == "2" and lora.metadata["adversarial_max_change"] == "1.0"
    assert lora.metadata["adversarial_clean_share"] == "0.5"
    assert all(torch.isfinite(torch.tensor(v)).all() for v in robust[2].values())
    ups = [k for k in lora if k.endswith("lora_up.weight")]
    assert any(not torch.equal(lora[k], plain[1][k]) for k in ups)
    probe = Probe(family, clip)
    with torch.inference_mode():
        stock = LoraModelLoader.execute(model, lora, 1.0).result[0]
    pairs = zip(probe.velocities(stock, concept[0]), probe.velocities(robust[0], concept[0]), strict=True)
    for a, b in pairs:
        assert (a - b).norm() / b.norm() < 1e-5
    assert not model.patches


def test_robust_training_bad_settings_get_clear_errors(comfy):
    from test_train_lora import prompts, train

    model, clip = load(MODELS["wan"])
    for bad in (
        dict(adversarial_steps=-1),
        dict(adversarial_max_change=float("nan")),
        dict(adversarial_clean_share=1.5),
    ):
        with pytest.raises(ValueError, match="adversarial"):
            train(model, clip, prompts("wan")[0][:2], steps=1, **bad)
