"""UnlearnTrainLoRA on the tiny real-architecture Wan 2.1, HunyuanVideo, HunyuanVideo 1.5,
LTX-Video 0.9, LTX-2, Kandinsky 5 and CogVideoX models, in-process (CPU; the last three only on a
ComfyUI that has them).

Models and text encoders load inside torch.inference_mode(), as ComfyUI runs nodes. Velocities are
measured here with the model's own ``apply_model``, not with the trainer's code.
"""

from __future__ import annotations

import functools
import statistics

import pytest
import torch

from fixtures.tiny_models import TINY_MODELS, needs_family
from graphs import schema_defaults
from video_unlearning.erasure import objectives

MODELS = {
    "wan": "tiny_wan21_t2v",
    "hunyuan_video": "tiny_hunyuan_video",
    "hunyuan_video15": "tiny_hunyuan_video15",
    "ltxv": "tiny_ltxv",
    "ltxav": "tiny_ltxav",
    "kandinsky5": "tiny_kandinsky5",
    "cogvideox": "tiny_cogvideox",
}
ARCHITECTURES = {
    "wan": "wan21_t2v",
    "hunyuan_video": "hunyuan_video",
    "hunyuan_video15": "hunyuan_video15",
    "ltxv": "ltxv",
    "ltxav": "ltxav",
    "kandinsky5": "kandinsky5",
    "cogvideox": "cogvideox_t2v",
}
# Self-sampled clip size per family where QUICK's 5 frames of 64 x 64 would be too few tokens:
# LTX-Video's (and LTX-2's) VAE is 8x in time and 32x in space, so 9 frames of 256 x 256 make a
# [2, 8, 8] latent (LTX-2: with 9 audio latents, 9 frames at 25 fps).
SAMPLED_SIZE = {family: dict(width=256, height=256, length=9) for family in ("ltxv", "ltxav")}
# LTX-2's audio latents: 8 channels x 16 frequency bins (fixed by its model); 5 latents for the tests.
AUDIO_LATENT = (1, 8, 5, 16)


def latent(family: str, batch: int = 1, generator=None) -> torch.Tensor:
    """A [batch, C, 2, 8, 8] latent of the family's channel count (HunyuanVideo 1.5: 32, LTX-Video: 128)."""
    channels = TINY_MODELS[MODELS[family]].latent_channels
    return torch.randn(batch, channels, 2, 8, 8, generator=generator)


def given_latents(family: str, batch: int = 1, generator=None):
    """The LATENT samples a user would give: the video latent, and for LTX-2 its audio with it as the
    NestedTensor LTXVConcatAVLatent makes."""
    video = latent(family, batch, generator)
    if family != "ltxav":
        return video
    import comfy.nested_tensor

    audio = torch.randn(batch, *AUDIO_LATENT[1:], generator=generator)
    return comfy.nested_tensor.NestedTensor([video, audio])


def model_latent(family: str, x0: torch.Tensor, generator=None) -> tuple[torch.Tensor, dict]:
    """``x0`` as the sampler hands it to the model, with the ``extra_conds`` inputs that says how:
    LTX-2's video with an audio latent packed after it, and their ``latent_shapes``."""
    if family != "ltxav":
        return x0, {}
    import comfy.utils

    packed, shapes = comfy.utils.pack_latents([x0, torch.randn(AUDIO_LATENT, generator=generator)])
    return packed, {"latent_shapes": shapes}


PRESERVE = ["a person", "a person walking on a beach"]
QUICK = dict(
    steps=30,
    learning_rate=1e-3,
    rank=8,
    preservation_weight=20.0,
    width=64,
    height=64,
    length=5,
    sampling_steps=2,
    sampled_clips=2,
)


@functools.cache
def settings() -> dict:
    """The node's own defaults (eta 3, alpha 5, tau 0.1, attention LoRA, checkpointing, ...) made
    quick: 30 steps at a higher learning rate, rank 8, beta 20, two self-sampled 5-frame 64x64 clips."""
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    return dict(schema_defaults(UnlearnTrainLoRA), **QUICK)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny ops are dominated by thread start-up on a busy 2-core machine: run them on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(name: str):
    import nodes

    from comfy_test_nodes.nodes import TinyTextEncoderLoader

    spec = TINY_MODELS[name]
    with torch.inference_mode():
        model = nodes.UNETLoader().load_unet(spec.filename, "default")[0]
        clip = TinyTextEncoderLoader.execute(spec.text_encoder_file, spec.family).result[0]
    return model, clip


def train(model, clip, concept_prompts, preserve=PRESERVE, latents=None, **overrides):
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    args = dict(settings(), **overrides)
    args.update(concept_prompts="\n".join(concept_prompts), preserve_prompts="\n".join(preserve))
    with torch.inference_mode():
        return UnlearnTrainLoRA.execute(model=model, clip=clip, latents=latents, **args)


class Probe:
    """Velocities v = (x_t - D(x_t)) / sigma of any MODEL at fixed points, for encoded prompts."""

    def __init__(self, family: str, clip, seed: int = 7):
        self.family, self.clip, self._conds = family, clip, {}
        g = torch.Generator().manual_seed(seed)
        x0, self.more = model_latent(family, latent(family, generator=g), g)
        self.points = []
        # CogVideoX is noised as k-diffusion models are (x0 + sigma n), the others as rectified flow.
        kind = objectives.K_DIFFUSION if family == "cogvideox" else objectives.FLOW
        for sigma in (0.4, 0.8):
            noise = torch.randn(x0.shape, generator=g)
            sigma = torch.tensor([sigma])
            self.points.append((objectives.noised_latent(x0, noise, sigma, kind), sigma))

    def cond(self, prompt: str):
        if prompt not in self._conds:
            with torch.inference_mode():
                self._conds[prompt] = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(prompt))[0]
        return self._conds[prompt]

    def velocities(self, model, prompt: str) -> list[torch.Tensor]:
        import comfy.model_management

        cond, extras = self.cond(prompt)
        if self.family in ("hunyuan_video15", "ltxv", "ltxav", "kandinsky5"):  # ComfyUI's own extra_conds:
            # concat channels, byT5 rows (1.5); T5 attention mask and frame rate (LTX-Video); pooled
            # (Kandinsky); LTX-2's text connectors and latent_shapes
            conds = model.model.extra_conds(
                cross_attn=cond, noise=self.points[0][0], device="cpu", **extras, **self.more
            )
            kwargs = {k: v.process_cond(batch_size=1, area=None, device="cpu").cond for k, v in conds.items()}
            cond = kwargs.pop("c_crossattn")
        elif self.family in ("wan", "cogvideox"):
            kwargs = {}
        else:
            kwargs = {"y": extras["pooled_output"], "guidance": torch.tensor([6.0])}
        comfy.model_management.load_models_gpu([model])
        out = []
        with torch.inference_mode():
            for x_t, sigma in self.points:
                denoised = model.model.apply_model(x_t, sigma, c_crossattn=cond, **kwargs)
                out.append(((x_t - denoised) / sigma).float())
        return out


@functools.cache
def prompts(family: str) -> tuple[list[str], list[str]]:
    from video_unlearning.erasure.prompt_augment import augment_prompts
    from video_unlearning.nodes.train_compat import PROMPT_STYLE

    style = PROMPT_STYLE[family]
    return augment_prompts("nudity", 6, style, seed=0), augment_prompts("nudity", 4, style, seed=1)


@pytest.fixture(scope="module")
def trained(comfy):
    """One 30-step run per family (self-sampled latents, gradient checkpointing), shared by tests."""
    runs = {}

    def get(family: str):
        if family not in runs:
            model, clip = load(MODELS[family])
            out = train(model, clip, prompts(family)[0], **SAMPLED_SIZE.get(family, {}))
            runs[family] = dict(base=model, clip=clip, out=out, probe=Probe(family, clip))
        return runs[family]

    return get


def _shift_stats(run, prompt_list):
    """Per prompt and point: (projection of the shift on v_neg - v, |shift|, L before, L after)."""
    probe, base, tuned = run["probe"], run["base"], run["out"].result[0]
    empty = probe.velocities(base, "")
    stats = []
    for prompt in prompt_list:
        before, after = probe.velocities(base, prompt), probe.velocities(tuned, prompt)
        for v, v_t, v_e in zip(before, after, empty, strict=True):
            v_neg = v_e - settings()["eta"] * (v - v_e)
            toward, shift = v_neg - v, v_t - v
            stats.append(
                (
                    float((shift * toward).sum() / toward.norm()),
                    float(shift.norm()),
                    float((v - v_neg).pow(2).mean()),
                    float((v_t - v_neg).pow(2).mean()),
                )
            )
    return stats


@pytest.mark.parametrize("family", sorted(MODELS))
def test_training_lowers_the_unlearning_loss(trained, family):
    """L_unlearn on fixed points (the per-step series is noisy: each step draws prompt, clip, sigma)."""
    run = trained(family)
    loss_map = run["out"].result[2]
    assert set(loss_map) == {"loss", "unlearn", "localization", "preservation"}
    assert all(len(v) == settings()["steps"] for v in loss_map.values())
    assert all(v >= 0 for series in loss_map.values() for v in series)
    stats = _shift_stats(run, prompts(family)[0])
    before, after = statistics.mean(s[2] for s in stats), statistics.mean(s[3] for s in stats)
    print(f"{family}: L_unlearn on the training prompts {before:.4g} -> {after:.4g}")
    assert after < 0.9 * before, (before, after)


@pytest.mark.parametrize("family", sorted(MODELS))
def test_held_out_concept_prompts_move_toward_v_neg_and_preserve_prompts_much_less(trained, family):
    run = trained(family)
    held_out = _shift_stats(run, prompts(family)[1])
    preserved = _shift_stats(run, PRESERVE)
    assert all(s[0] > 0 for s in held_out), held_out  # every shift has a component toward v_neg
    assert statistics.mean(s[3] for s in held_out) < statistics.mean(s[2] for s in held_out)
    concept_shift = statistics.mean(s[1] for s in held_out)
    preserve_shift = statistics.mean(s[1] for s in preserved)
    print(
        f"{family}: held-out L_unlearn {statistics.mean(s[2] for s in held_out):.4g} -> "
        f"{statistics.mean(s[3] for s in held_out):.4g}; |shift| held-out {concept_shift:.4g}, "
        f"preserve {preserve_shift:.4g} (ratio {preserve_shift / concept_shift:.3f})"
    )
    assert preserve_shift < concept_shift / 3, (preserve_shift, concept_shift)


def test_returned_model_is_a_patched_clone_and_input_model_is_untouched(trained):
    run = trained("wan")
    base, tuned = run["base"], run["out"].result[0]
    assert tuned is not base and not base.patches
    assert tuned.model is base.model  # same weights, the LoRA lives in patches
    assert len(tuned.patches) == len(run["out"].result[1]) // 3  # up, down, alpha per module
    fresh, _ = load(MODELS["wan"])
    probe = run["probe"]
    for a, b in zip(probe.velocities(base, "a person"), probe.velocities(fresh, "a person"), strict=True):
        assert torch.equal(a, b)
    dm = base.model.diffusion_model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in dm.modules())
    assert not any("forward" in m.__dict__ for m in dm.modules())


@pytest.mark.parametrize("family", sorted(MODELS))
def test_lora_works_with_stock_lora_model_loader_and_has_fp32_tensors(trained, family):
    from comfy_extras.nodes_train import LoraModelLoader

    run = trained(family)
    lora = run["out"].result[1]
    assert all(t.dtype == torch.float32 for t in lora.values())
    assert lora.metadata["base_architecture"] == ARCHITECTURES[family]
    with torch.inference_mode():
        stock = LoraModelLoader.execute(run["base"], lora, 1.0).result[0]
    for a, b in zip(
        run["probe"].velocities(stock, prompts(family)[1][0]),
        run["probe"].velocities(run["out"].result[0], prompts(family)[1][0]),
        strict=True,
    ):
        assert (a - b).norm() / b.norm() < 1e-5


def test_adapter_hooks_compute_what_the_exported_patch_computes(comfy):
    """The function trained (frozen layer + fp32 adapter through a hook) is the one exported."""
    from video_unlearning.erasure.training import MarkedRow
    from video_unlearning.nodes import comfy_compat, train_compat

    model, clip = load(MODELS["wan"])
    targets = train_compat.adapter_targets(model.model.diffusion_model, "wan", "attention")
    adapters = train_compat.make_adapters(model, targets, 4, 4.0, 0, MarkedRow())
    g = torch.Generator().manual_seed(3)
    for a in adapters.adapters.values():
        a.up.data.copy_(torch.randn(a.up.shape, generator=g) * 0.05)
    probe = Probe("wan", clip)
    patched = comfy_compat.add_lowrank_patches(model, adapters.factors())
    expected = probe.velocities(patched, "nudity on a beach")
    probe.velocities(model, "nudity on a beach")  # load the unpatched weights back
    adapters.attach()
    try:
        hooked = probe.velocities(model, "nudity on a beach")
    finally:
        adapters.detach()
    for a, b in zip(hooked, expected, strict=True):
        assert (a - b).norm() / b.norm() < 1e-5


def _memory_peak(fn):
    """Peak of live CPU tensor memory allocated inside ``fn`` (bytes), from the torch profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = sorted(
        (e for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage),
        key=lambda e: e.time_range.start,
    )
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak, result


def test_training_shares_the_weights_and_stays_within_the_memory_bound(comfy, monkeypatch):
    """No second copy of the weights: the frozen layers that autograd sees share the model's storage,
    and training's peak stays below 0.3 x weights + one forward-backward over a step's prompts."""
    import comfy.model_management
    import nodes

    from video_unlearning.erasure.training import cloned_inputs
    from video_unlearning.nodes import train_compat, train_nodes

    model, clip = load(MODELS["wan"])
    dm = model.model.diffusion_model
    originals = {n: (p, p.data_ptr()) for n, p in dm.named_parameters()}
    weights = sum(p.numel() * p.element_size() for p, _ in originals.values())
    latents = {"samples": torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(0))}

    # One forward-backward over the three prompts of a step, on a normally loaded copy of the model.
    copy = nodes.UNETLoader().load_unet(TINY_MODELS[MODELS["wan"]].filename, "default")[0]
    comfy.model_management.load_models_gpu([copy])
    copy.model.requires_grad_(False)
    with torch.inference_mode():
        conds = [
            clip.encode_from_tokens_scheduled(clip.tokenize(p))[0][0] for p in ("", "nudity", PRESERVE[0])
        ]
    conds = [c.clone() for c in conds]
    x = copy.model.process_latent_in(latents["samples"]).repeat(3, 1, 1, 1, 1).requires_grad_(True)

    def forward_backward():
        denoised = copy.model.apply_model(x, torch.full((3,), 0.5), c_crossattn=torch.cat(conds))
        denoised.pow(2).mean().backward()

    # As the trainer runs it: ComfyUI told it trains (new ComfyUI's RoPE kernels have no backward).
    with (
        train_compat.training_mode(),
        cloned_inputs(train_compat.inplace_updated_norms(copy.model.diffusion_model, "wan")),
    ):
        activations, _ = _memory_peak(forward_backward)

    seen = {}
    real_train, real_loop = train_nodes._train, train_nodes.train_adapters

    def loop(*args, **kwargs):
        seen["during"] = {n: (p, p.data_ptr(), p.is_inference()) for n, p in dm.named_parameters()}
        return real_loop(*args, **kwargs)

    def measured_train(*args, **kwargs):
        peak, result = _memory_peak(lambda: real_train(*args, **kwargs))
        seen["peak"] = peak
        return result

    monkeypatch.setattr(train_nodes, "train_adapters", loop)
    monkeypatch.setattr(train_nodes, "_train", measured_train)
    train(model, clip, ["nudity on a beach"], latents=latents, steps=3, gradient_checkpointing=False)

    during = seen["during"]
    assert set(during) == set(originals)
    for name, (_, ptr) in originals.items():
        alias, alias_ptr, inference = during[name]
        assert alias_ptr == ptr and not inference, name  # same storage, usable by autograd
        assert not alias.requires_grad
    after = {n: p for n, p in dm.named_parameters()}
    assert all(after[n] is p for n, (p, _) in originals.items())  # the originals are back
    print(
        f"weights {weights / 1e6:.2f} MB, forward-backward {activations / 1e6:.2f} MB, training peak "
        f"{seen['peak'] / 1e6:.2f} MB (bound {(0.3 * weights + activations) / 1e6:.2f} MB)"
    )
    assert seen["peak"] < 0.3 * weights + activations, (seen["peak"], weights, activations)


def test_checkpointing_gives_the_same_lora_as_plain_backprop(comfy):
    for family, name in MODELS.items():
        if TINY_MODELS[name].missing_from_comfyui:
            continue
        latents = {"samples": given_latents(family, generator=torch.Generator().manual_seed(1))}
        model, clip = load(name)
        runs = [
            train(model, clip, prompts(family)[0][:2], latents=latents, steps=3, gradient_checkpointing=ckpt)
            for ckpt in (False, True)
        ]
        plain, checkpointed = (r.result[1] for r in runs)
        assert any(v.abs().sum() > 0 for k, v in plain.items() if k.endswith("lora_up.weight"))
        for key in plain:
            torch.testing.assert_close(plain[key], checkpointed[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["hunyuan_video", "ltxv", "ltxav", "kandinsky5"])
def test_bf16_training_keeps_fp32_lora_and_finite_losses(comfy, family):
    model, clip = load(MODELS[family])
    latents = {"samples": latent(family)[:, :, :1]}
    out = train(model, clip, ["nudity on a beach"], latents=latents, steps=2, training_dtype="bf16")
    assert all(t.dtype == torch.float32 for t in out.result[1].values())
    assert all(torch.isfinite(torch.tensor(v)).all() for v in out.result[2].values())
    assert not model.object_patches  # the compute dtype was set on a private clone


def test_cancel_stops_within_a_step_and_leaves_the_model_as_it_was(comfy, monkeypatch):
    import comfy.model_management

    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS["hunyuan_video"])
    probe = Probe("hunyuan_video", clip)
    before = probe.velocities(model, "nudity")
    params = {n: p for n, p in model.model.diffusion_model.named_parameters()}
    steps_seen = []

    def progress(payload):
        steps_seen.append(payload["step"])
        if payload["step"] == 2:
            comfy.model_management.interrupt_current_processing(True)  # what the Cancel button does

    monkeypatch.setattr(train_compat, "send_progress", progress)
    latents = {"samples": torch.randn(1, 16, 1, 8, 8)}
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        train(model, clip, ["nudity"], latents=latents, steps=50)
    assert steps_seen == [1, 2]
    dm = model.model.diffusion_model
    assert all(p is params[n] for n, p in dm.named_parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in dm.modules())
    for a, b in zip(before, probe.velocities(model, "nudity"), strict=True):
        assert torch.equal(a, b)


def _tiny_sd15():
    """A tiny SD1.5 UNet built with ComfyUI's own classes: a model of another family."""
    import comfy.model_patcher
    import comfy.supported_models

    unet = dict(
        model_channels=32, in_channels=4, out_channels=4, num_res_blocks=[1], channel_mult=[1],
        transformer_depth=[0], transformer_depth_output=[0, 0], transformer_depth_middle=-2,
        context_dim=768, num_heads=1, num_head_channels=-1, use_linear_in_transformer=False,
        adm_in_channels=None, use_spatial_transformer=True, image_size=32, dims=2,
    )  # fmt: skip
    base = comfy.supported_models.SD15(unet).get_model({})
    return comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))


def test_bad_inputs_get_clear_errors(comfy):
    model, clip = load(MODELS["wan"])
    _, hunyuan_clip = load(MODELS["hunyuan_video"])
    good = {"samples": torch.randn(1, 16, 1, 8, 8)}
    cases = [
        (dict(steps=0), good, clip, model, "steps must be at least 1"),
        (dict(concept="   "), good, clip, model, "concept is empty"),
        (
            {},
            {"samples": torch.randn(1, 48, 1, 8, 8)},
            clip,
            model,
            "48 channels but this model's latents have 16",
        ),
        ({}, {"samples": torch.randn(1, 16, 8, 8)}, clip, model, r"a video latent is \[batch, 16, frames"),
        ({}, {"samples": torch.randn(1, 16, 2, 7, 8)}, clip, model, "do not fit the model's 1x2x2 patches"),
        ({}, good, clip, _tiny_sd15(), "Train LoRA supports Wan 2.1 .* this MODEL is SD15"),
        ({}, good, hunyuan_clip, model, "not the 'umt5xxl' tokens"),
        (dict(learning_rate=0.0), good, clip, model, "learning_rate must be positive"),
    ]
    for overrides, latents, text_encoder, diffusion_model, message in cases:
        with pytest.raises(ValueError, match=message):
            train(diffusion_model, text_encoder, ["nudity"], latents=latents, **overrides)
    with pytest.raises(ValueError, match="preserve_prompts is empty"):
        train(model, clip, ["nudity"], preserve=[], latents=good)
    dm = model.model.diffusion_model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in dm.modules())


# --- LoRA files: UnlearnSaveLoRA / UnlearnLoadLoRA -----------------------------------------------


def _save(lora, prefix: str) -> str:
    from video_unlearning.nodes.lora_file_nodes import UnlearnSaveLoRA

    return UnlearnSaveLoRA.execute(lora, prefix).result[0]


def _load(model, name: str, strength: float = 1.0):
    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA

    with torch.inference_mode():
        return UnlearnLoadLoRA.execute(model, name, strength).result


@pytest.mark.parametrize("family", sorted(MODELS))
def test_saved_lora_loaded_by_stock_loader_reproduces_the_trained_model(trained, family, host_base):
    import nodes
    import safetensors

    run = trained(family)
    name = _save(run["out"].result[1], f"tests/roundtrip_{family}")
    path = host_base / "models" / "loras" / name
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["method"] == "T2VUnlearning" and metadata["concept"] == "nudity"
    assert metadata["steps"] == "30" and metadata["eta"] == "3.0" and metadata["rank"] == "8"
    assert metadata["base_architecture"] == run["out"].result[1].metadata["base_architecture"]
    assert metadata["pack_version"]
    with torch.inference_mode():
        stock = nodes.LoraLoaderModelOnly().load_lora_model_only(run["base"], name, 1.0)[0]
    ours = _load(run["base"], name)[0]
    probe, tuned = run["probe"], run["out"].result[0]
    for prompt in (prompts(family)[1][0], PRESERVE[0]):
        base_v = probe.velocities(run["base"], prompt)
        for loaded in (stock, ours):
            tuned_v = probe.velocities(tuned, prompt)
            for v, t, b in zip(probe.velocities(loaded, prompt), tuned_v, base_v, strict=True):
                print(f"{family} round trip: relative difference {float((v - t).norm() / t.norm()):.2e}")
                assert (v - t).norm() / t.norm() < 1e-4
                assert (t - b).norm() > 100 * (v - t).norm()  # the LoRA does change the output


def test_save_numbers_files_and_never_overwrites(trained, host_base):
    import safetensors

    lora = trained("hunyuan_video")["out"].result[1]
    first, second = _save(lora, "tests/numbered"), _save(lora, "tests/numbered")
    assert (first, second) == ("tests/numbered_00001_.safetensors", "tests/numbered_00002_.safetensors")
    folder = host_base / "models" / "loras" / "tests"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging files left
    with safetensors.safe_open(str(folder / "numbered_00002_.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(lora)
    with pytest.raises(ValueError, match="inside"):
        _save(lora, "../escaped")


def test_load_lora_refuses_files_for_another_model(trained, host_base):
    import safetensors.torch

    wan, hunyuan = trained("wan"), trained("hunyuan_video")
    wan_lora = wan["out"].result[1]
    wan_name = _save(wan_lora, "tests/wan")
    with pytest.raises(ValueError, match="made for wan21_t2v, but this model is hunyuan_video"):
        _load(hunyuan["base"], wan_name)
    five_b, _ = load("tiny_wan22_5b")
    with pytest.raises(ValueError, match="made for wan21_t2v, but this model is wan22_5b"):
        _load(five_b, wan_name)
    i2v, _ = load("tiny_wan21_i2v")  # fine-tuned from T2V: same blocks, the LoRA applies
    assert len(_load(i2v, wan_name)[0].patches) == len(wan_lora) // 3

    folder = host_base / "models" / "loras" / "tests"
    no_metadata = {k: v for k, v in hunyuan["out"].result[1].items()}
    safetensors.torch.save_file(no_metadata, str(folder / "hunyuan_bare.safetensors"))
    with pytest.raises(ValueError, match=r"0 of \d+ LoRA modules fit this model"):
        _load(wan["base"], "tests/hunyuan_bare.safetensors")

    extra = dict(wan_lora)
    extra["diffusion_model.blocks.9.self_attn.q.lora_up.weight"] = torch.zeros(256, 8)
    extra["diffusion_model.blocks.9.self_attn.q.lora_down.weight"] = torch.zeros(8, 256)
    safetensors.torch.save_file(extra, str(folder / "partial.safetensors"))
    n = len(wan_lora) // 3
    with pytest.raises(
        ValueError, match=rf"{n} of {n + 1} LoRA modules fit.*blocks.9.self_attn.q: no such layer"
    ):
        _load(wan["base"], "tests/partial.safetensors")

    wrong = dict(wan_lora)
    wrong["diffusion_model.blocks.0.self_attn.q.lora_down.weight"] = torch.zeros(8, 128)
    safetensors.torch.save_file(wrong, str(folder / "wrong_shape.safetensors"))
    with pytest.raises(ValueError, match=r"blocks.0.self_attn.q: \(256, 8\) x \(8, 128\) does not fit"):
        _load(wan["base"], "tests/wrong_shape.safetensors")

    torch.save(dict(wan_lora), str(folder / "pickled.ckpt"))
    with pytest.raises(ValueError, match="only .safetensors"):
        _load(wan["base"], "tests/pickled.ckpt")


def test_load_lora_strength_and_metadata(trained):
    import json

    run = trained("wan")
    name = _save(run["out"].result[1], "tests/strength")
    full, metadata = _load(run["base"], name, 1.0)
    half, _ = _load(run["base"], name, 0.5)
    assert json.loads(metadata)["concept"] == "nudity"
    probe, prompt = run["probe"], prompts("wan")[1][1]
    base = probe.velocities(run["base"], prompt)
    for b, f, h in zip(base, probe.velocities(full, prompt), probe.velocities(half, prompt), strict=True):
        # the LoRA is linear in the weights, not the output: half strength moves the output part way
        assert 0.2 < float((h - b).norm() / (f - b).norm()) < 0.8


@pytest.mark.parametrize(
    "name, preset, modules",
    [("tiny_wan22_5b", "attention", 16), ("tiny_wan21_i2v", "attention+ffn", 20)],
)
def test_wan_2_2_5b_and_i2v_train_with_their_own_sampled_latents(comfy, name, preset, modules):
    model, clip = load(name)
    out = train(model, clip, ["nudity on a beach"], steps=2, target_modules=preset, sampled_clips=1)
    lora = out.result[1]
    assert len(lora) == 3 * modules  # up, down, alpha for 8 (+2 ffn) layers in each of 2 blocks
    assert lora.metadata["base_architecture"] == {"tiny_wan22_5b": "wan22_5b"}.get(name, "wan21_i2v")
    assert lora.metadata["target_modules"] == preset
    assert "sampled by the node" in lora.metadata["latents"] and "sampled by the node" in out.ui["text"][0]


@pytest.mark.parametrize("family", sorted(MODELS))
def test_concept_masks_come_from_each_blocks_text_attention(comfy, family):
    """Every block gets a mask from the concept prompt's attention to its concept tokens; for Wan it
    equals the mask computed independently from block 0's cross-attention q and k (LTX-Video: attn2's,
    with the T5 padding keys masked as the model masks them); for the
    HunyuanVideo models, the one from block 0's joint attention, whose text keys are found where
    ComfyUI put them (after the video in ComfyUI 0.3.x's HunyuanVideo, first in newer ComfyUI)."""
    from video_unlearning.erasure import masks
    from video_unlearning.erasure.training import (
        ConceptMaskCapture,
        MarkedRow,
        predict_grouped,
        wrapped_blocks,
    )
    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS[family])
    dm = model.model.diffusion_model
    g = torch.Generator().manual_seed(2)
    x0, more = model_latent(family, latent(family, generator=g), g)
    patch = train_compat.latent_geometry(model)[1]
    tokens = 2 * (8 // patch[1]) * (8 // patch[2])
    calls = []

    def record(func, *args, **kwargs):  # every attention call's q and k, as ComfyUI made them
        calls.append((args[0], args[1]))
        return func(*args, **kwargs)

    model = model.clone()
    model.model_options["transformer_options"] = {"optimized_attention_override": record}
    txt_qkv = {}
    qkv_hook = None
    if family in ("hunyuan_video", "hunyuan_video15"):
        qkv_hook = dm.double_blocks[0].txt_attn.qkv.register_forward_hook(
            lambda m, args, output: txt_qkv.setdefault("out", output)
        )
    elif family == "cogvideox":  # block 0's k projection of the joint sequence
        qkv_hook = dm.blocks[0].k.register_forward_hook(
            lambda m, args, output: txt_qkv.setdefault("out", output)
        )
    with torch.inference_mode(False), torch.no_grad():
        (prompt,) = train_compat.encode_prompts(clip, ["a nudity scene on a beach"], "nudity", family)
        shapes = more.get("latent_shapes")
        train_compat.build_model_inputs(model, [prompt], x0.shape, model.load_device, shapes)
        train_compat.load_for_training(model)
        marker = MarkedRow()
        capture = ConceptMaskCapture(0.1, marker)
        capture.active, capture.concept_index, capture.text_len = True, prompt.concept_rows, prompt.text_len
        capture.video_tokens, capture.frames = tokens, 2
        capture.text_call = train_compat.text_attention_call(family)
        capture.text_first = train_compat.text_first(dm, family)
        velocity = train_compat.VelocityModel(model, {"c": prompt}, capture)
        velocity.x_t, velocity.sigma = x0, torch.tensor([0.6])
        seen = {}
        first = {
            "wan": "blocks.0.cross_attn",
            "ltxv": "transformer_blocks.0.attn2",
            "ltxav": "transformer_blocks.0.attn2",
            "kandinsky5": "visual_transformer_blocks.0.cross_attention",
            "cogvideox": "blocks.0",
        }.get(family, "double_blocks.0")
        hook = dm.get_submodule(first).register_forward_pre_hook(  # copies: LTX-Video updates x in place
            lambda m, args, kwargs: seen.update(args=[a.clone() for a in args], kwargs=kwargs),
            with_kwargs=True,
        )
        try:
            with wrapped_blocks(train_compat.block_modules(dm, family), capture, marker, checkpoint=False):
                predict_grouped(velocity.forward, ["c"], velocity.signature, marker, "c")
        finally:
            hook.remove()
            if qkv_hook is not None:
                qkv_hook.remove()
    # "a nudity ...": the second token (LTX-2: the third row, after Gemma 3's start token)
    row = 2 if family == "ltxav" else 1
    assert prompt.concept_found and prompt.concept_rows == [row]
    assert sorted(capture.masks) == sorted(train_compat.block_modules(dm, family))
    for mask in capture.masks.values():
        assert mask.shape == (1, tokens) and set(mask.unique().tolist()) <= {0.0, 1.0}
        frames = mask.reshape(2, tokens // 2)
        assert (frames.max(dim=1).values == 1).all() and (frames.min(dim=1).values == 0).all()
    if family == "wan":
        x, context = seen["args"][:2]
        attn = dm.blocks[0].cross_attn
        with torch.no_grad():
            q = attn.norm_q(attn.q(x)).reshape(1, 32, 2, 128).transpose(1, 2)
            k = attn.norm_k(attn.k(context)).reshape(1, -1, 2, 128).transpose(1, 2)
            expected = masks.concept_mask(masks.concept_attention(q, k, [1]), 2, 0.1)
        assert torch.equal(capture.masks["blocks.0"], expected)
    elif family == "ltxv":  # attn2: q from the video rows, k from the projected T5 context, 32 heads of 8
        x, context = seen["args"][0], seen["kwargs"]["context"]
        attn = dm.transformer_blocks[0].attn2
        real = prompt.conds["attention_mask"].reshape(1, -1).bool()
        assert 0 < int(real.sum()) < prompt.text_len  # T5 pads to 128 tokens: the mask must count
        bias = torch.zeros(real.shape).masked_fill(~real, float("-inf"))
        with torch.no_grad():
            q = attn.q_norm(attn.to_q(x)).reshape(1, tokens, 32, 8).transpose(1, 2)
            k = attn.k_norm(attn.to_k(context)).reshape(1, -1, 32, 8).transpose(1, 2)
            expected = masks.concept_mask(masks.concept_attention(q, k, [1], bias), 2, 0.1)
            unmasked = masks.concept_mask(masks.concept_attention(q, k, [1]), 2, 0.1)
        assert torch.equal(capture.masks["transformer_blocks.0"], expected)
        print(
            f"ltxv block 0 mask: {int(expected.sum())} of {tokens} tokens; without the T5 mask "
            f"{int((unmasked != expected).sum())} differ"
        )
    elif family == "ltxav":  # attn2 (the block's second call): q from the video rows, k from the
        # projected connector rows (the prompt's, then the registers: 1024), 32 heads of 8, no mask
        x, context = seen["args"][0], seen["kwargs"]["context"]
        attn = dm.transformer_blocks[0].attn2
        assert prompt.text_len == context.shape[1] == 1024 and len(calls) == 2 * 6  # 6 calls a block
        with torch.no_grad():
            q = attn.q_norm(attn.to_q(x)).reshape(1, tokens, 32, 8).transpose(1, 2)
            k = attn.k_norm(attn.to_k(context)).reshape(1, -1, 32, 8).transpose(1, 2)
            expected = masks.concept_mask(masks.concept_attention(q, k, [row]), 2, 0.1)
        assert torch.equal(capture.masks["transformer_blocks.0"], expected)
        # the block's last call (video-to-audio) would not do: its keys are the video tokens
        assert calls[5][1].shape[1] == tokens
    elif family == "kandinsky5":  # cross_attention: q from the video rows, k from the text blocks' output
        x, context = seen["args"][:2]
        attn = dm.visual_transformer_blocks[0].cross_attention
        heads = attn.num_heads
        with torch.no_grad():
            q = attn.query_norm(attn.to_query(x).reshape(1, tokens, heads, -1)).transpose(1, 2)
            k = attn.key_norm(attn.to_key(context).reshape(1, context.shape[1], heads, -1)).transpose(1, 2)
            expected = masks.concept_mask(masks.concept_attention(q, k, [1]), 2, 0.1)
        assert context.shape[1] == prompt.text_len
        assert torch.equal(capture.masks["visual_transformer_blocks.0"], expected)
    elif family == "cogvideox":  # joint [text, video] attention: the 226 T5 rows first, no RoPE on them
        n_text, block = prompt.text_len, dm.blocks[0]
        q, k = (t.reshape(1, -1, block.num_heads, block.head_dim).transpose(1, 2) for t in calls[0])
        assert n_text == 226 and k.shape[2] == tokens + n_text
        with torch.no_grad():
            raw = txt_qkv["out"][:, :n_text].reshape(1, n_text, block.num_heads, -1)
            text_k = block.norm_k(raw).transpose(1, 2)
            expected = masks.concept_mask(
                masks.concept_attention(q[:, :, n_text:], k[:, :, :n_text], [1]), 2, 0.1
            )
        assert torch.allclose(k[:, :, :n_text], text_k, atol=1e-5)
        assert torch.equal(capture.masks["blocks.0"], expected)
    else:
        n_text = prompt.text_len
        q, k = next((q, k) for q, k in calls if k.shape[2] == tokens + n_text)  # double block 0
        block = dm.double_blocks[0]
        with torch.no_grad():  # the text keys: qkv, then the q/k norm (text positions are 0: no RoPE)
            raw = txt_qkv["out"].view(1, n_text, 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
            text_k = block.txt_attn.norm(raw[0], raw[1], raw[2])[1]
        starts = [s for s in (0, tokens) if torch.allclose(k[:, :, s : s + n_text], text_k, atol=1e-5)]
        assert starts == [0 if train_compat.text_first(dm, family) else tokens], starts
        video = slice(n_text, None) if starts == [0] else slice(0, tokens)
        text = slice(starts[0], starts[0] + n_text)
        expected = masks.concept_mask(masks.concept_attention(q[:, :, video], k[:, :, text], [1]), 2, 0.1)
        assert torch.equal(capture.masks["double_blocks.0"], expected)


def test_hunyuan15_quoted_text_puts_byt5_rows_ahead_of_the_concept_tokens(comfy):
    """A HunyuanVideo 1.5 prompt with quoted text has byT5 glyph rows before its Qwen rows in the
    text stream: the concept's rows and the text length count in that stream, and training runs."""
    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS["hunyuan_video15"])
    quoted = 'nudity on a beach, a sign reading "hello"'
    x0 = latent("hunyuan_video15")
    with torch.inference_mode(False), torch.no_grad():
        plain, glyphs = train_compat.encode_prompts(
            clip, [quoted.replace('"', ""), quoted], "nudity", "hunyuan_video15"
        )
        train_compat.build_model_inputs(model, [plain, glyphs], x0.shape, model.load_device)
    byt5_rows = glyphs.conds["txt_byt5"].shape[1]
    assert "txt_byt5" not in plain.conds and byt5_rows > 0
    assert (plain.concept_rows, plain.stream_prefix) == ([0], 0)
    assert (glyphs.concept_rows, glyphs.stream_prefix) == ([byt5_rows], byt5_rows)
    assert glyphs.text_len == plain.text_len + 2 + byt5_rows  # the two quote marks are Qwen tokens too
    out = train(model, clip, [quoted], steps=2, rank=4, sampled_clips=1)
    assert all(torch.isfinite(torch.tensor(v)).all() for v in out.result[2].values())


def test_ltxv_samples_its_own_clips_at_its_vae_geometry_and_needs_the_saved_copies(comfy, monkeypatch):
    """LTX-Video: self-sampled clips have EmptyLTXVLatentVideo's shape (128 channels, 8x in time
    after the first frame, 32x in space) and are sampled at the template's cfg 3; its blocks update
    x in place after functional rms_norm saved it, so without the trainer's saved copies the
    backward pass fails (with or without checkpointing), and with them it trains."""
    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS["ltxv"])
    seen = []
    sample = train_compat.sample_concept_latents

    def recording(model, conditionings, negative, shapes, steps, cfg, seed):
        seen.append(([list(s) for s in shapes], cfg, len(conditionings)))
        return sample(model, conditionings, negative, shapes, steps, cfg, seed)

    monkeypatch.setattr(train_compat, "sample_concept_latents", recording)
    sizes = dict(width=256, height=192, length=17, sampled_clips=1)
    out = train(model, clip, ["nudity on a beach"], steps=2, rank=4, **sizes)
    assert seen == [([[1, 128, 3, 6, 8]], 3.0, 1)]
    assert all(torch.isfinite(torch.tensor(v)).all() for v in out.result[2].values())
    monkeypatch.setattr(train_compat, "saves_inputs_updated_in_place", lambda family: False)
    latents = {"samples": latent("ltxv")}
    for checkpointing in (False, True):
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            train(
                model,
                clip,
                ["nudity on a beach"],
                latents=latents,
                steps=1,
                gradient_checkpointing=checkpointing,
            )


@needs_family("ltxav")
def test_ltxav_latents_are_checked_stream_by_stream(comfy):
    """LTX-2's LATENT may hold its video and audio (a NestedTensor); a wrong audio stream, a clip
    count that differs between the streams, or video + audio given to a video-only model is refused
    with a message naming it, before any work. Self-sampled clips come with their audio: 9 frames at
    25 fps are 9 audio latents of 8 channels x 16 bins."""
    import comfy.nested_tensor

    from video_unlearning.nodes import train_compat

    nested = comfy.nested_tensor.NestedTensor
    model, clip = load(MODELS["ltxav"])
    video = latent("ltxav", batch=2)
    cases = {
        "audio latents have shape \\[2, 4, 5, 16\\]; this model's are \\[batch, 8, latents, 16\\]": nested(
            [video, torch.randn(2, 4, 5, 16)]
        ),
        "2 video clips but 1 audio clips": nested([video, torch.randn(1, 8, 5, 16)]),
        "hold 3 streams": nested([video, torch.randn(2, 8, 5, 16), torch.randn(2, 8, 5, 16)]),
    }
    for message, samples in cases.items():
        with pytest.raises(ValueError, match=message):
            train(model, clip, ["nudity"], latents={"samples": samples}, steps=1)
    wan, wan_clip = load(MODELS["wan"])
    with pytest.raises(ValueError, match="this model takes one video latent"):
        train(wan, wan_clip, ["nudity"], latents={"samples": given_latents("ltxav")}, steps=1)
    assert train_compat.audio_latent_shape(model, 9) == (1, 8, 9, 16)
    assert train_compat.audio_latent_shape(model, 97) == (1, 8, 97, 16)  # LTXVEmptyLatentAudio's 97 at 25 fps
