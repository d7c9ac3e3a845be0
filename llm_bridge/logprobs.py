"""Summed response log-probabilities log π(y|x) = Σ_i log π(y_i | x, y_<i) of a causal LM.

Sequences are ``prompt ids + response ids`` with **right** padding for scoring (positions 0, 1, …
without gaps, which equal the positions generation used under left padding, since HF derives them from
the attention mask).  Only response tokens count; the prompt and the padding are masked out.  The
log-softmax runs in float32 under bf16/fp16 (autocast or half weights), else in the model's dtype
(float64 for the bandit LM of the equivalence tests).
"""

from __future__ import annotations

import contextlib

import torch


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


def sequence_logprobs(model, prompt_ids, response_ids, pad_id: int, device=None, autocast=None) -> torch.Tensor:
    """log π(y|x) summed over the response tokens, one value per (prompt, response); keeps the graph.

    Args:
      model: a causal LM (HF ``forward(input_ids, attention_mask)`` returning ``.logits``).
      prompt_ids, response_ids: lists of token-id lists (unpadded); every prompt must be non-empty.
      pad_id: id used for padding (masked out, never scored).
      device: where to put the batch (default: the model's device).
      autocast: a context-manager factory (e.g. bf16 autocast on CUDA) or None.
    """
    if device is None:
        device = next(model.parameters()).device
    input_ids, attention, response_mask = _batch(prompt_ids, response_ids, pad_id, device)
    with autocast() if autocast else contextlib.nullcontext():
        logits = model(input_ids=input_ids, attention_mask=attention).logits
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    targets = input_ids[:, 1:]
    mask = response_mask[:, 1:]
    token_logps = torch.gather(logits, 2, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (token_logps * mask).sum(dim=1)


@torch.no_grad()
def batched_sequence_logprobs(
    model, prompt_ids, response_ids, pad_id: int, batch_size: int = 16, autocast=None, dtype=torch.float64
) -> torch.Tensor:
    """:func:`sequence_logprobs` without gradient, in batches; returns a CPU tensor of ``dtype``.

    Sequences are sorted by length so each batch pads little; the result is in the input order.
    """
    count = len(prompt_ids)
    order = sorted(range(count), key=lambda i: len(prompt_ids[i]) + len(response_ids[i]))
    out = torch.empty(count, dtype=dtype)
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        values = sequence_logprobs(
            model, [prompt_ids[i] for i in index], [response_ids[i] for i in index], pad_id, autocast=autocast
        )
        out[torch.tensor(index)] = values.detach().to("cpu", dtype)
    return out
