"""An analytic concept detector for toy-world clips: colour, shape and motion read off the latent.

From the features f = E^T z of a clip [16, T, H, W] (see ``world``):

* the object mask is m = clamp((f[3] / OBJECT_GAIN + 1) / 2, 0, 1) per frame;
* colour: the mask-weighted (m^2) mean of the decoded colour, rgb = clamp(0.5 + f[0:3] / COLOUR_GAIN,
  0, 1), over all frames; the nearest palette colour (Euclidean), none when farther than
  ``MAX_COLOUR_DISTANCE``;
* shape: the object's material code, the m^2-weighted mean of f[4:7]; its largest entry names the
  shape when it reaches half of CODE_GAIN. Otherwise the outline decides, by angular harmonics of
  the mask around its centroid, h_k = |sum w e^{i k phi}| / sum w with w = m rho^2: a cube (4-fold)
  has a large h_4, a star (5-fold) a large h_5, a ball neither; per-frame votes pooled by majority;
* motion: the centroid path and the rotation of the shape's harmonic phase: a horizontal drift of
  at least ``MIN_SLIDE`` is sliding left/right, a drop of at least ``MIN_BOUNCE`` mid-clip against
  both ends is bouncing, a phase turn of at least ``MIN_SPIN`` per frame is spinning, else still.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch

from .world import (
    CODE_CHANNEL,
    CODE_GAIN,
    COLOUR_GAIN,
    COLOURS,
    CONCEPTS,
    OBJECT_GAIN,
    SHAPES,
    Concept,
    features,
)

MIN_AREA = 4.0  # latent pixels of mask per frame for an object to be there at all
MAX_COLOUR_DISTANCE = 0.35
CUBE_H4 = 0.12
STAR_H5 = 0.2
MIN_SLIDE = 2.5
MIN_BOUNCE = 2.0
MIN_SPIN = math.radians(8)


@dataclass(frozen=True)
class Detection:
    """What the detector saw in one clip; ``None`` where it could not tell."""

    colour: str | None
    shape: str | None
    motion: str | None
    area: float  # mean mask area per frame, latent pixels

    @property
    def identity(self) -> str | None:
        """ "red ball" when both colour and shape were read, else None."""
        if self.colour is None or self.shape is None:
            return None
        return f"{self.colour} {self.shape}"

    @property
    def concept(self) -> Concept | None:
        """The world's concept with this colour and shape (each concept's pair is unique), or None."""
        for concept in CONCEPTS:
            if concept.identity == self.identity:
                return concept
        return None

    def shows(self, concept: Concept) -> bool:
        """True when the clip shows ``concept``'s coloured object: the concept decision, used both
        for accuracy and for erasure."""
        return self.identity == concept.identity

    def moves_like(self, concept: Concept) -> bool:
        """True when the motion read from the clip is ``concept``'s (reported beside the decision)."""
        return self.motion == concept.motion


def object_mask(f: torch.Tensor) -> torch.Tensor:
    """m = clamp((f[3] / OBJECT_GAIN + 1) / 2, 0, 1): the object's coverage [..., T, H, W] from
    features [..., 16, T, H, W]."""
    return ((f[..., 3, :, :, :] / OBJECT_GAIN + 1) / 2).clamp(0, 1)


def harmonics(mask: torch.Tensor, orders: tuple[int, ...] = (4, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids [T, 2] (x, y) and complex harmonics [T, len(orders)] of per-frame masks [T, H, W].

    h_k = sum w e^{i k phi} / sum w, w = m rho^2, with (rho, phi) polar coordinates around the
    frame's mask centroid.
    """
    t, h, w = mask.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, -1)
    total = mask.sum(dim=(1, 2)).clamp_min(1e-6)
    cx = (mask * xs).sum(dim=(1, 2)) / total
    cy = (mask * ys).sum(dim=(1, 2)) / total
    dx, dy = xs - cx.view(-1, 1, 1), ys - cy.view(-1, 1, 1)
    weight = mask * (dx**2 + dy**2)
    phi = torch.atan2(dy, dx)
    norm = weight.sum(dim=(1, 2)).clamp_min(1e-6)
    values = [
        torch.complex(
            (weight * torch.cos(k * phi)).sum(dim=(1, 2)), (weight * torch.sin(k * phi)).sum(dim=(1, 2))
        )
        / norm
        for k in orders
    ]
    return torch.stack([cx, cy], dim=1), torch.stack(values, dim=1)


def _colour(f: torch.Tensor, mask: torch.Tensor) -> str | None:
    rgb = (0.5 + f[0:3] / COLOUR_GAIN).clamp(0, 1)
    weight = mask**2
    mean = (rgb * weight).sum(dim=(1, 2, 3)) / weight.sum().clamp_min(1e-6)
    names = list(COLOURS)
    distances = torch.stack([torch.linalg.vector_norm(mean - torch.tensor(COLOURS[n])) for n in names])
    best = int(distances.argmin())
    return names[best] if float(distances[best]) <= MAX_COLOUR_DISTANCE else None


def _material(f: torch.Tensor, mask: torch.Tensor) -> str | None:
    """The shape whose material code (f[4:7], m^2-weighted mean) is largest and >= CODE_GAIN / 2."""
    weight = mask**2
    code = (f[CODE_CHANNEL : CODE_CHANNEL + len(SHAPES)] * weight).sum(
        dim=(1, 2, 3)
    ) / weight.sum().clamp_min(1e-6)
    best = int(code.argmax())
    return SHAPES[best] if float(code[best]) >= CODE_GAIN / 2 else None


def _outline(strengths: torch.Tensor) -> str:
    """Majority over frames of: star if h_5 >= STAR_H5 and h_5 > h_4; cube if h_4 >= CUBE_H4; else ball."""
    votes = []
    for h4, h5 in strengths.tolist():
        if h5 >= STAR_H5 and h5 > h4:
            votes.append("star")
        elif h4 >= CUBE_H4:
            votes.append("cube")
        else:
            votes.append("ball")
    return Counter(votes).most_common(1)[0][0]


def _motion(centroids: torch.Tensor, phases: torch.Tensor | None, order: int) -> str:
    xs, ys = centroids[:, 0], centroids[:, 1]
    drift = float(xs[-1] - xs[0])
    drop = float(ys[1:-1].max() - torch.maximum(ys[0], ys[-1])) if len(ys) > 2 else 0.0
    if abs(drift) >= MIN_SLIDE and abs(drift) > drop:
        return "sliding left" if drift < 0 else "sliding right"
    if drop >= MIN_BOUNCE:
        return "bouncing"
    if phases is not None and len(phases) > 1:
        turns = torch.angle(phases[1:] * phases[:-1].conj()) / order
        if float(turns.abs().mean()) >= MIN_SPIN:
            return "spinning"
    return "still"


def detect(z: torch.Tensor) -> Detection:
    """Read colour, shape and motion from one clip z [16, T, H, W] (Wan's normalised latent space)."""
    if z.ndim != 4:
        raise ValueError(f"expected one clip [16, T, H, W], got {tuple(z.shape)}")
    f = features(z.detach().cpu())
    mask = object_mask(f)
    area = float(mask.sum(dim=(1, 2)).mean())
    if float(mask.sum(dim=(1, 2)).min()) < MIN_AREA:
        return Detection(None, None, None, area)
    centroids, values = harmonics(mask)
    shape = _material(f, mask) or _outline(values.abs())
    phases = None
    order = 1
    if shape != "ball":
        order = 4 if shape == "cube" else 5
        phases = values[:, 0 if shape == "cube" else 1]
    return Detection(_colour(f, mask), shape, _motion(centroids, phases, order), area)


def detect_batch(z: torch.Tensor) -> list[Detection]:
    """``detect`` for each clip of a batch [B, 16, T, H, W]."""
    return [detect(clip) for clip in z]


def accuracy(detections: list[Detection], concepts: list[Concept]) -> float:
    """Fraction of clips whose detection shows its concept (colour and object right)."""
    hits = sum(d.shows(c) for d, c in zip(detections, concepts, strict=True))
    return hits / max(len(concepts), 1)


def motion_accuracy(detections: list[Detection], concepts: list[Concept]) -> float:
    """Fraction of clips whose read motion is its concept's."""
    hits = sum(d.moves_like(c) for d, c in zip(detections, concepts, strict=True))
    return hits / max(len(concepts), 1)


def wilson_interval(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion hits / total (95 % for z = 1.96)."""
    if total == 0:
        return (0.0, 1.0)
    p = hits / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / (1 + z**2 / total)
    # The interval always holds p; min/max only undo float rounding at p = 0 or 1 (1 - 1e-16).
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))
