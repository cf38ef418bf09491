"""The toy video world: generator, decoder, detector, MiniLM text encoder and the trained toy Wan model."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import safetensors
import torch

from graphs import Graph, text_to_video
from video_unlearning.toy_world import MODEL_FILE, detector, text, world

CLEAN_SEEDS = 15
# ComfyUI sampler settings for the toy model (KSampler's widget names).
SAMPLER = {"steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}


def test_generator_is_seeded_and_varies_backgrounds_and_positions():
    concept = world.concept_named("red ball bouncing")
    first, again = world.render_clip(concept, 7), world.render_clip(concept, 7)
    assert first.shape == (world.LATENT_CHANNELS, world.FRAMES, world.HEIGHT, world.WIDTH)
    assert torch.equal(first, again)
    other = world.render_clip(concept, 8)
    background_rgb = world.features(torch.stack([first, other]))[:, 0:3, 0, 0, 0]
    assert (background_rgb[0] - background_rgb[1]).abs().max() > 0.01
    masks = detector.object_mask(world.features(torch.stack([first, other])))
    assert not torch.allclose(masks[0], masks[1], atol=0.1)


def test_concepts_differ_and_include_close_pairs():
    names = [c.name for c in world.CONCEPTS]
    identities = [c.identity for c in world.CONCEPTS]
    assert len(set(names)) == len(names) >= 8 and len(set(identities)) == len(identities)
    red_ball = world.concept_named("red ball")
    same_colour = [c for c in world.CONCEPTS if c.colour == red_ball.colour and c != red_ball]
    same_shape = [c for c in world.CONCEPTS if c.shape == red_ball.shape and c != red_ball]
    assert world.concept_named("red cube") in same_colour and world.concept_named("blue ball") in same_shape
    with pytest.raises(KeyError):
        world.concept_named("purple dog")


def test_latent_basis_is_orthogonal_and_text_projection_keeps_inner_products():
    basis = world.latent_basis()
    assert torch.allclose(basis.T @ basis, torch.eye(world.LATENT_CHANNELS), atol=1e-6)
    projection = text.text_projection()
    assert projection.shape == (text.TEXT_DIM, text.MINILM_DIM)
    assert torch.allclose(projection.T @ projection, torch.eye(text.MINILM_DIM), atol=1e-5)
    assert torch.equal(projection, text.text_projection())


def test_decoder_gives_rgb_frames_in_range_with_the_concept_colour():
    concept = world.concept_named("blue cube")
    z = world.render_batch([concept, concept], [1, 2])
    frames = world.decode_rgb(z)
    up = world.PIXELS_PER_LATENT
    assert frames.shape == (2, world.FRAMES, world.HEIGHT * up, world.WIDTH * up, 3)
    assert frames.min() >= 0 and frames.max() <= 1
    mask = detector.object_mask(world.features(z[0]))[0] > 0.99
    mask = mask.repeat_interleave(up, 0).repeat_interleave(up, 1)
    mean = frames[0, 0][mask].mean(dim=0)
    assert torch.allclose(mean, torch.tensor(world.COLOURS["blue"]), atol=0.1)


def test_detector_reads_clean_clips_of_every_concept(tmp_path):
    concepts = [c for c in world.CONCEPTS for _ in range(CLEAN_SEEDS)]
    seeds = [50_000 + i for i in range(len(concepts))]
    found = detector.detect_batch(world.render_batch(concepts, seeds))
    per_concept = {
        c.name: detector.accuracy(found[i * CLEAN_SEEDS : (i + 1) * CLEAN_SEEDS], [c] * CLEAN_SEEDS)
        for i, c in enumerate(world.CONCEPTS)
    }
    assert sum(per_concept.values()) / len(per_concept) >= 0.95, per_concept
    assert min(per_concept.values()) >= 0.9, per_concept
    assert detector.motion_accuracy(found, concepts) >= 0.95
    rows = [world.decode_rgb(world.render_clip(c, 1)[None])[0] for c in world.CONCEPTS]
    assert world.save_sheet(rows, tmp_path / "concepts.png").stat().st_size > 0
    assert world.save_gif(rows[0], tmp_path / "clip.gif").stat().st_size > 0


def test_detector_sees_nothing_without_an_object():
    f = world.render_features(world.CONCEPTS[0], 3)
    f[3] = -world.OBJECT_GAIN
    f[0:3] = f[0:3, :, :1, :1]  # a flat background colour where the object was
    found = detector.detect(world.to_latent(f))
    assert (found.colour, found.shape, found.motion, found.identity) == (None, None, None, None)


def test_wilson_interval_brackets_the_rate():
    low, high = detector.wilson_interval(9, 10)
    assert low < 0.9 < high <= 1.0
    assert detector.wilson_interval(0, 0) == (0.0, 1.0)
    for total in range(1, 200):  # all hits / no hits: the bound is the rate itself, not 1 - 1e-16
        assert detector.wilson_interval(total, total)[1] == 1.0
        assert detector.wilson_interval(0, total)[0] == 0.0


# --- the text encoder (a real comfy CLIP) ----------------------------------------------------------


@pytest.fixture(scope="module")
def toy_clip(comfy):
    from video_unlearning.nodes.toy_world_nodes import ToyWorldTextEncoder

    return ToyWorldTextEncoder.execute().result[0]


def _cond(clip, prompt: str) -> torch.Tensor:
    return clip.encode_from_tokens(clip.tokenize(prompt), return_dict=True)["cond"]


def test_encoder_gives_wan_format_with_zero_padding(toy_clip):
    import comfy.sd

    assert isinstance(toy_clip, comfy.sd.CLIP)
    cond = _cond(toy_clip, "a red ball bouncing")
    assert cond.shape == (1, text.MIN_TOKENS, text.TEXT_DIM)
    real = cond[0].abs().sum(dim=-1) > 0
    # [CLS] a red ball bouncing [SEP]: 6 real rows, the rest zero padding.
    assert real[:6].all() and not real[6:].any()
    assert torch.equal(cond, _cond(toy_clip, "a red ball bouncing"))
    long_prompt = " ".join(["a red ball bouncing on a wooden floor"] * 10)
    assert _cond(toy_clip, long_prompt).shape[1] > text.MIN_TOKENS


def test_encoder_matches_minilm_from_transformers(toy_clip):
    from transformers import AutoModel, AutoTokenizer

    prompt = "a green star spinning"
    tokenizer = AutoTokenizer.from_pretrained(str(text.minilm_dir()), local_files_only=True)
    model = AutoModel.from_pretrained(str(text.minilm_dir()), local_files_only=True).eval()
    batch = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    # Row 0 is sentence-transformers' embedding (mean pooling); mapped back through P^T exactly.
    sentence = hidden[0].mean(dim=0)
    row0 = _cond(toy_clip, prompt)[0, 0] @ text.text_projection()
    assert torch.allclose(row0, sentence, atol=1e-4)


def _words(prompt: str) -> set[str]:
    return set(prompt.lower().replace(",", " ").replace(":", " ").replace("-", " ").split())


def test_held_out_wordings_use_no_training_attribute_word_and_other_sentence_shapes():
    text.check_vocabularies()
    train_words = text.TRAIN.words()
    assert len(train_words) > 100  # many phrasings: 18 colour, 12 object, 4 motion phrases each
    # Only the bare phrase "{a} {c} {o} {m}" is shared; every other held-out sentence shape is new.
    assert set(text.HELD_OUT.templates) & set(text.TRAIN.templates) == {"{a} {c} {o} {m}"}
    for concept in world.CONCEPTS:
        held_out = text.held_out_prompts(concept, 10_000)
        assert len(set(held_out)) == len(held_out) == text.HELD_OUT.size(concept) >= 100
        for prompt in held_out:
            assert not _words(prompt) & train_words, prompt
        # What a method is given (training vocabulary, any pool) never appears among them.
        assert not set(text.train_prompts(concept, 500, pool=1)) & set(held_out)
        assert text.train_prompts(concept, 5, pool=0)[0] == concept.prompt


def test_vocabulary_check_names_a_compound_of_a_training_word(monkeypatch):
    compound = dataclasses.replace(text.HELD_OUT, shapes={**text.HELD_OUT.shapes, "star": ("superstar",)})
    monkeypatch.setattr(text, "HELD_OUT", compound)
    with pytest.raises(ValueError, match="'superstar' overlaps training words \\['star'\\]"):
        text.check_vocabularies()


def test_prompt_draws_are_seeded_and_pools_differ():
    concept = world.CONCEPTS[3]
    assert text.train_prompts(concept, 8, pool=1) == text.train_prompts(concept, 8, pool=1)
    assert text.train_prompts(concept, 8, pool=1) != text.train_prompts(concept, 8, pool=2)
    assert text.held_out_prompts(concept, 8) == text.held_out_prompts(concept, 8)


# --- the trained toy Wan model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_model_name(host_base) -> str:
    target = host_base / "models" / "diffusion_models" / MODEL_FILE.name
    if not target.exists():
        shutil.copy(MODEL_FILE, target)
    return MODEL_FILE.name


def test_committed_toy_model_is_small_and_says_how_it_was_made():
    assert MODEL_FILE.stat().st_size <= 20 * 1024 * 1024
    with safetensors.safe_open(str(MODEL_FILE), framework="pt") as f:
        metadata = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}
    for key in ("seed", "steps", "script_version", "script"):
        assert metadata.get(key), key


def test_toy_model_loads_through_stock_unet_loader_as_wan21_t2v(comfy, toy_model_name):
    import nodes

    model = nodes.UNETLoader().load_unet(toy_model_name, "default")[0]
    assert type(model.model.model_config).__name__ == "WAN21_T2V"
    with safetensors.safe_open(str(MODEL_FILE), framework="pt") as f:
        trained = json.loads(f.metadata()["config"])
    wan = model.model.diffusion_model
    assert (wan.dim, wan.num_heads, wan.num_layers) == (
        trained["dim"],
        trained["num_heads"],
        trained["num_layers"],
    )
    assert wan.dim // wan.num_heads == 128


@pytest.mark.parametrize("name", ["red ball bouncing", "red cube sliding left", "blue ball bouncing"])
def test_comfy_samples_of_the_toy_model_show_the_prompted_concept(comfy, toy_clip, toy_model_name, name):
    import nodes

    from video_unlearning.nodes.toy_world_nodes import normalised

    model = nodes.UNETLoader().load_unet(toy_model_name, "default")[0]
    concept = world.concept_named(name)
    positive = nodes.CLIPTextEncode().encode(toy_clip, concept.prompt)[0]
    negative = nodes.CLIPTextEncode().encode(toy_clip, "")[0]
    latent = {"samples": torch.zeros(2, world.LATENT_CHANNELS, world.FRAMES, world.HEIGHT, world.WIDTH)}
    settings = [SAMPLER[k] for k in ("steps", "cfg", "sampler_name", "scheduler")]
    out = nodes.common_ksampler(model, 11, *settings, positive, negative, latent, denoise=SAMPLER["denoise"])[
        0
    ]
    found = detector.detect_batch(normalised(out["samples"]))
    assert all(d.shows(concept) for d in found), found


def test_toy_world_graph_through_the_server(comfy_server, toy_model_name):
    graph = Graph()
    unet = graph.node("UNETLoader", unet_name=toy_model_name, weight_dtype="default")
    clip = graph.node("UnlearnToyWorldTextEncoder")
    sampler = text_to_video(
        graph,
        unet,
        clip,
        "a green star spinning",
        width=world.WIDTH * world.PIXELS_PER_LATENT,
        height=world.HEIGHT * world.PIXELS_PER_LATENT,
        length=world.VIDEO_FRAMES,
        batch_size=2,
        seed=3,
        **SAMPLER,
    )["sampler"]
    detect = graph.node("UnlearnToyWorldDetect", samples=Graph.out(sampler), concept="green star spinning")
    frames = graph.node("UnlearnToyWorldDecode", samples=Graph.out(sampler), upscale=8)
    preview = graph.node("PreviewImage", images=Graph.out(frames))
    clean = graph.node("UnlearnToyWorldClip", concept="yellow cube spinning", seed=0, batch_size=2)
    detect_clean = graph.node(
        "UnlearnToyWorldDetect", samples=Graph.out(clean), concept="yellow cube spinning"
    )
    outputs = comfy_server.run_prompt(graph.nodes)["outputs"]
    assert outputs[detect]["text"][0].endswith("green star: 2 of 2 clips"), outputs[detect]
    assert outputs[detect_clean]["text"][0].endswith("yellow cube: 2 of 2 clips"), outputs[detect_clean]
    assert len(outputs[preview]["images"]) == 2 * world.FRAMES
