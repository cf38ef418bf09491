"""The tiny text encoders are real ComfyUI CLIP objects with Wan- and HunyuanVideo-shaped output."""

from __future__ import annotations

import torch

from fixtures.tiny_models import TEXT_ENCODER_FILES, needs_family


def _load(kind: str):
    from comfy_test_nodes.nodes import TinyTextEncoderLoader

    return TinyTextEncoderLoader.execute(TEXT_ENCODER_FILES[kind], kind).result[0]


def test_wan_conditioning_shape_padding_and_determinism(comfy):
    import comfy.sd

    clip = _load("wan")
    assert isinstance(clip, comfy.sd.CLIP)
    out = clip.encode_from_tokens(clip.tokenize("a red ball bouncing"), return_dict=True)
    cond = out["cond"]
    assert cond.shape == (1, 512, 4096)
    # "a red ball bouncing" is 4 words + end token: 5 real rows, the rest zeroed padding.
    real = cond[0].abs().sum(dim=-1) > 0
    assert real[:5].all() and not real[5:].any()
    again = _load("wan").encode_from_tokens(clip.tokenize("a red ball bouncing"))
    assert torch.equal(cond, again)
    other = clip.encode_from_tokens(clip.tokenize("a blue cube sliding"))
    assert (cond - other)[0, :5].abs().max() > 0.1


def test_wan_scheduled_encoding_gives_conditioning_list(comfy):
    clip = _load("wan")
    conditioning = clip.encode_from_tokens_scheduled(clip.tokenize("a dog"))
    assert len(conditioning) == 1
    cond, extras = conditioning[0]
    assert cond.shape == (1, 512, 4096)
    assert isinstance(extras, dict)


def test_hunyuan_conditioning_has_llm_stream_and_pooled_clip(comfy):
    clip = _load("hunyuan_video")
    out = clip.encode_from_tokens(clip.tokenize("a woman on a beach"), return_dict=True)
    assert out["cond"].shape == (1, 6, 4096)  # 5 words + end token, no padding
    assert out["pooled_output"].shape == (1, 768)
    other = clip.encode_from_tokens(clip.tokenize("a man in a city"), return_dict=True)
    assert (out["pooled_output"] - other["pooled_output"]).abs().max() > 1e-3


def test_ltxv_conditioning_is_t5xxl_padded_to_128_with_a_mask(comfy):
    """As ComfyUI's LTX-Video T5-XXL: 4096-d rows under ``t5xxl``, padded to 128 tokens, with an
    attention mask marking the real ones (the padding rows are not zeroed) and no pooled vector."""
    clip = _load("ltxv")
    tokens = clip.tokenize("a woman on a beach")
    assert sorted(tokens) == ["t5xxl"]
    cond, extras = clip.encode_from_tokens_scheduled(tokens)[0]
    assert cond.shape == (1, 128, 4096) and extras["pooled_output"] is None
    mask = extras["attention_mask"]
    assert mask.shape == (1, 128) and int(mask.sum()) == 6 and bool(mask[0, :6].all())  # 5 words + end
    assert cond[0, 6:].abs().sum() > 0
    other = clip.encode_from_tokens_scheduled(clip.tokenize("a man in a city"))[0][0]
    assert (cond - other)[0, :6].abs().max() > 0.1


def test_hunyuan15_conditioning_has_qwen_rows_and_byt5_rows_for_quoted_text(comfy):
    """As ComfyUI's HunyuanVideo 1.5 encoder: 3584-d Qwen rows under ``qwen25_7b``, no pooled vector,
    and byT5 glyph rows (1472-d) only when the prompt quotes text."""
    clip = _load("hunyuan_video15")
    assert sorted(clip.tokenize("a woman on a beach")) == ["qwen25_7b"]
    cond, extras = clip.encode_from_tokens_scheduled(clip.tokenize("a woman on a beach"))[0]
    assert cond.shape == (1, 6, 3584) and extras["pooled_output"] is None
    assert "conditioning_byt5small" not in extras and "attention_mask" not in extras
    tokens = clip.tokenize('a sign reading "hello"')
    assert sorted(tokens) == ["byt5", "qwen25_7b"]
    cond, extras = clip.encode_from_tokens_scheduled(tokens)[0]
    assert cond.shape[-1] == 3584 and extras["conditioning_byt5small"].shape[::2] == (1, 1472)


@needs_family("ltxav")
def test_ltxav_conditioning_is_comfyuis_own_gemma3_projection_unprocessed(comfy):
    """The LTX-2 stand-in is ComfyUI's LTXAVTEModel around a tiny Gemma 3: the prompt's rows only
    (start token and words; the left padding to 1024 cut off), projected to the caption width 64,
    marked unprocessed (the model's connectors run in its extra_conds), with no mask."""
    from comfy.text_encoders.lt import LTXAVTEModel

    clip = _load("ltxav")
    assert isinstance(clip.cond_stage_model, LTXAVTEModel)
    tokens = clip.tokenize("a nude woman on a beach")
    assert list(tokens) == ["gemma3_12b"] and len(tokens["gemma3_12b"][0]) == 1024
    cond, extras = clip.encode_from_tokens_scheduled(tokens)[0]
    assert cond.shape == (1, 7, 64) and extras.get("unprocessed_ltxav_embeds") is True
    assert "attention_mask" not in extras
    other = clip.encode_from_tokens_scheduled(clip.tokenize("a clothed woman on a beach"))[0][0]
    assert not torch.equal(cond, other)
