"""The trainer and ComfyUI's fast kernels: gradients through plain torch ops, only while training.

New ComfyUI (0.8 and later) runs RoPE through comfy_kitchen kernels (``comfy.quant_ops.ck``) that
have no autograd formula unless ``comfy.model_management.in_training`` is set. These tests, on the
tiny real-architecture models in-process, show on every ComfyUI version the suite runs on:

* while UnlearnTrainLoRA trains, every forward pass of the model sees ``in_training`` set and no
  comfy_kitchen kernel is called; afterwards the flag is back, sampling calls the kernels again
  (on versions that have them) and the model's output is bit-identical to before training;
* one training step's LoRA gradients equal a reference computed with every comfy_kitchen entry
  point the model calls replaced by plain torch ops written here (RoPE as a 2x2 rotation of each
  feature pair, LTX-Video's modulated RMS norm as its formula) and the flag left unset, to 1e-5
  relative (the difference's norm over the reference's, over all LoRA tensors; float32 rounding of
  the two RoPE forms is about 1e-6);
* a MODEL under dynamic VRAM (``ModelPatcherDynamic``, which never loads fully) is refused before
  any work, with a message that says what to do.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from test_train_lora import MODELS, PRESERVE, Probe, given_latents, load, settings
from torch.optim.optimizer import register_optimizer_step_pre_hook

BLOCK = {
    "wan": "blocks.0",
    "hunyuan_video": "double_blocks.0",
    "hunyuan_video15": "double_blocks.0",
    "ltxv": "transformer_blocks.0",
    "ltxav": "transformer_blocks.0",
    "kandinsky5": "visual_transformer_blocks.0",
    "cogvideox": "blocks.0",
}
# Families whose RoPE is their own torch code (CogVideoX's apply_rotary_emb), not a comfy_kitchen
# kernel: no kernel runs for them at all.
OWN_ROPE = {"cogvideox"}
CONCEPT_PROMPTS = ["a nude woman on a beach", "nudity in a city street"]
GRADIENT_TOLERANCE = 1e-5


def plain_apply_rope1(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """RoPE with torch ops only: each feature pair (x_2i, x_2i+1) times its 2x2 rotation matrix.

    ``freqs`` [..., n or 1, d/2, 2, 2] is the rotation per position and pair (``comfy.ldm.flux.math
    .rope``'s layout); ``x`` [..., n, d].
    """
    pairs = x.to(freqs.dtype).reshape(*x.shape[:-1], -1, 2, 1)
    if freqs.shape[-4] not in (1, pairs.shape[-4]):
        freqs = freqs[..., : pairs.shape[-4], :, :, :]
    return torch.matmul(freqs, pairs).reshape(x.shape).type_as(x)


def plain_apply_rope(q: torch.Tensor, k: torch.Tensor, freqs: torch.Tensor):
    return plain_apply_rope1(q, freqs), plain_apply_rope1(k, freqs)


def plain_apply_rope_split_half1(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """LTX-2's RoPE with torch ops only: feature j of the first half pairs with feature j of the
    second half, and each pair is multiplied by its 2x2 rotation ``freqs`` [..., d/2, 2, 2]."""
    half = x.shape[-1] // 2
    pairs = torch.stack([x[..., :half], x[..., half:]], dim=-1).to(freqs.dtype).unsqueeze(-1)
    rotated = torch.matmul(freqs, pairs).squeeze(-1)
    return torch.cat([rotated[..., 0], rotated[..., 1]], dim=-1).type_as(x)


def plain_apply_rope_split_half(q: torch.Tensor, k: torch.Tensor, freqs: torch.Tensor):
    return plain_apply_rope_split_half1(q, freqs), plain_apply_rope_split_half1(k, freqs)


def plain_rms_adaln(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """LTX-Video's modulated norm with torch ops only: ``x / rms(x) * (1 + scale) + shift``."""
    rms = x.float().pow(2).mean(dim=-1, keepdim=True).add(eps).sqrt()
    return ((x.float() / rms).type_as(x) * (1 + scale) + shift).type_as(x)


PLAIN_KERNELS = {
    "apply_rope1": plain_apply_rope1,
    "apply_rope": plain_apply_rope,
    "apply_rope_split_half1": plain_apply_rope_split_half1,
    "apply_rope_split_half": plain_apply_rope_split_half,
    "rms_adaln": plain_rms_adaln,
}


class KitchenProxy:
    """Stands in for ``comfy.quant_ops.ck``: counts every kernel called through it (``training_calls``:
    those made while ComfyUI's ``in_training`` flag is set), and runs the real kernel or, where
    ``plain`` says so, the plain torch op instead."""

    def __init__(self, real, plain: dict | None = None) -> None:
        self._real, self._plain, self.calls, self.training_calls = real, plain or {}, Counter(), Counter()

    def __getattr__(self, name: str):
        import comfy.model_management

        target = self._plain.get(name) or getattr(self._real, name)
        if not callable(target):
            return target

        def counted(*args, **kwargs):
            self.calls[name] += 1
            if getattr(comfy.model_management, "in_training", False):
                self.training_calls[name] += 1
            return target(*args, **kwargs)

        return counted


@contextlib.contextmanager
def kitchen(plain: dict | None = None):
    """``comfy.quant_ops.ck`` behind a KitchenProxy (None on versions without comfy_kitchen)."""
    import comfy.quant_ops

    real = getattr(comfy.quant_ops, "ck", None)
    if real is None:
        yield None
        return
    proxy = KitchenProxy(real, plain)
    comfy.quant_ops.ck = proxy
    try:
        yield proxy
    finally:
        comfy.quant_ops.ck = real


@contextlib.contextmanager
def first_step_gradients():
    """Every optimizer's parameter gradients at its first step (a global torch pre-step hook)."""
    seen: list[list[torch.Tensor]] = []

    def hook(optimizer, _args, _kwargs):
        if not seen:
            seen.append([p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]])

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def training_flag_seen(model, family: str):
    """``in_training`` as each forward pass of the model's first block saw it."""
    import comfy.model_management

    flags: list[bool] = []
    block = model.model.diffusion_model.get_submodule(BLOCK[family])
    handle = block.register_forward_pre_hook(
        lambda *_: flags.append(bool(getattr(comfy.model_management, "in_training", False)))
    )
    try:
        yield flags
    finally:
        handle.remove()


def clips(family: str) -> dict:
    """Two fixed concept latents (given, so the trainer samples nothing; LTX-2's with audio)."""
    g = torch.Generator().manual_seed(11)
    return {"samples": given_latents(family, 2, g)}


def one_step(model, clip, family: str, **overrides):
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    args = dict(settings(), **dict(dict(steps=1, rank=4, preservation_weight=1.0), **overrides))
    args.update(concept_prompts="\n".join(CONCEPT_PROMPTS), preserve_prompts="\n".join(PRESERVE))
    with torch.inference_mode():
        return UnlearnTrainLoRA.execute(model=model, clip=clip, latents=clips(family), **args)


def versions_kernels() -> bool:
    import comfy.quant_ops

    return getattr(comfy.quant_ops, "ck", None) is not None


@pytest.mark.parametrize("family", sorted(MODELS))
def test_comfyui_knows_it_trains_for_the_loop_only_and_sampling_after_is_bit_identical(comfy, family):
    import comfy.model_management

    model, clip = load(MODELS[family])
    probe = Probe(family, clip)
    with kitchen() as before_kernels:
        before = probe.velocities(model, "a person")
    with kitchen() as kernels, training_flag_seen(model, family) as flags:
        one_step(model, clip, family, steps=2)
    assert flags, "the model ran no forward pass while training"
    if hasattr(comfy.model_management, "in_training"):  # 0.3.75 has neither the flag nor the kernels
        assert all(flags), f"forward passes while training saw in_training={flags}"
        assert comfy.model_management.in_training is False
    with kitchen() as after_kernels:
        after = probe.velocities(model, "a person")
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)
    if versions_kernels():
        # No kernel while training. LTX-2's text connectors run in the model's extra_conds, which the
        # trainer calls once per prompt before the loop, under no_grad (constants: nothing to
        # differentiate), where the fast kernels are fine: 2 connectors x 5 prompts here.
        assert sum(kernels.training_calls.values()) == 0, f"kernels called while training: {kernels.calls}"
        outside = 2 * (1 + len(CONCEPT_PROMPTS) + len(PRESERVE)) if family == "ltxav" else 0
        assert sum(kernels.calls.values()) == outside, kernels.calls
        if family not in OWN_ROPE:
            assert sum(n for name, n in after_kernels.calls.items() if name.startswith("apply_rope")) > 0
        assert after_kernels.calls == before_kernels.calls  # the same fast path as before training
    print(f"{family}: {len(flags)} training passes with in_training set")


@pytest.mark.parametrize("family", sorted(MODELS))
def test_one_training_step_has_the_gradients_of_plain_torch_ops(comfy, family, monkeypatch):
    from video_unlearning.nodes import train_compat

    model, clip = load(MODELS[family])
    with first_step_gradients() as trained:
        one_step(model, clip, family)
    # The reference: the flag never set, and every kernel the model calls is a plain torch op.
    monkeypatch.setattr(train_compat, "training_mode", contextlib.nullcontext)
    with kitchen(PLAIN_KERNELS) as kernels, first_step_gradients() as reference:
        one_step(model, clip, family)
    if versions_kernels() and family not in OWN_ROPE:  # the reference used them
        assert sum(n for name, n in kernels.calls.items() if name.startswith("apply_rope")) > 0
        assert set(kernels.calls) <= set(PLAIN_KERNELS), kernels.calls
    (got,), (want,) = trained, reference
    assert len(got) == len(want) > 0
    assert any(float(w.abs().max()) > 0 for w in want)
    got_all = torch.cat([g.flatten() for g in got])
    want_all = torch.cat([w.flatten() for w in want])
    relative = float((got_all - want_all).norm() / want_all.norm())
    print(f"{family}: {len(got)} LoRA tensors, relative gradient difference {relative:.2e}")
    assert relative <= GRADIENT_TOLERANCE


def test_plain_rope_equals_comfyuis_rope(comfy):
    """The reference's RoPE is the same function as the model's (on ComfyUI's own frequencies)."""
    from comfy.ldm.flux.math import apply_rope1, rope

    positions = torch.arange(6, dtype=torch.float32)[None]
    freqs = rope(positions, 16, 10000)[:, None]  # [1, 1, n, d/2, 2, 2]
    x = torch.randn(1, 2, 6, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(plain_apply_rope1(x, freqs), apply_rope1(x, freqs), rtol=1e-6, atol=1e-6)


def test_plain_split_half_rope_equals_comfyuis(comfy):
    """The reference's split-half RoPE (LTX-2's) is the model's own: against ComfyUI's kernel, and
    against the plain torch path ComfyUI itself takes while training, on LTX-2's own frequencies."""
    import comfy.model_management
    from comfy.ldm.lightricks import model as lightricks

    if not hasattr(comfy.model_management, "in_training"):
        pytest.skip("this ComfyUI has no training flag and no split-half RoPE kernel")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 6, 2 * 16, generator=g)  # [batch, tokens, heads x head dim]
    angles = torch.randn(1, 2, 6, 8, generator=g)  # [batch, heads, tokens, head dim / 2]
    cos, sin = angles.cos(), angles.sin()
    freqs = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2).transpose(1, 2)
    previous = comfy.model_management.in_training
    try:
        comfy.model_management.in_training = True
        theirs = lightricks.apply_rotary_emb(x, (freqs, True))
    finally:
        comfy.model_management.in_training = previous
    ours = plain_apply_rope_split_half1(x.reshape(1, 6, 2, 16), freqs).reshape(x.shape)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    if versions_kernels():
        kernel = comfy.quant_ops.ck.apply_rope_split_half1(x.reshape(1, 6, 2, 16), freqs).reshape(x.shape)
        torch.testing.assert_close(ours, kernel, rtol=1e-5, atol=1e-5)


def test_a_model_under_dynamic_vram_is_refused_before_any_work(comfy):
    import comfy.model_patcher

    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        pytest.skip("this ComfyUI has no dynamic VRAM (ModelPatcherDynamic came in 0.8)")
    model, clip = load(MODELS["wan"])

    class Streaming(type(model)):
        """The MODEL as ModelPatcherDynamic presents itself (on the CPU ComfyUI never makes one)."""

        def is_dynamic(self):
            return True

    streaming = model.clone()
    streaming.__class__ = Streaming
    with pytest.raises(RuntimeError, match="dynamic VRAM.*--disable-dynamic-vram"):
        one_step(streaming, clip, "wan")
    assert comfy.model_patcher.ModelPatcherDynamic.is_dynamic(streaming)
