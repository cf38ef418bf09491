"""Prompt sets for the refusal-vector estimate: presets (data files in erasure/presets/) and the
parsing of users' multiline prompt lists.

A preset file ``<name>.json`` holds ``{"label", "description", "pairs": [[unsafe, safe], ...]}``;
``{name}`` in a prompt is replaced by a person's name. ``neutral.txt`` holds the default neutral
prompts, one a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent / "presets"
CUSTOM = "custom"
NAME_FIELD = "{name}"


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    pairs: tuple[tuple[str, str], ...]

    @property
    def needs_name(self) -> bool:
        return any(NAME_FIELD in text for pair in self.pairs for text in pair)


def prompt_lines(text: str) -> list[str]:
    """Non-empty lines of a multiline field, stripped; lines starting with '#' are comments."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def default_neutral_prompts() -> str:
    """The default neutral prompts, one a line (the node's default text)."""
    return "\n".join(prompt_lines((PRESET_DIR / "neutral.txt").read_text(encoding="utf-8")))


def preset_names() -> list[str]:
    """ "custom" followed by the preset files' names, sorted."""
    files = sorted(
        p.stem for p in PRESET_DIR.glob("*.json") if "pairs" in json.loads(p.read_text(encoding="utf-8"))
    )
    return [CUSTOM, *files]


def load_preset(name: str) -> Preset:
    """Read preset ``name`` (one of ``preset_names()`` other than "custom")."""
    path = PRESET_DIR / f"{name}.json"
    if name == CUSTOM or not path.is_file():
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()[1:]}")
    data = json.loads(path.read_text(encoding="utf-8"))
    pairs = tuple((str(u), str(s)) for u, s in data["pairs"])
    return Preset(name, str(data.get("label", name)), pairs)


def paired_prompts(unsafe_text: str, safe_text: str) -> list[tuple[str, str]]:
    """Pair the lines of two multiline fields one to one; both may be empty, never unequal."""
    unsafe, safe = prompt_lines(unsafe_text), prompt_lines(safe_text)
    if len(unsafe) != len(safe):
        raise ValueError(
            f"{len(unsafe)} unsafe prompt(s) but {len(safe)} safe prompt(s): write one safe prompt per "
            "unsafe prompt, on the same line number (the safe one is the unsafe one without the concept)"
        )
    for i, (u, s) in enumerate(zip(unsafe, safe, strict=True)):
        if u == s:
            raise ValueError(
                f"pair {i + 1} has the same unsafe and safe prompt {u!r}: they must differ in the concept"
            )
    return list(zip(unsafe, safe, strict=True))


def catalogue() -> dict[str, dict]:
    """Every preset as plain data (for the web UI's preset picker): ``{name: {"label", "description",
    "pairs", "needs_name"}}``, pairs as written in the file (``{name}`` not replaced)."""
    result = {}
    for name in preset_names()[1:]:
        data = json.loads((PRESET_DIR / f"{name}.json").read_text(encoding="utf-8"))
        preset = load_preset(name)
        result[name] = {
            "label": preset.label,
            "description": str(data.get("description", "")),
            "pairs": [list(pair) for pair in preset.pairs],
            "needs_name": preset.needs_name,
        }
    return result


def _named(pairs: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(u.replace(NAME_FIELD, name), s.replace(NAME_FIELD, name)) for u, s in pairs]


def concept_prompts(preset: str, person_name: str, unsafe_text: str, safe_text: str) -> tuple[str, list]:
    """(concept label, [(unsafe, safe), ...]) for the node: the preset's pairs, then the user's.

    "custom" uses only the user's pairs. ``{name}`` in any prompt is replaced by ``person_name``,
    which a preset or a prompt with ``{name}`` needs. A user pair equal to one of the preset's is not
    counted twice (the web UI's preset picker copies the preset's pairs into the lists to show them).
    """
    user_pairs = paired_prompts(unsafe_text, safe_text)
    name = person_name.strip()
    user_named = any(NAME_FIELD in text for pair in user_pairs for text in pair)
    if preset == CUSTOM:
        if not user_pairs:
            raise ValueError(
                "no prompts: with preset 'custom', write unsafe prompts and safe prompts (one pair per "
                f"line), or choose a preset ({', '.join(preset_names()[1:])})"
            )
        if user_named:
            if not name:
                raise ValueError(f"the prompts contain {NAME_FIELD}: fill in the 'name' field")
            user_pairs = _named(user_pairs, name)
        return (name or "custom"), user_pairs
    chosen = load_preset(preset)
    pairs = list(chosen.pairs)
    if chosen.needs_name and not name:
        raise ValueError(f"preset {preset!r} needs a person's name: fill in the 'name' field")
    if user_named and not name:
        raise ValueError(f"the prompts contain {NAME_FIELD}: fill in the 'name' field")
    if name:
        pairs, user_pairs = _named(pairs, name), _named(user_pairs, name)
    pairs += [pair for pair in user_pairs if pair not in pairs]
    return (name if chosen.needs_name else name or chosen.label), pairs
