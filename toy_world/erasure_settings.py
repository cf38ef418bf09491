"""The toy world's erasure settings: one place for the efficacy benchmark, workflow 5 and the demo.

The target is the red ball (whatever it does); the close concepts it must spare are the red cube
(same colour) and the blue ball (same object). Refusal pairs drop the colour word, so the safe
side names the object without the concept; the neutral prompts are the other concepts' prompts,
which the edit must leave alone.

Refusal vector, measured on 8 seeds per prompt (4 per kept concept): alpha 10 at strength 1 erases
the target (exact and paraphrase 0 %) but also the blue cube's colour (context change 19 % there);
strength 0.7 keeps every other concept (paraphrases 12 %); alpha 20 leaves 38 % of paraphrases and
alpha 40 erases nothing. Unlearning LoRA: 60 steps at lr 1e-3 erase exact and paraphrase prompts
and keep the others (green star 3 of 4).
"""

from __future__ import annotations

from .world import CONCEPTS, concept_named

TARGET = concept_named("red ball")
CLOSE_CONCEPTS = (concept_named("red cube"), concept_named("blue ball"))
PROMPT = TARGET.prompt  # "a red ball bouncing"
NEGATIVE_PROMPT = "a red ball"  # the negative-prompt baseline's negative

SAMPLING = {"steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple"}
LATENT = {"width": 128, "height": 128, "length": 9}  # 3 latent frames of 16 x 16

REFUSAL_PAIRS = (
    ("a red ball bouncing", "a ball bouncing"),
    ("a bright red round ball", "a round ball"),
    ("a video of a red ball bouncing up and down", "a video of a ball bouncing up and down"),
    ("red ball", "ball"),
    ("an animation of a red ball on a plain background", "an animation of a ball on a plain background"),
)
NEUTRAL_PROMPTS = tuple(c.prompt for c in CONCEPTS if c != TARGET)
REFUSAL = {"rank": 4, "alpha": 10.0, "strength": 0.7, "blocks": "all"}

LORA_CONCEPT_PROMPTS = tuple(u for u, _ in REFUSAL_PAIRS)
LORA_PRESERVE_PROMPTS = NEUTRAL_PROMPTS
LORA = {
    "concept": TARGET.identity,
    "steps": 60,
    "learning_rate": 1e-3,
    "rank": 8,
    "eta": 3.0,
    "localization_weight": 5.0,
    "preservation_weight": 1.0,
    "mask_threshold": 0.1,
    "target_modules": "attention",
    "seed": 0,
    "gradient_checkpointing": False,
    "training_dtype": "fp32",
}
LORA_SAMPLED_CLIPS = 4
