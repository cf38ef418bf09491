"""The toy video world: concepts, a seeded generator of latent clips, and a fixed decoder to RGB.

A clip is a tensor ``z`` of shape [16, T, H, W] in Wan 2.1's *normalised* latent space, the space
the diffusion model works in (ComfyUI's ``Wan21.process_in`` maps a VAE latent into it and
``process_out`` back). Each latent pixel holds 16 features, mixed into the 16 channels by a fixed
orthogonal matrix ``E`` (``z = E f``):

* ``f[0:3]``: the pixel's colour, ``COLOUR_GAIN * (rgb - 0.5)``;
* ``f[3]``: objectness, ``OBJECT_GAIN * (2 m - 1)`` with ``m`` the object's anti-aliased coverage;
* ``f[4:7]``: the object's material code, ``CODE_GAIN * m`` in channel ``4 + SHAPES.index(shape)``
  (as a real VAE latent carries an object's texture beside its colour; the decoder ignores it);
* ``f[7:16]``: a smooth background texture (zero on the object).

The decoder inverts the colour part: ``rgb = clamp(0.5 + (E^T z)[0:3] / COLOUR_GAIN, 0, 1)``,
upsampled 8x per side like Wan's VAE. Everything here is pure torch and seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

LATENT_CHANNELS = 16
FRAMES = 3  # latent frames: Wan's VAE turns 9 video frames into 3
HEIGHT = WIDTH = 16  # latent pixels: a 128 x 128 video
PIXELS_PER_LATENT = 8
VIDEO_FRAMES = 1 + 4 * (FRAMES - 1)  # what EmptyHunyuanLatentVideo's `length` must be
COLOUR_GAIN = 3.0
OBJECT_GAIN = 1.5
CODE_GAIN = 1.5
CODE_CHANNEL = 4  # f[4 + i] carries the code of SHAPES[i]
TEXTURE_CHANNEL = CODE_CHANNEL + 3
TEXTURE_GAIN = 0.15
SUPERSAMPLING = 4
BASIS_SEED = 5

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10),
    "blue": (0.12, 0.30, 0.95),
    "green": (0.10, 0.78, 0.20),
    "yellow": (0.95, 0.85, 0.10),
}
SHAPES = ("ball", "cube", "star")
MOTIONS = ("bouncing", "sliding left", "sliding right", "spinning")
# Rotational symmetry period of each shape (radians); a ball looks the same at any angle.
SYMMETRY = {"ball": 2 * math.pi, "cube": math.pi / 2, "star": 2 * math.pi / 5}
STAR_INNER_RATIO = 0.45
SIZES = {"ball": 3.0, "cube": 2.6, "star": 4.0}  # radius, half side, outer radius (latent pixels)
BOUNCE_HEIGHT = 4.5
SLIDE_DISTANCE = 5.0
MARGIN = 4.5


@dataclass(frozen=True)
class Concept:
    """One concept of the world: an object of one colour moving one way."""

    colour: str
    shape: str
    motion: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape} {self.motion}"

    @property
    def identity(self) -> str:
        """What erasure is judged on: the coloured object ("red ball"), whatever it does."""
        return f"{self.colour} {self.shape}"

    @property
    def prompt(self) -> str:
        return f"a {self.name}"


CONCEPTS: tuple[Concept, ...] = (
    Concept("red", "ball", "bouncing"),
    Concept("red", "cube", "sliding left"),
    Concept("blue", "ball", "bouncing"),
    Concept("blue", "cube", "sliding right"),
    Concept("green", "star", "spinning"),
    Concept("green", "ball", "sliding left"),
    Concept("yellow", "star", "bouncing"),
    Concept("yellow", "cube", "spinning"),
)


def concept_named(name: str) -> Concept:
    """The concept whose ``name`` ("red ball bouncing") or ``identity`` ("red ball") is ``name``."""
    key = name.strip().lower().removeprefix("a ").strip()
    for concept in CONCEPTS:
        if key in (concept.name, concept.identity):
            return concept
    raise KeyError(f"no toy-world concept {name!r}; known: {', '.join(c.name for c in CONCEPTS)}")


# --- fixed orthogonal maps ------------------------------------------------------------------------


def hadamard_columns(n: int, columns: torch.Tensor) -> torch.Tensor:
    """Columns of the normalised Sylvester-Hadamard matrix: H[i, j] = (-1)^popcount(i & j) / sqrt(n).

    ``n`` must be a power of two; the columns of H are orthonormal, so any subset is too.
    """
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size must be a power of two, got {n}")
    bits = torch.arange(n).unsqueeze(1) & columns.long().unsqueeze(0)
    parity = torch.zeros_like(bits)
    for shift in range(n.bit_length()):
        parity ^= (bits >> shift) & 1
    return (1 - 2 * parity).to(torch.float32) / math.sqrt(n)


def seeded_orthonormal_map(n_out: int, n_in: int, seed: int) -> torch.Tensor:
    """A fixed [n_out, n_in] map with orthonormal columns: M = diag(s) H[:, P[:n_in]].

    s is a seeded random sign per row and P a seeded permutation of H's columns; M^T M = I exactly,
    so the map keeps lengths and inner products. Built from integers only, it is the same on every
    machine.
    """
    if n_in > n_out:
        raise ValueError(f"cannot map {n_in} dimensions orthonormally into {n_out}")
    generator = torch.Generator().manual_seed(seed)
    columns = torch.randperm(n_out, generator=generator)[:n_in]
    signs = torch.randint(0, 2, (n_out, 1), generator=generator).to(torch.float32) * 2 - 1
    return signs * hadamard_columns(n_out, columns)


def latent_basis() -> torch.Tensor:
    """E, the orthogonal [16, 16] map from per-pixel features to latent channels (z = E f)."""
    return seeded_orthonormal_map(LATENT_CHANNELS, LATENT_CHANNELS, BASIS_SEED)


def features(z: torch.Tensor) -> torch.Tensor:
    """f = E^T z over the channel axis (-4) of [..., 16, T, H, W] latents."""
    basis = latent_basis().to(z.device, torch.float32)
    return torch.einsum("cf,...cthw->...fthw", basis, z.float())


def to_latent(f: torch.Tensor) -> torch.Tensor:
    """z = E f over the feature axis (-4) of [..., 16, T, H, W] features."""
    basis = latent_basis().to(f.device, torch.float32)
    return torch.einsum("cf,...fthw->...cthw", basis, f.float())


# --- rendering ------------------------------------------------------------------------------------


def _fine_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Supersampled pixel coordinates in latent-pixel units (latent pixel centres at integers)."""
    ys = (torch.arange(height * SUPERSAMPLING) + 0.5) / SUPERSAMPLING - 0.5
    xs = (torch.arange(width * SUPERSAMPLING) + 0.5) / SUPERSAMPLING - 0.5
    return torch.meshgrid(ys, xs, indexing="ij")


def _star_radius(angle: torch.Tensor, outer: float) -> torch.Tensor:
    """Boundary radius of a 5-pointed star along ``angle`` (a point at angle 0).

    Folding the angle into [0, pi/5] by symmetry, the edge runs from (R, 0) to the inner vertex
    r (cos a, sin a), a = pi/5; along direction phi it lies at t = R r sin a / (r sin a cos phi +
    (R - r cos a) sin phi).
    """
    half = math.pi / 5
    phi = torch.remainder(angle, 2 * half)
    phi = torch.where(phi > half, 2 * half - phi, phi)
    inner = outer * STAR_INNER_RATIO
    sin_a, cos_a = math.sin(half), math.cos(half)
    return outer * inner * sin_a / (inner * sin_a * torch.cos(phi) + (outer - inner * cos_a) * torch.sin(phi))


def shape_coverage(
    shape: str, cx: float, cy: float, angle: float, scale: float, height: int = HEIGHT, width: int = WIDTH
) -> torch.Tensor:
    """Anti-aliased coverage m in [0, 1] of a shape on the latent grid [H, W].

    Inside tests on a 4x supersampled grid, averaged per latent pixel: ball |p - c| <= r; cube
    max(|u|, |v|) <= a in coordinates rotated by ``angle``; star rho <= star boundary radius.
    """
    ys, xs = _fine_grid(height, width)
    dx, dy = xs - cx, ys - cy
    size = SIZES[shape] * scale
    if shape == "ball":
        inside = dx**2 + dy**2 <= size**2
    elif shape == "cube":
        cos_t, sin_t = math.cos(angle), math.sin(angle)
        u, v = cos_t * dx + sin_t * dy, -sin_t * dx + cos_t * dy
        inside = torch.maximum(u.abs(), v.abs()) <= size
    elif shape == "star":
        rho = torch.sqrt(dx**2 + dy**2)
        inside = rho <= _star_radius(torch.atan2(dy, dx) - angle, size)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return torch.nn.functional.avg_pool2d(inside[None].float(), SUPERSAMPLING)[0]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class Trajectory:
    """Where the object is in each latent frame: centre (x, y) and rotation angle."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    angles: tuple[float, ...]


def trajectory(concept: Concept, frames: int, generator: torch.Generator) -> Trajectory:
    """The object's path over the clip, u = k / (T - 1) for frame k.

    bouncing: y = y_floor - h |cos(pi u)| (in the air at both ends, on the floor mid-clip);
    sliding: x = x0 -/+ d u; spinning: angle = a0 + k * period / 3 for the shape's symmetry period.
    Start position and tilt are random within the margins; y grows downwards.
    """
    lo, hi = MARGIN, WIDTH - 1 - MARGIN
    period = SYMMETRY[concept.shape]
    angle0 = _uniform(generator, 0.0, period)
    us = [k / max(frames - 1, 1) for k in range(frames)]
    x0, y0 = _uniform(generator, lo, hi), _uniform(generator, lo, hi)
    angles = [angle0] * frames
    if concept.motion == "bouncing":
        floor = _uniform(generator, hi - 1.0, hi)
        xs = [x0] * frames
        ys = [floor - BOUNCE_HEIGHT * abs(math.cos(math.pi * u)) for u in us]
    elif concept.motion in ("sliding left", "sliding right"):
        sign = -1.0 if concept.motion == "sliding left" else 1.0
        start = _uniform(generator, lo, hi - SLIDE_DISTANCE)
        if sign < 0:
            start += SLIDE_DISTANCE
        xs = [start + sign * SLIDE_DISTANCE * u for u in us]
        ys = [y0] * frames
    elif concept.motion == "spinning":
        xs, ys = [x0] * frames, [y0] * frames
        angles = [angle0 + k * period / 3 for k in range(frames)]
    else:
        raise ValueError(f"unknown motion {concept.motion!r}")
    return Trajectory(tuple(xs), tuple(ys), tuple(angles))


def _background(generator: torch.Generator, frames: int, height: int, width: int) -> torch.Tensor:
    """Background features [16, T, H, W]: a dull tinted grey with a linear gradient, and texture.

    rgb = g + tint + ramp (g ~ U(0.25, 0.5), tint ~ U(-0.06, 0.06)^3, ramp up to +-0.1 along a random
    direction); no material code; the texture is 9 channels of 4x4 noise, bilinearly upsampled and
    static in time.
    """
    grey = _uniform(generator, 0.25, 0.5)
    tint = (torch.rand(3, generator=generator) - 0.5) * 0.12
    direction = _uniform(generator, 0.0, 2 * math.pi)
    amplitude = _uniform(generator, 0.0, 0.1)
    ys = torch.linspace(-1, 1, height).view(-1, 1)
    xs = torch.linspace(-1, 1, width).view(1, -1)
    ramp = amplitude * (math.cos(direction) * xs + math.sin(direction) * ys)
    rgb = (grey + tint.view(3, 1, 1) + ramp).clamp(0, 1)
    noise = torch.randn(LATENT_CHANNELS - TEXTURE_CHANNEL, 1, 4, 4, generator=generator)
    texture = torch.nn.functional.interpolate(
        noise, size=(height, width), mode="bilinear", align_corners=False
    )
    out = torch.zeros(LATENT_CHANNELS, frames, height, width)
    out[0:3] = (COLOUR_GAIN * (rgb - 0.5)).unsqueeze(1)
    out[3] = -OBJECT_GAIN
    out[TEXTURE_CHANNEL:] = TEXTURE_GAIN * texture[:, 0].unsqueeze(1)
    return out


def _object_colour(
    concept: Concept, coverage: torch.Tensor, cx: float, cy: float, scale: float
) -> torch.Tensor:
    """The object's rgb [3, H, W]: its palette colour; a ball is shaded 1.1 - 0.35 (d / r)^2 around a
    highlight up and left of its centre, so it reads as a sphere."""
    base = torch.tensor(COLOURS[concept.colour]).view(3, 1, 1)
    if concept.shape != "ball":
        return base.expand(3, *coverage.shape)
    radius = SIZES["ball"] * scale
    ys = torch.arange(coverage.shape[0]).view(-1, 1).float()
    xs = torch.arange(coverage.shape[1]).view(1, -1).float()
    d2 = (xs - cx + 0.3 * radius) ** 2 + (ys - cy + 0.3 * radius) ** 2
    shade = (1.1 - 0.35 * d2 / radius**2).clamp(0.6, 1.1)
    return (base * shade).clamp(0, 1)


def render_features(concept: Concept, seed: int, frames: int = FRAMES) -> torch.Tensor:
    """Per-pixel features f [16, T, H, W] of one clip of ``concept`` (seeded: same seed, same clip)."""
    generator = torch.Generator().manual_seed(seed)
    out = _background(generator, frames, HEIGHT, WIDTH)
    scale = _uniform(generator, 0.9, 1.1)
    path = trajectory(concept, frames, generator)
    for k in range(frames):
        m = shape_coverage(concept.shape, path.xs[k], path.ys[k], path.angles[k], scale)
        rgb = _object_colour(concept, m, path.xs[k], path.ys[k], scale)
        out[0:3, k] = m * COLOUR_GAIN * (rgb - 0.5) + (1 - m) * out[0:3, k]
        out[3, k] = OBJECT_GAIN * (2 * m - 1)
        out[CODE_CHANNEL + SHAPES.index(concept.shape), k] = CODE_GAIN * m
        out[TEXTURE_CHANNEL:, k] = (1 - m) * out[TEXTURE_CHANNEL:, k]
    return out


def render_clip(concept: Concept, seed: int, frames: int = FRAMES) -> torch.Tensor:
    """One clip z = E f [16, T, H, W] in Wan's normalised latent space."""
    return to_latent(render_features(concept, seed, frames))


def render_batch(concepts: list[Concept], seeds: list[int], frames: int = FRAMES) -> torch.Tensor:
    """Clips [B, 16, T, H, W] for ``concepts[i]`` with ``seeds[i]``."""
    return torch.stack([render_clip(c, s, frames) for c, s in zip(concepts, seeds, strict=True)])


# --- decoder --------------------------------------------------------------------------------------


def decode_rgb(z: torch.Tensor, upscale: int = PIXELS_PER_LATENT) -> torch.Tensor:
    """RGB frames [B, T, H * upscale, W * upscale, 3] in [0, 1] from latents [B, 16, T, H, W].

    rgb = clamp(0.5 + (E^T z)[0:3] / COLOUR_GAIN, 0, 1), then bilinear upsampling per frame.
    """
    if z.ndim != 5 or z.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected latents [B, 16, T, H, W], got {tuple(z.shape)}")
    rgb = (0.5 + features(z)[:, 0:3] / COLOUR_GAIN).clamp(0, 1)
    b, _, t, h, w = rgb.shape
    flat = rgb.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w)
    if upscale > 1:
        flat = torch.nn.functional.interpolate(
            flat, scale_factor=upscale, mode="bilinear", align_corners=False
        )
    return flat.clamp(0, 1).reshape(b, t, 3, h * upscale, w * upscale).permute(0, 1, 3, 4, 2).contiguous()


def _atomic_save(image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format=path.suffix.lstrip(".").upper(), **kwargs)
    tmp.replace(path)
    return path


def _to_pil(frame: torch.Tensor):
    from PIL import Image

    return Image.fromarray((frame.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def save_gif(frames: torch.Tensor, path: Path, frame_ms: int = 250) -> Path:
    """Write frames [T, H, W, 3] in [0, 1] as a looping GIF (temporary file, then rename)."""
    images = [_to_pil(f) for f in frames]
    return _atomic_save(
        images[0], Path(path), save_all=True, append_images=images[1:], duration=frame_ms, loop=0
    )


def save_sheet(rows: list[torch.Tensor], path: Path, gap: int = 4) -> Path:
    """Write a PNG grid: one row per clip, its frames [T, H, W, 3] side by side, ``gap`` px apart."""
    height, width = rows[0].shape[1:3]
    columns = max(r.shape[0] for r in rows)
    sheet = torch.ones(len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3)
    for i, row in enumerate(rows):
        for k, frame in enumerate(row):
            top, left = i * (height + gap), k * (width + gap)
            sheet[top : top + height, left : left + width] = frame
    return _atomic_save(_to_pil(sheet), Path(path))
