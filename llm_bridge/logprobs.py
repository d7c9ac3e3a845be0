"""Summed response log-probabilities log π(y|x) = Σ_i log π(y_i | x, y_<i) of a causal LM.

Sequences are ``prompt ids + response ids`` with **right** padding for scoring (positions 0, 1, …
without gaps, which equal the positions generation used under left padding, since HF derives them from
the attention mask).  Only response tokens count; the prompt and the padding are masked out.

Only response positions are scored, in chunks.  The model runs once; a forward pre-hook on its output
head (``get_output_embeddings()``) takes the final hidden states of every position and hands the head
only the last one, so no full-vocabulary logits are formed for prompt or padding positions.  The head is
then applied to the hidden states of the response positions, ``chunk_size`` positions at a time, and
each chunk is reduced to its tokens' log-probabilities at once (under gradient, each chunk is
checkpointed: its logits are recomputed in the backward pass instead of being kept).  This reproduces
the model's own logits only if nothing follows the head in its forward (no soft-capping or scaling of
the logits, as in Gemma 2 or Cohere): every call checks that the logits the model returned for the one
position equal the head applied to the captured hidden state, and otherwise — or for a model without an
output head, such as the bandit LM — computes full logits and scores their response positions (as
before; a one-time warning names the model).

The log-softmax runs in float32 under bf16/fp16 (autocast or half weights), else in the model's dtype
(float64 for the bandit LM of the equivalence tests).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.utils.checkpoint

RESPONSE_CHUNK = 1024
"""Response positions per application of the output head (bounds the logits in memory to chunk × vocab)."""

_warned: set = set()


def _batch(prompt_ids, response_ids, pad_id: int, device):
    sequences = [list(p) + list(r) for p, r in zip(prompt_ids, response_ids)]
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), length), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, (prompt, response) in enumerate(zip(prompt_ids, response_ids)):
        sequence = list(prompt) + list(response)
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention[row, : len(sequence)] = 1
        response_mask[row, len(prompt) : len(sequence)] = True
    return input_ids.to(device), attention.to(device), response_mask.to(device)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per row of ``logits`` (n, V); float32 for half-precision logits."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return torch.gather(logits, 1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _head_token_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _token_logprobs(head(hidden), targets)


def _unwrapped(model):
    """The module under a DistributedDataParallel wrapper (whose ``forward`` must still be the one called)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _output_head(model):
    getter = getattr(_unwrapped(model), "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, torch.nn.Module) else None


def _chunked_response_logprobs(model, head, input_ids, attention, mask, chunk_size: int):
    """Token log-probs of the response positions ``mask`` (B, L−1) through the head in chunks, or None.

    None when the model's logits are not the plain head of its final hidden states (see the module
    docstring).
    """
    captured = {}

    def keep_last_position(module, args):
        captured["hidden"] = args[0]
        return (args[0][:, -1:],) + tuple(args[1:])

    hook = head.register_forward_pre_hook(keep_last_position)
    try:
        output = model(input_ids=input_ids, attention_mask=attention)
    finally:
        hook.remove()
    hidden = captured.get("hidden")
    if hidden is None or hidden.dim() != 3 or hidden.shape[:2] != input_ids.shape:
        return None
    with torch.no_grad():
        returned = output.logits
        plain = returned.shape[:2] == (input_ids.shape[0], 1)
        if plain:  # NaN logits (diverged weights) are the plain head's too: equal where both are NaN
            own = head(hidden[:, -1:]).to(returned.dtype)
            plain = bool(((own == returned) | (own.isnan() & returned.isnan())).all())
    if not plain:
        return None
    del output
    positions = hidden[:, :-1][mask]
    targets = input_ids[:, 1:][mask]
    checkpoint = torch.is_grad_enabled() and positions.requires_grad and len(positions) > chunk_size
    chunks = []
    for first in range(0, len(positions), chunk_size):
        part, part_targets = positions[first : first + chunk_size], targets[first : first + chunk_size]
        if checkpoint:
            chunks.append(
                torch.utils.checkpoint.checkpoint(_head_token_logprobs, head, part, part_targets, use_reentrant=False)
            )
        else:
            chunks.append(_head_token_logprobs(head, part, part_targets))
    return torch.cat(chunks) if chunks else positions.new_zeros(0)


def sequence_logprobs(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    chunk_size: int = RESPONSE_CHUNK,
) -> torch.Tensor:
    """log π(y|x) summed over the response tokens, one value per (prompt, response); keeps the graph.

    Args:
      model: a causal LM (HF ``forward(input_ids, attention_mask)`` returning ``.logits``), possibly
        wrapped in DistributedDataParallel or peft.
      prompt_ids, response_ids: lists of token-id lists (unpadded); every prompt must be non-empty.
      pad_id: id used for padding (masked out, never scored).
      device: where to put the batch (default: the model's device).
      autocast: a context-manager factory (e.g. bf16 autocast on CUDA) or None.
      chunk_size: response positions per application of the output head (see the module docstring).
    """
    if device is None:
        device = next(model.parameters()).device
    input_ids, attention, response_mask = _batch(prompt_ids, response_ids, pad_id, device)
    mask = response_mask[:, 1:]
    head = _output_head(model)
    with autocast() if autocast else contextlib.nullcontext():
        token_logps = None
        if head is not None:
            token_logps = _chunked_response_logprobs(model, head, input_ids, attention, mask, max(1, chunk_size))
        if token_logps is None:
            name = type(_unwrapped(model)).__name__
            if head is not None and name not in _warned:
                _warned.add(name)
                warnings.warn(
                    f"{name}: the logits are not the plain output head of the final hidden states (soft-capping or "
                    "scaling?); scoring computes full-vocabulary logits at every position (more memory).",
                    stacklevel=2,
                )
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            token_logps = _token_logprobs(logits[:, :-1][mask], input_ids[:, 1:][mask])
    per_position = torch.zeros(mask.shape, dtype=token_logps.dtype, device=token_logps.device)
    return per_position.masked_scatter(mask, token_logps).sum(dim=1)


@torch.no_grad()
def batched_sequence_logprobs(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    dtype: torch.dtype = torch.float64,
    chunk_size: int = RESPONSE_CHUNK,
) -> torch.Tensor:
    """:func:`sequence_logprobs` without gradient, in batches; returns a CPU tensor of ``dtype``.

    Scores in eval mode (dropout off: log π is the deterministic policy, whatever mode the caller left
    the model in); every module's train/eval flag is restored afterwards.  Sequences are sorted by
    length so each batch pads little; the result is in the input order.
    """
    count = len(prompt_ids)
    order = sorted(range(count), key=lambda i: len(prompt_ids[i]) + len(response_ids[i]))
    out = torch.empty(count, dtype=dtype)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            values = sequence_logprobs(
                model,
                [prompt_ids[i] for i in index],
                [response_ids[i] for i in index],
                pad_id,
                autocast=autocast,
                chunk_size=chunk_size,
            )
            out[torch.tensor(index)] = values.detach().to("cpu", dtype)
    finally:
        for module, training in modes:
            module.training = training
    return out
