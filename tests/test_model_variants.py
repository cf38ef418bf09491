"""Wan and HunyuanVideo variants that ComfyUI names by their own config classes (VACE, Fun Camera,
S2V, HuMo, Animate, Causal AR, HunyuanVideo I2V, ...) and that share their family's text path.

Each is a tiny random-weight model built with ComfyUI's own variant class. Those in
``VARIANT_MODELS`` are files in the test host's models/diffusion_models, loaded by the stock
UNETLoader; the others (``IN_MEMORY``) are loaded from their state dict by
``comfy.sd.load_diffusion_model_state_dict``, the function UNETLoader calls, because they are not
worth a file every test session (HuMo's audio projection and Animate's face encoders are 44M
parameters at any width). Either way ComfyUI's own detection names the config class. A variant
whose config class this ComfyUI lacks is skipped, naming the class.

Checked on each: detection (config class and structure), the refusal edit (exactly the text-path
layers, closed form, output changes, incoming MODEL untouched), the LoRA file nodes (save, load
back, refused on another architecture), and training (a short run, or a clear refusal before any
work where the trainer cannot train the variant).
"""

from __future__ import annotations

import functools
import json

import pytest
import torch

import graphs
from fixtures import tiny_models
from fixtures.tiny_models import TINY_MODELS, VARIANT_MODELS, TinyModel, needs_family

_WAN = dict(
    model_type="t2v", in_dim=16, dim=256, ffn_dim=512, text_dim=4096, out_dim=16, num_heads=2, num_layers=2
)
IN_MEMORY: dict[str, TinyModel] = {
    m.name: m
    for m in (
        TinyModel(
            "tiny_wan21_humo",
            "wan",
            "WAN21_HuMo",
            16,
            dict(_WAN, model_type="humo"),
            20,
            model_class="HumoWanModel",
        ),
        # ComfyUI detects Animate by its first face-adapter block: one per 5 blocks.
        TinyModel(
            "tiny_wan22_animate",
            "wan",
            "WAN22_Animate",
            16,
            dict(_WAN, model_type="animate", in_dim=36, num_layers=5),
            21,
            model_class="model_animate.AnimateWanModel",
        ),
        TinyModel(
            "tiny_wan22_camera",
            "wan",
            "WAN22_Camera",
            16,
            dict(_WAN, model_type="camera_2.2", in_dim=36),
            22,
            model_class="CameraWanModel",
        ),
        TinyModel(
            "tiny_wan21_scail",
            "wan",
            "WAN21_SCAIL",
            16,
            dict(_WAN, model_type="scail", in_dim=20),
            23,
            model_class="SCAILWanModel",
        ),
        TinyModel(
            "tiny_wan21_scail2",
            "wan",
            "WAN21_SCAIL2",
            16,
            dict(_WAN, model_type="scail2", in_dim=20),
            24,
            model_class="SCAIL2WanModel",
        ),
        TinyModel(
            "tiny_wan22_wandancer",
            "wan",
            "WAN22_WanDancer",
            16,
            dict(_WAN, model_type="wandancer", in_dim=36),
            25,
            model_class="model_wandancer.WanDancerModel",
        ),
    )
}
SPECS = {**VARIANT_MODELS, **IN_MEMORY}
ALL = sorted(SPECS)

# The pack's names for them (LoRA metadata base_architecture, refusal vectors), and which ones
# the trainer refuses (with the reason it gives).
NAMES = {
    "WAN21_Vace": "wan21_vace",
    "WAN21_Camera": "wan21_camera",
    "WAN22_Camera": "wan22_camera",
    "WAN22_S2V": "wan22_s2v",
    "WAN21_FunControl2V": "wan21_fun_control",
    "WAN21_CausalAR_T2V": "wan21_causal_ar_t2v",
    "WAN_Animate2": "wan_animate2",
    "WAN21_HuMo": "wan21_humo",
    "WAN22_Animate": "wan22_animate",
    "WAN21_SCAIL": "wan21_scail",
    "WAN21_SCAIL2": "wan21_scail2",
    "WAN22_WanDancer": "wan22_wandancer",
    "HunyuanVideoI2V": "hunyuan_video_i2v",
    "HunyuanVideoSkyreelsI2V": "hunyuan_video_skyreels_i2v",
}
UNTRAINABLE = {
    "WAN_Animate2": "pose/generation entry points",
    "WAN22_WanDancer": "no keys",
    "HunyuanVideoI2V": "latent image",
    "HunyuanVideoSkyreelsI2V": "latent image",
}
TRAINABLE = [n for n in ALL if SPECS[n].expected_config not in UNTRAINABLE]
REFUSED_TRAINING = [n for n in ALL if SPECS[n].expected_config in UNTRAINABLE]
BASE_MODEL = {"wan": "tiny_wan21_t2v", "hunyuan_video": "tiny_hunyuan_video"}

PAIRS = [
    ("a nude woman on a beach", "a clothed woman on a beach"),
    ("a nude man standing in a room", "a clothed man standing in a room"),
    ("a photo of a nude person", "a photo of a clothed person"),
]
NEUTRAL = "a dog running in a park\na red car on a highway\na bowl of fruit\nmountains under a blue sky"
PROBE_STEPS = 2
UNSAFE = "a nude girl swimming in a lake"
TRAIN_SETTINGS = dict(
    steps=2,
    learning_rate=1e-3,
    rank=4,
    preservation_weight=1.0,
    width=64,
    height=64,
    length=5,
    sampling_steps=2,
    sampled_clips=1,
)


@pytest.fixture(autouse=True)
def as_comfyui_runs_nodes():
    with graphs.as_comfyui_runs_nodes():
        yield


def comfyui_version() -> str:
    try:
        import comfyui_version

        return comfyui_version.__version__
    except ImportError:
        return "(unknown version)"


def require_config(config: str) -> None:
    """Skip unless this ComfyUI has the config class (ComfyUI 0.3.75 lacks WAN_Animate2, ...)."""
    import comfy.supported_models

    if not hasattr(comfy.supported_models, config):
        pytest.skip(f"ComfyUI {comfyui_version()} has no comfy.supported_models.{config}")


def spec_of(name: str) -> TinyModel:
    spec = SPECS[name]
    require_config(spec.expected_config)
    return spec


@functools.cache
def load_model(name: str):
    import comfy.sd
    import nodes

    if name in IN_MEMORY:
        return comfy.sd.load_diffusion_model_state_dict(tiny_models.state_dict(IN_MEMORY[name]))
    return nodes.UNETLoader().load_unet((VARIANT_MODELS.get(name) or TINY_MODELS[name]).filename, "default")[
        0
    ]


@functools.cache
def load_clip(family: str):
    from comfy_test_nodes.nodes import TinyTextEncoderLoader

    return TinyTextEncoderLoader.execute(tiny_models.TEXT_ENCODER_FILES[family], family).result[0]


def estimate(model, clip):
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalEstimate

    out = UnlearnRefusalEstimate.execute(
        model,
        clip,
        "custom",
        "nudity",
        "\n".join(u for u, _ in PAIRS),
        "\n".join(s for _, s in PAIRS),
        NEUTRAL,
        2,
        10.0,
        PROBE_STEPS,
        None,
    )
    return out.result[0]


def apply(model, vector, blocks: str = "all"):
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalApply

    out = UnlearnRefusalApply.execute(model, vector, 1.0, blocks)
    return out.result[0], out.result[1]


@functools.cache
def erased(name: str):
    """(model, clip, vector, patched, lora) of one model, computed once."""
    model = load_model(name)
    clip = load_clip((SPECS.get(name) or TINY_MODELS[name]).family)
    vector = estimate(model, clip)
    return (model, clip, vector, *apply(model, vector))


def one_step_sample(model, clip, text: str) -> torch.Tensor:
    """A 1-step euler sample from fixed noise at sigma 1 (x0 = noise - v: it moves as the velocity)."""
    import nodes

    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    latent = {"samples": torch.zeros(1, 16, 2, 8, 8)}
    return nodes.KSampler().sample(model, 7, 1, 1.0, "euler", "simple", cond, cond, latent)[0]["samples"]


def text_path_modules(spec: TinyModel) -> list[str]:
    """The layers the edit must change, written out from the variant's definition here."""
    if spec.family == "hunyuan_video":
        blocks = spec.kwargs["depth"]
        stream = [f"double_blocks.{i}.{t}" for i in range(blocks) for t in ("txt_attn.qkv", "txt_mlp.0")]
        return [*stream, "vector_in.in_layer"]
    prefixes = [f"blocks.{i}" for i in range(spec.kwargs["num_layers"])]
    prefixes += [f"vace_blocks.{i}" for i in range(spec.kwargs.get("vace_layers", 0))]
    return [f"{p}.cross_attn.{t}" for p in prefixes for t in "kv"]


def weight_keys(modules) -> list[str]:
    return sorted(f"diffusion_model.{m}.weight" for m in modules)


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_variant_is_detected_by_comfyui_and_accepted_by_config_and_structure(comfy, name):
    from video_unlearning.nodes import comfy_compat as compat

    spec = spec_of(name)
    model = load_model(name)
    assert type(model.model.model_config).__name__ == spec.expected_config
    arch = compat.detect_architecture(model)
    blocks = spec.kwargs["depth"] if spec.family == "hunyuan_video" else spec.kwargs["num_layers"]
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        NAMES[spec.expected_config],
        spec.family,
        256,
        blocks,
        spec.expected_config,
    )
    # VACE's block 0 runs after main block 0 and reads the same text context.
    assert arch.side_blocks == (((0, "vace_blocks.0"),) if name == "tiny_wan21_vace" else ())


# --- refusal vector ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_refusal_edit_changes_exactly_the_text_path_and_leaves_the_model_untouched(comfy, name):
    import comfy.model_management

    from video_unlearning.nodes import comfy_compat as compat

    spec = spec_of(name)
    model, clip, vector, patched, lora = erased(name)
    modules = text_path_modules(spec)
    assert vector.architecture == NAMES[spec.expected_config]
    assert sorted(patched.patches) == weight_keys(modules)  # every edit matched a layer, no other
    assert not any("_img" in key for key in patched.patches)  # image keys never edited
    assert model.patches == {}
    before, after = compat.current_weights(model, modules), compat.current_weights(patched, modules)
    for site in vector.sites:
        q = torch.linalg.qr(site.directions.double().T).Q
        for _, module in site.modules:
            w = before[module][0].double()
            assert float((after[module][0].double() - (w - (w @ q) @ q.T)).norm() / w.norm()) < 1e-6, module
    assert lora.metadata["base_architecture"] == vector.architecture

    state = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    original = one_step_sample(model, clip, UNSAFE)
    edited = one_step_sample(patched, clip, UNSAFE)
    again = one_step_sample(model, clip, UNSAFE)
    assert torch.isfinite(edited).all() and not torch.allclose(edited, original)
    assert torch.equal(again, original)
    comfy.model_management.unload_all_models()
    assert all(torch.equal(v, state[k]) for k, v in model.model.diffusion_model.state_dict().items())


def test_vace_blocks_are_chosen_with_the_block_they_follow(comfy):
    spec_of("tiny_wan21_vace")
    model, _, vector, _, _ = erased("tiny_wan21_vace")
    first, _ = apply(model, vector, "0")
    second, _ = apply(model, vector, "1")
    assert sorted(first.patches) == weight_keys(
        f"{p}.cross_attn.{t}" for p in ("blocks.0", "vace_blocks.0") for t in "kv"
    )
    assert sorted(second.patches) == weight_keys(f"blocks.1.cross_attn.{t}" for t in "kv")


@pytest.mark.parametrize("name", sorted(VARIANT_MODELS))
def test_vectors_do_not_cross_between_a_variant_and_its_base_model(comfy, name):
    spec = spec_of(name)
    base = BASE_MODEL[spec.family]
    variant_model, _, variant_vector, _, _ = erased(name)
    base_model, _, base_vector, _, _ = erased(base)
    here, there = variant_vector.architecture, base_vector.architecture
    with pytest.raises(ValueError, match=f"estimated on {here} \\(width 256\\) but the MODEL is {there} "):
        apply(base_model, variant_vector)
    with pytest.raises(ValueError, match=f"estimated on {there} \\(width 256\\) but the MODEL is {here} "):
        apply(variant_model, base_vector)


# --- LoRA files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_lora_file_nodes_save_and_load_the_variant_edit_and_refuse_it_elsewhere(comfy, name):
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA, UnlearnSaveLoRA

    spec = spec_of(name)
    model, _, _, patched, lora = erased(name)
    filename = UnlearnSaveLoRA.execute(lora, f"variants/{name}").result[0]
    loaded, metadata = UnlearnLoadLoRA.execute(model, filename, 1.0).result
    assert json.loads(metadata)["base_architecture"] == NAMES[spec.expected_config]
    assert sorted(loaded.patches) == sorted(patched.patches)
    modules = text_path_modules(spec)
    want, got = compat.current_weights(patched, modules), compat.current_weights(loaded, modules)
    assert max(float((got[m][0] - want[m][0]).norm() / want[m][0].norm()) for m in modules) < 1e-5

    here, base = NAMES[spec.expected_config], BASE_MODEL[spec.family]
    base_name = compat.detect_architecture(load_model(base)).name
    with pytest.raises(ValueError, match=f"made for {here}, but this model is {base_name}"):
        UnlearnLoadLoRA.execute(load_model(base), filename, 1.0)
    base_lora = erased(base)[4]
    base_file = UnlearnSaveLoRA.execute(base_lora, f"variants/base_for_{name}").result[0]
    with pytest.raises(ValueError, match=f"made for {base_name}, but this model is {here}"):
        UnlearnLoadLoRA.execute(model, base_file, 1.0)


# --- training ---------------------------------------------------------------------------------


def train(model, clip):
    from graphs import schema_defaults
    from video_unlearning.nodes.train_nodes import UnlearnTrainLoRA

    args = dict(schema_defaults(UnlearnTrainLoRA), **TRAIN_SETTINGS)
    args.update(concept_prompts="a nudity scene on a beach", preserve_prompts="a person")
    return UnlearnTrainLoRA.execute(model=model, clip=clip, latents=None, **args)


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_on_the_variant_trains_its_main_blocks(comfy, name):
    from video_unlearning.nodes import comfy_compat as compat

    spec = spec_of(name)
    model, clip = load_model(name), load_clip(spec.family)
    if not compat.blocks_take_transformer_options(model.model.diffusion_model):
        assert name == "tiny_wan22_s2v"  # ComfyUI 0.3.75's S2V: its blocks never see the override
        with pytest.raises(ValueError, match="cannot train .*WanModel_S2V calls its blocks without"):
            train(model, clip)
        return
    out = train(model, clip)
    trained, lora, loss_map = out.result
    blocks = spec.kwargs["num_layers"]
    expected = [
        f"blocks.{i}.{a}.{p}" for i in range(blocks) for a in ("self_attn", "cross_attn") for p in "qkvo"
    ]
    assert sorted({k.rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0] for k in lora}) == sorted(
        f"diffusion_model.{m}" for m in expected
    )
    assert lora.metadata["base_architecture"] == NAMES[spec.expected_config]
    assert all(torch.isfinite(torch.tensor(v)).all() for v in loss_map.values())
    assert model.patches == {} and len(trained.patches) == len(expected)


@pytest.mark.parametrize("name", REFUSED_TRAINING)
def test_training_refuses_the_variants_it_cannot_train_before_any_work(comfy, name, monkeypatch):
    from video_unlearning.nodes import train_compat

    spec = spec_of(name)
    model, clip = load_model(name), load_clip(spec.family)
    monkeypatch.setattr(train_compat, "encode_prompts", lambda *a, **k: pytest.fail("encoded prompts"))
    reason = UNTRAINABLE[spec.expected_config]
    with pytest.raises(
        ValueError,
        match=f"Unlearn: Train LoRA cannot train .* \\({spec.expected_config}\\): .*{reason}.*"
        "Unlearn: Refusal Estimate and Unlearn: Refusal Apply",
    ):
        train(model, clip)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.model.diffusion_model.modules())
    # The prompt attack differentiates the model as the trainer does: refused the same way, as an attack.
    from video_unlearning.nodes.attack_nodes import UnlearnAttackPrompt

    with torch.inference_mode():
        positive = clip.encode_from_tokens_scheduled(clip.tokenize("nudity"))
    with pytest.raises(ValueError, match=f"Unlearn: Attack Prompt cannot attack .*{reason}.*backward pass"):
        UnlearnAttackPrompt.execute(
            model=model, positive=positive, latents={"samples": torch.zeros(1, 16, 1, 8, 8)}, steps=1,
            learning_rate=0.05, mode="prompt_embedding", soft_tokens=1, max_change=0.0, seed=0,
            gradient_checkpointing=False,
        )  # fmt: skip


# --- HunyuanVideo 1.5 --------------------------------------------------------------------------


def test_hunyuan_video15_is_its_own_family_with_the_text_stream_sites(comfy):
    """HunyuanVideo 1.5 (in TINY_MODELS: every suite runs it) is detected by its config class and its
    text path: the double blocks' text stream, no pooled vector; its sites are sampled per step."""
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    require_config("HunyuanVideo15")
    model = load_model("tiny_hunyuan_video15")
    arch = compat.detect_architecture(model)
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        "hunyuan_video15",
        "hunyuan_video15",
        256,
        2,
        "HunyuanVideo15",
    )
    specs = compat.site_specs(arch)
    assert [s.name for s in specs] == [
        f"double_blocks.{i}.{t}" for i in range(2) for t in ("txt_attn.qkv", "txt_mlp.0")
    ]
    assert all(s.per_step for s in specs)
    dm = model.model.diffusion_model
    assert dm.vector_in is None and dm.byt5_in is not None and not dm.single_blocks
    targets = train_compat.adapter_targets(dm, arch.family, "attention")
    assert [t.name for t in targets] == [
        f"double_blocks.{i}.{s}_attn.{p}" for i in range(2) for s in ("img", "txt") for p in ("qkv", "proj")
    ]
    assert compat.training_problem(model, arch) is None


# --- LTX-Video ---------------------------------------------------------------------------------


def test_ltxv_is_its_own_family_with_one_context_site_and_trainer_targets(comfy):
    """LTX-Video 0.9 (in TINY_MODELS) is detected by its config class and its text path:
    caption_projection into every block's attn2; one context site (no probe run), edited at
    attn2.to_k / to_v; the trainer takes it, with adapters on every block's attn1 / attn2
    projections (to_k / to_v of attn2 read the text) and, with ffn, the feed-forward."""
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    model = load_model("tiny_ltxv")
    arch = compat.detect_architecture(model)
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        "ltxv",
        "ltxv",
        256,
        2,
        "LTXV",
    )
    (spec,) = compat.site_specs(arch)
    assert spec.name == "context" and not spec.per_step
    assert [m for _, m in spec.modules] == [
        f"transformer_blocks.{i}.attn2.{t}" for i in range(2) for t in ("to_k", "to_v")
    ]
    assert train_compat.supported_architecture(model, "Unlearn: Train LoRA").name == "ltxv"
    assert compat.training_problem(model, arch) is None
    dm = model.model.diffusion_model
    projections = ("to_q", "to_k", "to_v", "to_out.0")
    targets = train_compat.adapter_targets(dm, "ltxv", "attention+ffn")
    assert [(t.name, t.block, t.tokens) for t in targets] == [
        (f"transformer_blocks.{i}.{name}", f"transformer_blocks.{i}", tokens)
        for i in range(2)
        for name, tokens in [
            *((f"attn1.{p}", "video") for p in projections),
            *((f"attn2.{p}", "text" if p in ("to_k", "to_v") else "video") for p in projections),
            ("ff.net.0.proj", "video"),
            ("ff.net.2", "video"),
        ]
    ]
    assert len(train_compat.adapter_targets(dm, "ltxv", "attention")) == 2 * 8
    assert sorted(train_compat.block_modules(dm, "ltxv")) == [f"transformer_blocks.{i}" for i in range(2)]
    assert train_compat.latent_geometry(model) == (128, (1, 1, 1))
    # EmptyLTXVLatentVideo's arithmetic: 8x in time after the first frame, 32x in space.
    assert train_compat.latent_downscale(model, "ltxv") == 32
    assert [train_compat.latent_frames(model, "ltxv", n) for n in (1, 9, 97)] == [1, 2, 13]
    assert train_compat.text_first(dm, "ltxv") is False


# --- Kandinsky 5 -------------------------------------------------------------------------------


@needs_family("kandinsky5")
def test_kandinsky5_is_its_own_family_with_a_probed_context_site_a_pooled_site_and_trainer_targets(comfy):
    """Kandinsky 5 (in TINY_MODELS, on a ComfyUI that has it) is detected by its config class and
    its text path: the text transformer blocks' output into every visual block's cross_attention,
    the pooled CLIP-L vector into the time embedding. Two sites: the context (probed per step: the
    text blocks' modulation reads the timestep), read at block 0's to_key and edited at every
    block's to_key / to_value, and the pooled vector (NO_BLOCK); the fingerprint reads
    text_embeddings.in_layer. The trainer takes it, with adapters on the visual blocks only."""
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    model = load_model("tiny_kandinsky5")
    arch = compat.detect_architecture(model)
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        "kandinsky5",
        "kandinsky5",
        256,
        2,
        "Kandinsky5",
    )
    context, pooled = compat.site_specs(arch)
    assert context.name == "context" and context.per_step
    assert context.probed_module == "visual_transformer_blocks.0.cross_attention.to_key"
    assert [m for _, m in context.modules] == [
        f"visual_transformer_blocks.{i}.cross_attention.{t}" for i in range(2) for t in ("to_key", "to_value")
    ]
    assert pooled.modules == ((compat.NO_BLOCK, "pooled_text_embeddings.in_layer"),) and not pooled.per_step
    assert "kandinsky5" in compat.PROBED_FAMILIES
    assert train_compat.supported_architecture(model, "Unlearn: Train LoRA").name == "kandinsky5"
    assert compat.training_problem(model, arch) is None
    dm = model.model.diffusion_model
    projections = ("to_query", "to_key", "to_value", "out_layer")
    targets = train_compat.adapter_targets(dm, "kandinsky5", "attention+ffn")
    assert [(t.name, t.block, t.tokens) for t in targets] == [
        (f"visual_transformer_blocks.{i}.{name}", f"visual_transformer_blocks.{i}", tokens)
        for i in range(2)
        for name, tokens in [
            *((f"self_attention.{p}", "video") for p in projections),
            *(
                (f"cross_attention.{p}", "text" if p in ("to_key", "to_value") else "video")
                for p in projections
            ),
            ("feed_forward.in_layer", "video"),
            ("feed_forward.out_layer", "video"),
        ]
    ]
    assert not any(t.name.startswith("text_transformer_blocks") for t in targets)
    assert sorted(train_compat.block_modules(dm, "kandinsky5")) == [
        f"visual_transformer_blocks.{i}" for i in range(2)
    ]
    # HunyuanVideo's VAE (EmptyHunyuanLatentVideo's arithmetic) and patch 1x2x2.
    assert train_compat.latent_geometry(model) == (16, (1, 2, 2))
    assert train_compat.latent_downscale(model, "kandinsky5") == 8
    assert [train_compat.latent_frames(model, "kandinsky5", n) for n in (1, 5, 121)] == [1, 2, 31]
    assert train_compat.text_first(dm, "kandinsky5") is False
    assert train_compat.inplace_updated_norms(dm, "kandinsky5") == []


# --- CogVideoX ----------------------------------------------------------------------------------


@needs_family("cogvideox")
def test_cogvideox_is_its_own_family_edited_at_its_text_projection_and_trained_as_k_diffusion(comfy):
    """CogVideoX (in TINY_MODELS, on a ComfyUI that has it) is detected by its config class and its
    text path: the T5-XXL rows through patch_embed.text_proj into the joint [text, video] sequence.
    One site, the rows themselves (no probe run), edited at text_proj outside the blocks; the
    trainer takes it as a k-diffusion model (v-prediction, x_t = x0 + sigma n), text first in each
    block's joint attention, adapters on the joint projections; I2V is refused for training."""
    from video_unlearning.erasure.objectives import K_DIFFUSION
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    model = load_model("tiny_cogvideox")
    arch = compat.detect_architecture(model)
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        "cogvideox_t2v",
        "cogvideox",
        256,
        2,
        "CogVideoX_T2V",
    )
    (spec,) = compat.site_specs(arch)
    assert spec.name == "text" and not spec.per_step
    assert spec.modules == ((compat.NO_BLOCK, "patch_embed.text_proj"),)
    assert "cogvideox" in compat.TEXT_ROW_FAMILIES and "cogvideox" not in compat.PROBED_FAMILIES
    assert train_compat.supported_architecture(model, "Unlearn: Train LoRA").name == "cogvideox_t2v"
    assert train_compat.parameterisation(model) == K_DIFFUSION
    dm = model.model.diffusion_model
    targets = train_compat.adapter_targets(dm, "cogvideox", "attention+ffn")
    assert [(t.name, t.block, t.tokens) for t in targets] == [
        (f"blocks.{i}.{name}", f"blocks.{i}", "joint")
        for i in range(2)
        for name in ("q", "k", "v", "attn_out", "ff_proj", "ff_out")
    ]
    assert len(train_compat.adapter_targets(dm, "cogvideox", "attention")) == 2 * 4
    assert train_compat.latent_geometry(model) == (16, (1, 2, 2))
    assert [train_compat.latent_frames(model, "cogvideox", n) for n in (1, 5, 49)] == [1, 2, 13]
    assert train_compat.text_first(dm, "cogvideox") is True
    assert "image channels" in compat.VARIANTS["CogVideoX_I2V"].untrainable


# --- LTX-2 ----------------------------------------------------------------------------------------


@needs_family("ltxav")
def test_ltxav_is_its_own_family_with_a_video_and_an_audio_context_site(comfy):
    """LTX-2 (in TINY_MODELS, on a ComfyUI that has it) is detected by its config class and its text
    path: Gemma 3 rows through the two connectors and caption projections into every block's
    ``attn2`` (video) and ``audio_attn2`` (audio) keys and values. Two sites, no probe run; the
    trainer and the prompt attack take it."""
    from video_unlearning.nodes import comfy_compat as compat

    model, clip = load_model("tiny_ltxav"), load_clip("ltxav")
    arch = compat.detect_architecture(model)
    assert (arch.name, arch.family, arch.width, arch.num_blocks, arch.config) == (
        "ltxav",
        "ltxav",
        256,
        2,
        "LTXAV",
    )
    video, audio = compat.site_specs(arch)
    assert (video.name, audio.name) == ("context", "audio_context")
    assert not video.per_step and not audio.per_step and "ltxav" not in compat.PROBED_FAMILIES
    assert [m for _, m in video.modules] == [
        f"transformer_blocks.{i}.attn2.{t}" for i in range(2) for t in ("to_k", "to_v")
    ]
    assert [m for _, m in audio.modules] == [
        f"transformer_blocks.{i}.audio_attn2.{t}" for i in range(2) for t in ("to_k", "to_v")
    ]
    acts = compat.ltxav_contexts(model, [compat.encode(clip, "a nude woman on a beach")])
    assert acts["context"][0][0].shape == (1024, 256) and acts["audio_context"][0][0].shape == (1024, 64)
    # The trainer and the prompt attack take it (tests/test_train_lora.py, tests/test_attack.py).
    assert compat.training_problem(model, arch) is None


# --- models that are not accepted -------------------------------------------------------------


def meta_model(unet_config: dict):
    """A ModelPatcher of the config class ComfyUI picks for ``unet_config``, weights on meta."""
    import comfy.model_detection
    import comfy.model_patcher

    model_config = comfy.model_detection.model_config_from_unet_config(unet_config)
    assert model_config is not None, unet_config
    with torch.device("meta"):
        base = model_config.get_model({})
    return comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))


def _hunyuan_config(**overrides) -> dict:
    from comfy.ldm.hunyuan_video.model import HunyuanVideoParams

    kwargs = dict(TINY_MODELS["tiny_hunyuan_video"].kwargs, **overrides)
    return dict(tiny_models.with_required_fields(HunyuanVideoParams, kwargs), image_model="hunyuan_video")


def _wan_config(**overrides) -> dict:
    return dict(_WAN, image_model="wan2.1", patch_size=(1, 2, 2), **overrides)


def _hunyuan15_config(**overrides) -> dict:
    from comfy.ldm.hunyuan_video.model import HunyuanVideoParams

    kwargs = dict(TINY_MODELS["tiny_hunyuan_video15"].kwargs, **overrides)
    return dict(tiny_models.with_required_fields(HunyuanVideoParams, kwargs), image_model="hunyuan_video")


def _ltxv_config(**overrides) -> dict:
    return dict(TINY_MODELS["tiny_ltxv"].kwargs, image_model="ltxv", **overrides)


def _ltxav_config(**overrides) -> dict:
    return dict(tiny_models.TINY_LTXAV_CONFIG, image_model="ltxav", **overrides)


OTHER_MODELS = {
    # Mochi (T5-XXL text, like LTX-Video) at its released config, one block.
    "GenmoMochi": lambda: dict(
        image_model="mochi_preview",
        depth=1,
        patch_size=2,
        num_heads=24,
        hidden_size_x=3072,
        hidden_size_y=1536,
        mlp_ratio_x=4.0,
        mlp_ratio_y=4.0,
        in_channels=12,
        qk_norm=True,
        qkv_bias=False,
        out_bias=True,
        patch_embed_bias=True,
        posenc_preserve_area=True,
        timestep_mlp_bias=True,
        attend_to_padding=False,
        timestep_scale=1000.0,
        use_t5=True,
        t5_feat_dim=4096,
        t5_token_length=256,
        rope_theta=10000.0,
    ),
    # Subclasses of configs the pack takes: not accepted for being one (HunyuanVideo 1.5's
    # super-resolution model refines a low-resolution video).
    "HunyuanVideo15_SR_Distilled": lambda: _hunyuan15_config(in_channels=98),
    "WAN21_FlowRVS": lambda: _wan_config(model_type="flow_rvs"),
}


@pytest.mark.parametrize("config", sorted(OTHER_MODELS))
def test_other_models_are_refused_by_name_with_the_supported_list(comfy, config):
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    require_config(config)
    model = meta_model(OTHER_MODELS[config]())
    assert type(model.model.model_config).__name__ == config
    with pytest.raises(ValueError, match=f"this MODEL is {config}.*supported: Wan 2.1 T2V/I2V.*HunyuanVideo"):
        compat.detect_architecture(model)
    with pytest.raises(ValueError, match=f"Train LoRA supports Wan 2.1 T2V/I2V.*; this MODEL is {config}\\."):
        train_compat.supported_architecture(model, "Unlearn: Train LoRA")


def _drop(dm, path: str) -> None:
    parent, _, child = path.rpartition(".")
    delattr(dm.get_submodule(parent) if parent else dm, child)


DAMAGED = [
    (_wan_config, {}, "WAN21_T2V", "text_embedding", "no text_embedding ending at the model width 256"),
    (_wan_config, {}, "WAN21_T2V", "blocks.1.cross_attn.v", "blocks.1.cross_attn.v is missing"),
    (
        _wan_config,
        dict(model_type="vace", vace_layers=1, vace_in_dim=96),
        "WAN21_Vace",
        "vace_blocks.0.cross_attn.k",
        "vace_blocks.0.cross_attn.k is missing",
    ),
    (
        _hunyuan_config,
        dict(in_channels=33),
        "HunyuanVideoI2V",
        "double_blocks.0.txt_mlp",
        "double_blocks.0.txt_mlp.0 is missing",
    ),
    (_hunyuan_config, dict(in_channels=33), "HunyuanVideoI2V", "vector_in", "no vector_in.in_layer"),
    (
        _hunyuan15_config,
        {},
        "HunyuanVideo15",
        "double_blocks.1.txt_attn",
        "double_blocks.1.txt_attn.qkv is missing",
    ),
    (_hunyuan15_config, {}, "HunyuanVideo15", "txt_in", "no txt_in.input_embedder"),
    (
        _ltxv_config,
        {},
        "LTXV",
        "transformer_blocks.1.attn2.to_v",
        "transformer_blocks.1.attn2.to_v is missing",
    ),
    (
        _ltxv_config,
        {},
        "LTXV",
        "caption_projection.linear_2",
        "no caption_projection ending at the model width 256",
    ),
    (
        _ltxav_config,
        {},
        "LTXAV",
        "transformer_blocks.1.audio_attn2.to_v",
        "transformer_blocks.1.audio_attn2.to_v is missing",
    ),
    (
        _ltxav_config,
        {},
        "LTXAV",
        "audio_caption_projection.linear_2",
        "no audio_caption_projection ending at the width 64",
    ),
    # LTX-2.3's layout: the caption projections run before the connectors, in extra_conds.
    (
        _ltxav_config,
        dict(caption_proj_before_connector=True),
        "LTXAV",
        "",
        "its caption projections run before the text connectors \\(the LTX-2.3 layout\\), which the "
        "nodes do not read",
    ),
]


@pytest.mark.parametrize(
    "make_config, overrides, config, damage, problem",
    [pytest.param(*case, id=f"{case[2]}-{case[3]}") for case in DAMAGED],
)
def test_a_listed_config_without_the_text_path_is_refused(
    comfy, make_config, overrides, config, damage, problem
):
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes import train_compat

    require_config(config)
    model = meta_model(make_config(**overrides))
    assert type(model.model.model_config).__name__ == config
    if damage:
        compat.detect_architecture(model)  # whole, it is accepted
        _drop(model.model.diffusion_model, damage)
    with pytest.raises(
        ValueError, match=f"this MODEL is {config}, but its diffusion model .* {problem}; supported"
    ):
        compat.detect_architecture(model)
    with pytest.raises(
        ValueError, match=f"this MODEL is {config}, but its diffusion model lacks the text path: {problem}"
    ):
        train_compat.supported_architecture(model, "Unlearn: Load LoRA", for_training=False)


def test_a_layer_of_the_wrong_width_is_refused(comfy):
    from video_unlearning.nodes import comfy_compat as compat

    model = meta_model(_wan_config())
    with torch.device("meta"):
        model.model.diffusion_model.blocks[0].cross_attn.k = torch.nn.Linear(128, 256)
    with pytest.raises(ValueError, match="blocks.0.cross_attn.k is 128 wide, not 256 wide"):
        compat.detect_architecture(model)
