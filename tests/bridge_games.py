"""Random small games shared by the bridge equivalence tests (bandit LM vs sim)."""

import jax.numpy as jnp
import numpy as np
import torch

from llm_bridge.bandit_lm import PROMPT
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.trainer import PairTensors, TrainingSpec
from sim.game import Game
from sim.spec import RunSpec


def random_game(seed: int, bradley_terry: bool, arms: int, random_initial: bool = False, tau: float = 0.3) -> Game:
    """A seeded game: Dirichlet(2) π_ref; BT with U[0, 2] rewards, or P = ½ + ½ tanh(G − Gᵀ).

    ``random_initial``: π_0 ~ Dirichlet(3) (so π_t ≠ π_ref and both anchors matter); else π_0 = π_ref.
    """
    rng = np.random.default_rng(seed)
    reference = rng.dirichlet(np.ones(arms) * 2.0)
    if bradley_terry:
        rewards = rng.uniform(0.0, 2.0, arms)
        preference = 1.0 / (1.0 + np.exp(-(rewards[:, None] - rewards[None, :])))
    else:
        skew = rng.normal(0.0, 1.0, (arms, arms))
        preference = 0.5 + 0.5 * np.tanh(skew - skew.T)
        rewards = np.full(arms, np.nan)
    initial = rng.dirichlet(np.ones(arms) * 3.0) if random_initial else reference
    return Game(
        jnp.asarray(preference),
        jnp.asarray(np.log(reference)),
        jnp.asarray(np.log(initial)),
        jnp.asarray(rewards),
        jnp.asarray(tau),
    )


def bandit_pair_tensors(model, reference_model, batch, pad: int) -> PairTensors:
    """A sampled-mode :class:`bandits.oracles.PairBatch` as the bridge's trainer input on the bandit LM:
    log π_t scored with ``model`` (it holds θ_t) and log π_ref with ``reference_model``, as the loop does."""
    first, second = np.asarray(batch.first).tolist(), np.asarray(batch.second).tolist()
    pairs = len(first)
    prompts = [PROMPT] * pairs
    responses = [[y] for y in first] + [[y] for y in second]
    previous = batched_sequence_logprobs(model, prompts + prompts, responses, pad, batch_size=16)
    reference = batched_sequence_logprobs(reference_model, prompts + prompts, responses, pad, batch_size=16)
    values = {
        "previous_w": previous[:pairs],
        "previous_l": previous[pairs:],
        "reference_w": reference[:pairs],
        "reference_l": reference[pairs:],
        "win_rate_w": torch.tensor(np.array(batch.first_win_rate)),
        "win_rate_l": torch.tensor(np.array(batch.second_win_rate)),
        "preference": torch.full((pairs,), 0.5, dtype=torch.float64),
        "weight": torch.tensor(np.array(batch.weight)),
    }
    return PairTensors(prompts, [[y] for y in first], [[y] for y in second], values)


def matched_settings(optimizer: str, pairs: int, steps: int, lr: float, **run) -> tuple[RunSpec, TrainingSpec]:
    """Sampled mode's ``[run]`` (tabular policy, λ_p pairs, full-batch inner steps) and the bridge's
    ``[training]`` that takes the same steps (``optimizer`` adam/sgd; two accumulated micro-batches per step)."""
    settings = RunSpec(
        mode="sampled",
        pairs_per_iteration=pairs,
        pair_scheme="lambda_p",
        policy="tabular",
        optimizer=optimizer,
        learning_rate=lr,
        inner_steps=steps,
        **run,
    )
    spec = TrainingSpec(
        optimizer="adamw" if optimizer == "adam" else "sgd",
        learning_rate=lr,
        epochs=steps,
        batch_size=pairs,
        micro_batch_size=pairs // 2,
    )
    return settings, spec
