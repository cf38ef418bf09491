"""What every part of the performance benchmark (``benchmarks/perf.py``) stands on: ComfyUI in-process
on the chosen device, the models at real shapes with random weights, the clip sizes, and the clocks
and memory probes.

Speed and memory do not depend on the values of the weights, so every model here has seeded random
weights at the real shapes (N(0, 1/fan_in) matrices, norm scales 1, biases 0), stored in bf16 as the
released checkpoints are, and goes through ComfyUI's own loader: the full models are written as a
safetensors file into a ComfyUI ``models/diffusion_models`` folder and loaded with
``comfy.sd.load_diffusion_model`` (bf16 weights; on a CPU ComfyUI computes in fp32 by casting each
layer as it runs, its ``manual_cast`` path, because this CPU has no fast bf16).

For the 14B and HunyuanVideo 13B shapes only what the refusal edit touches is real
(``layers_only_model``: every other parameter stays on PyTorch's meta device, no memory), and one
forward pass is extrapolated from a one-block model of the same width (``one_block_model``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CACHE_DIR = REPO_ROOT / ".cache" / "perf-models"
WEIGHT_DTYPE = torch.bfloat16
WEIGHTS_VERSION = "1"  # bump when the generated weights change, so cached files are rewritten
TEXT_ENCODER_FILE = "tiny_umt5_wan.safetensors"
MB = 1024 * 1024

# --- models -----------------------------------------------------------------------------------------

WAN_1_3B = dict(
    model_type="t2v",
    patch_size=(1, 2, 2),
    text_len=512,
    in_dim=16,
    dim=1536,
    ffn_dim=8960,
    freq_dim=256,
    text_dim=4096,
    out_dim=16,
    num_heads=12,
    num_layers=30,
    eps=1e-6,
)
WAN_14B = dict(WAN_1_3B, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
HUNYUAN_13B = dict(
    in_channels=16,
    out_channels=16,
    vec_in_dim=768,
    context_in_dim=4096,
    hidden_size=3072,
    mlp_ratio=4.0,
    num_heads=24,
    depth=20,
    depth_single_blocks=40,
    axes_dim=[16, 56, 56],
    theta=256,
    patch_size=[1, 2, 2],
    qkv_bias=True,
    guidance_embed=True,
    byt5=False,
    meanflow=False,
    use_cond_type_embedding=False,
    vision_in_dim=None,
)
# Block lists of each family and the constructor argument that sets their length.
BLOCK_ARGS = {
    "wan": {"blocks": "num_layers"},
    "hunyuan_video": {"double_blocks": "depth", "single_blocks": "depth_single_blocks"},
}
HUNYUAN_TEXT_TOKENS = 64  # a short prompt's LLM tokens after HunyuanVideo's template is cropped


@dataclass(frozen=True)
class ModelSpec:
    """A model to measure: ComfyUI's class for ``family`` built with ``config``."""

    name: str
    family: str  # "wan" or "hunyuan_video"
    config: dict
    layers_only: bool  # only the refusal edit's layers are real; parts 2-4 need the full model
    label: str

    @property
    def block_counts(self) -> dict[str, int]:
        return {blocks: int(self.config[arg]) for blocks, arg in BLOCK_ARGS[self.family].items()}

    def one_block_config(self) -> dict:
        return dict(self.config, **dict.fromkeys(BLOCK_ARGS[self.family].values(), 1))


MODEL_NAMES = ("wan1.3b", "wan14b", "hunyuan", "tiny", "tiny-wan14b", "tiny-hunyuan")
TINY_NAMES = ("tiny", "tiny-wan14b", "tiny-hunyuan")


def model_spec(name: str) -> ModelSpec:
    """The spec for a ``--model`` name (tiny ones reuse the test suite's tiny architectures)."""
    if name == "wan1.3b":
        return ModelSpec(name, "wan", WAN_1_3B, False, "Wan 2.1 T2V 1.3B")
    if name == "wan14b":
        return ModelSpec(name, "wan", WAN_14B, True, "Wan 2.1 14B / Wan 2.2 A14B expert")
    if name == "hunyuan":
        return ModelSpec(name, "hunyuan_video", HUNYUAN_13B, True, "HunyuanVideo 13B")
    from fixtures.tiny_models import TINY_MODELS

    wan, hunyuan = TINY_MODELS["tiny_wan21_t2v"].kwargs, TINY_MODELS["tiny_hunyuan_video"].kwargs
    tiny = {
        "tiny": ModelSpec(name, "wan", wan, False, "tiny Wan 2.1 (smoke test)"),
        "tiny-wan14b": ModelSpec(name, "wan", wan, True, "tiny Wan, layers only (smoke test)"),
        "tiny-hunyuan": ModelSpec(name, "hunyuan_video", hunyuan, True, "tiny HunyuanVideo (smoke test)"),
    }
    if name not in tiny:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    return tiny[name]


@dataclass(frozen=True)
class Sizes:
    """Clip size and repeat counts of one run. ``latent`` is [batch, channels, frames, h, w] in latent
    units (Wan 2.1 / HunyuanVideo: 4x frames, 8x pixels): the clip every part samples, trains on and
    times one forward pass on."""

    latent: tuple[int, ...]
    sample_steps: int
    rounds: int
    train_steps: int  # measured training steps, after one warm-up step
    repeats: int
    nudenet_frames: int

    @property
    def video(self) -> str:
        _, _, t, h, w = self.latent
        return f"{4 * (t - 1) + 1} frames of {8 * h}x{8 * w}"


SIZES = {
    # 33 frames of 32x32 px: one Wan 1.3B forward pass takes ~6 s of one core (the 512 text tokens
    # and the bf16->fp32 weight casts are a fixed cost), which keeps the run near 20 minutes.
    "cpu": Sizes((1, 16, 9, 4, 4), sample_steps=3, rounds=2, train_steps=3, repeats=2, nudenet_frames=81),
    # The GPU sizes: Wan 1.3B at 480x832 with 17 frames.
    "cuda": Sizes(
        (1, 16, 5, 60, 104), sample_steps=10, rounds=3, train_steps=5, repeats=3, nudenet_frames=81
    ),
    "tiny": Sizes((1, 16, 2, 4, 4), sample_steps=2, rounds=1, train_steps=2, repeats=1, nudenet_frames=4),
}


# --- environment ------------------------------------------------------------------------------------


def require_device(device: str) -> None:
    """Stop with a clear message when ``--device cuda`` is asked for and torch sees no CUDA device."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device cuda: torch {torch.__version__} sees no CUDA device on this machine "
            f"(CUDA build: {torch.version.cuda or 'none'}, CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Run on a machine with an NVIDIA GPU, "
            "or use --device cpu."
        )
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda, not {device!r}")


# glibc settings for CPU runs: keep freed memory for reuse (never trim the heap, a fixed mmap
# threshold). On a CPU ComfyUI casts every bf16 weight to an fp32 copy in every forward pass; with
# glibc's defaults those copies land sometimes in memory it kept and sometimes in fresh pages it
# must fault in, and the same model's sampling step took 7.2 s of CPU in one call and 8.9 s in
# the next. With these, repeated steps agree within a few percent. Peak RSS then includes memory
# glibc keeps; the live-heap peak (``MemoryPeak``), which the memory goals use, does not.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}


def steady_malloc_env(device: str) -> dict[str, str] | None:
    """The environment to re-run this process with on a CPU, or None when it is already set (or on
    a GPU, where the casts do not happen)."""
    if device != "cpu" or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return None
    return dict(os.environ, **MALLOC_ENV)


def bootstrap(device: str, base_dir: Path, threads: int = 0) -> None:
    """ComfyUI on sys.path (CPU or GPU mode, ``base_dir`` as its base directory: models/, output/),
    the repository importable as ``video_unlearning``, and the test suite's fixtures importable.
    ``threads`` > 0 sets torch's CPU threads (on a CPU shared with other processes one thread is
    faster and steadier than two fighting for the same cores)."""
    require_device(device)
    set_clock(device)
    if threads > 0:
        torch.set_num_threads(threads)
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from toy_world.train_toy_model import bootstrap_comfy

    bootstrap_comfy()  # CPU mode; nothing has imported comfy.model_management yet
    from comfy.cli_args import args

    args.cpu = device == "cpu"
    args.base_directory = str(base_dir)
    (base_dir / "models" / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (base_dir / "models" / "text_encoders").mkdir(parents=True, exist_ok=True)


def comfyui_version() -> str:
    import comfyui_version

    return str(comfyui_version.__version__)


def machine(device: str) -> dict:
    """The machine a run was measured on."""
    import psutil

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "comfyui": comfyui_version(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    if device == "cuda":
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1024**3, 1)
    else:
        info["malloc_env"] = {k: os.environ.get(k) for k in MALLOC_ENV}
    return info


def load_average() -> float | None:
    """1-minute load average: how busy the machine was (other processes share the CPU here)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


# --- weights and models -----------------------------------------------------------------------------


def architecture(spec: ModelSpec, config: dict | None = None) -> torch.nn.Module:
    """ComfyUI's diffusion model class for ``spec`` on the meta device (shapes only, no memory),
    built as the tiny test models are (``tiny_models.comfy_model``)."""
    from fixtures import tiny_models

    return tiny_models.comfy_model(spec.family, config or spec.config)


def random_tensor(key: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """bf16 weight for a state-dict key: norms 1, biases 0, modulation tables N(0, 0.02^2), other
    matrices N(0, 1/fan_in) (activations keep their scale through the layers). Generated in bf16
    directly: the 1.3B model's 1.4e9 values in about 20 s and no fp32 copy of the model."""
    leaf = key.rsplit(".", 1)[-1]
    if "norm" in key:
        fill = torch.ones if leaf in ("weight", "scale") else torch.zeros
        return fill(shape, dtype=WEIGHT_DTYPE)
    if leaf == "bias":
        return torch.zeros(shape, dtype=WEIGHT_DTYPE)
    scale = 0.02 if "modulation" in key or len(shape) < 2 else torch.Size(shape[1:]).numel() ** -0.5
    return torch.randn(shape, generator=generator, dtype=WEIGHT_DTYPE).mul_(scale)


def random_state_dict(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: random_tensor(key, shape, generator) for key, shape in sorted(shapes.items())}


def shapes_of(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


def ensure_model_file(spec: ModelSpec, cache_dir: Path, seed: int = 0) -> Path:
    """The model's random bf16 weights as a released-style safetensors file, cached across runs."""
    import safetensors
    import safetensors.torch

    path = cache_dir / f"perf_{spec.name}_seed{seed}.safetensors"
    if path.exists():
        with safetensors.safe_open(str(path), "pt") as handle:
            if (handle.metadata() or {}).get("weights_version") == WEIGHTS_VERSION:
                return path
    print(f"  writing random {spec.label} weights to {path} (once; cached)", flush=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tensors = random_state_dict(shapes_of(architecture(spec)), seed)
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_file(tensors, str(tmp), metadata={"weights_version": WEIGHTS_VERSION})
    tmp.replace(path)
    return path


def install_model_file(path: Path, base_dir: Path) -> str:
    """Link the cached file into the run's ComfyUI models/diffusion_models; returns its name there."""
    target = base_dir / "models" / "diffusion_models" / path.name
    if not target.exists():
        try:
            target.symlink_to(path)
        except OSError:
            os.link(path, target)
    return path.name


def load_model_file(name: str):
    """A MODEL (ModelPatcher) from models/diffusion_models, loaded by ComfyUI's own loader with the
    file's bf16 weights kept (ComfyUI's CPU default would upcast them to fp32)."""
    import comfy.sd
    import folder_paths

    path = folder_paths.get_full_path_or_raise("diffusion_models", name)
    with torch.inference_mode():
        return comfy.sd.load_diffusion_model(path, model_options={"dtype": WEIGHT_DTYPE})


def one_block_model(spec: ModelSpec, seed: int = 0):
    """A MODEL of ``spec``'s width with one block of each kind, random bf16 weights, loaded through
    ``comfy.sd.load_diffusion_model_state_dict`` (ComfyUI's detection reads its config back)."""
    import comfy.sd

    weights = random_state_dict(shapes_of(architecture(spec, spec.one_block_config())), seed)
    with torch.inference_mode():
        return comfy.sd.load_diffusion_model_state_dict(weights, model_options={"dtype": WEIGHT_DTYPE})


def edited_modules(family: str, num_blocks: int) -> list[str]:
    """The layers the refusal nodes read or edit: the sites' target layers, plus the text-input layers
    they read (Wan's ``text_embedding``, which makes the context; HunyuanVideo's
    ``txt_in.input_embedder``, which the vector's fingerprint samples)."""
    from video_unlearning.nodes import comfy_compat as compat

    arch = compat.Architecture("", family, 0, num_blocks)
    modules = [module for site in compat.site_specs(arch) for _, module in site.modules]
    extra = ["text_embedding.0", "text_embedding.2"] if family == "wan" else ["txt_in.input_embedder"]
    return extra + modules


def layers_only_model(spec: ModelSpec, seed: int = 0):
    """A MODEL whose architecture, ComfyUI config and patcher are the real ones but whose parameters
    stay on the meta device except the layers the refusal edit touches (``edited_modules``), which get
    random bf16 weights. Enough for UnlearnRefusalEstimate/Apply's code (architecture detection, the
    text-side activations of Wan, weights as patched, LoRA patches); never loaded or run."""
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher

    shapes = architecture(spec).state_dict()  # meta tensors: ComfyUI's detection reads only shapes
    config = comfy.model_detection.model_config_from_unet(shapes, "")
    load_device = comfy.model_management.get_torch_device()
    cast = comfy.model_management.unet_manual_cast(
        WEIGHT_DTYPE, load_device, config.supported_inference_dtypes
    )
    config.set_inference_dtype(WEIGHT_DTYPE, cast)
    base = config.get_model(shapes, "", device="meta")
    dm = base.diffusion_model
    generator = torch.Generator().manual_seed(seed)
    for name in edited_modules(spec.family, next(iter(spec.block_counts.values()))):
        module = dm.get_submodule(name)
        for leaf, param in list(module.named_parameters(recurse=False)):
            value = random_tensor(f"{name}.{leaf}", param.shape, generator)
            setattr(module, leaf, torch.nn.Parameter(value, requires_grad=False))
    return comfy.model_patcher.ModelPatcher(
        base, load_device=load_device, offload_device=comfy.model_management.unet_offload_device()
    )


def real_parameters(model) -> tuple[int, int]:
    """(parameters with memory, all parameters) of a MODEL's diffusion model."""
    params = list(model.model.diffusion_model.parameters())
    return sum(p.numel() for p in params if not p.is_meta), sum(p.numel() for p in params)


def text_encoder():
    """The test suite's tiny umT5 stand-in (a real ``comfy.sd.CLIP``: Wan's tokenizer stream name,
    4096-d output padded to 512 tokens with zeroed padding). umT5-XXL itself cannot be had here;
    its encoding time is left out of every ratio."""
    import folder_paths

    from comfy_test_nodes import tiny_text_encoder

    folder = Path(folder_paths.get_folder_paths("text_encoders")[0])
    path = folder / TEXT_ENCODER_FILE
    if not path.exists():
        tiny_text_encoder.write_weights(path, "wan")
    return tiny_text_encoder.load_clip(path, "wan")


def conditioning(spec: ModelSpec, clip, prompt: str) -> list:
    """CONDITIONING of the real shape: Wan [1, 512, 4096] from ``clip``; HunyuanVideo random
    [1, HUNYUAN_TEXT_TOKENS, 4096] with a 768-d pooled vector (no HunyuanVideo text encoder here)."""
    if spec.family == "wan":
        with torch.inference_mode():
            return clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    generator = torch.Generator().manual_seed(1)
    cond = torch.randn(1, HUNYUAN_TEXT_TOKENS, 4096, generator=generator)
    return [[cond, {"pooled_output": torch.randn(1, 768, generator=generator)}]]


def model_inputs(model, cond: list, latent: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The keyword inputs of ``BaseModel.apply_model`` for one prompt, built by the model's own
    ``extra_conds`` as the sampler builds them (the pack's trainer does the same)."""
    from video_unlearning.nodes import train_compat

    prompt = train_compat.EncodedPrompt("", cond, int(cond[0][0].shape[1]), [], False)
    train_compat.build_model_inputs(model, [prompt], latent, model.load_device)
    return prompt.conds


# --- clocks -----------------------------------------------------------------------------------------

# Which clock the run's times use. On a CPU: this process's CPU time. The cores here are shared with
# other processes whose load comes and goes; with one torch thread the process's CPU time counts the
# work done and not the waiting, so ratios of things measured minutes apart stay comparable. On a
# GPU: wall time (the host's CPU time says nothing about the GPU's work). Wall times are kept too.
_CLOCK = {"kind": "wall"}
CLOCK_NAMES = {
    "cpu": "this process's CPU time ({threads} torch thread(s); the shared cores' other load does not count)",
    "wall": "wall-clock time",
}


def set_clock(device: str) -> None:
    _CLOCK["kind"] = "cpu" if device == "cpu" else "wall"


def now() -> float:
    """Seconds on the run's clock (see ``set_clock``)."""
    return time.process_time() if _CLOCK["kind"] == "cpu" else time.perf_counter()


def clock_name() -> str:
    return CLOCK_NAMES[_CLOCK["kind"]].format(threads=torch.get_num_threads())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Stopwatch:
    """Time spent inside calls of one function (see ``timed_calls``)."""

    seconds: float = 0.0
    calls: int = 0


@contextlib.contextmanager
def timed_calls(owner: object, name: str, device: str = "cpu") -> Iterator[Stopwatch]:
    """While active, every call of ``owner.name`` adds its time (run's clock) to the Stopwatch."""
    original = getattr(owner, name)
    watch = Stopwatch()

    def wrapper(*args, **kwargs):
        start = now()
        try:
            return original(*args, **kwargs)
        finally:
            sync(device)
            watch.seconds += now() - start
            watch.calls += 1

    setattr(owner, name, wrapper)
    try:
        yield watch
    finally:
        setattr(owner, name, original)


@dataclass
class StepClock:
    """Times at which a node's ``comfy.utils.ProgressBar`` advanced: KSampler after each sampling
    step, TrainLoraNode and UnlearnTrainLoRA after each optimizer step. The same mechanism for every
    node, so per-step times are comparable. Kept on the run's clock and in wall time."""

    start: float = 0.0
    start_wall: float = 0.0
    ticks: list[float] = field(default_factory=list)
    ticks_wall: list[float] = field(default_factory=list)
    on_first: Callable[[], None] | None = None

    def intervals(self, wall: bool = False, skip_first: bool = True) -> list[float]:
        """Seconds per step; the first step (load, patch, warm-up) is left out unless asked for."""
        times = [self.start_wall, *self.ticks_wall] if wall else [self.start, *self.ticks]
        steps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return steps[1:] if skip_first else steps


@contextlib.contextmanager
def step_clock(device: str, on_first: Callable[[], None] | None = None) -> Iterator[StepClock]:
    """Installs ComfyUI's global progress-bar hook (ProgressBars made inside the block use it)."""
    import comfy.utils

    clock = StepClock(on_first=on_first)

    def hook(value, total, preview, node_id=None):
        sync(device)
        clock.ticks.append(now())
        clock.ticks_wall.append(time.perf_counter())
        if len(clock.ticks) == 1 and clock.on_first is not None:
            clock.on_first()

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    sync(device)
    clock.start, clock.start_wall = now(), time.perf_counter()
    try:
        yield clock
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


# --- memory -----------------------------------------------------------------------------------------


def _status_kb(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux: ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], float] | None:
    """Bytes the C heap has handed out and not taken back (glibc's ``mallinfo2``: in-use chunks plus
    mmapped blocks), in MiB; None where glibc (2.33+) is not the allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2

    def live_mb() -> float:
        info = function()
        return (info.uordblks + info.hblkhd) / MB

    return live_mb


class _LivePoller:
    """Samples live C-heap bytes every ``interval`` seconds on a thread (torch releases the GIL in
    its kernels, so sampling goes on during a step) and keeps the highest."""

    def __init__(self, live_mb: Callable[[], float], interval: float = 0.01) -> None:
        self.live_mb, self.interval = live_mb, interval
        self.before = self.peak = live_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.live_mb())

    def restart(self) -> None:
        self.before = self.peak = self.live_mb()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.live_mb())


@dataclass
class MemoryPeak:
    """Memory inside a ``memory_peak`` block (or since ``restart``).

    CPU, two measures. Peak RSS: the kernel's VmHWM mark, reset on entry (where that is not possible,
    ``ru_maxrss``, which then covers the whole process), what the machine must have; it also counts
    freed memory that glibc keeps for reuse. Live peak: the highest C-heap bytes in use (glibc
    ``mallinfo2``, sampled every 10 ms), what the code needs; the CPU analogue of CUDA's
    ``max_memory_allocated``, and the measure the goals use. CUDA: ``torch.cuda.max_memory_allocated``
    (reset on entry) as well.
    """

    method: str = ""
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    live_before_mb: float | None = None
    live_peak_mb: float | None = None
    cuda_before_mb: float | None = None
    cuda_peak_mb: float | None = None
    _exact: bool = False
    _poller: _LivePoller | None = None

    @property
    def rss_extra_mb(self) -> float:
        return max(0.0, self.rss_peak_mb - self.rss_before_mb)

    @property
    def live_extra_mb(self) -> float | None:
        if self.live_peak_mb is None or self.live_before_mb is None:
            return None
        return max(0.0, self.live_peak_mb - self.live_before_mb)

    @property
    def cuda_extra_mb(self) -> float | None:
        if self.cuda_peak_mb is None or self.cuda_before_mb is None:
            return None
        return max(0.0, self.cuda_peak_mb - self.cuda_before_mb)

    def restart(self, device: str) -> None:
        """Start measuring again from here (the peaks so far are dropped)."""
        self._exact = reset_peak_rss()
        self.rss_before_mb = rss_mb()
        if self._poller is not None:
            self._poller.restart()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.cuda_before_mb = torch.cuda.memory_allocated() / MB

    def finish(self, device: str) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / MB
        if self._poller is not None:
            self._poller.stop()
            self.live_before_mb, self.live_peak_mb = self._poller.before, self._poller.peak
        hwm = _status_kb("VmHWM") if self._exact else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.rss_peak_mb = hwm / 1024
        self.method = "VmHWM reset on entry" if self._exact else "ru_maxrss (whole process)"

    def as_dict(self) -> dict:
        out = {
            "method": self.method,
            "rss_before_mb": round(self.rss_before_mb, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "rss_extra_mb": round(self.rss_extra_mb, 1),
        }
        if self.live_peak_mb is not None:
            out.update(
                live_before_mb=round(self.live_before_mb, 1),
                live_peak_mb=round(self.live_peak_mb, 1),
                live_extra_mb=round(self.live_extra_mb, 1),
            )
        if self.cuda_peak_mb is not None:
            out.update(
                cuda_before_mb=round(self.cuda_before_mb, 1),
                cuda_peak_mb=round(self.cuda_peak_mb, 1),
                cuda_extra_mb=round(self.cuda_extra_mb, 1),
            )
        return out


@contextlib.contextmanager
def memory_peak(device: str) -> Iterator[MemoryPeak]:
    peak = MemoryPeak()
    live_mb = _mallinfo2()
    if live_mb is not None:
        peak._poller = _LivePoller(live_mb)
    peak.restart(device)
    try:
        yield peak
    finally:
        peak.finish(device)


def tensor_mb(tensors) -> float:
    """Bytes of a collection of tensors (deduplicated by storage), in MiB."""
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total / MB
