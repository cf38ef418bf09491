"""The pack's Wan 2.1 LoRAs (the refusal edit and a trained unlearning LoRA) work in diffusers.

A tiny diffusers ``WanTransformer3DModel`` gets exactly the tiny ComfyUI Wan 2.1 model's weights
(diffusers' own single-file conversion of the original Wan names, which ComfyUI keeps); the file the
pack saves is loaded with diffusers' ``WanLoraLoaderMixin`` (what ``WanPipeline.load_lora_weights``
runs, PEFT underneath), and the change it makes to diffusers' output is compared with the change
ComfyUI's own loader (LoraLoaderModelOnly) makes to ComfyUI's output, same inputs, float32.

diffusers and peft are test dependencies only (scripts/requirements-dev.txt).
"""

from __future__ import annotations

import copy
import functools
import logging

import pytest
import torch

from fixtures.tiny_models import TINY_MODELS

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")

NAME = "tiny_wan21_t2v"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def comfy_model():
    import nodes

    with torch.inference_mode():
        return nodes.UNETLoader().load_unet(TINY_MODELS[NAME].filename, "default")[0]


def comfy_weights(patcher) -> dict[str, torch.Tensor]:
    """The diffusion model's state dict as ``patcher`` computes it (its patches applied), CPU."""
    from video_unlearning.nodes import comfy_compat

    dm = patcher.model.diffusion_model
    sd = {k: v.detach().to("cpu", copy=True) for k, v in dm.state_dict().items()}
    patched = [k[len("diffusion_model.") : -len(".weight")] for k in patcher.patches]
    for module, (weight, _bias) in comfy_compat.current_weights(patcher, patched).items():
        sd[f"{module}.weight"] = weight.to(sd[f"{module}.weight"].dtype)
    return sd


def comfy_output(patcher, inputs) -> torch.Tensor:
    """ComfyUI's WanModel forward on a float32 copy carrying ``patcher``'s weights (float32: newer
    ComfyUI's RoPE kernels take nothing wider)."""
    dm = copy.deepcopy(patcher.model.diffusion_model).float()
    dm.load_state_dict({k: v.float() for k, v in comfy_weights(patcher).items()})
    x, t, context = inputs
    with torch.no_grad():
        return dm(x, t, context)


@functools.cache
def diffusers_config() -> dict:
    dm = comfy_model().model.diffusion_model
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=dm.num_heads,
        attention_head_dim=dm.dim // dm.num_heads,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=dm.freq_dim,
        ffn_dim=dm.ffn_dim,
        num_layers=len(dm.blocks),
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    )


def diffusers_model():
    """A fresh diffusers WanTransformer3DModel with the ComfyUI model's weights, float32."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    transformer = WanTransformer3DModel(**diffusers_config())
    converted = convert_wan_transformer_to_diffusers(comfy_weights(comfy_model()))
    transformer.load_state_dict(converted, strict=True)
    return transformer.float().eval()


def diffusers_output(transformer, inputs) -> torch.Tensor:
    x, t, context = inputs
    with torch.no_grad():
        return transformer(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]


def load_in_diffusers(transformer, path) -> int:
    """Load the LoRA file as WanPipeline.load_lora_weights does; returns the LoRA layers injected."""
    from diffusers.loaders import WanLoraLoaderMixin

    state = WanLoraLoaderMixin.lora_state_dict(str(path))
    WanLoraLoaderMixin.load_lora_into_transformer(state, transformer=transformer, adapter_name="unlearning")
    return sum(1 for m in transformer.modules() if hasattr(m, "lora_A") and "unlearning" in m.lora_A)


@functools.cache
def inputs(timestep: float = 0.0):
    """Latent, timestep and text context. At timestep 0 the sinusoidal time embedding is exact (sin 0,
    cos 1); elsewhere ComfyUI and diffusers each round it to float32 at a different point, which alone
    moves the output by 5e-6 of its size, nearly all that a 1e-4 check of a 6 % change allows."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 16, 3, 8, 8, generator=g)
    context = torch.randn(1, 12, 4096, generator=g)
    return x, torch.tensor([timestep]), context


@pytest.mark.parametrize("timestep, tolerance", [(0.0, 1e-6), (700.0, 2e-5)])
def test_the_diffusers_twin_computes_what_the_comfyui_model_computes(comfy, timestep, tolerance):
    ours = comfy_output(comfy_model(), inputs(timestep))
    theirs = diffusers_output(diffusers_model(), inputs(timestep))
    print(f"timestep {timestep}: diffusers vs ComfyUI {float((ours - theirs).norm() / ours.norm()):.2e}")
    assert float((ours - theirs).norm() / ours.norm()) < tolerance


def refusal_lora():
    from test_refusal_nodes import estimate, load_clip

    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalApply

    with torch.inference_mode():
        vector, _ = estimate(comfy_model(), load_clip(NAME))
        return UnlearnRefusalApply.execute(comfy_model(), vector, 1.0, "all").result[1]


def trained_lora():
    from test_train_lora import train

    with torch.inference_mode():
        out = train(
            comfy_model(),
            load_clip_for_training(),
            ["a nude woman on a beach", "a nude man in a room"],
            latents={"samples": torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(0))},
            steps=4,
            learning_rate=1e-2,
            target_modules="attention+ffn",
        )
    return out.result[1]


def load_clip_for_training():
    from test_refusal_nodes import load_clip

    with torch.inference_mode():
        return load_clip(NAME)


@pytest.mark.parametrize("which, layers", [("refusal", 4), ("trained", 20)])
def test_the_packs_wan_loras_change_diffusers_output_as_comfyui_loaders_change_comfyuis(
    comfy, host_base, which, layers, caplog
):
    import nodes

    from video_unlearning.nodes.lora_file_nodes import UnlearnSaveLoRA

    lora = refusal_lora() if which == "refusal" else trained_lora()
    assert len(lora) == 3 * layers
    name = UnlearnSaveLoRA.execute(lora, f"diffusers/{which}").result[0]
    path = host_base / "models" / "loras" / name

    with torch.inference_mode():
        stock = nodes.LoraLoaderModelOnly().load_lora_model_only(comfy_model(), name, 1.0)[0]
    assert len(stock.patches) == layers
    base = comfy_output(comfy_model(), inputs())
    comfy_change = comfy_output(stock, inputs()) - base

    transformer = diffusers_model()
    with caplog.at_level(logging.WARNING):
        injected = load_in_diffusers(transformer, path)
    assert injected == layers, caplog.text  # diffusers took every layer the pack wrote
    assert not [r for r in caplog.records if "unexpected" in r.getMessage().lower()], caplog.text
    diffusers_change = diffusers_output(transformer, inputs()) - base

    relative = float((diffusers_change - comfy_change).norm() / comfy_change.norm())
    print(
        f"{which}: output change {float(comfy_change.norm() / base.norm()):.3e}, "
        f"diffusers vs ComfyUI {relative:.2e}"
    )
    assert comfy_change.norm() > 1e-3 * base.norm()  # the LoRA does change the output
    assert relative < 1e-4
