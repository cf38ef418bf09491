"""Concept masks from cross-attention: where in the video the model puts the concept.

The mask of one transformer block (Receler / T2VUnlearning):

1. ``A[n] = mean_h sum_{j in J} softmax_j(q_h[n] . k_h[j] / sqrt(d) + bias[j])``: the attention
   probability of video token n (query) on the concept's text tokens J (keys), summed over those
   tokens and averaged over heads. The softmax runs over the text keys only: for Wan that is the
   model's own cross-attention; for HunyuanVideo's joint attention it is the video-to-text block,
   renormalised over the text keys (our choice: it costs N x L, never N x N, and the per-frame
   min-max below removes the scale anyway).
2. Min-max normalisation within each latent frame: ``A'[f, s] = (A[f, s] - min_s A[f]) /
   (max_s A[f] - min_s A[f])``.
3. Threshold: ``M = 1[A' > tau]`` (Receler's default tau = 0.1).

Also here: locating the concept's tokens inside a tokenized prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def concept_attention(
    q: Tensor, k: Tensor, concept_index: Sequence[int], key_bias: Tensor | None = None, chunk: int = 4096
) -> Tensor:
    """``A[b, n] = mean_h sum_{j in concept_index} softmax_j(q[b,h,n] . k[b,h,j] / sqrt(d) + key_bias[b,j])``.

    ``q``: [B, H, N, d] video queries; ``k``: [B, H, L, d] text keys; ``key_bias``: optional additive
    bias over the keys ([B, L] or broadcastable; -inf or a large negative value masks a padding key).
    Queries are processed ``chunk`` rows at a time so memory stays O(chunk * L). Computed in fp32.
    """
    if q.ndim != 4 or k.ndim != 4:
        raise ValueError(
            f"concept_attention wants q [B,H,N,d] and k [B,H,L,d], got {tuple(q.shape)}, {tuple(k.shape)}"
        )
    index = torch.as_tensor(list(concept_index), dtype=torch.long, device=k.device)
    if index.numel() == 0:
        raise ValueError("concept_attention needs at least one concept token index")
    if int(index.min()) < 0 or int(index.max()) >= k.shape[2]:
        raise ValueError(f"concept token index {index.tolist()} outside the {k.shape[2]} text keys")
    scale = q.shape[-1] ** -0.5
    kf = k.float()
    bias = None
    if key_bias is not None:
        bias = key_bias.float().reshape(k.shape[0], 1, 1, k.shape[2])
    out = []
    for start in range(0, q.shape[2], chunk):
        logits = torch.matmul(q[:, :, start : start + chunk].float(), kf.transpose(-1, -2)) * scale
        if bias is not None:
            logits = logits + bias
        probs = torch.softmax(logits, dim=-1)
        out.append(probs.index_select(-1, index).sum(dim=-1).mean(dim=1))
    return torch.cat(out, dim=1)


def per_frame_minmax(attention: Tensor, frames: int) -> Tensor:
    """Min-max normalise ``attention`` [B, N] within each of ``frames`` equal runs of tokens.

    Video tokens are ordered frame-major (frame, row, column), so frame f is tokens
    ``[f*S, (f+1)*S)`` with ``S = N / frames``. A frame whose values are all equal maps to zeros.
    """
    b, n = attention.shape
    if frames < 1 or n % frames:
        raise ValueError(f"{n} video tokens do not split into {frames} latent frames")
    a = attention.float().reshape(b, frames, n // frames)
    low = a.amin(dim=-1, keepdim=True)
    span = a.amax(dim=-1, keepdim=True) - low
    normed = torch.where(span > 0, (a - low) / span.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(a))
    return normed.reshape(b, n)


def concept_mask(attention: Tensor, frames: int, tau: float) -> Tensor:
    """``M = 1[per_frame_minmax(A) > tau]`` as a float tensor of 0/1, shape [B, N]."""
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"mask threshold tau must be in [0, 1), got {tau}")
    return (per_frame_minmax(attention, frames) > tau).float()


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading items ``a`` and ``b`` share (a chat template's fixed prefix, for example)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# Words that say nothing about a concept ("a nude person"): their tokens are in every prompt.
STOPWORDS = frozenset("a an the of and or in on at to for with by from is are this that its".split())


def concept_words(concept: str) -> list[str]:
    """The words of ``concept`` whose tokens mark it in a prompt: all but stop words (all of them when
    the concept is nothing but stop words)."""
    words = concept.split()
    return [w for w in words if w.lower() not in STOPWORDS] or words


def strip_template(ids: Sequence[int], empty_ids: Sequence[int]) -> list[int]:
    """The tokens of a text without what a tokenizer adds around every text.

    ``empty_ids`` are the tokens of the empty prompt: a template prefix (chat template, start token),
    then a suffix (end token), then padding. Trailing copies of the empty prompt's last token (the
    padding, or the end token when there is no padding) are dropped from both, or, where the empty
    prompt starts with two or more copies of one token (padding on the left, as LTX-2's Gemma 3
    tokenizer pads), the leading copies of it; then the prefix and suffix the two share.
    """
    a, e = list(ids), list(empty_ids)
    left_pad = e[0] if len(e) > 1 and e[0] == e[1] else None
    if left_pad is not None:  # then the last token is the text's own (a start token), not padding
        a = a[common_prefix_length(a, [left_pad] * len(a)) :]
        e = e[common_prefix_length(e, [left_pad] * len(e)) :]
    else:
        pad = e[-1] if e else None
        while a and a[-1] == pad:
            a.pop()
        while e and e[-1] == pad:
            e.pop()
    head = common_prefix_length(a, e)
    tail = common_prefix_length(a[::-1], e[::-1])
    return a[head : max(head, len(a) - tail)]


def find_concept_positions(prompt_ids: Sequence[int], concept_ids: Sequence[Sequence[int]]) -> list[int]:
    """Positions in ``prompt_ids`` covered by any occurrence of any token sequence in ``concept_ids``.

    ``concept_ids`` holds one token sequence per concept word (or phrase), so "nudity" and
    "Taylor Swift" are found wherever their words occur. Returns sorted, unique positions.
    """
    found: set[int] = set()
    ids = list(prompt_ids)
    for seq in concept_ids:
        seq = list(seq)
        if not seq:
            continue
        for start in range(len(ids) - len(seq) + 1):
            if ids[start : start + len(seq)] == seq:
                found.update(range(start, start + len(seq)))
    return sorted(found)
