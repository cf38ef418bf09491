"""A toy video world with known ground truth: the pack's efficacy benchmark and demo world.

* ``world``: 8 concepts (coloured objects moving one way), a seeded generator of latent clips in
  Wan 2.1's normalised latent space, and a fixed decoder to RGB frames (GIF/PNG writers).
* ``detector``: reads colour, object and motion back from a clip's latent.
* ``text``: the MiniLM text encoder's location, its fixed map into Wan's 4096-d text space, and
  the training, paraphrase and caption prompt sets.
* ``train_toy_model.py``: the seeded script that trains the committed toy Wan 2.1 model
  (``MODEL_FILE``) with flow matching and checks it through ComfyUI's sampler.

Pure torch: nothing here imports ComfyUI (the script does, to build ComfyUI's WanModel).
"""

from pathlib import Path

MODEL_FILE = Path(__file__).resolve().parent / "toy_world_wan21_t2v.safetensors"
