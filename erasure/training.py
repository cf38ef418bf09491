"""The training core of the unlearning LoRA, in plain torch: adapters, concept masks, the step, the loop.

The frozen model is never copied. Each trained module keeps its own (frozen, possibly bf16/fp8)
weight; a ``LowRankAdapter`` in fp32 adds ``delta(x) = (alpha / r) * up(down(x))`` to the module's
output through a forward hook, so the frozen predictions ``v_theta`` come from the same network with
the hooks switched off (``AdapterSet.enabled = False``) under ``torch.no_grad``. This is the same
function as ComfyUI's LoRA weight patch ``W' = W + (alpha / r) * up @ down``, so the adapters export
as a standard LoRA.

One step (``unlearning_step``), with the objective of ``erasure.objectives``:

1. adapters off, no grad, one batched pass over ["", c, c_pre]: ``v_theta`` for the three prompts,
   and the concept masks ``M_l`` from the cross-attention of the concept prompt c;
2. ``v_neg = v_theta("") - eta * (v_theta(c) - v_theta(""))``;
3. adapters on, one batched pass over [c, c_pre] with grad; the hooks record the adapters' per-token
   energy on the video tokens of the c row;
4. ``L = L_unlearn + alpha * L_loc + beta * L_pre``, backward, Adam step on the fp32 adapters.

Prompts whose conditioning tensors differ in shape (HunyuanVideo's text has no fixed length) run in
separate passes; everything with equal shapes runs as one batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from .masks import concept_attention, concept_mask
from .objectives import (
    UnlearningLosses,
    adapter_token_energy,
    combine_losses,
    localization_loss,
    negative_target,
    preservation_loss,
    unlearning_loss,
)

TOKEN_KINDS = ("video", "text", "joint")
LOSS_SERIES = ("loss", "unlearn", "localization", "preservation")


@dataclass(frozen=True)
class AdapterTarget:
    """A module that gets an adapter.

    ``name``: its path inside the diffusion model (``blocks.3.self_attn.q``); ``block``: the
    transformer block it belongs to (``blocks.3``), whose concept mask localizes it; ``tokens``: what
    its output rows are: ``"video"`` tokens, ``"text"`` tokens (not localized: the mask is over video
    tokens), or ``"joint"`` (video and text tokens in one sequence, as in HunyuanVideo's single-stream
    blocks: video first, or text first where ``AdapterSet.text_first`` says so).
    """

    name: str
    block: str
    tokens: str

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_KINDS:
            raise ValueError(f"AdapterTarget.tokens must be one of {TOKEN_KINDS}, got {self.tokens!r}")


class MarkedRow:
    """Which batch row of the current forward pass belongs to the concept prompt (None: no row).

    Shared by the adapters (they record energy for that row) and the mask capture (it turns that row's
    attention into masks); set by ``predict_grouped`` before each forward pass. ``recomputing`` is True
    while activation checkpointing recomputes a block in the backward pass: the energies of the first
    pass are the ones in the loss, so the adapters must not store them again (a stored tensor would
    keep the recomputed block's whole graph alive until the step ends).
    """

    def __init__(self) -> None:
        self.row: int | None = None
        self.recomputing = False


class LowRankAdapter(nn.Module):
    """``delta(x) = (alpha / r) * x @ down^T @ up^T``; ``up`` starts at zero so delta starts at 0.

    The parameters (and so the optimizer state) are fp32; the product is computed in the input's
    dtype, as ComfyUI computes a merged LoRA weight in the model's compute dtype, so a bf16 model
    needs no fp32 copy of each layer input for the backward pass. ``down`` [r, in] gets
    Kaiming-uniform values from ``generator`` (as nn.Linear's default init).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        alpha: float,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        down = torch.empty(rank, in_features, dtype=torch.float32)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5), generator=generator)
        self.down = nn.Parameter(down.to(device))
        self.up = nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32, device=device))
        self.rank = rank
        self.alpha = float(alpha)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.nn.functional.linear(x, self.down.to(x.dtype))
        return torch.nn.functional.linear(hidden, self.up.to(x.dtype)) * self.scale


def _linear_shape(module: nn.Module, name: str) -> tuple[int, int]:
    weight = getattr(module, "weight", None)
    if weight is None or weight.ndim != 2:
        raise ValueError(f"{name} is not a linear layer (weight shape {getattr(weight, 'shape', None)})")
    return int(weight.shape[1]), int(weight.shape[0])


class AdapterSet:
    """fp32 low-rank adapters added to frozen linear modules' outputs through forward hooks.

    ``enabled`` switches every adapter on or off (off = the frozen model). While attached and
    enabled, the hook of a video-token module also stores ``adapter_token_energy`` of the marked row
    (``marker.row``) in ``energy[name]``; ``video_tokens`` is how many rows of a joint module are
    video tokens: the leading ones, or the trailing ones when ``text_first`` (the text rows come
    first in the joint sequence). ``attach``/``detach`` add and remove the hooks; nothing else on
    the modules is touched.
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        targets: Sequence[AdapterTarget],
        rank: int,
        alpha: float,
        seed: int,
        marker: MarkedRow,
        device: torch.device | str = "cpu",
    ) -> None:
        if not targets:
            raise ValueError("no modules to train: the target list is empty")
        missing = [t.name for t in targets if t.name not in modules]
        if missing:
            raise ValueError(f"{len(missing)} target modules are not in the model, e.g. {missing[:3]}")
        generator = torch.Generator().manual_seed(seed)
        self.targets = list(targets)
        self.modules = {t.name: modules[t.name] for t in targets}
        self.adapters: dict[str, LowRankAdapter] = {}
        for t in self.targets:
            in_f, out_f = _linear_shape(self.modules[t.name], t.name)
            self.adapters[t.name] = LowRankAdapter(in_f, out_f, rank, alpha, generator, device)
        self.marker = marker
        self.enabled = True
        self.video_tokens = 0
        self.text_first = False
        self.energy: dict[str, Tensor] = {}
        self._handles: list = []

    def parameters(self) -> list[nn.Parameter]:
        return [p for a in self.adapters.values() for p in a.parameters()]

    def _hook(self, target: AdapterTarget, adapter: LowRankAdapter):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor | None:
            if not self.enabled:
                return None
            delta = adapter(args[0])
            row = self.marker.row
            if row is not None and target.tokens != "text":
                video = delta[row : row + 1]
                if target.tokens == "joint":
                    n = self.video_tokens
                    video = video[:, video.shape[1] - n :] if self.text_first else video[:, :n]
                # Computed on recomputation too (the checkpoint needs the same saved tensors), but kept
                # only from the first pass.
                energy = adapter_token_energy(video)
                if not self.marker.recomputing:
                    self.energy[target.name] = energy
            return output + delta.to(output.dtype)

        return hook

    def attach(self) -> None:
        if self._handles:
            return
        for t in self.targets:
            hook = self._hook(t, self.adapters[t.name])
            self._handles.append(self.modules[t.name].register_forward_hook(hook))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{name: (scale * up [out, r], down [r, in])}``: detached fp32 CPU copies whose product is
        each adapter's weight update, ``delta_W = (alpha / r) * up @ down`` (a LoRA with alpha = r)."""
        return {
            name: (
                (adapter.up.detach().float() * adapter.scale).cpu().clone(),
                adapter.down.detach().float().cpu().clone(),
            )
            for name, adapter in self.adapters.items()
        }


class ConceptMaskCapture:
    """Builds each block's concept mask from the attention of the marked row (``erasure.masks``).

    Per block: ``begin_block(name)``, then ``observe(q, k, key_bias)`` for each attention call inside
    it, then ``end_block()``. One call counts, the ``text_call``-th (0-based; -1, the default, is the
    last): the last is the text cross-attention in Wan, which comes after self-attention and the image
    cross-attention, and the only call in a HunyuanVideo block; an LTX-2 block's video cross-attention
    is its second call (after the video self-attention, before the audio and audio-video ones). q and k
    are [B, H, Nq, d] and [B, H, Nk, d]; text keys are all of k when Nk equals the text length, or
    rows ``[video_tokens, video_tokens + text_len)`` of a joint [video, text] sequence, or the first
    ``text_len`` rows of a joint [text, video] sequence when ``text_first``.
    """

    def __init__(self, tau: float, marker: MarkedRow) -> None:
        self.tau = tau
        self.marker = marker
        self.active = False
        self.concept_index: list[int] = []
        self.text_len = 0
        self.video_tokens = 0
        self.text_first = False
        self.frames = 1
        self.text_call = -1
        self.masks: dict[str, Tensor] = {}
        self._block: str | None = None
        self._calls = 0
        self._last: tuple[Tensor, Tensor, Tensor | None] | None = None

    def begin_block(self, name: str) -> None:
        self._block = name
        self._calls = 0
        self._last = None

    def observe(self, q: Tensor, k: Tensor, key_bias: Tensor | None = None) -> None:
        """Remember one attention call: q [B, H, Nq, d], k [B, H, Nk, d], key_bias [B or 1, Nk] or None."""
        if self.active and self._block is not None and self.marker.row is not None:
            if self.text_call < 0 or self._calls == self.text_call:
                self._last = (q, k, key_bias)
            self._calls += 1

    def end_block(self) -> None:
        block, last = self._block, self._last
        self._block, self._last, self._calls = None, None, 0
        if not (self.active and block is not None and self.marker.row is not None):
            return
        if last is None:
            raise RuntimeError(f"no attention call was seen inside {block}: cannot build its concept mask")
        q, k, key_bias = last
        row = self.marker.row
        n_video, n_text = self.video_tokens, self.text_len
        if k.shape[2] == n_text:
            start, queries = 0, 0
        elif k.shape[2] == n_video + n_text:
            start, queries = (0, n_text) if self.text_first else (n_video, 0)
        else:
            which = "last" if self.text_call < 0 else f"call {self.text_call}"
            raise RuntimeError(
                f"{block}: the text attention ({which} of the block) has {k.shape[2]} keys, expected "
                f"the {n_text} text tokens or {n_video} video + {n_text} text tokens"
            )
        bias = None
        if key_bias is not None:
            bias = key_bias[:, start : start + n_text]
            bias = bias[row : row + 1] if bias.shape[0] > 1 else bias
        with torch.no_grad():
            attn = concept_attention(
                q[row : row + 1, :, queries : queries + n_video],
                k[row : row + 1, :, start : start + n_text],
                self.concept_index,
                bias,
            )
            self.masks[block] = concept_mask(attn, self.frames, self.tau)


def _copy_floats(value):
    """``value`` with its floating-point tensors cloned, also inside tuples and lists (an LTX-2 block
    takes its video and audio tokens as one tuple)."""
    if isinstance(value, tuple | list):
        return type(value)(_copy_floats(v) for v in value)
    return value.clone() if isinstance(value, Tensor) and value.is_floating_point() else value


def _float_tensors(values) -> list[Tensor]:
    """The floating-point tensors among ``values``, also inside tuples and lists."""
    found: list[Tensor] = []
    for v in values:
        if isinstance(v, tuple | list):
            found += _float_tensors(v)
        elif isinstance(v, Tensor) and v.is_floating_point():
            found.append(v)
    return found


@contextlib.contextmanager
def saved_as_copies(tensors: Sequence[Tensor]) -> Iterator[None]:
    """While active, every tensor autograd saves for backward that shares storage with one of
    ``tensors`` is saved as a copy of its value at that moment.

    For code that updates a tensor in place after an op saved it (LTX-Video's blocks: functional
    ``rms_norm(x)``, then ``x += ...`` and ``x.addcmul_(...)``), where no module hook can hand the
    op a copy. Only those saved tensors are copied. Saved-tensor hooks active outside (activation
    checkpointing's) still see every saved tensor: ours hands them the copy, so a checkpoint still
    drops and recomputes them instead of keeping them.
    """
    storages = {t.untyped_storage().data_ptr() for t in tensors}
    # The hooks in force now (a checkpoint's forward or recomputation hooks), to hand every saved
    # tensor on to: a new hook otherwise replaces them.
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    if top is None:
        raise RuntimeError(
            f"torch {torch.__version__} does not expose the saved-tensor hooks in force, which training "
            "this model needs (torch 2.1 or newer does)"
        )
    outer = top(False)

    def pack(t: Tensor):
        if t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        return outer[0](t) if outer is not None else t

    def unpack(packed):
        return outer[1](packed) if outer is not None else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def _block_forward(
    name: str,
    original: Callable,
    capture: ConceptMaskCapture,
    marker: MarkedRow,
    checkpoint: bool,
    copy_inputs: bool,
    copy_saved_inputs: bool,
):
    def forward(*args, **kwargs):
        capture.begin_block(name)
        if torch.is_grad_enabled():
            row = marker.row
            calls = 0

            def run(*a, **k):
                nonlocal calls
                marker.row = row  # the same row again when the checkpoint recomputes this block
                marker.recomputing = calls > 0
                calls += 1
                if copy_inputs or copy_saved_inputs:
                    a = tuple(_copy_floats(v) for v in a)
                    k = {key: _copy_floats(v) for key, v in k.items()}
                inputs = _float_tensors((*a, *k.values()))
                saved = saved_as_copies(inputs) if copy_saved_inputs else contextlib.nullcontext()
                try:
                    with saved:
                        return original(*a, **k)
                finally:
                    marker.recomputing = False

            if checkpoint:
                out = torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False, **kwargs)
            else:
                out = run(*args, **kwargs)
        else:
            out = original(*args, **kwargs)
        capture.end_block()
        return out

    return forward


@contextlib.contextmanager
def wrapped_blocks(
    blocks: Mapping[str, nn.Module],
    capture: ConceptMaskCapture,
    marker: MarkedRow,
    checkpoint: bool,
    copy_inputs: bool = True,
    copy_saved_inputs: bool = False,
) -> Iterator[None]:
    """While active, each transformer block's forward tells ``capture`` which block runs and, under
    autograd, optionally runs with activation checkpointing (the block is recomputed in the backward
    pass, with the same marked row) and on copies of its floating-point inputs (``copy_inputs``: for
    blocks that update their inputs in place, like HunyuanVideo's ``img += ...``, which would corrupt
    tensors saved for backward and the checkpoint's recomputation). ``copy_saved_inputs`` also
    makes autograd save copies of any tensor sharing those inputs' storage (``saved_as_copies``):
    for blocks that update their input in place after a functional op saved it.

    The wrapper is set as an instance attribute ``forward`` on each block module and removed on exit
    (also on error or Cancel); the module is otherwise untouched. Wrapping the module itself, not a
    host's block closure, guarantees that a recomputation runs the same block.
    """
    saved = {}
    try:
        for name, block in blocks.items():
            saved[name] = block.__dict__.get("forward")
            block.forward = _block_forward(
                name, block.forward, capture, marker, checkpoint, copy_inputs, copy_saved_inputs
            )
        yield
    finally:
        for name, previous in saved.items():
            block = blocks[name]
            if previous is None:
                del block.forward
            else:
                block.forward = previous


@contextlib.contextmanager
def cloned_inputs(modules: Sequence[nn.Module]) -> Iterator[None]:
    """While active, each module in ``modules`` receives copies of its tensor inputs when autograd
    is recording.

    For modules whose input the surrounding code later changes in place (``x += f(norm(x))`` in
    HunyuanVideo's blocks): the module then saves the copy for backward, and the in-place update no
    longer invalidates it. Without autograd nothing is copied.
    """

    def pre_hook(module: nn.Module, args: tuple):
        if not torch.is_grad_enabled():
            return None
        return tuple(a.clone() if isinstance(a, Tensor) else a for a in args)

    handles = [m.register_forward_pre_hook(pre_hook) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def predict_grouped(
    forward: Callable[[list[Hashable]], Tensor],
    prompts: Sequence[Hashable],
    signature: Callable[[Hashable], Hashable],
    marker: MarkedRow,
    marked: Hashable | None,
) -> Tensor:
    """Velocities for ``prompts`` in as few passes as shapes allow: prompts with equal ``signature``
    run as one batch through ``forward(group) -> [len(group), ...]``. During the pass that holds
    ``marked``, ``marker.row`` is its row in that batch. Returns rows in the order of ``prompts``."""
    groups: dict[Hashable, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(signature(p), []).append(i)
    rows: list[Tensor | None] = [None] * len(prompts)
    try:
        for positions in groups.values():
            group = [prompts[i] for i in positions]
            marker.row = group.index(marked) if marked is not None and marked in group else None
            out = forward(group)
            for j, i in enumerate(positions):
                rows[i] = out[j : j + 1]
    finally:
        marker.row = None
    return torch.cat(rows)


@dataclass(frozen=True)
class LossWeights:
    """eta: strength of the negative guidance; alpha: localization weight; beta: preservation weight;
    clean: with an attacked prompt, the share of L_unlearn taken on the plain concept prompt."""

    eta: float = 3.0
    alpha: float = 5.0
    beta: float = 1.0
    clean: float = 0.0


def unlearning_step(
    predict: Callable[[list[Hashable], Hashable | None], Tensor],
    adapters: AdapterSet,
    capture: ConceptMaskCapture,
    uncond: Hashable,
    concept: Hashable,
    preserve: Hashable | None,
    weights: LossWeights,
    attacked: Hashable | None = None,
) -> UnlearningLosses:
    """One evaluation of ``L = L_unlearn + alpha L_loc + beta L_pre`` (no backward).

    ``predict(prompts, marked)`` returns the velocities for ``prompts`` at this step's (x_t, sigma),
    marking ``marked`` (see ``predict_grouped``). ``preserve`` None drops L_pre. ``attacked``: an
    attacked version of the concept prompt (adversarial training): the adapted model's velocity for
    it, not for ``concept``, is pulled to ``v_neg`` (which, and the masks, still come from ``concept``
    on the frozen model): ``L_unlearn = || v_{theta+phi}(x_t, c') - stopgrad(v_neg(c)) ||^2``; with
    ``weights.clean = w > 0`` the plain prompt keeps a share, ``L_unlearn = (1 - w) || v(c') - v_neg ||^2
    + w || v(c) - v_neg ||^2`` (adversarial training that also keeps erasing the prompt as written).
    """
    frozen_prompts = [uncond, concept] + ([preserve] if preserve is not None else [])
    adapters.enabled = False
    capture.active = True
    capture.masks = {}
    try:
        with torch.no_grad():
            frozen = predict(frozen_prompts, concept)
    finally:
        adapters.enabled = True
        capture.active = False
    v_neg = negative_target(frozen[0:1], frozen[1:2], weights.eta)

    adapters.energy = {}
    student_concept = concept if attacked is None else attacked
    both = attacked is not None and weights.clean > 0
    student_prompts = [student_concept] + ([concept] if both else [])
    student = predict(student_prompts + ([preserve] if preserve is not None else []), student_concept)
    l_unlearn = unlearning_loss(student[0:1], v_neg)
    if both:
        l_unlearn = (1 - weights.clean) * l_unlearn + weights.clean * unlearning_loss(student[1:2], v_neg)
    if preserve is not None:
        n = len(student_prompts)
        l_pre = preservation_loss(student[n : n + 1], frozen[2:3])
    else:
        l_pre = torch.zeros((), device=student.device)

    localized = [t for t in adapters.targets if t.tokens != "text"]
    if localized:
        missing = sorted({t.block for t in localized if t.block not in capture.masks})
        if missing:
            raise RuntimeError(
                f"no concept mask was built for {missing[:3]}: the attention capture missed them"
            )
        absent = [t.name for t in localized if t.name not in adapters.energy]
        if absent:
            raise RuntimeError(f"adapters {absent[:3]} recorded no output: their hooks did not run")
        l_loc = localization_loss(
            [adapters.energy[t.name] for t in localized], [capture.masks[t.block] for t in localized]
        )
    else:
        l_loc = torch.zeros((), device=student.device)
    return combine_losses(l_unlearn, l_loc, l_pre, weights.alpha, weights.beta)


def train_adapters(
    adapters: AdapterSet,
    step: Callable[[int], UnlearningLosses],
    steps: int,
    learning_rate: float,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list[float]]:
    """Adam on the fp32 adapter parameters for ``steps`` steps of ``step(i)``; returns the loss series.

    ``on_step(i, losses)`` runs after step i (1-based); raising from it stops training there (Cancel).
    A non-finite loss stops training with a FloatingPointError naming the step.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    params = adapters.parameters()
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    history: dict[str, list[float]] = {k: [] for k in LOSS_SERIES}
    for i in range(steps):
        losses = step(i)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        adapters.energy = {}  # the step's energies hold its graph: free it before the next step
        values = losses.as_floats()
        del losses
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(
                f"the loss became {values} at step {i + 1}: lower the learning rate or the eta/alpha/beta "
                "weights"
            )
        optimizer.step()
        for key in LOSS_SERIES:
            history[key].append(values[key])
        if on_step is not None:
            on_step(i + 1, values)
    return history
