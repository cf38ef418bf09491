"""Prompt attacks on an erased model in the text-conditioning space (UnlearnDiffAtk-style), in plain torch.

An attacker who holds the erased model and clips of the concept (made by the original model) looks
for a conditioning that brings the concept back. With ``c`` the conditioning rows of a target
prompt ([1, L, D]) and ``u`` the attack variable, the attacked conditioning is

* ``prompt_embedding``: ``c' = c + s * u`` (u [1, L, D]: every row of the prompt moves);
* ``soft_tokens``: ``c' = [c ; s * u]`` (u [1, n, D]: n new rows after the prompt's),

where ``s = rms(c)`` over the prompt's non-zero rows, so a step size means the same for every text
encoder. The attack minimises the erased model's denoising loss on the concept's clips
(``erasure.objectives.denoising_loss``)

``L_atk(u) = E_{x0, sigma, eps} || v_erased(x_t, sigma, c'(u)) - (eps - x0) ||^2``,
``x_t = (1 - sigma) x0 + sigma eps`` (for a k-diffusion model, such as CogVideoX: ``x_t = x0 + sigma
eps`` and the target eps; ``erasure.objectives.noised_latent`` / ``denoising_target``),

with Adam for a fixed number of steps (``optimise_attack``) or with signed-gradient steps
(``pgd_step``: the cheap inner loop of adversarial training). ``max_change`` bounds each row of
``s * u`` to ``max_change * s`` in L2 norm per row, scaled by sqrt(D) (``project_rows``); 0 leaves
it unbounded (the strongest attack, what a user testing their own model should try first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

ATTACK_MODES = ("prompt_embedding", "soft_tokens")


@dataclass(frozen=True)
class AttackSettings:
    """One attack's budget: ``steps`` Adam steps of ``learning_rate`` (in units of the prompt's rms)."""

    steps: int = 100
    learning_rate: float = 0.05
    mode: str = "prompt_embedding"
    soft_tokens: int = 4
    max_change: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"attack steps must be at least 1 (got {self.steps})")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"attack learning_rate must be a positive number (got {self.learning_rate})")
        if self.mode not in ATTACK_MODES:
            raise ValueError(f"attack mode must be one of {ATTACK_MODES} (got {self.mode!r})")
        if self.mode == "soft_tokens" and self.soft_tokens < 1:
            raise ValueError(f"soft_tokens must be at least 1 in soft_tokens mode (got {self.soft_tokens})")
        if not (math.isfinite(self.max_change) and self.max_change >= 0):
            raise ValueError(f"max_change must be >= 0 (0: unbounded), got {self.max_change}")


def row_scale(cond: Tensor) -> float:
    """``s = sqrt(mean over the non-zero rows of mean_d c^2)``: the prompt's own scale (padding rows,
    all zero in umT5's output, do not count). 1.0 for an all-zero conditioning."""
    rows = cond.reshape(-1, cond.shape[-1]).float()
    real = rows[rows.abs().sum(dim=-1) > 0]
    if real.numel() == 0:
        return 1.0
    return float(real.pow(2).mean().sqrt())


def initial_variable(cond: Tensor, settings: AttackSettings) -> Tensor:
    """``u`` at the start: zeros (``prompt_embedding``: the attack starts at the prompt itself), or, for
    ``soft_tokens``, n rows of N(0, 1) values seeded by ``settings.seed`` (rms 1: new tokens start as
    random rows of the prompt's own scale)."""
    if settings.mode == "prompt_embedding":
        return torch.zeros(cond.shape, dtype=torch.float32)
    generator = torch.Generator().manual_seed(settings.seed)
    return torch.randn((cond.shape[0], settings.soft_tokens, cond.shape[-1]), generator=generator)


def attacked_rows(cond: Tensor, variable: Tensor, scale: float, mode: str) -> Tensor:
    """``c + s u`` (prompt_embedding) or ``[c ; s u]`` (soft_tokens), in ``cond``'s dtype."""
    shifted = (scale * variable).to(cond.dtype)
    if mode == "prompt_embedding":
        return cond + shifted
    if mode == "soft_tokens":
        return torch.cat([cond, shifted], dim=1)
    raise ValueError(f"unknown attack mode {mode!r}; expected one of {ATTACK_MODES}")


def project_rows(variable: Tensor, max_change: float) -> Tensor:
    """``u`` with each row's rms clamped to ``max_change`` (so ``||s u_row|| <= max_change * s * sqrt(D)``);
    ``max_change`` 0 returns ``u`` unchanged (unbounded)."""
    if max_change <= 0:
        return variable
    rms = variable.pow(2).mean(dim=-1, keepdim=True).sqrt()
    return variable * torch.clamp(max_change / rms.clamp_min(1e-12), max=1.0)


def optimise_attack(
    loss_at: Callable[[Tensor, int], Tensor],
    variable: Tensor,
    settings: AttackSettings,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[Tensor, list[float]]:
    """Adam on ``u`` for ``settings.steps`` steps of ``loss_at(u, i)`` (the attack loss at step i's draw),
    projected after each step; returns (u, the loss of every step). Only ``u`` gets a gradient
    (``torch.autograd.grad``): any other parameter the loss touches keeps its ``.grad``.

    ``on_step(i, loss)`` runs after step i (1-based); raising from it stops the attack (Cancel). A
    non-finite loss stops it with a FloatingPointError naming the step.
    """
    settings.validate()
    u = variable.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=settings.learning_rate)
    history: list[float] = []
    for i in range(settings.steps):
        loss = loss_at(u, i)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the attack loss became {value} at step {i + 1}: lower learning_rate")
        (grad,) = torch.autograd.grad(loss, [u])
        u.grad = grad
        optimizer.step()
        with torch.no_grad():
            u.copy_(project_rows(u, settings.max_change))
        history.append(value)
        if on_step is not None:
            on_step(i + 1, value)
    return u.detach(), history


def pgd_step(loss: Tensor, variable: Tensor, step_size: float, max_change: float) -> Tensor:
    """One signed-gradient descent step on the attack loss: ``u <- project(u - step_size * sign(grad))``.

    The inner loop of adversarial training (AdvUnlearn's attack on the text embedding): cheap, scale
    free, and only ``variable`` gets a gradient. Returns the new ``u`` (detached)."""
    (grad,) = torch.autograd.grad(loss, [variable])
    with torch.no_grad():
        return project_rows(variable - step_size * grad.sign(), max_change).detach()
