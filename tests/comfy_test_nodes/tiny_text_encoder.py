"""Tiny text encoders that are real ComfyUI CLIP objects, for tests and the demo.

No umT5, LLaVA-Llama or CLIP-L weights can be downloaded on the machines this pack is built on,
so these stand in for them. They are built from ComfyUI's own parts, the way Wan's and
HunyuanVideo's text encoders are built (``comfy.sd.CLIP`` around ``sd1_clip.SDClipModel`` with
ComfyUI's T5 and CLIP text transformers, ``sd1_clip.SDTokenizer`` for tokenizing, padding and
weights), only tiny, with a word-hash vocabulary instead of a SentencePiece/BPE model:

* ``wan``: like umT5-XXL, 4096-d output padded to 512 tokens with padding rows zeroed.
* ``hunyuan_video``: a 4096-d token stream with no fixed length (HunyuanVideo's LLM stream) and a
  768-d pooled vector (HunyuanVideo's CLIP-L), as ``HunyuanVideoClipModel`` returns them.
* ``hunyuan_video15``: as ComfyUI's HunyuanVideo 1.5 encoder (``hunyuan_image.te`` with the
  ``HunyuanVideo15Tokenizer``) returns it: a 3584-d token stream under the tokenizer key
  ``qwen25_7b`` (Qwen2.5-VL's width; no pooled vector, no mask when every row is real) and, only for
  a prompt with text in double quotes, the byT5 glyph rows (1472-d, key ``byt5``) of
  ``Text "<quoted>". `` in ``conditioning_byt5small``.
* ``ltxv``: like ComfyUI's LTX-Video T5-XXL (``lt.ltxv_te``, Mochi's encoder): 4096-d rows under
  the tokenizer key ``t5xxl``, padded to 128 tokens, with the attention mask that marks the real
  ones (padding rows are not zeroed: the model masks them).
* ``cogvideox``: like ComfyUI's CogVideoX T5-XXL (``cogvideo.CogVideoXT5XXL``, sd3's T5XXLModel):
  4096-d rows under the tokenizer key ``t5xxl``, padded to 226 tokens, with no attention mask at
  all (the padding rows are encoded with the prompt's and the model reads them).
* ``ltxav``: ComfyUI's own LTX-2 encoder class (``lt.LTXAVTEModel``: every Gemma 3 layer's states
  normalised and projected to the caption width, 64 here) around a tiny Gemma 3 (ComfyUI's
  ``Gemma3_4B`` class), tokenizer key ``gemma3_12b``, padded on the left to 1024 tokens; its rows
  come out unprocessed (``unprocessed_ltxav_embeds``), the real ones only, with no mask.
* ``kandinsky5``: as ComfyUI's Kandinsky 5 encoder (``kandinsky5.te``: Qwen2.5-VL with its system
  template cut off, plus CLIP-L) returns it: a 3584-d token stream under the tokenizer key
  ``qwen25_7b`` (no mask when every row is real) and the 768-d CLIP-L pooled vector (key ``l``).

Weights are random but seeded, so a given file always encodes a prompt the same way, and
different prompts give different embeddings.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import comfy.sd
import comfy.utils
import safetensors.torch
import torch
from comfy import sd1_clip
from comfy.text_encoders.t5 import T5

from .seeded_weights import seeded_weights

VOCAB_SIZE = 1024
PAD_ID, END_ID, START_ID = 0, 1, 2
KINDS = ("wan", "hunyuan_video", "hunyuan_video15", "ltxv", "kandinsky5", "cogvideox", "ltxav")
WAN_MIN_TOKENS = 512
LTXV_MIN_TOKENS = 128
COGVIDEOX_MIN_TOKENS = 226


class HashWordTokenizer:
    """Deterministic word-level tokenizer: word -> 3 + crc32(word) mod (VOCAB_SIZE - 3).

    Implements the part of the Hugging Face tokenizer interface that ``SDTokenizer`` uses.
    """

    def __init__(self, start_token: int | None = None, end_token: bool = True):
        self.start_token = start_token
        self.end_token = end_token  # Gemma's tokenizer adds no end token

    @classmethod
    def from_pretrained(
        cls, _path: object = None, start_token: int | None = None, end_token: bool = True
    ) -> HashWordTokenizer:
        return cls(start_token=start_token, end_token=end_token)

    @staticmethod
    def word_id(word: str) -> int:
        return 3 + zlib.crc32(word.encode("utf-8")) % (VOCAB_SIZE - 3)

    def __call__(self, text: str) -> dict[str, list[int]]:
        words = re.findall(r"\w+|[^\w\s]", text.lower())
        ids = [self.word_id(w) for w in words] + ([END_ID] if self.end_token else [])
        if self.start_token is not None:
            ids.insert(0, self.start_token)
        return {"input_ids": ids}

    def get_vocab(self) -> dict[str, int]:
        vocab = {f"<tok{i}>": i for i in range(VOCAB_SIZE)}
        vocab.update({"<pad>": PAD_ID, "</s>": END_ID, "<s>": START_ID})
        return vocab


# --- Wan: a tiny umT5 (ComfyUI's T5 class, umT5 flavour), 4096-d, padded to 512 tokens ---------

TINY_UMT5_CONFIG = {
    "d_ff": 256,
    "d_kv": 64,
    "d_model": 4096,
    "dense_act_fn": "gelu_pytorch_tanh",
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-6,
    "model_type": "umt5",
    "num_heads": 2,
    "num_layers": 1,
    "relative_attention_num_buckets": 32,
    "vocab_size": VOCAB_SIZE,
}


class TinyUMT5Model(sd1_clip.SDClipModel):
    CONFIG = TINY_UMT5_CONFIG
    # Wan's umT5 zeroes its padding rows and sends no mask
    MASKING = {"enable_attention_masks": True, "zero_out_masked": True}

    def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
        super().__init__(
            device=device,
            layer=layer,
            layer_idx=layer_idx,
            textmodel_json_config=dict(self.CONFIG),
            dtype=dtype,
            special_tokens={"end": END_ID, "pad": PAD_ID},
            model_class=T5,
            model_options=model_options,
            **self.MASKING,
        )


class TinyUMT5Tokenizer(sd1_clip.SDTokenizer):
    KEY = "umt5xxl"
    MIN_LENGTH = WAN_MIN_TOKENS

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(
            None,
            pad_with_end=False,
            embedding_size=4096,
            embedding_key=self.KEY,
            tokenizer_class=HashWordTokenizer,
            has_start_token=False,
            pad_to_max_length=False,
            max_length=99999999,
            min_length=self.MIN_LENGTH,
            pad_token=PAD_ID,
            tokenizer_data=tokenizer_data,
        )


class TinyWanTokenizer(sd1_clip.SD1Tokenizer):
    STREAM, TOKENIZER = "umt5xxl", TinyUMT5Tokenizer

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(
            embedding_directory=embedding_directory,
            tokenizer_data=tokenizer_data,
            clip_name=self.STREAM,
            tokenizer=self.TOKENIZER,
        )


class TinyWanTextModel(sd1_clip.SD1ClipModel):
    STREAM, MODEL = "umt5xxl", TinyUMT5Model

    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(
            device=device,
            dtype=dtype,
            model_options=model_options,
            name=self.STREAM,
            clip_model=self.MODEL,
            **kwargs,
        )


# --- HunyuanVideo: a 4096-d LLM-like stream (no padding) plus a 768-d pooled CLIP-L -------------

TINY_LLM_CONFIG = dict(TINY_UMT5_CONFIG, model_type="t5", is_gated_act=False, dense_act_fn="relu")
TINY_CLIP_L_CONFIG = {
    "eos_token_id": END_ID,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 256,
    "layer_norm_eps": 1e-5,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 1,
    "projection_dim": 768,
    "vocab_size": VOCAB_SIZE,
}


class TinyLLMStream(sd1_clip.SDClipModel):
    CONFIG = TINY_LLM_CONFIG

    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(
            device=device,
            textmodel_json_config=dict(self.CONFIG),
            dtype=dtype,
            special_tokens={"end": END_ID, "pad": PAD_ID},
            model_class=T5,
            enable_attention_masks=True,
            return_attention_masks=True,
            model_options=model_options,
        )


class TinyClipL(sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(
            device=device,
            textmodel_json_config=dict(TINY_CLIP_L_CONFIG),
            dtype=dtype,
            special_tokens={"start": START_ID, "end": END_ID, "pad": END_ID},
            return_projected_pooled=False,
            model_options=model_options,
        )


class _TwoStreams(torch.nn.Module):
    """Two tiny encoders under the attribute names ``STREAMS`` (their state-dict prefixes), with the
    clip-options and ``load_sd`` plumbing ComfyUI's multi-encoder models have."""

    STREAMS: tuple[str, str] = ("", "")

    def __init__(self, models: dict[str, torch.nn.Module], dtype) -> None:
        super().__init__()
        for name in self.STREAMS:
            setattr(self, name, models[name])
        self.dtypes = {dtype}

    def set_clip_options(self, options):
        for name in self.STREAMS:
            getattr(self, name).set_clip_options(options)

    def reset_clip_options(self):
        for name in self.STREAMS:
            getattr(self, name).reset_clip_options()

    def load_sd(self, sd):
        """``sd`` holds ``<stream>.transformer.*`` keys of both streams; returns (missing, unexpected)."""
        missing, unexpected = [], []
        for name in self.STREAMS:
            prefix = f"{name}.transformer."
            part = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            result = getattr(self, name).load_sd(part)
            missing += [prefix + k for k in result.missing_keys]
            unexpected += [prefix + k for k in result.unexpected_keys]
        return torch.nn.modules.module._IncompatibleKeys(missing, unexpected)


def _without_useless_mask(extra: dict) -> dict:
    mask = extra.get("attention_mask")
    if mask is not None and mask.sum() == mask.numel():
        extra.pop("attention_mask")  # as ComfyUI does: an all-ones mask is useless
    return extra


def _stream_tokenizer(key: str, width: int, tokenizer_data) -> sd1_clip.SDTokenizer:
    return sd1_clip.SDTokenizer(
        tokenizer_class=HashWordTokenizer,
        embedding_size=width,
        embedding_key=key,
        has_start_token=False,
        pad_with_end=False,
        pad_to_max_length=False,
        max_length=99999999,
        min_length=1,
        pad_token=PAD_ID,
        tokenizer_data=tokenizer_data,
    )


def _clip_l_tokenizer(embedding_directory, tokenizer_data) -> sd1_clip.SDTokenizer:
    return sd1_clip.SDTokenizer(
        tokenizer_class=HashWordTokenizer,
        tokenizer_args={"start_token": START_ID},
        embedding_directory=embedding_directory,
        tokenizer_data=tokenizer_data,
    )


class TinyHunyuanTokenizer:
    def __init__(self, embedding_directory=None, tokenizer_data={}):
        self.clip_l = _clip_l_tokenizer(embedding_directory, tokenizer_data)
        self.llama = _stream_tokenizer("llama", 4096, tokenizer_data)

    def tokenize_with_weights(self, text, return_word_ids=False, **kwargs):
        return {
            "l": self.clip_l.tokenize_with_weights(text, return_word_ids, **kwargs),
            "llama": self.llama.tokenize_with_weights(text, return_word_ids, **kwargs),
        }

    def untokenize(self, token_weight_pair):
        return self.clip_l.untokenize(token_weight_pair)

    def state_dict(self):
        return {}


class TinyHunyuanTextModel(_TwoStreams):
    """Same outputs as ComfyUI's HunyuanVideoClipModel: (LLM stream, CLIP-L pooled, extras)."""

    STREAMS = ("clip_l", "llama")

    def __init__(self, device="cpu", dtype=None, model_options={}):
        options = dict(device=device, dtype=dtype, model_options=model_options)
        super().__init__({"clip_l": TinyClipL(**options), "llama": TinyLLMStream(**options)}, dtype)

    def encode_token_weights(self, token_weight_pairs):
        llm_out, _, extra = self.llama.encode_token_weights(token_weight_pairs["llama"])
        _, pooled = self.clip_l.encode_token_weights(token_weight_pairs["l"])
        return llm_out, pooled, _without_useless_mask(extra)


# --- HunyuanVideo 1.5: a 3584-d Qwen2.5-VL-like stream plus byT5 glyph rows (1472-d) -----------

TINY_QWEN_CONFIG = dict(TINY_LLM_CONFIG, d_model=3584)
TINY_BYT5_CONFIG = dict(TINY_UMT5_CONFIG, model_type="t5", d_model=1472)
_QUOTED = re.compile(r'"(.*?)"|‘(.*?)’|“(.*?)”')


class TinyQwenStream(TinyLLMStream):
    """The HunyuanVideo LLM stream at Qwen2.5-VL 7B's width."""

    CONFIG = TINY_QWEN_CONFIG


class TinyByT5(sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(
            device=device,
            textmodel_json_config=dict(TINY_BYT5_CONFIG),
            dtype=dtype,
            special_tokens={"end": END_ID, "pad": PAD_ID},
            model_class=T5,
            enable_attention_masks=True,
            zero_out_masked=True,
            model_options=model_options,
        )


class TinyHunyuan15Tokenizer:
    """Keys as ComfyUI's HunyuanVideo15Tokenizer: ``qwen25_7b`` always, ``byt5`` for quoted text."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        self.qwen25_7b = _stream_tokenizer("qwen25_7b", 3584, tokenizer_data)
        self.byt5 = _stream_tokenizer("byt5_small", 1472, tokenizer_data)

    def tokenize_with_weights(self, text, return_word_ids=False, **kwargs):
        out = {"qwen25_7b": self.qwen25_7b.tokenize_with_weights(text or " ", return_word_ids, **kwargs)}
        quoted = ["".join(groups) for groups in _QUOTED.findall(text)]
        if quoted:
            glyphs = "".join(f'Text "{q}". ' for q in quoted)
            out["byt5"] = self.byt5.tokenize_with_weights(glyphs, return_word_ids, **kwargs)
        return out

    def untokenize(self, token_weight_pair):
        return self.qwen25_7b.untokenize(token_weight_pair)

    def state_dict(self):
        return {}


class TinyHunyuan15TextModel(_TwoStreams):
    """Same outputs as ComfyUI's HunyuanVideo 1.5 encoder: (Qwen stream, None, extras with the
    byT5 rows as ``conditioning_byt5small`` when the prompt has quoted text)."""

    STREAMS = ("qwen25_7b", "byt5_small")

    def __init__(self, device="cpu", dtype=None, model_options={}):
        options = dict(device=device, dtype=dtype, model_options=model_options)
        super().__init__({"qwen25_7b": TinyQwenStream(**options), "byt5_small": TinyByT5(**options)}, dtype)

    def encode_token_weights(self, token_weight_pairs):
        cond, _, extra = self.qwen25_7b.encode_token_weights(token_weight_pairs["qwen25_7b"])
        extra = _without_useless_mask(extra)
        if "byt5" in token_weight_pairs:
            extra["conditioning_byt5small"] = self.byt5_small.encode_token_weights(
                token_weight_pairs["byt5"]
            )[0]
        return cond, None, extra


# --- LTX-Video: a tiny T5-XXL (ComfyUI's T5 class), 4096-d, padded to 128 tokens, with a mask ----

TINY_T5XXL_CONFIG = dict(
    TINY_UMT5_CONFIG, model_type="t5", is_gated_act=True, dense_act_fn="gelu_pytorch_tanh"
)


class TinyT5XXLModel(TinyUMT5Model):
    """LTX-Video's T5-XXL: gated GELU, and its padding rows kept with an attention mask."""

    CONFIG = TINY_T5XXL_CONFIG
    MASKING = {"enable_attention_masks": True, "return_attention_masks": True}


class TinyT5XXLTokenizer(TinyUMT5Tokenizer):
    KEY = "t5xxl"
    MIN_LENGTH = LTXV_MIN_TOKENS


class TinyLTXVTokenizer(TinyWanTokenizer):
    STREAM, TOKENIZER = "t5xxl", TinyT5XXLTokenizer


class TinyLTXVTextModel(TinyWanTextModel):
    STREAM, MODEL = "t5xxl", TinyT5XXLModel


# --- CogVideoX: the same tiny T5-XXL, padded to 226 tokens, no attention mask --------------------


class TinyCogVideoXT5Model(TinyUMT5Model):
    CONFIG = TINY_T5XXL_CONFIG
    MASKING = {"enable_attention_masks": False}  # as sd3_clip.T5XXLModel, which CogVideoX uses


class TinyCogVideoXT5Tokenizer(TinyUMT5Tokenizer):
    KEY = "t5xxl"
    MIN_LENGTH = COGVIDEOX_MIN_TOKENS


class TinyCogVideoXTokenizer(TinyWanTokenizer):
    STREAM, TOKENIZER = "t5xxl", TinyCogVideoXT5Tokenizer


class TinyCogVideoXTextModel(TinyWanTextModel):
    STREAM, MODEL = "t5xxl", TinyCogVideoXT5Model


# --- Kandinsky 5: the Qwen2.5-VL-width stream plus the CLIP-L pooled vector --------------------


class TinyKandinsky5Tokenizer:
    """Keys as ComfyUI's Kandinsky5Tokenizer: ``qwen25_7b`` and ``l``."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        self.qwen25_7b = _stream_tokenizer("qwen25_7b", 3584, tokenizer_data)
        self.clip_l = _clip_l_tokenizer(embedding_directory, tokenizer_data)

    def tokenize_with_weights(self, text, return_word_ids=False, **kwargs):
        return {
            "qwen25_7b": self.qwen25_7b.tokenize_with_weights(text or " ", return_word_ids, **kwargs),
            "l": self.clip_l.tokenize_with_weights(text, return_word_ids, **kwargs),
        }

    def untokenize(self, token_weight_pair):
        return self.qwen25_7b.untokenize(token_weight_pair)

    def state_dict(self):
        return {}


class TinyKandinsky5TextModel(_TwoStreams):
    """Same outputs as ComfyUI's Kandinsky5TEModel: (Qwen stream, CLIP-L pooled, extras)."""

    STREAMS = ("qwen25_7b", "clip_l")

    def __init__(self, device="cpu", dtype=None, model_options={}):
        options = dict(device=device, dtype=dtype, model_options=model_options)
        super().__init__({"qwen25_7b": TinyQwenStream(**options), "clip_l": TinyClipL(**options)}, dtype)

    def encode_token_weights(self, token_weight_pairs):
        cond, _, extra = self.qwen25_7b.encode_token_weights(token_weight_pairs["qwen25_7b"])
        _, pooled = self.clip_l.encode_token_weights(token_weight_pairs["l"])
        return cond, pooled, _without_useless_mask(extra)


# --- LTX-2: ComfyUI's own LTX-2 text encoder (``lt.LTXAVTEModel``) around a tiny Gemma 3 --------

LTXAV_CAPTION_CHANNELS = 64  # the tiny LTX-2 model's caption_channels (the released 19B: 3840)
LTXAV_MIN_TOKENS = 1024  # Gemma 3's prompt is padded on the left to 1024 tokens, as ComfyUI's
# Gemma 3 at a tiny size (ComfyUI's Gemma3_4B class takes its sizes from the config; head dim 256,
# the sliding-window pattern and the RoPE settings are the class's own, as in the 12B).
TINY_GEMMA3_CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
}


class TinyGemma3Model(sd1_clip.SDClipModel):
    """As ``lt.Gemma3_12BModel``: every layer's hidden states (``layer="all"``), the attention mask
    returned, start token 2, padding 0; only the size is tiny."""

    def __init__(self, device="cpu", layer="all", layer_idx=None, dtype=None, model_options={}):
        from comfy.text_encoders.llama import Gemma3_4B

        super().__init__(
            device=device,
            layer=layer,
            layer_idx=layer_idx,
            textmodel_json_config=dict(TINY_GEMMA3_CONFIG),
            dtype=dtype,
            special_tokens={"start": START_ID, "pad": PAD_ID},
            layer_norm_hidden_state=False,
            model_class=Gemma3_4B,
            enable_attention_masks=True,
            return_attention_masks=True,
            model_options=model_options,
        )


class TinyGemma3Tokenizer(sd1_clip.SDTokenizer):
    """As ``lt.Gemma3_12BTokenizer``: start token, no end token, padded on the left to 1024 tokens,
    no prompt weights; a word-hash vocabulary instead of Gemma's SentencePiece model."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(
            None,
            pad_with_end=False,
            embedding_size=TINY_GEMMA3_CONFIG["hidden_size"],
            embedding_key="gemma3_12b",
            tokenizer_class=HashWordTokenizer,
            has_end_token=False,
            pad_to_max_length=False,
            max_length=99999999,
            min_length=LTXAV_MIN_TOKENS,
            pad_left=True,
            disable_weights=True,
            tokenizer_args={"start_token": START_ID, "end_token": False},
            tokenizer_data=tokenizer_data,
        )


class TinyLTXAVTokenizer(TinyWanTokenizer):
    STREAM, TOKENIZER = "gemma3_12b", TinyGemma3Tokenizer


def _tiny_ltxav_text_model():
    """ComfyUI's LTX-2 encoder class (ComfyUI 0.7 and later) with the tiny Gemma 3 inside: its own
    normalisation of every layer's states and its single-linear projection to the caption width,
    returning the rows unprocessed (the model's connectors run in its ``extra_conds``)."""
    from comfy.text_encoders.lt import LTXAVTEModel

    class TinyLTXAVTextModel(LTXAVTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(
                dtype_llama=dtype,
                device=device,
                dtype=dtype,
                text_encoder_model=TinyGemma3Model,
                video_projection_dim=LTXAV_CAPTION_CHANNELS,
                model_options=model_options,
            )

    return TinyLTXAVTextModel


class _Target:
    def __init__(self, clip, tokenizer):
        self.clip, self.tokenizer, self.params = clip, tokenizer, {}


_TARGETS = {
    "wan": lambda: _Target(TinyWanTextModel, TinyWanTokenizer),
    "hunyuan_video": lambda: _Target(TinyHunyuanTextModel, TinyHunyuanTokenizer),
    "hunyuan_video15": lambda: _Target(TinyHunyuan15TextModel, TinyHunyuan15Tokenizer),
    "ltxv": lambda: _Target(TinyLTXVTextModel, TinyLTXVTokenizer),
    "kandinsky5": lambda: _Target(TinyKandinsky5TextModel, TinyKandinsky5Tokenizer),
    "cogvideox": lambda: _Target(TinyCogVideoXTextModel, TinyCogVideoXTokenizer),
    "ltxav": lambda: _Target(_tiny_ltxav_text_model(), TinyLTXAVTokenizer),
}


def _checked_kind(kind: str) -> str:
    if kind not in _TARGETS:
        raise ValueError(f"unknown tiny text encoder kind {kind!r}; expected one of {KINDS}")
    return kind


def _module_state_keys(kind: str) -> dict[str, torch.Size]:
    """Parameter names and shapes of the encoder, keyed as they are stored on disk."""
    target = _TARGETS[_checked_kind(kind)]()
    with torch.device("meta"):
        model = target.clip(device="meta", dtype=torch.float32)
    shapes = {}
    for key, value in model.state_dict().items():
        if kind == "wan":
            key = key.removeprefix("umt5xxl.transformer.")
        elif kind in ("ltxv", "cogvideox"):
            key = key.removeprefix("t5xxl.transformer.")
        elif kind == "ltxav":  # as Gemma 3 files store it, beside the projection's own keys
            key = key.removeprefix("gemma3_12b.transformer.")
        shapes[key] = value.shape
    return shapes


def make_weights(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return seeded_weights(_module_state_keys(kind), seed)


def write_weights(path: Path, kind: str, seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """Write a tiny encoder's weights as safetensors (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    base = {"video_unlearning_test_text_encoder": _checked_kind(kind), "seed": str(seed)}
    metadata = base | (metadata or {})
    safetensors.torch.save_file(make_weights(kind, seed), str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def load_clip(path: str | Path, kind: str, embedding_directory: str | None = None) -> comfy.sd.CLIP:
    """Build a real ``comfy.sd.CLIP`` for ``kind`` and load the weights file into it."""
    target = _TARGETS[_checked_kind(kind)]()
    state_dict = comfy.utils.load_torch_file(str(path), safe_load=True)
    clip = comfy.sd.CLIP(
        target=target,
        embedding_directory=embedding_directory,
        model_options={"dtype": torch.float32},
    )
    result = clip.load_sd(state_dict)
    missing = (
        result[0] if isinstance(result, tuple) else result.missing_keys
    )  # LTX-2's: (missing, unexpected)
    if missing:
        raise ValueError(f"{path} lacks weights for a {kind} tiny text encoder: {missing[:5]}")
    return clip
