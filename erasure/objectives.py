"""The T2VUnlearning objective (Ye et al. 2025, arXiv 2505.17550) on flow-matching velocities.

Notation: theta is the frozen video model, phi the trained adapter, c the concept prompt, c_pre a
prompt to preserve, x_t the noised latent at noise level sigma.

* Negatively guided target (ESD carried over to velocity prediction):
  ``v_neg = v_theta(x_t, "") - eta * (v_theta(x_t, c) - v_theta(x_t, ""))``
* ``L_unlearn = || v_{theta+phi}(x_t, c) - stopgrad(v_neg) ||^2``
* ``L_loc = mean_l || o_l * (1 - M_l) ||^2`` with o_l the adapter's output on the video tokens
  of layer l and M_l the binary concept mask of that layer's block (``erasure.masks``).
* ``L_pre = || v_{theta+phi}(x_t, c_pre) - v_theta(x_t, c_pre) ||^2``
* ``L = L_unlearn + alpha * L_loc + beta * L_pre``

Every squared norm here is a mean over elements (an MSE), so the loss scale does not depend on the
clip size or the layer width; that is our choice, the paper does not say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# How a model noises a latent (ComfyUI's model_sampling tells which): rectified flow, as Wan,
# HunyuanVideo, LTX-Video and Kandinsky 5 (``x_t = (1 - sigma) x0 + sigma n``, prediction v = n - x0),
# or k-diffusion noise levels, as EPS and v-prediction models such as CogVideoX (``x_t = x0 +
# sigma n``, prediction eps = n). The objectives are linear in the prediction, so both work alike.
FLOW = "rectified_flow"
K_DIFFUSION = "k_diffusion"
PARAMETERISATIONS = (FLOW, K_DIFFUSION)


def _per_item(sigma: Tensor, like: Tensor) -> Tensor:
    return sigma.to(like.dtype).reshape((-1,) + (1,) * (like.ndim - 1))


def _checked(parameterisation: str) -> str:
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation {parameterisation!r}: use one of {PARAMETERISATIONS}")
    return parameterisation


def noised_latent(x0: Tensor, noise: Tensor, sigma: Tensor, parameterisation: str = FLOW) -> Tensor:
    """``x_t = (1 - sigma) x0 + sigma n`` (rectified flow) or ``x_t = x0 + sigma n`` (k-diffusion)."""
    s = _per_item(sigma, x0)
    if _checked(parameterisation) == FLOW:
        return (1 - s) * x0 + s * noise
    return x0 + s * noise


def flow_velocity(x_t: Tensor, denoised: Tensor, sigma: Tensor) -> Tensor:
    """The model's prediction ``(x_t - x0_hat) / sigma`` from its denoised output ``x0_hat``.

    For rectified flow (``x_t = (1 - sigma) x0 + sigma n``, ``x0_hat = x_t - sigma v``) it is the
    velocity v; for k-diffusion noise levels (``x_t = x0 + sigma n``) the same expression is the noise
    estimate eps. ``sigma`` has one entry per batch item and must be positive.
    """
    if bool((sigma <= 0).any()):
        raise ValueError("flow_velocity needs sigma > 0: the velocity is undefined at the clean latent")
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    return (x_t.float() - denoised.float()) / sigma.float().reshape(shape)


def denoising_target(x0: Tensor, noise: Tensor, parameterisation: str = FLOW) -> Tensor:
    """What ``flow_velocity`` of a perfect denoiser is: ``n - x0`` (rectified flow) or ``n`` (k-diffusion)."""
    if _checked(parameterisation) == FLOW:
        return noise.float() - x0.float()
    return noise.float()


def negative_target(v_uncond: Tensor, v_concept: Tensor, eta: float) -> Tensor:
    """``v_neg = v_uncond - eta * (v_concept - v_uncond)``: guidance pointed away from the concept."""
    return v_uncond - eta * (v_concept - v_uncond)


def unlearning_loss(v_student_concept: Tensor, v_neg: Tensor) -> Tensor:
    """``L_unlearn = mean((v_{theta+phi}(x_t, c) - stopgrad(v_neg))^2)``."""
    return torch.mean((v_student_concept.float() - v_neg.detach().float()) ** 2)


def denoising_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``L_dn = mean((v(x_t, sigma, c) - target)^2)`` with ``target`` from ``denoising_target``: the
    model's own training loss (rectified flow: ``target = n - x0``), how well its prediction at x_t
    points from the clip to the noise. Low on clips the model would make for ``c``; what a prompt
    attack lowers (``erasure.attacks``)."""
    return torch.mean((prediction.float() - target.float()) ** 2)


def preservation_loss(v_student_preserve: Tensor, v_frozen_preserve: Tensor) -> Tensor:
    """``L_pre = mean((v_{theta+phi}(x_t, c_pre) - stopgrad(v_theta(x_t, c_pre)))^2)``."""
    return torch.mean((v_student_preserve.float() - v_frozen_preserve.detach().float()) ** 2)


def adapter_token_energy(adapter_output: Tensor) -> Tensor:
    """Per-token mean square of an adapter's output: ``e[b, n] = mean_c o[b, n, c]^2``.

    With a binary mask, ``mean(|| o * (1 - M) ||^2) = mean_n((1 - M_n) * e_n)``, so the
    localization loss needs only this [B, N] summary of each adapter output, not the output itself.
    """
    return adapter_output.pow(2).mean(dim=-1).float()


def localization_loss(energies: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """``L_loc = mean_l mean_n (1 - M_l[n]) * e_l[n]``, the adapter's energy outside the concept region.

    ``energies[l]`` is ``adapter_token_energy`` of layer l on the video tokens ([B, N] or [N]);
    ``masks[l]`` is that layer's binary concept mask of the same shape (1 inside the concept).
    """
    if len(energies) != len(masks):
        raise ValueError(f"localization_loss got {len(energies)} energies but {len(masks)} masks")
    if not energies:
        raise ValueError("localization_loss needs at least one adapter output on video tokens")
    terms = []
    for energy, mask in zip(energies, masks, strict=True):
        if energy.shape != mask.shape:
            raise ValueError(f"energy shape {tuple(energy.shape)} does not match mask {tuple(mask.shape)}")
        terms.append(torch.mean((1.0 - mask.to(energy.dtype)) * energy))
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class UnlearningLosses:
    """The three terms of one step and their weighted sum ``L = unlearn + alpha*loc + beta*pre``."""

    unlearn: Tensor
    localization: Tensor
    preservation: Tensor
    total: Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "unlearn": float(self.unlearn.detach()),
            "localization": float(self.localization.detach()),
            "preservation": float(self.preservation.detach()),
        }


def combine_losses(
    unlearn: Tensor, localization: Tensor, preservation: Tensor, alpha: float, beta: float
) -> UnlearningLosses:
    """``L = L_unlearn + alpha * L_loc + beta * L_pre``."""
    total = unlearn + alpha * localization + beta * preservation
    return UnlearningLosses(unlearn, localization, preservation, total)
