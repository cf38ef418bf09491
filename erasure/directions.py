"""Refusal directions: from paired prompt activations to one unit direction per concept.

Facchiano et al., "Video Unlearning via Low-Rank Refusal Vector" (ICLR 2026), steps 2 to 5,
as reconstructed in shared/methods.md section 1. Everything here works on activations that the
caller has already collected (rows = real, non-padding tokens of one prompt at one site) and runs
in float32 (the eigen-decomposition in float64).

Choices measured on the tiny Wan 2.1 T2V model with five "a nude ..." / "a ..." pairs and held-out
sentences (tests/test_refusal_math.py checks the reasoning on synthetic data):

* pooling ``centred_sum``: a prompt is summarised by ``sum_t (x_t - m)`` with ``m`` the mean neutral
  token. For a pair that differs by inserting a word ("a nude woman" / "a woman") the difference
  is then that word's deviation from an average token whatever the sentence length; a plain mean
  leaves a ``1/T`` term that depends on the rest of the sentence (held-out ratio 0.40 against 0.00
  with a context-free encoder, 0.82 against 0.74 with the tiny random one). For pairs of equal
  length (substitution) both poolings give the same direction.
* contrastive PCA on *uncentred*, trace-normalised second moments. Centring the difference samples
  (as a literal reading of the paper suggests) removes their mean, the very signal, from the
  subspace: with five pairs the resulting direction left the held-out distance unchanged (ratio
  1.00). Trace normalisation makes ``alpha`` independent of activation scale.
* the eigenvectors are taken within the span of the difference and neutral samples: outside it
  both moments vanish, and with a large alpha those null directions (eigenvalue 0) outranked every
  real one, giving a direction orthogonal to r (seen on HunyuanVideo's 768-d pooled vector).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

POOLINGS = ("centred_sum", "mean")


def pool_tokens(tokens: Tensor, reference: Tensor, pooling: str = "centred_sum") -> Tensor:
    """One vector per prompt from its real-token activations.

    ``tokens`` [T, D] (T >= 1), ``reference`` [D] (the mean neutral token at the same site):
    ``centred_sum``: p = sum_t (x_t - m);  ``mean``: p = (1/T) sum_t x_t (``reference`` unused).
    """
    if tokens.ndim != 2 or tokens.shape[0] == 0:
        raise ValueError(
            f"expected activations [tokens, width] with at least one token, got {tuple(tokens.shape)}"
        )
    tokens = tokens.float()
    if pooling == "centred_sum":
        return (tokens - reference.float()).sum(dim=0)
    if pooling == "mean":
        return tokens.mean(dim=0)
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


def row_space(rows: Tensor, tolerance: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Coordinates of X [N, D] in an orthonormal basis B [D, q] of its row space, without forming B.

    Returns (C [N, q], A [N, q]) in float64 with X = C B^T and B = X^T A, from the smaller Gram
    matrix: if N <= D, X X^T = W L W^T, C = W L^(1/2), A = W L^(-1/2); otherwise X^T X = V L V^T,
    B = V, C = X V, A = C L^(-1). Kept: singular values sqrt(L) above ``tolerance`` times the largest
    (the rest is numerical null space). A vector with coordinates c is ``X^T (A c)`` in width D.
    """
    x = rows.double()
    if x.shape[0] <= x.shape[1]:
        values, vectors = torch.linalg.eigh(x @ x.T)
        keep = values > values[-1] * tolerance**2
        values, vectors = values[keep], vectors[:, keep]
        return vectors * values.sqrt(), vectors / values.sqrt()
    values, vectors = torch.linalg.eigh(x.T @ x)
    keep = values > values[-1] * tolerance**2
    coords = x @ vectors[:, keep]
    return coords, coords / values[keep]


@dataclass(frozen=True)
class ConceptDirection:
    """Result of step 4 for one concept at one site."""

    direction: Tensor  # [D] unit vector d
    refusal: Tensor  # [D] raw refusal vector r (mean difference)
    rank_requested: int
    rank_used: int  # k actually used: min(requested, number of difference samples)
    samples: int  # number of difference samples M

    @property
    def rank_clamped(self) -> bool:
        return self.rank_used < self.rank_requested


def contrastive_direction(differences: Tensor, neutral: Tensor, rank: int, alpha: float) -> ConceptDirection:
    """Refusal vector cleaned by contrastive PCA.

    differences R [M, D] (rows unsafe_i - safe_i), neutral E [N, D] (neutral token rows):
        r   = (1/M) sum_i R_i
        C_r = R^T R / M / tr(R^T R / M),   C_e = E^T E / N / tr(E^T E / N)
        U_k = top-k eigenvectors of (C_r - alpha C_e) within span(R, E),  k = min(rank, M)
        d   = U_k U_k^T r / ||U_k U_k^T r||
    """
    if differences.ndim != 2 or differences.shape[0] == 0:
        raise ValueError(
            f"expected difference samples [M, width] with M >= 1, got {tuple(differences.shape)}"
        )
    if neutral.ndim != 2 or neutral.shape[1] != differences.shape[1] or neutral.shape[0] == 0:
        raise ValueError(
            f"neutral activations {tuple(neutral.shape)} do not match difference width {differences.shape[1]}"
        )
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    diffs = differences.float()
    refusal = diffs.mean(dim=0)
    if not torch.isfinite(diffs).all() or refusal.norm() == 0:
        raise ValueError(
            "the unsafe and safe prompts give identical (or non-finite) activations: each pair must differ "
            "in the concept, e.g. 'a nude woman on a beach' / 'a woman on a beach'"
        )
    # Everything happens in coordinates of span(R, E): outside it both moments vanish (eigenvalue 0,
    # no part of r), and left in, that null space outranks every real direction once alpha makes them
    # negative. It also keeps the eigen-problem at most M + N wide instead of D.
    rows = torch.cat([diffs, neutral.float()]).double()
    coords, lift = row_space(rows)
    r_in, e_in = coords[: diffs.shape[0]], coords[diffs.shape[0] :]
    c_r, c_e = r_in.T @ r_in, e_in.T @ e_in  # the 1/M and 1/N cancel in the trace normalisation
    contrast = c_r / c_r.trace() - alpha * c_e / c_e.trace().clamp_min(torch.finfo(torch.float64).tiny)
    k = min(rank, diffs.shape[0])
    _, vectors = torch.linalg.eigh(contrast)
    top = vectors[:, -k:]
    projected_in = top @ (top.T @ r_in.mean(dim=0))  # U_k U_k^T r, in span coordinates
    norm = float(projected_in.norm())  # the basis is orthonormal: the same norm in width D
    if norm <= 1e-6 * float(refusal.norm()):
        raise ValueError(
            f"the refusal vector has no component in the top-{k} contrastive subspace; "
            f"lower alpha ({alpha}) or raise rank"
        )
    projected = (rows.T @ (lift @ projected_in)).float()
    return ConceptDirection(projected / norm, refusal, rank, k, diffs.shape[0])


def orthonormal_basis(directions: Tensor) -> Tensor:
    """Q [D, m] with orthonormal columns spanning the m directions (rows of ``directions`` [m, D]).

    Q R = directions^T (reduced QR); the concepts must be linearly independent.
    """
    if directions.ndim != 2 or directions.shape[0] == 0:
        raise ValueError(f"expected directions [concepts, width], got {tuple(directions.shape)}")
    if directions.shape[0] > directions.shape[1]:
        raise ValueError(
            f"{directions.shape[0]} concepts cannot be orthonormal in width {directions.shape[1]}"
        )
    q, r = torch.linalg.qr(directions.double().T, mode="reduced")
    diag = r.diagonal().abs()
    if (diag < 1e-6).any():
        raise ValueError(
            "two concepts have (nearly) the same direction; merge their prompts into one concept"
        )
    return (q * torch.sign(r.diagonal())).float()
