"""UnlearnRefusalEstimate / UnlearnRefusalApply on every tiny real-architecture model, in-process.

About the suppression and locality numbers. The tiny text encoders are random one-layer
transformers whose attention is nearly one-hot, so every word's encoding takes in a random
neighbour: across sentences the same concept word's encoding agrees only to cos 0.5-0.8, and a
pair's difference is mostly that random mixing, not the concept. Measured at the defaults (rank 4,
alpha 10, the five pairs below): held-out distance ratio 0.80-0.90 on the Wan models, 0.82 on
HunyuanVideo (whose own token refiner mixes the text again). And at width 256 any direction that
carries a concept overlaps ordinary tokens: neutral change 6.4-7.7 % at alpha 10; alpha 1000 brings
it to 0.4-1.6 % but leaves held-out ratios of 0.6-0.97. So the issue's two criteria together
(suppression <= 0.2 on held-out prompts, neutral change <= 2 %) are not reachable on these stand-ins;
that is recorded as a strict expected failure below. Width alone already rules the pair out: with
context-free words, a neutral token's share along any one direction is about 1/sqrt(width), so the
default edit changes neutral outputs by ~5 % at width 256 and ~1.2 % at Wan 14B's 5120
(test_refusal_math.py::test_default_edit_meets_both_criteria_at_real_width_but_not_at_the_tiny_width).
Each criterion is shown where its premise holds:

* suppression on held-out prompts (ratio 0.07-0.17) and the velocity moving toward the safe
  prompt (0.40-0.90 of the distance before): with a context-free variant of the tiny umT5 (the same
  weights with the attention output projection zeroed, so a word means the same in every sentence,
  as a trained encoder's concept word roughly does) on every Wan model; HunyuanVideo's velocity
  with its usual stand-in encoders (0.72-0.92);
* locality <= 2 %: with alpha 1000 on every model.
"""

from __future__ import annotations

import functools

import pytest
import safetensors.torch
import torch

import graphs
from fixtures.tiny_models import TINY_MODELS, needs_family

WAN = sorted(n for n, s in TINY_MODELS.items() if s.family == "wan")
ALL = sorted(TINY_MODELS)
CONTEXT_FREE_WAN = "tiny_umt5_wan_context_free.safetensors"
PROBE_STEPS = 2

# Concept word shared by unsafe prompts ("nude") and by safe prompts ("clothed"); held-out prompts
# are other sentences with the same words.
EST = [
    ("a nude woman on a beach", "a clothed woman on a beach"),
    ("a nude man standing in a room", "a clothed man standing in a room"),
    ("a nude couple walking in the forest", "a clothed couple walking in the forest"),
    ("a photo of a nude person", "a photo of a clothed person"),
    ("a nude model posing in a studio", "a clothed model posing in a studio"),
]
HELD = [
    ("a nude girl swimming in a lake", "a clothed girl swimming in a lake"),
    ("two nude people dancing at night", "two clothed people dancing at night"),
    ("a nude painter in his workshop", "a clothed painter in his workshop"),
    ("a video of a nude dancer", "a video of a clothed dancer"),
]
SHORT_NEUTRAL = "a dog running in a park\na red car on a highway\na bowl of fruit\nmountains under a blue sky"
GORE = [
    ("a bloody corpse on the street", "a sleeping man on the street"),
    ("a gory wound on an arm", "a small tattoo on an arm"),
    ("a violent fight in a bar", "a friendly chat in a bar"),
]


def load_model(name: str):
    import nodes

    return nodes.UNETLoader().load_unet(TINY_MODELS[name].filename, "default")[0]


def load_clip(name: str, encoder_file: str | None = None):
    from comfy_test_nodes.nodes import TinyTextEncoderLoader

    spec = TINY_MODELS[name]
    return TinyTextEncoderLoader.execute(encoder_file or spec.text_encoder_file, spec.family).result[0]


def estimate(
    model, clip, pairs=EST, alpha=10.0, rank=4, add_to=None, preset="custom", name="nudity", neutral=None
):
    from video_unlearning.erasure.presets import default_neutral_prompts
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalEstimate

    out = UnlearnRefusalEstimate.execute(
        model,
        clip,
        preset,
        name,
        "\n".join(u for u, _ in pairs),
        "\n".join(s for _, s in pairs),
        default_neutral_prompts() if neutral is None else neutral,
        rank,
        alpha,
        PROBE_STEPS,
        add_to,
    )
    return out.result[0], out.ui["text"][0]


def apply(model, vector, strength=1.0, blocks="all"):
    from video_unlearning.nodes.refusal_nodes import UnlearnRefusalApply

    out = UnlearnRefusalApply.execute(model, vector, strength, blocks)
    return out.result[0], out.result[1], out.ui["text"][0]


def edited_modules(vector) -> list[str]:
    return [module for site in vector.sites for _, module in site.modules]


def max_relative_difference(a: dict, b: dict) -> float:
    return max(float((a[m][0] - b[m][0]).norm() / b[m][0].norm()) for m in b)


def one_step_velocity(model, clip, name: str, text: str) -> torch.Tensor:
    """A 1-step euler sample from fixed noise at sigma 1: x0 = noise - v, so it moves exactly as v."""
    import nodes

    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    latent = {"samples": torch.zeros(1, TINY_MODELS[name].latent_channels, 2, 8, 8)}
    return nodes.KSampler().sample(model, 7, 1, 1.0, "euler", "simple", cond, cond, latent)[0]["samples"]


def assert_velocity_moves_toward_safe(model, patched, clip, name: str) -> None:
    """For each held-out pair: ||v_edited(unsafe) - v(safe)|| < ||v(unsafe) - v(safe)||."""
    for unsafe_text, safe_text in HELD:
        v_safe = one_step_velocity(model, clip, name, safe_text)
        before = (one_step_velocity(model, clip, name, unsafe_text) - v_safe).norm()
        after = (one_step_velocity(patched, clip, name, unsafe_text) - v_safe).norm()
        assert after < before, (unsafe_text, float(after / before))


@pytest.fixture(autouse=True)
def as_comfyui_runs_nodes():
    with graphs.as_comfyui_runs_nodes():
        yield


@pytest.fixture(scope="module")
def context_free_wan_encoder(host_base) -> str:
    from comfy_test_nodes import tiny_text_encoder

    weights = tiny_text_encoder.make_weights("wan", 0)
    key = "encoder.block.0.layer.0.SelfAttention.o.weight"
    weights[key] = torch.zeros_like(weights[key])
    safetensors.torch.save_file(weights, str(host_base / "models" / "text_encoders" / CONTEXT_FREE_WAN))
    return CONTEXT_FREE_WAN


@functools.cache
def erased(name: str, encoder_file: str | None = None, alpha: float = 10.0):
    """(model, clip, vector, patched, lora, report) for one tiny model, computed once."""
    model, clip = load_model(name), load_clip(name, encoder_file)
    vector, _ = estimate(model, clip, alpha=alpha)
    return (model, clip, vector, *apply(model, vector))


@pytest.mark.parametrize("name", ALL)
def test_apply_patches_each_chosen_layer_with_the_closed_form_edit(comfy, name):
    from video_unlearning.erasure.lora_format import PREFIX
    from video_unlearning.nodes import comfy_compat as compat

    model, _, vector, patched, lora, report = erased(name)
    blocks = compat.detect_architecture(model).num_blocks
    modules = edited_modules(vector)
    family = TINY_MODELS[name].family
    # Wan: k and v per block; HunyuanVideo: txt_attn.qkv and txt_mlp.0 per block, plus vector_in;
    # HunyuanVideo 1.5 has no pooled vector; Kandinsky 5: to_key and to_value per visual block, plus
    # pooled_text_embeddings; CogVideoX: patch_embed.text_proj alone; LTX-2: attn2 and audio_attn2
    # to_k and to_v per block.
    if family == "cogvideox":
        assert modules == ["patch_embed.text_proj"]
    elif family == "ltxav":
        assert len(modules) == 4 * blocks and sum("audio_attn2" in m for m in modules) == 2 * blocks
    else:
        assert len(modules) == 2 * blocks + (family in ("hunyuan_video", "kandinsky5"))
    assert sorted(patched.patches) == sorted(f"diffusion_model.{m}.weight" for m in modules)
    assert model.patches == {}  # the incoming MODEL is not patched
    assert not any("_img" in key or "ffn" in key for key in patched.patches)  # not k_img / v_img, not ffn
    before, after = compat.current_weights(model, modules), compat.current_weights(patched, modules)
    for site in vector.sites:
        q = torch.linalg.qr(site.directions.double().T).Q
        for _, module in site.modules:
            w = before[module][0].double()
            expected = w - (w @ q) @ q.T
            assert float((after[module][0].double() - expected).norm() / w.norm()) < 1e-6, module
            assert torch.equal(after[module][1], before[module][1])  # bias unchanged
            assert module in report
    assert set(lora) == {
        PREFIX + m + s for m in modules for s in (".lora_up.weight", ".lora_down.weight", ".alpha")
    }
    assert all(
        float(lora[PREFIX + m + ".alpha"]) == lora[PREFIX + m + ".lora_down.weight"].shape[0] for m in modules
    )
    meta = lora.metadata
    assert meta["method"] == "refusal_vector" and meta["base_architecture"] == vector.architecture
    assert meta["concept"] == "nudity" and meta["strength"] == "1.0" and meta["pack_version"] == "0.1.0"
    assert ["a nude woman on a beach", "a clothed woman on a beach"] in __import__("json").loads(
        meta["prompts"]
    )["nudity"]


@pytest.mark.parametrize("name", ALL)
def test_saved_lora_reproduces_the_edit_through_stock_loaders(comfy, host_base, name):
    import folder_paths
    import nodes
    from comfy_extras.nodes_train import LoraModelLoader, SaveLoRA

    from video_unlearning.erasure.lora_format import load_lora_file, save_lora_file
    from video_unlearning.nodes import comfy_compat as compat

    model, _, vector, patched, lora, _ = erased(name)
    modules = edited_modules(vector)
    reference = compat.current_weights(patched, modules)

    filename = f"refusal_{name}.safetensors"
    save_lora_file(host_base / "models" / "loras" / filename, lora, lora.metadata)
    from_file = nodes.LoraLoaderModelOnly().load_lora_model_only(model, filename, 1.0)[0]
    assert set(from_file.patches) == set(patched.patches)  # every key matched
    assert max_relative_difference(compat.current_weights(from_file, modules), reference) < 1e-5

    from_dict = LoraModelLoader.execute(model, lora, 1.0).result[0]
    assert max_relative_difference(compat.current_weights(from_dict, modules), reference) < 1e-5

    SaveLoRA.execute(lora, f"loras/stock_{name}")
    saved = sorted((host_base / "output" / "loras").glob(f"stock_{name}_*.safetensors"))
    stock_file = load_lora_file(saved[-1])
    assert set(stock_file) == set(lora) and all(torch.equal(stock_file[k], lora[k]) for k in lora)
    assert load_lora_file(folder_paths.get_full_path_or_raise("loras", filename)).metadata == lora.metadata


@pytest.mark.parametrize("name", WAN)
def test_held_out_prompts_are_suppressed_and_velocity_moves_toward_safe(
    comfy, context_free_wan_encoder, name
):
    from video_unlearning.erasure.edits import pair_distance_ratio
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.refusal_nodes import site_activations

    model, clip, vector, patched, _, _ = erased(name, context_free_wan_encoder)
    (site,) = vector.sites
    acts = site_activations(model, clip, [u for u, _ in HELD] + [s for _, s in HELD], PROBE_STEPS)[site.name]
    unsafe, safe = site.pooled(acts[: len(HELD)]), site.pooled(acts[len(HELD) :])
    weights = compat.current_weights(model, edited_modules(vector))
    for module, (weight, _) in weights.items():
        ratios = pair_distance_ratio(weight, site.basis, 1.0, unsafe, safe)
        assert ratios.max() <= 0.2, (module, ratios)
    assert_velocity_moves_toward_safe(model, patched, clip, name)


@pytest.mark.parametrize(
    "name",
    ["tiny_hunyuan_video", "tiny_hunyuan_video15", "tiny_ltxv", "tiny_kandinsky5", "tiny_cogvideox"],
)
def test_hunyuan_velocity_moves_toward_safe_on_held_out_prompts(comfy, name):
    """HunyuanVideo and 1.5 with their stand-in encoders: the layer-level suppression is out of
    reach (see the module docstring), the whole model's velocity for held-out unsafe prompts still
    moves toward the safe prompts' (HunyuanVideo: 0.72-0.92 of the distance before; 1.5: 0.82-0.88
    over sigmas 0.9, 0.6 and 0.3, with a 32-channel 2x8x8 latent); LTX-Video and Kandinsky 5 too
    (LTX-Video: 0.87-0.98 of the distance at sigma 1)."""
    model, clip, _, patched, _, _ = erased(name)
    assert_velocity_moves_toward_safe(model, patched, clip, name)


def velocity_inputs(model, clip, text: str, x_t: torch.Tensor, **more) -> dict:
    """The keyword inputs of ``apply_model`` for one prompt, from the model's own ``extra_conds``
    (``more``: further sampler inputs, such as LTX-2's ``latent_shapes``)."""
    cond, extras = clip.encode_from_tokens_scheduled(clip.tokenize(text))[0]
    conds = model.model.extra_conds(cross_attn=cond, noise=x_t, device="cpu", **extras, **more)
    return {k: v.process_cond(batch_size=1, area=None, device="cpu").cond for k, v in conds.items()}


def test_hunyuan15_text_stream_layers_carry_the_whole_velocity_difference(comfy):
    """HunyuanVideo 1.5's edited layers: each double block's ``txt_attn.qkv`` (its k and v are the
    only way the text reaches the video: the model has no single-stream blocks and no pooled
    vector) and ``txt_mlp.0`` (the text stream of the next block). Feeding the unsafe prompt's run
    the safe prompt's inputs at these layers gives the safe prompt's velocity exactly: they carry
    all of the difference (txt_mlp.0 alone about 1 %, block 0's txt_attn.qkv alone about 30 %)."""
    name = "tiny_hunyuan_video15"
    model, clip = load_model(name), load_clip(name)
    dm = model.model.diffusion_model
    modules = [
        f"double_blocks.{i}.{t}" for i in range(len(dm.double_blocks)) for t in ("txt_attn.qkv", "txt_mlp.0")
    ]
    shares = swapped_input_share(model, clip, modules, 32)
    assert min(shares) > 0.999, shares


def swapped_input_share(
    model, clip, modules: list[str], latent_channels: int, streams: tuple[tuple[int, ...], ...] | None = None
) -> list[float]:
    """Per held-out pair, the share of the velocity difference between the unsafe and the safe
    prompt that goes away when the unsafe prompt's run gets the safe prompt's inputs at ``modules``
    (velocities at sigmas 0.9, 0.6 and 0.3 of one 2x8x8 latent). ``streams`` (LTX-2): the shapes of
    further latent streams (its audio) packed after the video into one latent with ``latent_shapes``,
    as ComfyUI's sampler gives LTX-2 even a video alone (``()``); every stream's velocity counts."""
    import comfy.model_management
    import comfy.utils

    dm = model.model.diffusion_model
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(1, latent_channels, 2, 8, 8, generator=g)
    more = {}
    if streams:
        x0, shapes = comfy.utils.pack_latents([x0, *(torch.randn(shape, generator=g) for shape in streams)])
        more["latent_shapes"] = shapes
    elif streams is not None:  # one stream: the sampler leaves it unpacked, with its shape
        more["latent_shapes"] = [x0.shape]
    points = [
        ((1 - s) * x0 + s * torch.randn(x0.shape, generator=g), torch.tensor([s])) for s in (0.9, 0.6, 0.3)
    ]
    comfy.model_management.load_models_gpu([model])

    def velocity(text: str, replace: dict | None = None, store: dict | None = None) -> torch.Tensor:
        handles = []
        for module in modules:

            def hook(_m, args, module=module):
                if store is not None:
                    store.setdefault(module, []).append(args[0].clone())
                if replace is not None:
                    return (replace[module].pop(0), *args[1:])
                return None

            handles.append(dm.get_submodule(module).register_forward_pre_hook(hook))
        try:
            kwargs = velocity_inputs(model, clip, text, points[0][0], **more)
            return torch.cat(
                [((x - model.model.apply_model(x, s, **kwargs)) / s).flatten() for x, s in points]
            )
        finally:
            for handle in handles:
                handle.remove()

    shares = []
    for unsafe, safe in HELD:
        inputs = {}
        v_safe = velocity(safe, store=inputs)
        v_unsafe = velocity(unsafe)
        v_cut = velocity(unsafe, replace=inputs)
        shares.append(1 - float((v_cut - v_safe).norm() / (v_unsafe - v_safe).norm()))
    return shares


def test_ltxv_cross_attention_kv_inputs_carry_the_whole_velocity_difference(comfy):
    """LTX-Video's edited layers: every block's ``attn2.to_k`` and ``.to_v``, the only layers that
    read the context (``caption_projection`` of the T5-XXL rows). Feeding the unsafe prompt's run
    the safe prompt's inputs there gives the safe prompt's velocity: they carry all of the
    difference (to_v alone 36-45 %, to_k alone 8-10 %, block 0 alone 28-35 %, block 1 23-27 %)."""
    name = "tiny_ltxv"
    model, clip = load_model(name), load_clip(name)
    blocks = range(len(model.model.diffusion_model.transformer_blocks))
    kv = [f"transformer_blocks.{i}.attn2.{t}" for i in blocks for t in ("to_k", "to_v")]
    assert min(swapped_input_share(model, clip, kv, 128)) > 0.999
    to_v = swapped_input_share(model, clip, kv[1::2], 128)
    assert 0.2 < min(to_v) and max(to_v) < 0.6, to_v


@needs_family("ltxav")
def test_ltxav_video_and_audio_cross_attention_kv_inputs_carry_the_whole_velocity_difference(comfy):
    """LTX-2's edited layers: every block's ``attn2.to_k`` / ``.to_v`` (the video stream's text
    cross attention) and ``audio_attn2.to_k`` / ``.to_v`` (the audio stream's). The connectors and
    caption projections before them run on the text alone, so these are the only layers that read
    the prompt. Feeding the unsafe prompt's run (a joint video + audio latent) the safe prompt's
    inputs at all of them gives the safe prompt's velocity, both streams': they carry all of the
    difference. Each stream's layers alone carry part of it, the rest goes through the other stream
    (the blocks' audio-to-video and video-to-audio attention)."""
    name = "tiny_ltxav"
    model, clip = load_model(name), load_clip(name)
    blocks = range(len(model.model.diffusion_model.transformer_blocks))
    video = [f"transformer_blocks.{i}.attn2.{t}" for i in blocks for t in ("to_k", "to_v")]
    audio = [f"transformer_blocks.{i}.audio_attn2.{t}" for i in blocks for t in ("to_k", "to_v")]
    audio_stream = ((1, 8, 5, 16),)
    assert min(swapped_input_share(model, clip, video + audio, 128, audio_stream)) > 0.999
    video_only = swapped_input_share(model, clip, video, 128, audio_stream)
    audio_only = swapped_input_share(model, clip, audio, 128, audio_stream)
    assert 0.4 < min(video_only) and max(video_only) < 0.9, video_only  # measured 0.54-0.71
    assert 0.02 < min(audio_only) and max(audio_only) < 0.3, audio_only  # measured 0.03-0.13
    # A video-only latent (LTX-2 run without audio): the video layers carry all of it.
    assert min(swapped_input_share(model, clip, video, 128, ())) > 0.999


@needs_family("ltxav")
def test_ltxav_edit_suppresses_at_the_layers_and_keeps_neutral_velocities(comfy):
    """LTX-2's default edit at the layers: held-out unsafe contexts move toward the safe ones at
    every edited layer (held-out distance after/before 0.5-0.9, mean under 0.85) and neutral
    prompts' one-step velocities change by less than 3 % (measured 1.7 %). The whole model's
    velocity, though, does not move toward the safe prompts' (see the xfail below)."""
    from video_unlearning.erasure.edits import pair_distance_ratio
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.refusal_nodes import site_activations

    name = "tiny_ltxav"
    model, clip, vector, patched, _, _ = erased(name)
    acts = site_activations(model, clip, [u for u, _ in HELD] + [s for _, s in HELD], PROBE_STEPS)
    weights = compat.current_weights(model, edited_modules(vector))
    for site in vector.sites:
        unsafe, safe = site.pooled(acts[site.name][: len(HELD)]), site.pooled(acts[site.name][len(HELD) :])
        for _, module in site.modules:
            ratios = pair_distance_ratio(weights[module][0], site.basis, 1.0, unsafe, safe)
            assert float(ratios.mean()) < 0.85 and float(ratios.max()) < 1.0, (module, ratios)
    # Prompts that are not among the estimate's neutral prompts.
    for text in ("a horse grazing in a meadow", "a lighthouse on a cliff", "a stack of books on a desk"):
        v = one_step_velocity(model, clip, name, text)
        assert float((one_step_velocity(patched, clip, name, text) - v).norm() / v.norm()) < 0.03, text


@needs_family("ltxav")
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="tiny LTX-2: 1017 of its 1024 context rows are the connectors' random learnable registers, "
    "so a prompt moves the velocity by only 0.6 % of its size (tiny LTX-Video: 12 %) and the edit's "
    "change of every row (neutral 1.7 %) outweighs it: held-out distances grow 2.7-3.9x",
)
def test_ltxav_velocity_moves_toward_safe_on_held_out_prompts(comfy):
    model, clip, _, patched, _, _ = erased("tiny_ltxav")
    assert_velocity_moves_toward_safe(model, patched, clip, "tiny_ltxav")


@needs_family("kandinsky5")
def test_kandinsky5_cross_attention_kv_and_pooled_inputs_carry_the_whole_velocity_difference(comfy):
    """Kandinsky 5's edited layers: every visual block's ``cross_attention.to_key`` and
    ``.to_value`` (the only layers that read the context, after the text transformer blocks) and
    ``pooled_text_embeddings.in_layer`` (the pooled CLIP-L vector, which joins the timestep
    embedding that modulates every block). Feeding the unsafe prompt's run the safe prompt's
    inputs at all of them gives the safe prompt's velocity: together they carry all of the
    difference (over 99.9 %); the keys and values alone carry 62-78 % of it, the pooled vector alone
    6-11 % (the rest is their interplay: the pooled vector modulates the text blocks too)."""
    name = "tiny_kandinsky5"
    model, clip = load_model(name), load_clip(name)
    blocks = range(len(model.model.diffusion_model.visual_transformer_blocks))
    kv = [
        f"visual_transformer_blocks.{i}.cross_attention.{t}" for i in blocks for t in ("to_key", "to_value")
    ]
    pooled = ["pooled_text_embeddings.in_layer"]
    assert min(swapped_input_share(model, clip, kv + pooled, 16)) > 0.999
    kv_only, pooled_only = (
        swapped_input_share(model, clip, kv, 16),
        swapped_input_share(model, clip, pooled, 16),
    )
    assert 0.5 < min(kv_only) and max(kv_only) < 0.9, kv_only
    assert 0.03 < min(pooled_only) and max(pooled_only) < 0.2, pooled_only


@needs_family("cogvideox")
def test_cogvideox_text_projection_input_carries_the_whole_velocity_difference(comfy):
    """CogVideoX's edited layer: ``patch_embed.text_proj``, its only text-only layer (after it the
    text joins the video in a joint sequence whose attention and feed-forward both share). Feeding
    the unsafe prompt's run the safe prompt's T5 rows there gives the safe prompt's velocity: it
    carries all of the difference, as the model's only text entry must."""
    name = "tiny_cogvideox"
    model, clip = load_model(name), load_clip(name)
    assert min(swapped_input_share(model, clip, ["patch_embed.text_proj"], 16)) > 0.999


def test_hunyuan15_quoted_text_adds_byt5_rows_that_the_estimate_leaves_out(comfy):
    """A prompt with quoted text gets byT5 glyph rows ahead of its Qwen rows in the text stream; the
    estimate reads the prompt's own rows only (the glyph stream renders the quoted words as
    letters, it does not carry the scene), and the edited model samples such prompts."""
    from video_unlearning.nodes.refusal_nodes import site_activations

    name = "tiny_hunyuan_video15"
    model, clip, vector, patched, _, _ = erased(name)
    quoted, plain = 'a nude woman holding a sign "hello"', "a nude woman holding a sign hello"  # 10, 8 words
    cond, extras = clip.encode_from_tokens_scheduled(clip.tokenize(quoted))[0]
    assert extras["conditioning_byt5small"].shape[-1] == 1472 and cond.shape[-1] == 3584
    acts = site_activations(model, clip, [quoted, plain], PROBE_STEPS)
    for site in vector.sites:
        with_glyphs, without = acts[site.name]
        assert [a.shape[0] for a in with_glyphs] == [cond.shape[1]] * PROBE_STEPS  # the prompt's rows only
        assert [a.shape[0] for a in without] == [cond.shape[1] - 2] * PROBE_STEPS  # less the two quotes
    assert torch.isfinite(one_velocity_sample(patched, clip, name, quoted)).all()


def one_velocity_sample(model, clip, name, text):
    return one_step_velocity(model, clip, name, text)


@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="tiny random text encoders: see the module docstring"
)
@pytest.mark.parametrize("name", ALL)
def test_issue_criteria_with_the_tiny_random_encoders(comfy, name):
    """Held-out suppression <= 0.2 and neutral change <= 2 % together, default settings."""
    from video_unlearning.erasure.edits import pair_distance_ratio, relative_output_change
    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.refusal_nodes import site_activations

    model, clip, vector, _, _, _ = erased(name)
    acts = site_activations(model, clip, [u for u, _ in HELD] + [s for _, s in HELD], PROBE_STEPS)
    weights = compat.current_weights(model, edited_modules(vector))
    for site in vector.sites:
        unsafe, safe = site.pooled(acts[site.name][: len(HELD)]), site.pooled(acts[site.name][len(HELD) :])
        for _, module in site.modules:
            weight, bias = weights[module]
            assert pair_distance_ratio(weight, site.basis, 1.0, unsafe, safe).max() <= 0.2
            assert relative_output_change(weight, bias, site.basis, 1.0, site.neutral) <= 0.02


@pytest.mark.parametrize("name", ALL)
def test_a_large_contrast_weight_keeps_neutral_prompts_within_two_percent(comfy, name):
    from video_unlearning.erasure.edits import relative_output_change
    from video_unlearning.nodes import comfy_compat as compat

    model, clip = load_model(name), load_clip(name)
    changes = {}
    for alpha in (0.0, 1000.0):
        vector, _ = estimate(model, clip, alpha=alpha)
        weights = compat.current_weights(model, edited_modules(vector))
        changes[alpha] = [
            relative_output_change(*weights[module], site.basis, 1.0, site.neutral)
            for site in vector.sites
            for _, module in site.modules
        ]
    assert max(changes[1000.0]) <= 0.02, changes
    assert sum(changes[1000.0]) < sum(changes[0.0])


@pytest.mark.parametrize(
    "name",
    [
        "tiny_wan21_i2v",
        "tiny_hunyuan_video",
        "tiny_hunyuan_video15",
        "tiny_ltxv",
        "tiny_ltxav",
        "tiny_kandinsky5",
        "tiny_cogvideox",
    ],
)
def test_incoming_model_untouched_and_original_sampling_bit_identical(comfy, name):
    import comfy.model_management

    model, clip = load_model(name), load_clip(name)
    state = {k: v.clone() for k, v in model.model.state_dict().items()}
    original = one_step_velocity(model, clip, name, "a nude girl swimming in a lake")
    vector, _ = estimate(model, clip)
    patched, _, _ = apply(model, vector)
    edited = one_step_velocity(patched, clip, name, "a nude girl swimming in a lake")
    again = one_step_velocity(model, clip, name, "a nude girl swimming in a lake")
    assert not torch.equal(edited, original)
    assert torch.equal(again, original)
    assert model.patches == {} and patched.patches
    comfy.model_management.unload_all_models()
    assert all(torch.equal(v, state[k]) for k, v in model.model.state_dict().items())


@pytest.mark.parametrize(
    "name, dtype, tolerance",
    [
        ("tiny_wan21_t2v", torch.float16, 2e-3),
        ("tiny_wan22_5b", torch.bfloat16, 1e-2),
        ("tiny_wan21_t2v", torch.float8_e4m3fn, 0.1),
        ("tiny_hunyuan_video", torch.float8_e4m3fn, 0.1),
        ("tiny_hunyuan_video15", torch.float16, 2e-3),
        ("tiny_hunyuan_video15", torch.bfloat16, 1e-2),
        ("tiny_hunyuan_video15", torch.float8_e4m3fn, 0.1),
        ("tiny_ltxv", torch.float16, 2e-3),
        ("tiny_ltxv", torch.bfloat16, 1e-2),
        ("tiny_ltxv", torch.float8_e4m3fn, 0.1),
        ("tiny_ltxav", torch.float16, 2e-3),
        ("tiny_ltxav", torch.bfloat16, 1e-2),
        ("tiny_ltxav", torch.float8_e4m3fn, 0.1),
        ("tiny_kandinsky5", torch.float16, 2e-3),
        ("tiny_kandinsky5", torch.bfloat16, 1e-2),
        ("tiny_kandinsky5", torch.float8_e4m3fn, 0.1),
        ("tiny_cogvideox", torch.float16, 2e-3),
        ("tiny_cogvideox", torch.bfloat16, 1e-2),
        ("tiny_cogvideox", torch.float8_e4m3fn, 0.1),
    ],
)
def test_low_precision_weights_get_the_edit_computed_in_fp32(comfy, name, dtype, tolerance):
    import comfy.model_management
    import comfy.sd
    import folder_paths
    import nodes

    from video_unlearning.nodes import comfy_compat as compat

    filename = TINY_MODELS[name].filename
    if dtype == torch.float8_e4m3fn:
        model = nodes.UNETLoader().load_unet(filename, "fp8_e4m3fn")[0]
    else:
        path = folder_paths.get_full_path_or_raise("diffusion_models", filename)
        model = comfy.sd.load_diffusion_model(path, model_options={"dtype": dtype})
    clip = load_clip(name)
    vector, _ = estimate(model, clip)
    patched, lora, _ = apply(model, vector)
    assert all(t.dtype == torch.float32 for t in lora.values())
    modules = edited_modules(vector)
    stored = compat.current_weights(model, modules)
    comfy.model_management.load_models_gpu([patched])  # ComfyUI applies the patches in the model's dtype
    dm = patched.model.diffusion_model
    for site in vector.sites:
        q = site.basis
        for _, module in site.modules:
            applied = dm.get_submodule(module).weight
            # CogVideoX builds its patch embedding in fp32 whatever the model's dtype.
            assert applied.dtype == (torch.float32 if module.startswith("patch_embed.") else dtype), module
            w = stored[module][0]
            expected = w - (w @ q) @ q.T
            assert float((applied.float() - expected).norm() / w.norm()) < tolerance, module
            assert float((applied.float() @ q).norm() / (w @ q).norm()) < 3 * tolerance, module
    sample = one_step_velocity(patched, clip, name, "a nude girl swimming in a lake")
    assert torch.isfinite(sample).all()
    comfy.model_management.unload_all_models()


def _other_family_model(config: dict):
    import comfy.model_detection
    import comfy.model_patcher

    if config.get("image_model") == "flux":  # FluxParams' required fields grow between versions
        from comfy.ldm.flux.model import FluxParams

        from fixtures.tiny_models import with_required_fields

        config = dict(with_required_fields(FluxParams, config), image_model="flux")
    model_config = comfy.model_detection.model_config_from_unet_config(config)
    with torch.device("meta"):
        base = model_config.get_model({})
    return comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))


SD15_CONFIG = {
    "use_checkpoint": False,
    "image_size": 32,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "in_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "use_linear_in_transformer": False,
    "context_dim": 768,
    "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
FLUX_CONFIG = {
    "image_model": "flux",
    "axes_dim": [16, 56, 56],
    "num_heads": 24,
    "mlp_ratio": 4.0,
    "theta": 10000,
    "out_channels": 16,
    "qkv_bias": True,
    "in_channels": 16,
    "hidden_size": 3072,
    "context_in_dim": 4096,
    "patch_size": 2,
    "vec_in_dim": 768,
    "depth": 1,
    "depth_single_blocks": 1,
    "guidance_embed": True,
}


@pytest.mark.parametrize("config, family", [(SD15_CONFIG, "SD15"), (FLUX_CONFIG, "Flux")])
def test_models_of_other_families_are_refused_by_name(comfy, config, family):
    other = _other_family_model(config)
    _, clip, vector, _, _, _ = erased("tiny_wan21_t2v")
    for call in (lambda: estimate(other, clip), lambda: apply(other, vector)):
        with pytest.raises(
            ValueError, match=f"this MODEL is {family}.*supported: Wan 2.1 T2V/I2V.*HunyuanVideo"
        ):
            call()


def test_vectors_from_another_architecture_width_or_expert_are_refused(comfy):
    _, _, t2v_vector, _, _, _ = erased("tiny_wan21_t2v")
    with pytest.raises(
        ValueError, match="estimated on wan21_t2v \\(width 256\\) but the MODEL is hunyuan_video"
    ):
        apply(load_model("tiny_hunyuan_video"), t2v_vector)
    with pytest.raises(ValueError, match="estimated on wan21_t2v \\(width 256\\) but the MODEL is wan22_5b"):
        apply(load_model("tiny_wan22_5b"), t2v_vector)
    wide = __import__("dataclasses").replace(t2v_vector, width=5120)
    with pytest.raises(ValueError, match="width 5120\\) but the MODEL is wan21_t2v \\(width 256\\)"):
        apply(load_model("tiny_wan21_t2v"), wide)
    _, _, high_noise, _, _, _ = erased("tiny_wan22_a14b_high_noise")
    with pytest.raises(ValueError, match="different model of the same architecture .*A14B"):
        apply(load_model("tiny_wan22_a14b_low_noise"), high_noise)
    _, _, hunyuan, _, _, _ = erased("tiny_hunyuan_video")
    _, _, hunyuan15, _, _, _ = erased("tiny_hunyuan_video15")
    with pytest.raises(
        ValueError, match="estimated on hunyuan_video \\(width 256\\) but the MODEL is hunyuan_video15 "
    ):
        apply(load_model("tiny_hunyuan_video15"), hunyuan)
    ltxv = erased("tiny_ltxv")[2]
    with pytest.raises(ValueError, match="estimated on ltxv \\(width 256\\) but the MODEL is wan21_t2v "):
        apply(load_model("tiny_wan21_t2v"), ltxv)
    with pytest.raises(ValueError, match="estimated on wan21_t2v \\(width 256\\) but the MODEL is ltxv "):
        apply(load_model("tiny_ltxv"), t2v_vector)
    with pytest.raises(
        ValueError, match="estimated on hunyuan_video15 \\(width 256\\) but the MODEL is hunyuan_video "
    ):
        apply(load_model("tiny_hunyuan_video"), hunyuan15)
    if not TINY_MODELS["tiny_kandinsky5"].missing_from_comfyui:
        kandinsky = erased("tiny_kandinsky5")[2]
        with pytest.raises(
            ValueError, match="estimated on kandinsky5 \\(width 256\\) but the MODEL is wan21_t2v "
        ):
            apply(load_model("tiny_wan21_t2v"), kandinsky)
        with pytest.raises(
            ValueError, match="estimated on ltxv \\(width 256\\) but the MODEL is kandinsky5 "
        ):
            apply(load_model("tiny_kandinsky5"), ltxv)
    if not TINY_MODELS["tiny_ltxav"].missing_from_comfyui:  # LTX-2 and LTX-Video: both 256 wide
        ltxav = erased("tiny_ltxav")[2]
        with pytest.raises(ValueError, match="estimated on ltxav \\(width 256\\) but the MODEL is ltxv "):
            apply(load_model("tiny_ltxv"), ltxav)
        with pytest.raises(ValueError, match="estimated on ltxv \\(width 256\\) but the MODEL is ltxav "):
            apply(load_model("tiny_ltxav"), ltxv)


def test_bad_prompts_and_block_ranges_get_clear_errors(comfy):
    model, clip, vector, _, _, _ = erased("tiny_wan21_t2v")
    with pytest.raises(ValueError, match="5 unsafe prompt\\(s\\) but 4 safe prompt\\(s\\)"):
        from video_unlearning.nodes.refusal_nodes import UnlearnRefusalEstimate

        UnlearnRefusalEstimate.execute(
            model,
            clip,
            "custom",
            "",
            "\n".join(u for u, _ in EST),
            "\n".join(s for _, s in EST[:4]),
            "a dog",
            4,
            10.0,
            PROBE_STEPS,
        )
    with pytest.raises(ValueError, match="no prompts: with preset 'custom'"):
        estimate(model, clip, pairs=[])
    with pytest.raises(ValueError, match="no neutral prompts"):
        estimate(model, clip, neutral="\n \n")
    with pytest.raises(ValueError, match="needs a person's name"):
        estimate(model, clip, pairs=[], preset="person", name="")
    with pytest.raises(
        ValueError, match="block selection '0-5' is outside the model: blocks are numbered 0-1"
    ):
        apply(model, vector, blocks="0-5")
    with pytest.raises(ValueError, match="cannot read 'last'"):
        apply(model, vector, blocks="0,last")


@pytest.mark.parametrize(
    "name, stream_samples, rank",
    [
        ("tiny_wan21_t2v", 5, 8),
        ("tiny_hunyuan_video", 5 * PROBE_STEPS, 8),
        # No pooled site: the fewest samples are the text stream's, one per pair and probe step.
        ("tiny_hunyuan_video15", 5 * PROBE_STEPS, 16),
    ],
)
def test_rank_above_the_number_of_difference_samples_is_clamped_and_reported(
    comfy, name, stream_samples, rank
):
    model, clip = load_model(name), load_clip(name)
    vector, text = estimate(model, clip, rank=rank, neutral=SHORT_NEUTRAL)
    assert vector.sites[0].unsafe.shape[0] == stream_samples  # HunyuanVideo: one per pair and probe step
    (concept,) = vector.concepts
    fewest = 5 if TINY_MODELS[name].family != "hunyuan_video15" else stream_samples
    assert (concept.rank_requested, concept.rank_used, concept.samples, concept.rank_clamped) == (
        rank,
        fewest,
        fewest,
        True,
    )
    assert f"rank {rank} clamped to {fewest}: only {fewest} difference samples" in text


def test_one_block_range_edits_only_those_blocks(comfy):
    model, _, vector, _, _, _ = erased("tiny_wan21_t2v")
    patched, lora, report = apply(model, vector, blocks="1")
    assert sorted(patched.patches) == [
        "diffusion_model.blocks.1.cross_attn.k.weight",
        "diffusion_model.blocks.1.cross_attn.v.weight",
    ]
    assert len(lora) == 6 and "blocks 1" in report


def test_two_concepts_in_one_vector_each_lose_their_direction(comfy):
    from video_unlearning.nodes import comfy_compat as compat

    model, clip = load_model("tiny_wan21_t2v"), load_clip("tiny_wan21_t2v")
    nudity, _ = estimate(model, clip)
    both, text = estimate(model, clip, pairs=GORE, name="gore", add_to=nudity, neutral=SHORT_NEUTRAL)
    assert [c.name for c in both.concepts] == ["nudity", "gore"] and "- gore: 3 pairs" in text
    (site,) = both.sites
    q = site.basis
    torch.testing.assert_close(q.T @ q, torch.eye(2), atol=1e-5, rtol=0)
    patched, lora, _ = apply(model, both)
    assert lora["diffusion_model.blocks.0.cross_attn.k.lora_down.weight"].shape == (2, 256)
    module = "blocks.0.cross_attn.k"
    after = compat.current_weights(patched, [module])[module][0]
    before = compat.current_weights(model, [module])[module][0]
    for direction in site.directions:
        assert float((after @ direction).norm() / (before @ direction).norm()) < 1e-4
    with pytest.raises(ValueError, match="estimated on wan21_t2v .* but the MODEL is hunyuan_video"):
        estimate(load_model("tiny_hunyuan_video"), load_clip("tiny_hunyuan_video"), add_to=nudity)


def test_person_preset_fills_in_the_name(comfy):
    model, clip = load_model("tiny_wan21_t2v"), load_clip("tiny_wan21_t2v")
    vector, text = estimate(model, clip, pairs=[], preset="person", name="Jane Roe", neutral=SHORT_NEUTRAL)
    (concept,) = vector.concepts
    assert (
        concept.name == "Jane Roe"
        and ("a photo of Jane Roe smiling", "a photo of a person smiling") in concept.pairs
    )
    assert "- Jane Roe: 6 pairs" in text


def test_patches_that_do_not_all_match_fail_loudly(comfy):
    from video_unlearning.nodes import comfy_compat as compat

    model = load_model("tiny_wan21_t2v")
    up, down = torch.zeros(256, 1), torch.zeros(1, 256)
    factors = {"blocks.0.cross_attn.k": (up, down), "blocks.7.cross_attn.k": (up, down)}
    with pytest.raises(RuntimeError, match="only 1 of 2 layers could be patched; missing: .*blocks.7"):
        compat.add_lowrank_patches(model, factors)
    with pytest.raises(RuntimeError, match="nothing to patch"):
        compat.add_lowrank_patches(model, {})
    assert model.patches == {}


def test_hunyuan15_lora_file_names_its_architecture_and_is_refused_on_hunyuan_video(comfy):
    """UnlearnSaveLoRA / UnlearnLoadLoRA on HunyuanVideo 1.5: the file's metadata names it, it loads
    back with the same edit, and the loader refuses it on HunyuanVideo 1.0 (and 1.0's on 1.5)."""
    import json

    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA, UnlearnSaveLoRA

    model, _, vector, patched, lora, _ = erased("tiny_hunyuan_video15")
    filename = UnlearnSaveLoRA.execute(lora, "refusal/tiny_hunyuan_video15").result[0]
    loaded, metadata = UnlearnLoadLoRA.execute(model, filename, 1.0).result
    assert json.loads(metadata)["base_architecture"] == "hunyuan_video15"
    modules = edited_modules(vector)
    assert (
        max_relative_difference(
            compat.current_weights(loaded, modules), compat.current_weights(patched, modules)
        )
        < 1e-5
    )
    hunyuan, _, _, _, hunyuan_lora, _ = erased("tiny_hunyuan_video")
    with pytest.raises(ValueError, match="made for hunyuan_video15, but this model is hunyuan_video"):
        UnlearnLoadLoRA.execute(hunyuan, filename, 1.0)
    other = UnlearnSaveLoRA.execute(hunyuan_lora, "refusal/tiny_hunyuan_video_for_15").result[0]
    with pytest.raises(ValueError, match="made for hunyuan_video, but this model is hunyuan_video15"):
        UnlearnLoadLoRA.execute(model, other, 1.0)


@pytest.mark.parametrize(
    "name, layer",
    [
        ("tiny_ltxv", ("transformer_blocks.", ".attn2.to_")),
        ("tiny_ltxav", ("transformer_blocks.", "attn2.to_")),
        ("tiny_kandinsky5", ("visual_transformer_blocks.", "")),
        ("tiny_cogvideox", ("patch_embed.", "text_proj")),
    ],
)
def test_new_family_lora_file_names_its_architecture_and_is_refused_on_wan(comfy, name, layer):
    """UnlearnSaveLoRA / UnlearnLoadLoRA on LTX-Video, Kandinsky 5 and CogVideoX: the file's metadata
    names the architecture, it loads back with the same edit, and the loader refuses it on Wan 2.1
    (and Wan's on it), though all are 256 wide."""
    import json

    from video_unlearning.nodes import comfy_compat as compat
    from video_unlearning.nodes.lora_file_nodes import UnlearnLoadLoRA, UnlearnSaveLoRA

    model, _, vector, patched, lora, _ = erased(name)
    arch = vector.architecture
    filename = UnlearnSaveLoRA.execute(lora, f"refusal/{name}").result[0]
    loaded, metadata = UnlearnLoadLoRA.execute(model, filename, 1.0).result
    assert json.loads(metadata)["base_architecture"] == arch == compat.detect_architecture(model).name
    modules = edited_modules(vector)
    prefix, part = layer
    in_blocks = [m for m in modules if m.startswith(prefix)]
    assert in_blocks and all(part in m for m in in_blocks)
    assert (
        max_relative_difference(
            compat.current_weights(loaded, modules), compat.current_weights(patched, modules)
        )
        < 1e-5
    )
    wan, _, _, _, wan_lora, _ = erased("tiny_wan21_t2v")
    with pytest.raises(ValueError, match=f"made for {arch}, but this model is wan21_t2v"):
        UnlearnLoadLoRA.execute(wan, filename, 1.0)
    other = UnlearnSaveLoRA.execute(wan_lora, f"refusal/tiny_wan21_t2v_for_{arch}").result[0]
    with pytest.raises(ValueError, match=f"made for wan21_t2v, but this model is {arch}"):
        UnlearnLoadLoRA.execute(model, other, 1.0)
