"""Prompt augmentation: one concept rewritten into many prompts in a video model's caption style.

T2VUnlearning trains on the concept rewritten by a chat LLM into prompts that look like the video
model's training captions, so the erasure also holds for long, LLM-refined prompts. We do it
offline and deterministically: sentence templates and word lists (``presets/augment/vocabulary.json``)
are filled by a ``random.Random(seed)``, so the same (concept, count, style, seed) always gives the
same prompts, and different seeds give different ones. The concept is inserted verbatim in every
prompt, so its tokens can be found for the localization mask.

Styles: ``"wan"``: long, detailed captions (subject, appearance, action, setting, background,
lighting, camera, style, mood), like Wan's (and CogVideoX's) training captions; ``"hunyuan_video"``:
one or two sentences, like HunyuanVideo's.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

STYLES = ("wan", "hunyuan_video")
VOCABULARY_FILE = Path(__file__).resolve().parent / "presets" / "augment" / "vocabulary.json"
MAX_PROMPTS = 1000


@cache
def _vocabulary() -> dict:
    return json.loads(VOCABULARY_FILE.read_text(encoding="utf-8"))


def _sentence_case(text: str) -> str:
    """Upper-case the first letter of each sentence (after '. '), leaving the rest as written."""
    parts = text.split(". ")
    return ". ".join(p[:1].upper() + p[1:] for p in parts)


def _with_article(noun_phrase: str) -> str:
    """'a cinematic' / 'an anime': the indefinite article by the phrase's first letter."""
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase


def _fill(template: str, rng: random.Random, concept: str) -> str:
    vocab = _vocabulary()
    slots = {
        "concept": concept,
        "subject": rng.choice(vocab["subjects"]),
        "appearance": rng.choice(vocab["appearances"]),
        "action": rng.choice(vocab["actions"]),
        "setting": rng.choice(vocab["settings"]),
        "background": rng.choice(vocab["backgrounds"]),
        "lighting": rng.choice(vocab["lighting"]),
        "camera": rng.choice(vocab["camera"]),
        "camera_short": rng.choice(vocab["camera_short"]),
        "style": rng.choice(vocab["styles"]),
        "mood": rng.choice(vocab["moods"]),
    }
    slots["a_style"] = _with_article(slots["style"])
    slots["a_mood"] = _with_article(slots["mood"])
    return template.format(**slots)


def _wan_prompt(rng: random.Random, concept: str) -> str:
    parts = _vocabulary()["templates"]["wan"]
    sentences = [
        _fill(rng.choice(parts[section]), rng, concept)
        for section in ("opening", "details", "background", "reinforce", "closing")
    ]
    return _sentence_case(" ".join(s for s in sentences if s))


def _hunyuan_prompt(rng: random.Random, concept: str) -> str:
    templates = _vocabulary()["templates"]["hunyuan_video"]["sentences"]
    return _sentence_case(_fill(rng.choice(templates), rng, concept))


def augment_prompts(concept: str, count: int, style: str, seed: int) -> list[str]:
    """``count`` distinct one-line prompts about ``concept`` in caption ``style``, fixed by ``seed``.

    Raises ValueError for an empty concept, a count outside [1, MAX_PROMPTS] or an unknown style.
    """
    concept = " ".join(concept.split())
    if not concept:
        raise ValueError("concept is empty: give the concept to erase, e.g. 'nudity'")
    if not 1 <= count <= MAX_PROMPTS:
        raise ValueError(f"count must be between 1 and {MAX_PROMPTS}, got {count}")
    if style not in STYLES:
        raise ValueError(f"unknown caption style {style!r}: use one of {', '.join(STYLES)}")
    make = _wan_prompt if style == "wan" else _hunyuan_prompt
    rng = random.Random(seed)
    prompts: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(prompts) < count and attempts < count * 50:
        attempts += 1
        prompt = make(rng, concept)
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    if len(prompts) < count:
        raise ValueError(f"could only make {len(prompts)} distinct prompts, fewer than the {count} asked for")
    return prompts
