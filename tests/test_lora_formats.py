"""UnlearnLoadLoRA reads the LoRA key formats ComfyUI's loader maps for the video models, with its
own checks, and patches exactly what ComfyUI's loader (LoraLoaderModelOnly: model_lora_keys_unet,
convert_lora, load_lora) patches for the same file.

Each file is built here from one known update per layer (up, down, alpha), named as the trainer of
that format names the layer: the pack's own (``diffusion_model.<module>.lora_up/.lora_down``),
kohya / musubi-tuner (``lora_unet_<module with _>``), Wan Fun's ``lora_unet__``, PEFT's
``lora_B`` / ``lora_A`` under ``diffusion_model.`` (ai-toolkit), diffusion-pipe's HunyuanVideo
names under ``transformer.`` (and the old ``diffusion_model.`` spelling of them); with and without
``.alpha``.
"""

from __future__ import annotations

import functools

import pytest
import safetensors.torch
import torch

import graphs
from fixtures.tiny_models import TINY_MODELS

RANK = 4
STRENGTH = 0.7
FOLDER = "formats"
# module -> (out, in) of its weight, and the module's name in diffusion-pipe's HunyuanVideo LoRAs.
WAN_LAYERS = {
    "blocks.0.cross_attn.k": None,
    "blocks.1.self_attn.o": None,
    "blocks.0.ffn.0": None,
    "blocks.1.ffn.2": None,
    "text_embedding.0": None,
    "patch_embedding": None,  # a Conv3d: kohya-style conv LoRA factors
}
HUNYUAN_LAYERS = {
    "double_blocks.0.img_attn.qkv": "double_blocks.0.img_attn_qkv",
    "double_blocks.0.txt_attn.proj": "double_blocks.0.txt_attn_proj",
    "double_blocks.0.img_mlp.0": "double_blocks.0.img_mlp.fc1",
    "double_blocks.0.txt_mlp.2": "double_blocks.0.txt_mlp.fc2",
    "double_blocks.0.img_mod.lin": "double_blocks.0.img_mod.linear",
    "single_blocks.0.linear1": "single_blocks.0.linear1",
    "single_blocks.0.modulation.lin": "single_blocks.0.modulation.linear",
}
# LTX-Video: what the unlearning trainer writes (attention and feed-forward of a block), and the
# text projection the refusal edit's context comes from.
LTXV_LAYERS = {
    "transformer_blocks.0.attn1.to_q": None,
    "transformer_blocks.1.attn2.to_k": None,
    "transformer_blocks.0.attn2.to_out.0": None,
    "transformer_blocks.1.ff.net.0.proj": None,
    "transformer_blocks.0.ff.net.2": None,
    "caption_projection.linear_1": None,
}
LAYERS = {"tiny_wan21_t2v": WAN_LAYERS, "tiny_hunyuan_video": HUNYUAN_LAYERS, "tiny_ltxv": LTXV_LAYERS}
PAIRS = {"lora_up": (".lora_up.weight", ".lora_down.weight"), "peft": (".lora_B.weight", ".lora_A.weight")}


def _kohya(module: str, _pipe) -> str:
    return "lora_unet_" + module.replace(".", "_")


# format -> (factor pair, layer name in the file), for the models it applies to
FORMATS = {
    "pack": ("lora_up", lambda m, _: f"diffusion_model.{m}"),
    "kohya": ("lora_up", _kohya),
    "wan_fun": ("lora_up", lambda m, _: "lora_unet__" + m.replace(".", "_")),
    "peft": ("peft", lambda m, _: f"diffusion_model.{m}"),
    "peft_kohya_names": ("peft", _kohya),
    "diffusion_pipe": ("peft", lambda _, pipe: f"transformer.{pipe}"),
    "diffusion_pipe_old": ("lora_up", lambda _, pipe: f"diffusion_model.{pipe}"),
}
CASES = [
    (model, fmt, alpha)
    for model in LAYERS
    for fmt in FORMATS
    if not (fmt == "wan_fun" and model != "tiny_wan21_t2v")
    and not (fmt.startswith("diffusion_pipe") and model != "tiny_hunyuan_video")
    for alpha in (None, 3.0)
]


@pytest.fixture(autouse=True)
def as_comfyui_runs_nodes():
    with graphs.as_comfyui_runs_nodes():
        yield


@functools.cache
def model(name: str):
    import nodes

    return nodes.UNETLoader().load_unet(TINY_MODELS[name].filename, "default")[0]


@functools.cache
def updates(name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A known update per layer: (up [out, r, 1...], down [r, *weight.shape[1:]])."""
    dm = model(name).model.diffusion_model
    gen = torch.Generator().manual_seed(3)
    out = {}
    for module in LAYERS[name]:
        shape = dm.get_submodule(module).weight.shape
        up = torch.randn(shape[0], RANK, *(1,) * (len(shape) - 2), generator=gen) * 0.02
        out[module] = (up, torch.randn(RANK, *shape[1:], generator=gen))
    return out


def build_file(host_base, name: str, fmt: str, alpha: float | None, dtype=torch.float32, extra=None) -> str:
    pair, rename = FORMATS[fmt]
    up_suffix, down_suffix = PAIRS[pair]
    tensors = {}
    for module, (up, down) in updates(name).items():
        layer = rename(module, LAYERS[name][module])
        tensors[layer + up_suffix] = up.to(dtype)
        tensors[layer + down_suffix] = down.to(dtype)
        if alpha is not None:
            tensors[layer + ".alpha"] = torch.tensor(alpha)
    tensors.update(extra or {})
    folder = host_base / "models" / "loras" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}_{fmt}_{alpha}_{str(dtype).removeprefix('torch.')}.safetensors"
    safetensors.torch.save_file(tensors, str(folder / filename))
    return f"{FOLDER}/{filename}"


def expected_weights(name: str, alpha: float | None, strength: float) -> dict[str, torch.Tensor]:
    from video_unlearning.nodes import comfy_compat

    base = comfy_compat.current_weights(model(name), list(LAYERS[name]))
    scale = 1.0 if alpha is None else alpha / RANK
    return {
        m: base[m][0]
        + strength
        * scale
        * (up.flatten(1).double() @ down.flatten(1).double()).float().reshape(base[m][0].shape)
        for m, (up, down) in updates(name).items()
    }


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def load_both(name: str, filename: str, strength: float = STRENGTH):
    import nodes

    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA

    ours = UnlearnLoadLoRA.execute(model(name), filename, strength).result[0]
    stock = nodes.LoraLoaderModelOnly().load_lora_model_only(model(name), filename, strength)[0]
    return ours, stock


@pytest.mark.parametrize("name, fmt, alpha", CASES)
def test_each_format_patches_what_comfyuis_loader_patches(comfy, host_base, name, fmt, alpha):
    from video_unlearning.nodes import comfy_compat

    filename = build_file(host_base, name, fmt, alpha)
    ours, stock = load_both(name, filename)
    modules = list(LAYERS[name])
    keys = {comfy_compat.weight_key(m) for m in modules}
    assert set(ours.patches) == keys
    assert set(stock.patches) == keys  # ComfyUI maps every layer of this format too
    got, theirs = comfy_compat.current_weights(ours, modules), comfy_compat.current_weights(stock, modules)
    wanted = expected_weights(name, alpha, STRENGTH)
    for m in modules:
        assert relative(got[m][0], theirs[m][0]) < 1e-5, m
        assert relative(got[m][0], wanted[m]) < 1e-5, m
        assert relative(got[m][0], comfy_compat.current_weights(model(name), [m])[m][0]) > 1e-4, m  # it moved
    assert model(name).patches == {}


def test_half_precision_files_patch_what_comfyuis_loader_patches(comfy, host_base):
    from video_unlearning.nodes import comfy_compat

    name = "tiny_wan21_t2v"
    for dtype in (torch.float16, torch.bfloat16):
        filename = build_file(host_base, name, "kohya", 8.0, dtype)
        ours, stock = load_both(name, filename, -1.5)
        got, theirs = (comfy_compat.current_weights(p, list(WAN_LAYERS)) for p in (ours, stock))
        assert all(relative(got[m][0], theirs[m][0]) < 1e-5 for m in WAN_LAYERS)


def test_formats_comfyui_does_not_map_fail_loudly_where_its_loader_is_silent(comfy, host_base):
    """Diffusers' own Wan names (``transformer.blocks.0.attn2.to_k``) are not mapped by ComfyUI's
    loader: it applies nothing and logs; UnlearnLoadLoRA refuses, saying how many layers matched."""
    import nodes

    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA

    name = "tiny_wan21_t2v"
    up, down = updates(name)["blocks.0.cross_attn.k"]
    diffusers_names = {
        "transformer.blocks.0.attn2.to_k.lora_B.weight": up.clone(),
        "transformer.blocks.0.attn2.to_k.lora_A.weight": down.clone(),
    }
    filename = build_file(host_base, name, "peft", None, extra=diffusers_names)
    stock = nodes.LoraLoaderModelOnly().load_lora_model_only(model(name), filename, 1.0)[0]
    assert len(stock.patches) == len(WAN_LAYERS)  # the diffusers-named layer silently left out
    n = len(WAN_LAYERS)
    with pytest.raises(
        ValueError,
        match=rf"{n} of {n + 1} LoRA modules fit this model; transformer.blocks.0.attn2.to_k: no such "
        r"layer\. "
        "The file was made for another model, or names its layers in a way ComfyUI does not map",
    ):
        UnlearnLoadLoRA.execute(model(name), filename, 1.0)

    wrong_model = build_file(host_base, "tiny_hunyuan_video", "diffusion_pipe", None)
    with pytest.raises(
        ValueError,
        match=rf"0 of {len(HUNYUAN_LAYERS)} LoRA modules fit this model; transformer.double_blocks",
    ):
        UnlearnLoadLoRA.execute(model(name), wrong_model, 1.0)
    assert model(name).patches == {}
