"""Unlearn: Attack Prompt: try to get an erased concept back out of a MODEL, as an attacker would.

The prompt attack of ``erasure.attacks`` (UnlearnDiffAtk-style): the conditioning of a target prompt
(or a few soft tokens added to it) is optimised to lower the MODEL's denoising loss on clips of the
concept that the *original* model made. The attacked CONDITIONING samples with the stock nodes, so
a user sees with their own sampler and detector (NudeNet Check) whether the concept comes back. The
MODEL is never changed: a clone is loaded (its patches, the erasure, applied) and differentiated
with the trainer's machinery (``train_compat.differentiable``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import comfy.utils
import torch
from comfy_api.latest import io

from ..erasure.attacks import (
    ATTACK_MODES,
    AttackSettings,
    attacked_rows,
    initial_variable,
    optimise_attack,
    row_scale,
)
from ..erasure.objectives import denoising_loss, denoising_target, noised_latent
from ..erasure.training import ConceptMaskCapture, MarkedRow
from . import train_compat
from .train_nodes import audio_geometry, check_latents, draw_training_point

LOG = logging.getLogger("video_unlearning")
CATEGORY = "video_unlearning/attack"
NODE_NAME = "Unlearn: Attack Prompt"
EVALUATION_DRAWS = 8  # fixed (clip, noise, sigma) draws on which the loss before and after is compared
_ATTACK_KEY = "attack"


@dataclass
class AttackResult:
    conditioning: list
    loss_map: dict
    loss_before: float
    loss_after: float
    summary: str


def single_entry(conditioning) -> tuple:
    """The one [cond, extras] entry of a prompt's CONDITIONING, or a ValueError saying what to give."""
    if not isinstance(conditioning, list) or len(conditioning) != 1 or len(conditioning[0]) != 2:
        count = len(conditioning) if isinstance(conditioning, list) else type(conditioning).__name__
        raise ValueError(
            f"{NODE_NAME} attacks one prompt: its positive input must be the CONDITIONING of one "
            f"CLIPTextEncode (one entry), got {count} entries. Attack each prompt on its own."
        )
    cond, extras = conditioning[0]
    if not isinstance(cond, torch.Tensor) or cond.ndim != 3 or cond.shape[0] != 1:
        shape = list(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
        raise ValueError(
            f"{NODE_NAME}: the conditioning's text rows have shape {shape}, expected [1, tokens, dim]"
        )
    return cond, extras


def _draw(x0_all: torch.Tensor, sampling, generator: torch.Generator, device):
    """One (x0, noise, sigma) on the concept clips, drawn as the trainer draws them, on ``device``."""
    return tuple(t.to(device) for t in draw_training_point(x0_all, sampling, generator))


def attack_prompt(
    model,
    positive,
    latents: dict,
    settings: AttackSettings,
    gradient_checkpointing: bool = True,
    node_id: str | None = None,
) -> AttackResult:
    """Optimise the attack for ``settings.steps`` steps; the attacked CONDITIONING and the loss curve.
    ``model`` (and ``positive``) stay as they were."""
    settings.validate()
    arch = train_compat.supported_architecture(model, NODE_NAME, purpose="attack")
    train_compat.check_trainable(model, NODE_NAME)
    channels, patch = train_compat.latent_geometry(model)
    cond, extras = single_entry(positive)
    check_latents(latents["samples"], channels, patch, audio_geometry(model, arch.family))

    with torch.inference_mode(False):
        attacked = model.clone()
        train_compat.load_for_training(attacked)
        device = attacked.load_device
        sampling = attacked.model.model_sampling
        parameterisation = train_compat.parameterisation(attacked)
        with torch.no_grad():
            clips = train_compat.training_clips(attacked, arch.family, latents["samples"])
            x0_all = clips.x0.to(device)
        rows0 = cond.detach().clone().float().to(device)
        entry = (rows0, extras)
        scale = row_scale(rows0)
        prompt = train_compat.EncodedPrompt("", [list(entry)], int(rows0.shape[1]), [], False)
        marker = MarkedRow()
        capture = ConceptMaskCapture(0.1, marker)  # never active: the attack needs no concept masks
        velocity = train_compat.VelocityModel(attacked, {_ATTACK_KEY: prompt}, capture)

        def loss_for(rows: torch.Tensor, draw) -> torch.Tensor:
            x0, noise, sigma = draw
            prompt.conds = train_compat.model_conds(
                attacked, entry, x0.shape, device, rows, clips.stream_shapes
            )
            velocity.x_t, velocity.sigma = noised_latent(x0, noise, sigma, parameterisation), sigma
            return denoising_loss(
                velocity.forward([_ATTACK_KEY]), denoising_target(x0, noise, parameterisation)
            )

        def rows_for(u: torch.Tensor) -> torch.Tensor:
            return attacked_rows(rows0, u.to(device), scale, settings.mode)

        evaluation = torch.Generator().manual_seed(settings.seed + 1)
        held = [_draw(x0_all, sampling, evaluation, device) for _ in range(EVALUATION_DRAWS)]

        def mean_loss(rows: torch.Tensor) -> float:
            with torch.no_grad():
                return sum(float(loss_for(rows, d)) for d in held) / len(held)

        generator = torch.Generator().manual_seed(settings.seed)

        def loss_at(u: torch.Tensor, step: int) -> torch.Tensor:
            train_compat.throw_if_cancelled()
            return loss_for(rows_for(u), _draw(x0_all, sampling, generator, device))

        pbar = comfy.utils.ProgressBar(settings.steps, node_id=node_id)
        start = time.monotonic()

        def on_step(done: int, loss: float) -> None:
            pbar.update(1)
            elapsed = time.monotonic() - start
            train_compat.send_progress(
                dict(
                    node=node_id,
                    loss=loss,
                    step=done,
                    steps=settings.steps,
                    elapsed_s=round(elapsed, 2),
                    eta_s=round(elapsed / done * (settings.steps - done), 1),
                )
            )

        with train_compat.differentiable(attacked, arch.family, capture, marker, gradient_checkpointing):
            before = mean_loss(rows0)
            u, history = optimise_attack(
                loss_at, initial_variable(rows0, settings).to(device), settings, on_step
            )
            final_rows = rows_for(u).detach()
            after = mean_loss(final_rows)

    out_rows = final_rows.to(device="cpu", dtype=cond.dtype)
    out_extras = train_compat.with_attended_rows(dict(extras), int(cond.shape[1]), int(out_rows.shape[1]))
    budget = (
        "unbounded" if settings.max_change == 0 else f"rows within {settings.max_change:g} x the prompt's rms"
    )
    what = (
        "every row of the prompt"
        if settings.mode == "prompt_embedding"
        else f"{settings.soft_tokens} soft tokens"
    )
    summary = (
        f"Prompt attack on {arch.name} ({what}, {budget}): {settings.steps} Adam steps of "
        f"{settings.learning_rate:g}. Denoising loss on the concept's clips over {EVALUATION_DRAWS} fixed "
        f"draws: {before:.4g} with the prompt, {after:.4g} with the attacked conditioning "
        f"({after / before:.2f}x). Sample with it and check whether the concept is back."
    )
    LOG.info("UnlearnAttackPrompt: %s", summary)
    return AttackResult([[out_rows, out_extras]], {"loss": history}, before, after, summary)


class UnlearnAttackPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnAttackPrompt",
            display_name="Unlearn: Attack Prompt (test erasure)",
            category=CATEGORY,
            description=(
                "Tests an erased MODEL the way an attacker would (UnlearnDiffAtk-style): optimises the "
                "prompt's conditioning, or soft tokens added to it, so that the MODEL denoises clips of "
                "the erased concept (made by the original model) well again. Sample the output with the "
                "stock nodes and check it (NudeNet Check): if the concept comes back, the erasure does not "
                "hold. The MODEL is not changed. Cancel stops within one step."
            ),
            inputs=[
                io.Model.Input(
                    "model", tooltip="The erased MODEL to attack (refusal vector or unlearning LoRA)."
                ),
                io.Conditioning.Input(
                    "positive", tooltip="The conditioning of one target prompt (CLIPTextEncode), to attack."
                ),
                io.Latent.Input(
                    "latents",
                    tooltip="Clips of the concept made by the original (unerased) model, e.g. KSampler "
                    "with the target prompt: what the attack steers the erased model back to.",
                ),
                io.Int.Input("steps", default=100, min=1, max=100000, tooltip="The attack's budget."),
                io.Float.Input(
                    "learning_rate",
                    default=0.05,
                    min=1e-5,
                    max=10.0,
                    step=0.001,
                    tooltip="Adam step, in units of the prompt's own rms (the same for every text encoder).",
                ),
                io.Combo.Input(
                    "mode",
                    options=list(ATTACK_MODES),
                    default="prompt_embedding",
                    tooltip="prompt_embedding: every row of the prompt's conditioning moves; soft_tokens: "
                    "new rows are added after the prompt's and only they move.",
                ),
                io.Int.Input("soft_tokens", default=4, min=1, max=256, tooltip="soft_tokens mode: how many."),
                io.Float.Input(
                    "max_change",
                    default=0.0,
                    min=0.0,
                    max=100.0,
                    step=0.01,
                    tooltip="Bound on each changed row's rms, in units of the prompt's rms; 0 = unbounded "
                    "(the strongest attack).",
                ),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF),
                io.Boolean.Input(
                    "gradient_checkpointing",
                    default=True,
                    tooltip="Recompute each block in the backward pass: much less memory, about 30% slower.",
                ),
            ],
            outputs=[
                io.Conditioning.Output(
                    display_name="conditioning",
                    tooltip="The attacked conditioning: sample it with the stock nodes.",
                ),
                io.Custom("LOSS_MAP").Output(
                    display_name="loss_map", tooltip="The attack loss per step ('loss', for LossGraphNode)."
                ),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        latents,
        steps,
        learning_rate,
        mode,
        soft_tokens,
        max_change,
        seed,
        gradient_checkpointing,
    ) -> io.NodeOutput:
        settings = AttackSettings(steps, learning_rate, mode, soft_tokens, max_change, seed)
        result = attack_prompt(
            model, positive, latents, settings, gradient_checkpointing, getattr(cls.hidden, "unique_id", None)
        )
        return io.NodeOutput(result.conditioning, result.loss_map, ui={"text": [result.summary]})


NODES = [UnlearnAttackPrompt]
