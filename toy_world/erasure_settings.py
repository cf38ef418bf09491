"""The toy world's erasure settings: one place for the efficacy benchmark, workflow 5 and the demo.

Every concept is a target in turn; what each method is given is built from the training
vocabulary only (``text.TRAIN``), and what it is judged on from the held-out vocabulary
(``text.HELD_OUT``), so the two never meet:

* refusal pairs drop the target's colour word ("a red ball bouncing" / "a ball bouncing"); the
  unsafe sides are also the LoRA's concept prompts and the benchmark's "exact" prompts;
* neutral prompts (refusal vector) and preserve prompts (LoRA) are the same seeded draw of
  ``GIVEN_PER_CONCEPT`` training-vocabulary phrasings of every other concept (pool ``GIVEN_POOL``).

The hyperparameters are the same for every target and for three targets at once (no per-target
tuning). Chosen in two rounds, never on the prompts the results are judged on:

* issue 5, on the earlier toy model, red ball only, training-vocabulary prompts (8 seeds a
  prompt): rank 4, alpha 10, strength 0.7 (strength 1 then also took the blue cube's colour;
  alpha 20 left 38 % of paraphrases, alpha 40 erased nothing); LoRA 60 steps at lr 1e-3, rank 8.
* issue 16, on the retrained model, where those settings erased almost nothing (refusal vector:
  94 % of exact prompts still showed the target, pooled over 8 targets) and the LoRA kept 80 % of
  the other concepts: sweeps on a *validation* draw of unseen phrasings (the benchmark's
  ``--pool 5``; results use pool 3). Round 1, red ball and green star only: refusal strength 1.0
  gave exact 0 %, unseen 6 %, kept 100 %; LoRA preservation weight 3 kept 75 %, 10 kept 86 % (with
  localization 20 also 86 %). Those did not carry over to all eight targets (pool 3: refusal 28 %
  still found), so round 2 used all eight targets: refusal strength 1.5 gave 0 % / 0 % found, kept
  90.2 %; 2.0 gave 0 % / 0 %, kept 80.4 %: 1.5 taken. LoRA preservation weight 10 gave 3 % / 6 %
  found, kept 89.3 %; 20 gave 19 % / 25 % found, kept 94.6 %: 10 taken (it misses one goal by
  less than a point on validation, 20 misses two).
* issue 16, session 12: the LoRA for three concepts at once had the steps of a one-concept LoRA
  (60) over three times the clips and prompts, and erased too little (pool 3: 58 % / 54 % found).
  A LoRA for k concepts now trains k x ``LORA["steps"]`` steps on k x ``LORA_SAMPLED_CLIPS``
  clips, so each concept gets a one-concept LoRA's updates (a rule, not a tuned number). Checked
  once on the validation draw (pool 5) before the results' pool: 180 steps gave 0 % / 0 % found,
  kept 100 % / 100 % (24 clips per set).
"""

from __future__ import annotations

from . import text
from .world import CONCEPTS, Concept, concept_named

TARGET = concept_named("red ball")  # the demo's and workflow 5's target
CLOSE_CONCEPTS = (concept_named("red cube"), concept_named("blue ball"))  # same colour, same object
PROMPT = TARGET.prompt  # "a red ball bouncing"
# Three targets erased at once; the five kept include a same-colour and a same-object neighbour.
MULTI_TARGETS = (concept_named("red ball"), concept_named("blue cube"), concept_named("yellow star"))

SAMPLING = {"steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple"}
LATENT = {"width": 128, "height": 128, "length": 9}  # 3 latent frames of 16 x 16

GIVEN_PER_CONCEPT = 2
GIVEN_POOL = 1
REFUSAL = {"rank": 4, "alpha": 10.0, "strength": 1.5, "blocks": "all"}
LORA = {
    "concept": TARGET.identity,  # the benchmark names each job's targets instead (``concept_words``)
    "steps": 60,
    "learning_rate": 1e-3,
    "rank": 8,
    "eta": 3.0,
    "localization_weight": 5.0,
    "preservation_weight": 10.0,
    "mask_threshold": 0.1,
    "target_modules": "attention",
    "seed": 0,
    "gradient_checkpointing": False,
    "training_dtype": "fp32",
}
LORA_SAMPLED_CLIPS = 4  # per target; LORA["steps"] are per target too (the efficacy benchmark)
# The robust LoRA (issue 17): LORA with UnlearnTrainLoRA's adversarial option (AdvUnlearn-style): PGD
# steps on the concept prompt's conditioning before each training step, each row within a bound in
# units of the prompt's rms, half of L_unlearn kept on the plain prompt. Chosen on the attack
# benchmark's validation draw (``--pool 5 --attack-only``, all eight targets; results use pool 3),
# by the lowest attack success with held-out preservation >= 90 %, the cheaper on a tie
# (benchmarks/results/validation/robust_v*): attack steps / step size / bound, found before -> after
# the attack, kept: v0 2 / 0.1 / 1 (the node's defaults): 27 % -> 44 %, 85 %; v1 4 / 0.25 / 2: 22 %
# -> 48 %, 90 %; v2 v1 + preservation weight 20: 22 % -> 67 %, 88 %; v3 v1 + 120 steps: 28 % -> 44 %,
# 94 %; v4 v3 + preservation 20: 28 % -> 53 %, 96 %; v5 v3 + clean share 0.5: 14 % -> 41 %, 91 %
# (taken); v6 v5 with 8 attack steps: 8 % -> 42 %, 92 % (twice the cost). No setting came near the
# 25 % goal: the attack's success hardly moves with the inner attack's strength.
ROBUST_ADVERSARIAL = {  # UnlearnTrainLoRA's adversarial inputs (also workflow 12's and the perf benchmark's)
    "adversarial_steps": 4,
    "adversarial_step_size": 0.25,
    "adversarial_max_change": 2.0,
    "adversarial_clean_share": 0.5,
}
ROBUST_LORA = {"steps": 120, **ROBUST_ADVERSARIAL}


def refusal_pairs(concept: Concept) -> tuple[tuple[str, str], ...]:
    """(unsafe, safe) pairs for ``concept``: training-vocabulary sentences with and without its colour."""
    c, o, m = concept.colour, concept.shape, concept.motion
    return (
        (f"a {c} {o} {m}", f"a {o} {m}"),
        (f"a bright {c} round {o}", f"a round {o}") if o == "ball" else (f"a bright {c} {o}", f"a {o}"),
        (f"a video of a {c} {o} {m}", f"a video of a {o} {m}"),
        (f"{c} {o}", o),
        (f"an animation of a {c} {o} on a plain background", f"an animation of a {o} on a plain background"),
    )


def exact_prompts(targets: tuple[Concept, ...]) -> tuple[str, ...]:
    """The target prompts a method is given (the unsafe sides of the pairs)."""
    return tuple(u for t in targets for u, _ in refusal_pairs(t))


def kept_concepts(targets: tuple[Concept, ...]) -> tuple[Concept, ...]:
    return tuple(c for c in CONCEPTS if c not in targets)


def given_prompts(concept: Concept) -> tuple[str, ...]:
    """The phrasings of a kept concept a method is given as neutral / preserve prompts."""
    return tuple(text.train_prompts(concept, GIVEN_PER_CONCEPT, pool=GIVEN_POOL))


def neutral_prompts(targets: tuple[Concept, ...]) -> tuple[str, ...]:
    """Neutral prompts (refusal vector) = preserve prompts (LoRA): every kept concept's given phrasings."""
    return tuple(p for c in kept_concepts(targets) for p in given_prompts(c))


def negative_prompt(targets: tuple[Concept, ...]) -> str:
    """The negative-prompt baseline's negative: the targets named ("a red ball")."""
    return ", ".join(f"a {t.identity}" for t in targets)


def concept_words(targets: tuple[Concept, ...]) -> str:
    """The LoRA's ``concept`` (the words its localization mask looks for)."""
    return ", ".join(t.identity for t in targets)


# The demo and workflow 5 erase the red ball with exactly these.
REFUSAL_PAIRS = refusal_pairs(TARGET)
NEUTRAL_PROMPTS = neutral_prompts((TARGET,))
LORA_CONCEPT_PROMPTS = exact_prompts((TARGET,))
LORA_PRESERVE_PROMPTS = NEUTRAL_PROMPTS
NEGATIVE_PROMPT = negative_prompt((TARGET,))
