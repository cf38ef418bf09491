"""Train the toy world's Wan 2.1-architecture model and check it through ComfyUI's own sampler.

    .venv/bin/python toy_world/train_toy_model.py            # train, save, evaluate
    .venv/bin/python toy_world/train_toy_model.py --evaluate # evaluate the saved file

The model is ComfyUI's ``comfy.ldm.wan.model.WanModel`` (t2v) at a small size (head dim 128, so
ComfyUI's detection reads it back as WAN21_T2V), conditioned by the toy text encoder (MiniLM in
Wan's format, the same ``comfy.sd.CLIP`` users load with UnlearnToyWorldTextEncoder).

Flow matching as Wan and ComfyUI's Wan sampling define it, in Wan's normalised latent space (what
``latent_formats.Wan21.process_in`` yields, where the generator's clips live):
x_t = (1 - sigma) x_0 + sigma eps, target v = eps - x_0, the model called with timestep
1000 sigma (``ModelSamplingDiscreteFlow``, multiplier 1000), so ComfyUI's denoised estimate
x_t - sigma v is x_0. Training sigmas are shifted uniform draws, sigma = s u / (1 + (s - 1) u)
with s = ``TRAIN_SHIFT``, covering the high-noise range that sampling with Wan's shift 8 visits.
A tenth of the prompts are replaced by "" so classifier-free guidance works. The saved weights are
an exponential moving average of the trained ones, in fp16, with seed, steps and this script's
version in the safetensors metadata. Seeded end to end: same seed, same file (up to the float
summation order of the machine's BLAS).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

SCRIPT_VERSION = "2"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "toy_world_wan21_t2v.safetensors"
MODEL_CONFIG = {"model_type": "t2v", "dim": 128, "ffn_dim": 512, "num_heads": 1, "num_layers": 4}
TRAIN_SHIFT = 3.0
UNCOND_PROBABILITY = 0.1
EVAL_POOL = 7  # the evaluation's own draw of phrasings
EVAL_SETTINGS = {"steps": 20, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple"}


def bootstrap_comfy() -> None:
    """Put ComfyUI (CPU mode) on sys.path and import this repository as package ``video_unlearning``."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import comfyui_host

    comfy_dir = Path(os.environ.get("VIDEO_UNLEARNING_COMFYUI") or comfyui_host.comfyui_dir())
    sys.path.insert(0, str(comfy_dir))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    if comfyui_host.PACK_DIR_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            comfyui_host.PACK_DIR_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)


def build_model(config: dict) -> torch.nn.Module:
    """WanModel with ComfyUI's layers and an explicit seeded init (ComfyUI's layers skip init).

    Linear/Conv weights Xavier-uniform, biases 0, affine norms 1, text and time embeddings
    N(0, 0.02^2), modulation tables N(0, 1/dim), the output layer 0 (so training starts from v = 0).
    """
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    model = WanModel(operations=comfy.ops.disable_weight_init, **config)
    dim = config["dim"]
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        with torch.no_grad():
            if "norm" in name:
                param.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias" or name.startswith("head.head."):
                param.zero_()
            elif "modulation" in name:
                param.normal_(0.0, dim**-0.5)
            elif name.startswith(("text_embedding", "time_embedding")):
                param.normal_(0.0, 0.02)
            else:
                torch.nn.init.xavier_uniform_(param.view(param.shape[0], -1))
    return model


def encode_prompts(prompts: list[str]) -> dict[str, torch.Tensor]:
    """MiniLM rows [L, 384] of each prompt's conditioning through the toy text encoder (a real comfy
    CLIP): the conditioning c [L, 4096] is P r with P's orthonormal columns, so r = P^T c holds it
    exactly in a tenth of the memory; ``pad_rows`` maps back."""
    from video_unlearning.nodes.toy_world_nodes import load_toy_clip
    from video_unlearning.toy_world import text

    clip = load_toy_clip()
    projection = text.text_projection()
    out = {}
    for prompt in prompts:
        out[prompt] = clip.encode_from_tokens(clip.tokenize(prompt))[0].float() @ projection
    return out


def shifted_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma = s u / (1 + (s - 1) u): ComfyUI's ``time_snr_shift`` for flow models."""
    return shift * u / (1 + (shift - 1) * u)


def pad_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Stack MiniLM rows [L_i, 384] into Wan conditioning [B, max L, 4096] (c = P r), padding with
    zero rows (Wan's padding)."""
    from video_unlearning.toy_world import text

    length = max(r.shape[0] for r in rows)
    out = torch.zeros(len(rows), length, rows[0].shape[1])
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out @ text.text_projection().T


def train(
    config: dict,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    ema_decay: float,
    log_every: int,
    prompts_per_concept: int,
) -> tuple:
    from video_unlearning.toy_world import text, world

    torch.manual_seed(seed)
    model = build_model(config)
    model.train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    by_concept = {c: text.train_prompts(c, prompts_per_concept, pool=0) for c in world.CONCEPTS}
    if prompts_per_concept != text.MODEL_PROMPTS_PER_CONCEPT:
        print(
            f"note: text.MODEL_PROMPTS_PER_CONCEPT is {text.MODEL_PROMPTS_PER_CONCEPT}; set it to "
            f"{prompts_per_concept} if this model is committed (held-out draws exclude its prompts)"
        )
    conds = encode_prompts(sorted({p for ps in by_concept.values() for p in ps} | {""}))
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
        ),
    )
    losses, started = [], time.time()
    for step in range(steps):
        picks = torch.randint(len(world.CONCEPTS), (batch,), generator=generator).tolist()
        concepts = [world.CONCEPTS[i] for i in picks]
        seeds = torch.randint(2**31 - 1, (batch,), generator=generator).tolist()
        x0 = world.render_batch(concepts, seeds)
        prompts = []
        for concept in concepts:
            options = by_concept[concept]
            prompt = options[int(torch.randint(len(options), (), generator=generator))]
            if float(torch.rand((), generator=generator)) < UNCOND_PROBABILITY:
                prompt = ""
            prompts.append(prompt)
        context = pad_rows([conds[p] for p in prompts])
        sigma = shifted_sigma(torch.rand(batch, generator=generator), TRAIN_SHIFT)
        noise = torch.randn(x0.shape, generator=generator)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        v = model(x_t, sigma * 1000.0, context)
        loss = torch.nn.functional.mse_loss(v, noise - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            for k, value in model.state_dict().items():
                ema[k].mul_(decay).add_(value.detach(), alpha=1 - decay)
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(f"step {step + 1}/{steps}  loss {recent:.4f}  {time.time() - started:.0f}s", flush=True)
    return ema, losses, time.time() - started


def save(path: Path, weights: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """fp16 safetensors, written to a temporary file and renamed."""
    import safetensors.torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.to(torch.float16).contiguous() for k, v in weights.items()}
    safetensors.torch.save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def sample(
    model_patcher, clip, prompt: str, seeds: list[int], negative: str = "", **settings
) -> torch.Tensor:
    """Clips [B, 16, T, H, W] (Wan VAE space) from ComfyUI's own KSampler, one per seed."""
    import nodes

    from video_unlearning.toy_world import world

    options = dict(EVAL_SETTINGS, **settings)
    positive = nodes.CLIPTextEncode().encode(clip, prompt)[0]
    negative_cond = nodes.CLIPTextEncode().encode(clip, negative)[0]
    out = []
    for seed in seeds:
        empty = {"samples": torch.zeros(1, world.LATENT_CHANNELS, world.FRAMES, world.HEIGHT, world.WIDTH)}
        latent = nodes.common_ksampler(
            model_patcher,
            seed,
            options["steps"],
            options["cfg"],
            options["sampler_name"],
            options["scheduler"],
            positive,
            negative_cond,
            empty,
            denoise=1.0,
        )[0]
        out.append(latent["samples"])
    return torch.cat(out)


def evaluate(
    path: Path, seeds_per_concept: int, prompt_sets: tuple[str, ...] = ("prompt",), sheet: Path | None = None
) -> dict:
    """Detector accuracy on ComfyUI samples of the model at ``path`` for each concept.

    With ``sheet``, the first two clips of each concept and prompt set are decoded into a PNG.
    """
    import comfy.sd
    import comfy.utils

    from video_unlearning.nodes.toy_world_nodes import load_toy_clip, normalised
    from video_unlearning.toy_world import detector, text, world

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model = comfy.sd.load_diffusion_model(str(path))
    clip = load_toy_clip()
    report: dict = {}
    rows = []
    for kind in prompt_sets:
        per_concept = {}
        for i, concept in enumerate(world.CONCEPTS):
            prompts = {
                "prompt": [concept.prompt],
                "train_vocabulary": text.unseen_phrasings(concept, seeds_per_concept, pool=EVAL_POOL),
                "held_out": text.held_out_prompts(concept, seeds_per_concept, pool=EVAL_POOL),
            }[kind]
            seeds = [1000 * i + k for k in range(seeds_per_concept)]
            found = []
            for k, seed in enumerate(seeds):
                clips = normalised(sample(model, clip, prompts[k % len(prompts)], [seed]))
                found.append(detector.detect(clips[0]))
                if k < 2:
                    rows.append(world.decode_rgb(clips)[0])
            per_concept[concept.name] = {
                "accuracy": detector.accuracy(found, [concept] * len(found)),
                "motion_accuracy": detector.motion_accuracy(found, [concept] * len(found)),
                "seen": [" ".join(str(x) for x in (d.colour, d.shape, d.motion)) for d in found],
            }
            print(kind, concept.name, per_concept[concept.name]["accuracy"], flush=True)
        report[kind] = per_concept
    if sheet is not None:
        world.save_sheet(rows, sheet)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--evaluate", action="store_true", help="only evaluate the file at --out")
    parser.add_argument("--eval-seeds", type=int, default=10)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--dim", type=int, default=MODEL_CONFIG["dim"], help="a multiple of 128")
    parser.add_argument("--layers", type=int, default=MODEL_CONFIG["num_layers"])
    parser.add_argument("--ffn", type=int, default=MODEL_CONFIG["ffn_dim"])
    parser.add_argument("--prompt-sets", default="prompt,train_vocabulary,held_out", help="comma-separated")
    parser.add_argument(
        "--prompts-per-concept", type=int, help="default: toy_world.text.MODEL_PROMPTS_PER_CONCEPT"
    )
    parser.add_argument("--report", type=Path, help="write the evaluation as JSON to this file")
    parser.add_argument("--sheet", type=Path, help="write decoded evaluation samples to this PNG")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bootstrap_comfy()
    if args.prompts_per_concept is None:
        from video_unlearning.toy_world import text

        args.prompts_per_concept = text.MODEL_PROMPTS_PER_CONCEPT
    if not args.evaluate:
        config = dict(
            MODEL_CONFIG, dim=args.dim, num_heads=args.dim // 128, num_layers=args.layers, ffn_dim=args.ffn
        )
        weights, losses, seconds = train(
            config,
            args.steps,
            args.batch,
            args.lr,
            args.seed,
            args.ema,
            args.log_every,
            args.prompts_per_concept,
        )
        tail = losses[-100:]
        metadata = {
            "video_unlearning_toy_world_model": "wan21_t2v",
            "script": "toy_world/train_toy_model.py",
            "script_version": SCRIPT_VERSION,
            "seed": str(args.seed),
            "steps": str(args.steps),
            "batch": str(args.batch),
            "lr": str(args.lr),
            "ema": str(args.ema),
            "train_shift": str(TRAIN_SHIFT),
            "prompts_per_concept": str(args.prompts_per_concept),
            "config": json.dumps(config),
            "final_loss": f"{sum(tail) / len(tail):.4f}",
            "train_seconds": f"{seconds:.0f}",
            "threads": str(args.threads),
        }
        save(args.out, weights, metadata)
        size_mb = args.out.stat().st_size / 1e6
        print(f"saved {args.out} ({size_mb:.1f} MB) after {seconds:.0f}s, loss {tail[-1]:.4f}")
    if args.eval_seeds > 0:
        report = evaluate(args.out, args.eval_seeds, tuple(args.prompt_sets.split(",")), args.sheet)
        for kind, per_concept in report.items():
            mean = sum(v["accuracy"] for v in per_concept.values()) / len(per_concept)
            motion = sum(v["motion_accuracy"] for v in per_concept.values()) / len(per_concept)
            print(f"{kind}: mean detector accuracy {mean:.3f}, motion read as prompted {motion:.3f}")
        print(json.dumps(report, indent=1))
        if args.report is not None:
            tmp = args.report.with_name(args.report.name + ".tmp")
            tmp.write_text(
                json.dumps({"settings": EVAL_SETTINGS, "seeds": args.eval_seeds, **report}, indent=1)
            )
            tmp.replace(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
