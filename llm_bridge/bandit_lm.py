"""The bandit LM: a torch "language model" whose response is one token out of K, with tabular logits.

For a fixed one-token prompt, ``forward`` returns the same logits θ ∈ ℝ^K at every position, so a
response y ∈ {0, …, K−1} has log π(y|x) = log softmax(θ)_y — exactly the tabular policy of ``sim``.
It goes through the bridge's real code path (:func:`llm_bridge.logprobs.sequence_logprobs`, the rule
losses, :func:`llm_bridge.trainer.train_on_pairs`), which is how the tests prove that one bridge
iteration equals ``sim``'s sampled mode, and that the population-weighted bridge loss reproduces
``sim``'s exact updates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

PROMPT = [0]
"""The fixed prompt (one token; any id works since the logits ignore the input)."""


@dataclasses.dataclass
class BanditOutput:
    logits: torch.Tensor


class BanditLM(torch.nn.Module):
    """Tabular logits θ (K,), the same next-token distribution after any prefix."""

    def __init__(self, log_policy, dtype=torch.float64):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(np.array(log_policy, dtype=np.float64), dtype=dtype))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BanditOutput:
        batch, length = input_ids.shape
        return BanditOutput(self.logits.expand(batch, length, -1))

    def log_policy(self) -> torch.Tensor:
        """log π = log softmax θ (detached)."""
        return torch.log_softmax(self.logits.detach(), dim=-1)
