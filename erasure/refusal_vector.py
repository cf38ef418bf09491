"""REFUSAL_VECTOR: the directions estimated for one model, and how they were obtained.

A *site* is an activation that feeds one or more linear layers: for Wan the text context (the
output of ``text_embedding``), which feeds ``cross_attn.k`` and ``cross_attn.v`` of every block;
for HunyuanVideo the input of one text-stream layer of one double block. A site holds one unit
direction per concept and the pooled activations the report measures the edit on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .checks import finite_number, require_finite
from .directions import ConceptDirection, contrastive_direction, orthonormal_basis, pool_tokens

# Neutral token rows kept per site for the report (evenly spaced when there are more): HunyuanVideo
# has 41 sites of width 3072, so this bounds the vector to about 60 MB.
KEPT_NEUTRAL_ROWS = 128

# activations[prompt][step] = [tokens, width]: real tokens of one prompt at one probe step.
Activations = Sequence[Sequence[Tensor]]


@dataclass(frozen=True)
class Concept:
    name: str
    pairs: tuple[tuple[str, str], ...]
    rank_requested: int
    rank_used: int
    samples: int  # difference samples per site: pairs x probe steps

    @property
    def rank_clamped(self) -> bool:
        return self.rank_used < self.rank_requested


@dataclass(frozen=True)
class Site:
    name: str
    modules: tuple[tuple[int, str], ...]  # (block index, module name in the diffusion model)
    directions: Tensor  # [concepts, width], unit rows, float32
    unsafe: Tensor  # [samples, width] pooled unsafe activations, all concepts
    safe: Tensor  # [samples, width] pooled paired safe activations
    sample_concept: Tensor  # [samples] concept index of each sample
    neutral: Tensor  # [rows, width] neutral token activations
    references: Tensor  # [steps, width] mean neutral token at each probe step (for pooling)
    pooling: str = "centred_sum"

    def pooled(self, activations: Activations) -> Tensor:
        """Pool other prompts' activations[prompt][step] as the samples were: [prompts x steps, width]."""
        return torch.stack(
            [pool_tokens(p[s], self.references[s], self.pooling) for p in activations for s in range(len(p))]
        )

    @property
    def basis(self) -> Tensor:
        """Q [width, concepts], orthonormal (QR of the concepts' directions)."""
        return orthonormal_basis(self.directions)


@dataclass(frozen=True)
class RefusalVector:
    architecture: str
    width: int
    num_blocks: int
    fingerprint: Tensor  # sampled text-input weights of the model it was estimated on
    pooling: str
    alpha: float
    probe_steps: int
    neutral_prompts: tuple[str, ...]
    concepts: tuple[Concept, ...]
    sites: tuple[Site, ...]

    def combined(self, other: RefusalVector) -> RefusalVector:
        """This vector's concepts followed by ``other``'s (same model and sites required)."""
        if (other.architecture, other.width) != (self.architecture, self.width):
            raise ValueError(
                f"cannot combine a refusal vector for {other.architecture} (width {other.width}) with one "
                f"for {self.architecture} (width {self.width})"
            )
        if [s.name for s in other.sites] != [s.name for s in self.sites]:
            raise ValueError("cannot combine refusal vectors estimated at different layers")
        offset = len(self.concepts)
        sites = tuple(
            replace(
                mine,
                directions=torch.cat([mine.directions, theirs.directions]),
                unsafe=torch.cat([mine.unsafe, theirs.unsafe]),
                safe=torch.cat([mine.safe, theirs.safe]),
                sample_concept=torch.cat([mine.sample_concept, theirs.sample_concept + offset]),
                neutral=_evenly_spaced(torch.cat([mine.neutral, theirs.neutral]), KEPT_NEUTRAL_ROWS),
            )
            for mine, theirs in zip(self.sites, other.sites, strict=True)
        )
        for site in sites:
            site.basis  # noqa: B018 -- fails early when two concepts share a direction
        neutral = tuple(dict.fromkeys(self.neutral_prompts + other.neutral_prompts))
        return replace(self, concepts=self.concepts + other.concepts, sites=sites, neutral_prompts=neutral)


SITE_TENSORS = ("directions", "unsafe", "safe", "neutral", "references")


def check_finite(vector: RefusalVector, source: str) -> None:
    """ValueError naming ``source``, the site and the tensor when any of the vector's directions or
    measured activations (or its alpha) is NaN or infinite: such a vector would patch NaN into the
    model, or report NaN."""
    finite_number(f"{source}'s alpha", vector.alpha)
    require_finite(
        (
            (f"site {site.name} {field}", getattr(site, field))
            for site in vector.sites
            for field in SITE_TENSORS
        ),
        source,
    )


def _evenly_spaced(rows: Tensor, limit: int) -> Tensor:
    if rows.shape[0] <= limit:
        return rows
    index = torch.linspace(0, rows.shape[0] - 1, limit).round().long()
    return rows[index]


def estimate_site(
    name: str,
    modules: Sequence[tuple[int, str]],
    unsafe: Activations,
    safe: Activations,
    neutral: Activations,
    rank: int,
    alpha: float,
    pooling: str,
) -> tuple[Site, ConceptDirection]:
    """Directions of one concept at one site from paired activations.

    Step s of prompt p has activations [T, D]; m_s = mean neutral token at step s. Difference
    samples R_(i,s) = pool(unsafe_i at s, m_s) - pool(safe_i at s, m_s); neutral rows = every
    neutral token at every step. Then ``contrastive_direction(R, neutral rows, rank, alpha)``.
    """
    if len(unsafe) != len(safe) or not unsafe:
        raise ValueError(
            f"need equal, non-zero numbers of unsafe and safe activations, got {len(unsafe)}/{len(safe)}"
        )
    steps = len(neutral[0])
    references = torch.stack(
        [torch.cat([prompt[s] for prompt in neutral]).float().mean(dim=0) for s in range(steps)]
    )
    neutral_rows = torch.cat([step.float() for prompt in neutral for step in prompt])
    site = Site(
        name=name,
        modules=tuple(modules),
        directions=torch.zeros(0, neutral_rows.shape[1]),
        unsafe=torch.zeros(0),
        safe=torch.zeros(0),
        sample_concept=torch.zeros(0, dtype=torch.long),
        neutral=_evenly_spaced(neutral_rows, KEPT_NEUTRAL_ROWS),
        references=references,
        pooling=pooling,
    )
    pooled_u, pooled_s = site.pooled(unsafe), site.pooled(safe)
    result = contrastive_direction(pooled_u - pooled_s, neutral_rows, rank, alpha)
    site = replace(
        site,
        directions=result.direction[None],
        unsafe=pooled_u,
        safe=pooled_s,
        sample_concept=torch.zeros(pooled_u.shape[0], dtype=torch.long),
    )
    return site, result
