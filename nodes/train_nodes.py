"""T2VUnlearning inside ComfyUI: train an unlearning LoRA, and make the prompts to train it on.

UnlearnTrainLoRA fine-tunes low-rank adapters so that the model's velocity for the concept follows
a negatively guided target, with a localization term (the adapters may act only where the
concept's cross-attention points) and a preservation term (nearby prompts keep their velocity); the
objective is in ``erasure.objectives``, the step and loop in ``erasure.training``, the ComfyUI
plumbing in ``train_compat``.

x_t: T2VUnlearning most likely denoised from noise with the concept prompt (Receler style); we
noise latents of clips the *original* model made for concept prompts at a random flow noise level
(``x_t = (1 - sigma) x0 + sigma * noise``, sigma from the model's own shifted schedule), the
cheaper equivalent methods.md describes. Users feed such latents (e.g. from a stock KSampler);
without them the node samples its own with a short euler run and says so.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass

import comfy.utils
import node_helpers
import torch
from comfy_api.latest import io

from ..erasure import checks
from ..erasure.attacks import attacked_rows, pgd_step, row_scale
from ..erasure.lora_format import build_lora, json_list, pack_version
from ..erasure.objectives import denoising_loss, denoising_target, noised_latent
from ..erasure.prompt_augment import STYLES, augment_prompts
from ..erasure.training import (
    ConceptMaskCapture,
    LossWeights,
    MarkedRow,
    predict_grouped,
    train_adapters,
    unlearning_step,
)
from . import comfy_compat, train_compat

LOG = logging.getLogger("video_unlearning")
CATEGORY = "video_unlearning/lora"
METHOD = "T2VUnlearning"
TRAINING_DTYPES = ("auto", "bf16", "fp16", "fp32")
AUGMENTED_PROMPTS = 16
MAX_SIGMA_PERCENT = 0.99  # never sigma = 0, where the velocity is undefined
# HunyuanVideo's guidance is embedded (6.0); HunyuanVideo 1.5 samples with real CFG (ComfyUI's template: 6),
# LTX-Video too (ComfyUI's LTX-Video template: 3).
# LTX-2: 4, the guidance of LTX-2's own first-stage pipeline as remembered (not checked against a template).
SAMPLING_CFG = {
    "wan": 5.0,
    "hunyuan_video": 1.0,
    "hunyuan_video15": 6.0,
    "ltxv": 3.0,
    "ltxav": 4.0,
    "kandinsky5": 5.0,
    "cogvideox": 6.0,
}


def split_lines(text: str) -> list[str]:
    """One prompt per non-empty line, stripped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@dataclass(frozen=True)
class TrainSettings:
    """Every hyperparameter of a run; saved in the LoRA's metadata."""

    concept: str
    steps: int
    learning_rate: float
    rank: int
    eta: float
    localization_weight: float
    preservation_weight: float
    mask_threshold: float
    target_modules: str
    seed: int
    gradient_checkpointing: bool
    training_dtype: str
    # Adversarial training (AdvUnlearn): PGD steps on the concept prompt's conditioning per step (0: off)
    adversarial_steps: int = 0
    adversarial_step_size: float = 0.1
    adversarial_max_change: float = 1.0
    adversarial_clean_share: float = 0.5

    def validate(self) -> None:
        for field in (
            "learning_rate",
            "eta",
            "localization_weight",
            "preservation_weight",
            "mask_threshold",
            "adversarial_step_size",
            "adversarial_max_change",
            "adversarial_clean_share",
        ):
            checks.finite_number(field, getattr(self, field))
        if not self.concept.strip():
            raise ValueError("concept is empty: name the concept to erase, e.g. 'nudity'.")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1 (got {self.steps}); T2VUnlearning used 500.")
        if not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate must be positive (got {self.learning_rate}); 1e-4 is the default."
            )
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1 (got {self.rank}).")
        if not 0.0 <= self.mask_threshold < 1.0:
            raise ValueError(
                f"mask_threshold must be in [0, 1) (got {self.mask_threshold}); Receler uses 0.1."
            )
        if self.localization_weight < 0 or self.preservation_weight < 0:
            raise ValueError("localization_weight and preservation_weight must be >= 0.")
        if self.target_modules not in train_compat.TARGET_PRESETS:
            raise ValueError(f"target_modules must be one of {train_compat.TARGET_PRESETS}.")
        if self.adversarial_steps < 0 or self.adversarial_step_size <= 0 or self.adversarial_max_change < 0:
            raise ValueError(
                "adversarial_steps must be >= 0 (0: plain training), adversarial_step_size > 0 and "
                "adversarial_max_change >= 0 (0: unbounded)."
            )
        if not 0.0 <= self.adversarial_clean_share <= 1.0:
            raise ValueError(
                f"adversarial_clean_share must be in [0, 1] (got {self.adversarial_clean_share}): the "
                "share of the unlearning loss taken on the plain concept prompt (0: the attacked one only)."
            )
        if self.training_dtype not in TRAINING_DTYPES:
            raise ValueError(f"training_dtype must be one of {TRAINING_DTYPES}.")


@dataclass(frozen=True)
class LatentRequest:
    """Size of the clips the node samples itself when no latents are given."""

    width: int
    height: int
    length: int
    sampling_steps: int
    count: int


def check_latents(
    samples, channels: int, patch: tuple[int, int, int], audio: tuple[int, int] | None = None
) -> None:
    """Raise a ValueError naming the problem when ``samples`` cannot be this model's video latents.
    ``audio``: (channels, frequency bins) of the model's audio stream (LTX-2), whose LATENTs may hold a
    video and an audio stream (a NestedTensor, as LTXVConcatAVLatent makes)."""
    if getattr(samples, "is_nested", False):
        streams = list(samples.unbind())
        if audio is None or len(streams) != 2:
            raise ValueError(
                f"latents hold {len(streams)} streams (a NestedTensor); "
                + (
                    "LTX-2 latents hold a video and an audio stream (LTXVConcatAVLatent)."
                    if audio is not None
                    else "this model takes one video latent: give the video part (LTXVSeparateAVLatent's "
                    "video output) or latents made with this model."
                )
            )
        _check_audio_latents(streams[1], audio, int(streams[0].shape[0]))
        samples = streams[0]
    if samples.ndim != 5:
        raise ValueError(
            f"latents have shape {list(samples.shape)}; a video latent is "
            f"[batch, {channels}, frames, height, width]. Make them with this model (e.g. "
            "EmptyHunyuanLatentVideo + KSampler for Wan 2.1 and HunyuanVideo, Wan22ImageToVideoLatent "
            "for Wan 2.2 5B, EmptyHunyuanVideo15Latent for HunyuanVideo 1.5, EmptyLTXVLatentVideo for "
            "LTX-Video and LTX-2 (with LTXVConcatAVLatent for LTX-2's audio), Kandinsky5ImageToVideo or "
            "EmptyHunyuanLatentVideo for Kandinsky 5, "
            "EmptyHunyuanLatentVideo for CogVideoX)."
        )
    b, c, t, h, w = samples.shape
    if c != channels:
        raise ValueError(
            f"latents have {c} channels but this model's latents have {channels} "
            "(Wan 2.1, HunyuanVideo, Kandinsky 5 and CogVideoX: 16, HunyuanVideo 1.5: 32, Wan 2.2 5B: 48, "
            "LTX-Video: 128): they come from another model or VAE."
        )
    checks.require_finite({"samples": samples}, "the latents", "make them again with this model")
    pt, ph, pw = patch
    if b < 1 or t < 1 or t % pt or h < ph or w < pw or h % ph or w % pw:
        raise ValueError(
            f"latents of {t} frames x {h} x {w} do not fit the model's {pt}x{ph}x{pw} patches: frames "
            f"must be a positive multiple of {pt}, height and width multiples of {ph} and {pw}."
        )


def _check_audio_latents(samples: torch.Tensor, audio: tuple[int, int], clips: int) -> None:
    channels, bins = audio
    if samples.ndim != 4 or samples.shape[1] != channels or samples.shape[3] != bins or samples.shape[2] < 1:
        raise ValueError(
            f"the audio latents have shape {list(samples.shape)}; this model's are [batch, {channels}, "
            f"latents, {bins}] (LTXVEmptyLatentAudio with the model's audio VAE)."
        )
    if samples.shape[0] != clips:
        raise ValueError(
            f"the latents hold {clips} video clips but {samples.shape[0]} audio clips: each clip needs both."
        )
    checks.require_finite({"samples": samples}, "the audio latents", "make them again with this model")


def audio_geometry(model, family: str) -> tuple[int, int] | None:
    """(channels, frequency bins) of LTX-2's audio latents; None for the video-only families."""
    if family != "ltxav":
        return None
    shape = train_compat.audio_latent_shape(model, 1)
    return shape[1], shape[3]


def _sample_latents(model, clip_prompts, uncond, family: str, request: LatentRequest, seed: int):
    channels, _ = train_compat.latent_geometry(model)
    spatial = train_compat.latent_downscale(model, family)  # Wan 2.2's, HunyuanVideo 1.5's VAE: 16x
    frames = train_compat.latent_frames(model, family, request.length)
    shapes = [[1, channels, frames, request.height // spatial, request.width // spatial]]
    if family == "ltxav":  # LTX-2 makes the clip's sound with it
        shapes.append(list(train_compat.audio_latent_shape(model, request.length)))
    positives = [p.conditioning for p in clip_prompts[: request.count]]
    LOG.info(
        "UnlearnTrainLoRA: no latents given; sampling %d concept clips of %s with %d euler steps",
        len(positives),
        " + ".join(str(s) for s in shapes),
        request.sampling_steps,
    )
    return train_compat.sample_concept_latents(
        model, positives, uncond.conditioning, shapes, request.sampling_steps, SAMPLING_CFG[family], seed
    )


def draw_training_point(x0_all: torch.Tensor, sampling, generator: torch.Generator):
    """(x0, noise, sigma): one of the clips ``x0_all`` (on its device), Gaussian noise and a noise
    level (both on the CPU) from the model's own schedule (``sampling.percent_to_sigma`` of a uniform percent
    below MAX_SIGMA_PERCENT), drawn in that order from ``generator``."""
    x0 = x0_all[int(torch.randint(x0_all.shape[0], (1,), generator=generator))][None]
    noise = torch.randn(x0.shape, generator=generator)
    percent = float(torch.rand((), generator=generator)) * MAX_SIGMA_PERCENT
    return x0, noise, torch.tensor([float(sampling.percent_to_sigma(percent))])


@dataclass
class TrainResult:
    model: object
    lora: dict
    loss_map: dict
    summary: str


def _lora_metadata(
    settings: TrainSettings, architecture: str, concept_prompts, preserve_prompts, latents_source
):
    meta = {k: str(v) for k, v in asdict(settings).items()}
    meta.update(
        method=METHOD,
        base_architecture=architecture,
        pack_version=pack_version(),
        concept_prompts=json_list(concept_prompts),
        preserve_prompts=json_list(preserve_prompts),
        latents=latents_source,
    )
    return meta


def train_unlearning_lora(
    model,
    clip,
    settings: TrainSettings,
    concept_prompts: list[str],
    preserve_prompts: list[str],
    latents: dict | None,
    latent_request: LatentRequest,
    node_id: str | None = None,
) -> TrainResult:
    """The whole run: prompts, latents, the training loop, and the outputs. Leaves ``model`` as it was."""
    settings.validate()
    arch = train_compat.supported_architecture(model, "Unlearn: Train LoRA")
    train_compat.check_trainable(model, "Unlearn: Train LoRA")
    family, architecture = arch.family, arch.name
    channels, patch = train_compat.latent_geometry(model)
    audio = audio_geometry(model, family)
    if settings.preservation_weight > 0 and not preserve_prompts:
        raise ValueError(
            "preserve_prompts is empty while preservation_weight > 0: give at least one prompt to keep "
            "(e.g. 'a person' when erasing nudity), or set preservation_weight to 0."
        )
    if not concept_prompts:
        style = train_compat.PROMPT_STYLE[family]
        concept_prompts = augment_prompts(settings.concept, AUGMENTED_PROMPTS, style, settings.seed)
    if latents is not None:
        check_latents(latents["samples"], channels, patch, audio)

    with torch.inference_mode(False):
        with torch.no_grad():
            uncond = train_compat.encode_prompts(clip, [""], None, family)[0]
            concepts = train_compat.encode_prompts(clip, concept_prompts, settings.concept, family)
            # With beta = 0 the preservation term is zero: its prompts are not encoded nor run at all.
            keep = preserve_prompts if settings.preservation_weight > 0 else []
            preserves = train_compat.encode_prompts(clip, keep, None, family)
            if latents is None:
                samples = _sample_latents(model, concepts, uncond, family, latent_request, settings.seed)
                check_latents(samples, channels, patch, audio)
                source = "sampled by the node"
                steps_note = f", {latent_request.sampling_steps} steps"
            else:
                samples = latents["samples"]
                source, steps_note = "given", ""
            clips = train_compat.training_clips(model, family, samples)
            sound = " with audio" if clips.stream_shapes is not None and len(clips.stream_shapes) > 1 else ""
            latents_source = f"{source}: {clips.x0.shape[0]} clips{sound}{steps_note}"
            train_compat.build_model_inputs(
                model, [uncond, *concepts, *preserves], clips.x0.shape, model.load_device, clips.stream_shapes
            )

        prompts = (uncond, concepts, preserves)
        history, factors = _train(model, settings, family, prompts, clips, patch, node_id)
    checks.require_finite(
        ((f"{m} {side}", t) for m, (up, down) in factors.items() for side, t in (("up", up), ("down", down))),
        "Unlearn: Train LoRA: the trained LoRA",
        "training diverged in its last step; lower learning_rate or the eta/alpha/beta weights",
    )

    result_model = comfy_compat.add_lowrank_patches(model, factors)
    metadata = _lora_metadata(settings, architecture, concept_prompts, preserve_prompts, latents_source)
    lora = build_lora(factors, metadata)
    missing = sum(not p.concept_found for p in concepts)
    summary = (
        f"{METHOD} LoRA for '{settings.concept}' on {architecture}: {settings.steps} steps, "
        f"loss {history['loss'][0]:.4g} -> {history['loss'][-1]:.4g}; latents {latents_source}; "
        f"{len(concepts)} concept prompts"
        + (f" ({missing} without the concept's words: their mask uses all their tokens)" if missing else "")
        + (
            f"; adversarial: {settings.adversarial_steps} attack steps of {settings.adversarial_step_size:g} "
            f"per step (bound {settings.adversarial_max_change:g}, plain prompt's share "
            f"{settings.adversarial_clean_share:g})"
            if settings.adversarial_steps
            else ""
        )
    )
    LOG.info("UnlearnTrainLoRA: %s", summary)
    return TrainResult(result_model, lora, history, summary)


def _train(model, settings: TrainSettings, family, prompt_sets, clips, patch, node_id):
    uncond, concepts, preserves = prompt_sets
    x0_all = clips.x0
    trainee = model.clone()
    if settings.training_dtype != "auto":
        trainee.set_model_compute_dtype(node_helpers.string_to_torch_dtype(settings.training_dtype))
    train_compat.load_for_training(trainee)
    device = trainee.load_device
    dm = trainee.model.diffusion_model
    sampling = trainee.model.model_sampling
    parameterisation = train_compat.parameterisation(trainee)

    marker = MarkedRow()
    capture = ConceptMaskCapture(settings.mask_threshold, marker)
    targets = train_compat.adapter_targets(dm, family, settings.target_modules)
    adapters = train_compat.make_adapters(
        trainee, targets, settings.rank, float(settings.rank), settings.seed, marker
    )
    prompts = {"": uncond}
    prompts.update({("c", i): p for i, p in enumerate(concepts)})
    prompts.update({("p", i): p for i, p in enumerate(preserves)})
    velocity = train_compat.VelocityModel(trainee, prompts, capture)
    _, t, h, w = clips.video_shape[1:]
    tokens = (t // patch[0]) * (h // patch[1]) * (w // patch[2])
    capture.video_tokens = adapters.video_tokens = tokens
    capture.text_first = adapters.text_first = train_compat.text_first(dm, family)
    capture.frames = t // patch[0]
    capture.text_call = train_compat.text_attention_call(family)
    weights = LossWeights(
        settings.eta,
        settings.localization_weight,
        settings.preservation_weight,
        settings.adversarial_clean_share,
    )
    generator = torch.Generator().manual_seed(settings.seed)

    def predict(group, marked):
        return predict_grouped(velocity.forward, group, velocity.signature, marker, marked)

    adversary = (
        _Adversary(trainee, velocity, settings, clips, parameterisation)
        if settings.adversarial_steps
        else None
    )

    def step(i: int):
        train_compat.throw_if_cancelled()
        c = ("c", int(torch.randint(len(concepts), (1,), generator=generator)))
        p = ("p", int(torch.randint(len(preserves), (1,), generator=generator))) if preserves else None
        x0, noise, sigma = draw_training_point(x0_all, sampling, generator)
        velocity.x_t = noised_latent(x0, noise, sigma, parameterisation).to(device)
        velocity.sigma = sigma.to(device)
        capture.concept_index = prompts[c].concept_rows
        capture.text_len = prompts[c].text_len
        attacked = adversary.attack(c, x0.to(device), noise.to(device)) if adversary else None
        return unlearning_step(predict, adapters, capture, "", c, p, weights, attacked=attacked)

    pbar = comfy.utils.ProgressBar(settings.steps, node_id=node_id)
    start = time.monotonic()

    def on_step(done: int, values: dict[str, float]) -> None:
        pbar.update(1)
        elapsed = time.monotonic() - start
        train_compat.send_progress(
            dict(
                values,
                node=node_id,
                step=done,
                steps=settings.steps,
                elapsed_s=round(elapsed, 2),
                eta_s=round(elapsed / done * (settings.steps - done), 1),
            )
        )

    with train_compat.differentiable(trainee, family, capture, marker, settings.gradient_checkpointing):
        adapters.attach()
        try:
            history = train_adapters(adapters, step, settings.steps, settings.learning_rate, on_step)
        finally:
            adapters.detach()
    return history, adapters.factors()


class _Adversary:
    """The inner loop of adversarial training (AdvUnlearn, on the text-conditioning space): before each
    step, ``adversarial_steps`` PGD steps (``erasure.attacks.pgd_step``) move the concept prompt's
    conditioning ``c' = c + s u`` to lower the *current* LoRA model's denoising loss on the step's
    clip; the step then unlearns on ``c'`` (its target ``v_neg`` still from the frozen model on c).
    Each concept prompt's ``u`` carries over to its next step (a warm start: the attack keeps
    strengthening as the LoRA learns), bounded by ``adversarial_max_change`` per row."""

    def __init__(self, model, velocity, settings: TrainSettings, clips, parameterisation: str) -> None:
        self.model, self.velocity, self.settings = model, velocity, settings
        self.parameterisation = parameterisation
        self.clips = clips
        self.device = model.load_device
        self.state: dict = {}

    def attack(self, concept_key, x0: torch.Tensor, noise: torch.Tensor):
        """The key of the attacked copy of ``concept_key`` in the velocity model's prompts."""
        prompts = self.velocity.prompts
        base = prompts[concept_key]
        entry = base.conditioning[0]
        rows0 = entry[0].to(self.device).float()
        scale = row_scale(rows0)
        u = self.state.get(concept_key)
        if u is None:
            u = torch.zeros(rows0.shape, device=self.device)
        key = ("adversarial", concept_key)
        adversarial = prompts.setdefault(key, dataclasses.replace(base, conds={}))

        def use(variable):
            rows = attacked_rows(rows0, variable, scale, "prompt_embedding")
            adversarial.conds = train_compat.model_conds(
                self.model, entry, self.clips.x0.shape, self.device, rows, self.clips.stream_shapes
            )

        target = denoising_target(x0, noise, self.parameterisation)
        for _ in range(self.settings.adversarial_steps):
            u = u.detach().requires_grad_(True)
            use(u)
            loss = denoising_loss(self.velocity.forward([key]), target)
            u = pgd_step(loss, u, self.settings.adversarial_step_size, self.settings.adversarial_max_change)
        self.state[concept_key] = u
        with torch.no_grad():
            use(u)
        return key


def _weight(name: str, default: float, high: float, tooltip: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=high, step=0.01, tooltip=tooltip)


class UnlearnTrainLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnTrainLoRA",
            display_name="Unlearn: Train LoRA (T2VUnlearning)",
            category=CATEGORY,
            description=(
                "Trains a LoRA that erases a concept from Wan 2.1/2.2, HunyuanVideo, HunyuanVideo 1.5, "
                "LTX-Video 0.9, LTX-2 (video with its audio), Kandinsky 5 or CogVideoX "
                "(T2VUnlearning: negative guidance target, cross-attention localization, preservation). LoRA "
                "and optimizer "
                "in fp32; the frozen predictions come from the same model with the LoRA off. Cancel stops "
                "within one step."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The Wan, HunyuanVideo, LTX-Video, LTX-2, Kandinsky 5 or CogVideoX model to "
                    "erase the concept from.",
                ),
                io.Clip.Input(
                    "clip",
                    tooltip="The model's text encoder (umT5 for Wan, HunyuanVideo's for it, T5-XXL for "
                    "LTX-Video and CogVideoX, Gemma 3 for LTX-2, Qwen2.5-VL + CLIP-L for Kandinsky 5).",
                ),
                io.String.Input("concept", default="nudity", tooltip="The concept to erase, as words."),
                io.String.Input(
                    "concept_prompts",
                    multiline=True,
                    default="",
                    tooltip="Prompts showing the concept, one per line. Empty: 16 are generated in the "
                    "model's caption style (see Unlearn: Prompt Augment).",
                ),
                io.String.Input(
                    "preserve_prompts",
                    multiline=True,
                    default="a person",
                    tooltip="Prompts whose output must not change, one per line ('a person' for nudity).",
                ),
                io.Int.Input("steps", default=500, min=1, max=100000, tooltip="Training steps (paper: 500)."),
                io.Float.Input("learning_rate", default=1e-4, min=1e-7, max=1.0, step=1e-5, round=1e-7),
                io.Int.Input(
                    "rank", default=32, min=1, max=256, tooltip="LoRA rank (the paper's adapters: 128)."
                ),
                _weight("eta", 3.0, 20.0, "Negative guidance of the target (paper: 3 nudity, 5 faces)."),
                _weight("localization_weight", 5.0, 100.0, "alpha: keeps the LoRA in the concept's region."),
                _weight("preservation_weight", 1.0, 100.0, "beta: keeps the preserve prompts' output."),
                _weight("mask_threshold", 0.1, 0.99, "tau: normalised concept attention above it = concept."),
                io.Combo.Input(
                    "target_modules",
                    options=list(train_compat.TARGET_PRESETS),
                    default="attention",
                    tooltip="attention: Wan self/cross-attention q,k,v,o; HunyuanVideo img/txt attention "
                    "qkv/proj and single-block linear1/linear2; LTX-Video attn1/attn2 to_q,to_k,to_v,to_out. "
                    "attention+ffn also trains the MLPs.",
                ),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
                io.Boolean.Input(
                    "gradient_checkpointing",
                    default=True,
                    tooltip="Recompute each block in the backward pass: much less memory, about 30% slower.",
                ),
                io.Combo.Input(
                    "training_dtype",
                    options=list(TRAINING_DTYPES),
                    default="auto",
                    tooltip="Compute dtype of the frozen model during training (auto: as for sampling). "
                    "The LoRA and its optimizer are always fp32.",
                ),
                io.Latent.Input(
                    "latents",
                    optional=True,
                    tooltip="Clips the original model made for concept prompts (e.g. from KSampler; LTX-2: "
                    "video + audio from LTXVConcatAVLatent, or video alone). Absent: the node samples its "
                    "own with a short run at the size below (LTX-2: with audio).",
                ),
                io.Int.Input("width", default=512, min=16, max=4096, step=16, tooltip="Self-sampled clips."),
                io.Int.Input("height", default=320, min=16, max=4096, step=16, tooltip="Self-sampled clips."),
                io.Int.Input(
                    "length", default=17, min=1, max=1024, step=4, tooltip="Self-sampled clips: frames."
                ),
                io.Int.Input("sampling_steps", default=20, min=1, max=200, tooltip="Self-sampled clips."),
                io.Int.Input(
                    "sampled_clips", default=4, min=1, max=64, tooltip="Self-sampled clips: how many."
                ),
                io.Int.Input(
                    "adversarial_steps",
                    default=0,
                    min=0,
                    max=100,
                    optional=True,
                    tooltip="Robust training (AdvUnlearn): attack steps on the concept prompt's conditioning "
                    "before each training step, which then unlearns on the attacked prompt. 0: plain "
                    "training. Each attack step costs about one more forward and backward pass.",
                ),
                io.Float.Input(
                    "adversarial_step_size",
                    default=0.1,
                    min=0.001,
                    max=10.0,
                    step=0.001,
                    optional=True,
                    tooltip="Robust training: each attack step, in units of the prompt's rms.",
                ),
                io.Float.Input(
                    "adversarial_max_change",
                    default=1.0,
                    min=0.0,
                    max=100.0,
                    step=0.01,
                    optional=True,
                    tooltip="Robust training: bound on each attacked row's change, in units of the prompt's "
                    "rms (0: unbounded).",
                ),
                io.Float.Input(
                    "adversarial_clean_share",
                    default=0.5,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    optional=True,
                    tooltip="Robust training: share of the unlearning loss taken on the plain concept prompt "
                    "beside the attacked one (0: the attacked prompt only, as AdvUnlearn; 0.5 halved what "
                    "the toy world's robust LoRA left before an attack). Costs one more prompt per forward "
                    "pass.",
                ),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The model with the trained LoRA applied."),
                io.Custom("LORA_MODEL").Output(
                    display_name="lora",
                    tooltip="The LoRA (works with SaveLoRA, LoraModelLoader, Unlearn: Save LoRA).",
                ),
                io.Custom("LOSS_MAP").Output(
                    display_name="loss_map",
                    tooltip="Loss per step: 'loss' (total, for LossGraphNode), 'unlearn', 'localization', "
                    "'preservation'.",
                ),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls,
        model,
        clip,
        concept_prompts,
        preserve_prompts,
        latents=None,
        width=512,
        height=320,
        length=17,
        sampling_steps=20,
        sampled_clips=4,
        **hyperparameters,
    ) -> io.NodeOutput:
        """``hyperparameters``: the inputs named as TrainSettings' fields (concept, steps, ...)."""
        hyperparameters["concept"] = " ".join(str(hyperparameters.get("concept", "")).split())
        result = train_unlearning_lora(
            model,
            clip,
            TrainSettings(**hyperparameters),
            split_lines(concept_prompts),
            split_lines(preserve_prompts),
            latents,
            LatentRequest(width, height, length, sampling_steps, sampled_clips),
            node_id=getattr(cls.hidden, "unique_id", None),
        )
        return io.NodeOutput(result.model, result.lora, result.loss_map, ui={"text": [result.summary]})


class UnlearnPromptAugment(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="UnlearnPromptAugment",
            display_name="Unlearn: Prompt Augment",
            category=CATEGORY,
            description=(
                "Rewrites a concept into varied prompts in a video model's caption style (long and detailed "
                "for Wan, 1-2 sentences for HunyuanVideo), one per line. Deterministic per seed; no network. "
                "Any LLM node's rewrites can be used instead."
            ),
            inputs=[
                io.String.Input("concept", default="nudity"),
                io.Int.Input("count", default=16, min=1, max=1000),
                io.Combo.Input("style", options=list(STYLES), default="wan"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF),
            ],
            outputs=[io.String.Output(display_name="prompts", tooltip="One prompt per line.")],
        )

    @classmethod
    def execute(cls, concept, count, style, seed) -> io.NodeOutput:
        return io.NodeOutput("\n".join(augment_prompts(concept, count, style, seed)))


NODES = [UnlearnTrainLoRA, UnlearnPromptAugment]
