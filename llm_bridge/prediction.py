"""Does the simulator predict the language model?  (``prefsim llm SPEC.toml --out DIR --predict``)

The bridge's rules are ``sim``'s rules, so the simulator makes a prediction about an LM run that can
be checked.  A finite game is cut out of the LM:

* **game**: for each of M prompts x, K distinct responses y_1 … y_K sampled from π_ref (the
  candidates); the oracle's probabilities P(y_i ≻ y_j | x) among them form a K × K preference game;
* **reference**: π_ref restricted to the candidates, π_ref(y_i | x) / Σ_j π_ref(y_j | x) (sequence
  probabilities renormalised over the candidate set).

On that game the simulator runs the rule with the rule's own parameters in **exact** mode (the
population update of :mod:`sim.rules`, applied per prompt) and in **sampled** mode (:mod:`sim.sampled`:
a tabular policy over the candidates trained on the same number of pairs per iteration as the LM, with
the inner optimiser of the ``[prediction]`` table).  The LM is trained with the same rule and data
budget: at iteration t the bridge scores the candidates, restricts π_t to them, draws its pairs among the
candidates from that restriction with the rule's pair scheme (:func:`llm_bridge.pairs.build_pairs`, the
oracle's probabilities of the game; Nash-MD's second response from its opponent restricted to the
candidates), precomputes log π_t (MNPO: its mixture of the last iterates) and log π_ref, and takes the
``[training]`` optimiser steps (:func:`llm_bridge.trainer.train_on_pairs`; APO's parameter form
extrapolates the weights); extragradient and optimistic MD run their two stages as the bridge does
(:mod:`llm_bridge.stages`).  A rule with ``reference_every = M`` (``comal``; any anchored rule given it) moves
its own reference in all three columns as :mod:`sim.rules.reference` states: exact mode runs the rule
:func:`sim.rules.build_rule` builds (the advancement wrapper included), sampled mode's engine carries the
anchor, and the LM's loss reads log π_ref of the candidates for t < M and afterwards the LM's own log π of
the candidates at the last advance kM (a copy of its scores then, as the bridge's loop reads that checkpoint,
:func:`sim.rules.reference.anchor_iteration`); at an advance the rule restarts from π_t (Nash-MD's opponent
mixes the moved reference, MNPO's history anchor starts again from π_t, optimistic MD draws its leading pairs
anew).  Pairwise losses depend on log π(y_w) − log π(y_l) only, so the normaliser of the
restriction does not enter them: the LM minimises the same loss as the simulator's tabular policy, but
through shared weights (function approximation) and with mass leaking to responses outside the
candidate set (generalisation across responses).

Compared per iteration t and prompt x (then averaged over prompts with a percentile bootstrap CI,
:func:`sim.stats.bootstrap_ci`):

* ``tv_lm_exact``, ``tv_lm_sampled``: TV distance between the LM's restricted π_t and the simulator's;
* ``tv_lm_reference``, ``tv_exact_reference``, ``tv_sampled_reference``: how far each moved from π_ref;
* ``gain_exact`` = TV(LM, π_ref) − TV(LM, exact) (``gain_sampled`` likewise): how much closer the
  simulator's prediction is to the LM than the null prediction "the LM stays at π_ref" (> 0: informative);
* ``win_lm``, ``win_exact``, ``win_sampled``: the win rate π_tᵀ P π_ref of each against π_ref;

π_ref in these columns is always the game's original reference (π_ref restricted to the candidates), also
for a rule whose ``reference_every`` moves its own reference: they measure how far each engine went from the
common start, as the bridge's held-out win rate and KL are against π_ref;

and at the last iteration the **ordering of the rules** by win rate (per pair of rules: the difference
under each engine, its CI over prompts, and whether the LM's sign agrees with the simulator's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp

from bandits.errors import PrefsimError
from llm_bridge.apo import extrapolate_parameters
from llm_bridge.generation import SamplingSpec, encode_prompts, generate
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.loop import Session
from llm_bridge.models import assign_weights, trainable_state
from llm_bridge.oracles import CallableOracle, Oracle
from llm_bridge.pairs import build_pairs, opponent_pairs
from llm_bridge.precision import Precision
from llm_bridge.rules import LLM_TAU, BridgeRule, surrogate_note
from llm_bridge.run_layout import PREDICTION_DIR
from llm_bridge.seeds import Purpose, stage_stream, stream_seed
from llm_bridge.spec import BridgeSpec, PredictionSpec
from llm_bridge.stages import run_stages
from llm_bridge.trainer import PairTensors, TrainingSpec, make_optimizer, train_on_pairs
from sim.game import Game
from sim.precision import float64, seed_key
from sim.rules import base_of, base_parameters, build_rule, rule_info
from sim.rules.reference import anchor_iteration, steps_since_advance
from sim.sampled.engine import build_iteration
from sim.sampled.problem import problem_from_arrays
from sim.spec import RunSpec
from sim.stats import bootstrap_ci

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Per-prompt comparison columns of :func:`compare_trajectories`.
METRICS = (
    "tv_lm_exact",
    "tv_lm_sampled",
    "tv_sampled_exact",
    "tv_lm_reference",
    "tv_exact_reference",
    "tv_sampled_reference",
    "gain_exact",
    "gain_sampled",
    "win_lm",
    "win_exact",
    "win_sampled",
)
ENGINES = ("lm", "exact", "sampled")


@dataclasses.dataclass
class CandidateGame:
    """M prompts × K candidate responses from π_ref, the oracle's game among them and π_ref restricted.

    Attributes:
      prompts: the M prompt texts.
      prompt_ids: their token ids (chat template applied as the spec says).
      response_ids: (M, K) lists of response token ids.
      texts: (M, K) decoded responses (distinct within a prompt).
      preference: P(y_i ≻ y_j | x), shape (M, K, K), P + Pᵀ = 1, diagonal ½.
      rewards: Bradley–Terry rewards with P = σ(r_i − r_j) (the oracle's rewards / scale), (M, K); NaN
        when the oracle is not Bradley–Terry.
      reference_logps: log π_ref(y | x) summed over response tokens, (M, K) (unnormalised).
    """

    prompts: list
    prompt_ids: list
    response_ids: list
    texts: list
    preference: np.ndarray
    rewards: np.ndarray
    reference_logps: np.ndarray

    @property
    def log_reference(self) -> np.ndarray:
        """log π_ref restricted to the candidates (normalised per prompt), (M, K)."""
        return restrict(self.reference_logps)

    @property
    def shape(self) -> tuple[int, int]:
        return self.preference.shape[0], self.preference.shape[1]

    def oracle(self) -> Oracle:
        """An oracle answering P(y ≻ y′ | x) from the game's matrix (the LM's pairs see exactly the game)."""
        table = {}
        for m, prompt in enumerate(self.prompts):
            for i, a in enumerate(self.texts[m]):
                for j, b in enumerate(self.texts[m]):
                    table[(prompt, a, b)] = float(self.preference[m, i, j])
        return CallableOracle(lambda prompt, a, b: table[(prompt, a, b)], name="candidate game")


def restrict(logps: np.ndarray) -> np.ndarray:
    """Normalise sequence log-probabilities over the candidates (last axis): log π(y)/Σ_{y′} π(y′)."""
    logps = np.asarray(logps, dtype=np.float64)
    return logps - logsumexp(logps, axis=-1, keepdims=True)


def score_candidates(
    model: torch.nn.Module,
    game: CandidateGame,
    pad_id: int,
    batch_size: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> np.ndarray:
    """log π(y | x) of every candidate (summed over response tokens), shape (M, K)."""
    m, k = len(game.response_ids), len(game.response_ids[0])
    prompts = [game.prompt_ids[i] for i in range(m) for _ in range(k)]
    responses = [ids for row in game.response_ids for ids in row]
    logps = batched_sequence_logprobs(model, prompts, responses, pad_id, batch_size, autocast=autocast)
    return logps.detach().to(torch.float64).cpu().numpy().reshape(m, k)


def build_candidate_game(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    oracle: Oracle,
    prompts: list,
    candidates: int,
    sampling: SamplingSpec,
    seed: int,
    chat_template: bool = False,
    oversample: int = 4,
    score_batch_size: int = 16,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    progress: bool = False,
) -> CandidateGame:
    """Sample K distinct responses per prompt from ``model`` (π_ref) and query the oracle among them."""
    prompts = list(dict.fromkeys(prompts))
    prompt_ids = encode_prompts(tokenizer, prompts, chat_template)
    draws = oversample * candidates
    generated = generate(
        model, tokenizer, prompt_ids, draws, sampling, seed=seed, progress=progress, description="candidates"
    )
    response_ids, texts = [], []
    for m, prompt in enumerate(prompts):
        seen: dict = {}
        for ids, text in zip(generated.response_ids[m], generated.response_texts[m]):
            if text not in seen and len(seen) < candidates:
                seen[text] = ids
        if len(seen) < candidates:
            raise PrefsimError(
                f"prediction: prompt {prompt!r} gave only {len(seen)} distinct responses in {draws} samples from "
                f"π_ref, fewer than prediction.candidates = {candidates}; lower candidates, raise "
                "generation.max_new_tokens or prediction.oversample."
            )
        texts.append(list(seen))
        response_ids.append(list(seen.values()))
    k = candidates
    firsts, seconds = zip(*[(i, j) for i in range(k) for j in range(i + 1, k)])
    preference = np.full((len(prompts), k, k), 0.5)
    for m, prompt in enumerate(prompts):
        probs = oracle.probabilities(
            [prompt] * len(firsts), [texts[m][i] for i in firsts], [texts[m][j] for j in seconds]
        )
        for i, j, p in zip(firsts, seconds, probs):
            preference[m, i, j], preference[m, j, i] = p, 1.0 - p
    rewards = np.full((len(prompts), k), np.nan)
    raw = [oracle.rewards([p] * k, texts[m]) for m, p in enumerate(prompts)]
    scale = getattr(oracle, "scale", None)
    if all(r is not None for r in raw) and scale is not None:
        candidate = np.asarray(raw, dtype=np.float64) / scale
        implied = 1.0 / (1.0 + np.exp(-(candidate[:, :, None] - candidate[:, None, :])))
        if np.max(np.abs(implied - preference)) < 1e-9:  # a Bradley–Terry game: keep its rewards
            rewards = candidate
    game = CandidateGame(prompts, prompt_ids, response_ids, texts, preference, rewards, np.zeros((len(prompts), k)))
    game.reference_logps = score_candidates(model, game, tokenizer.pad_token_id, score_batch_size, autocast)
    return game


# --------------------------------------------------------------------------------------------- simulator


def _check_rule(rule: BridgeRule, where: str) -> None:
    """Refuse what the study cannot run alike in its three columns: APO's implicit-reference form."""
    if rule.form == "implicit_reference":
        raise PrefsimError(
            f'{where}: the prediction study runs APO\'s parameter form only (form = "parameters"); the implicit '
            "reference form samples from π̂_t, which the candidate restriction does not model."
        )


def exact_trajectory(rule: BridgeRule, game: CandidateGame, iterations: int, tau: float) -> np.ndarray:
    """π_0 … π_T restricted to the candidates under the rule's exact update, per prompt: (T+1, M, K)."""
    with float64():
        games = Game(
            preference=jnp.asarray(game.preference),
            log_reference=jnp.asarray(game.log_reference),
            log_initial=jnp.asarray(game.log_reference),
            rewards=jnp.asarray(game.rewards),
            tau=jnp.asarray(tau, jnp.float64),
        )
        exact = build_rule(rule.name, rule.parameters)
        axes = Game(0, 0, 0, 0, None)
        state = jax.vmap(exact.init, in_axes=(axes,))(games)
        update = jax.jit(jax.vmap(exact.update, in_axes=(0, axes)))
        policies = [np.exp(np.asarray(state.log_policy))]
        for _ in range(iterations):
            state = update(state, games)
            policies.append(np.exp(np.asarray(state.log_policy)))
    return np.stack(policies)


def sampled_scheme(rule: BridgeRule, game: CandidateGame) -> str:
    """Sampled mode's name for the LM's pair scheme on this game.

    ``best_worst_by_win_rate`` (all pairs among K samples, argmax/argmin of the estimated win rate) picks the
    same pair as ``best_worst_by_reward`` when the game is Bradley–Terry (the win rate is increasing in the
    reward) and the rule needs no win-rate estimates; otherwise sampled mode's ``sppo_win_rate``.
    """
    if rule.pairs == "best_worst_by_win_rate":
        bradley_terry = bool(np.all(np.isfinite(game.rewards)))
        needs_win_rates = rule_info(base_of(rule.name, rule.parameters)).data.needs_win_rates
        return "best_worst_by_reward" if bradley_terry and not needs_win_rates else "sppo_win_rate"
    return rule.pairs


def sampled_trajectory(
    rule: BridgeRule, game: CandidateGame, iterations: int, tau: float, pairs: int, spec: PredictionSpec, seed: int
) -> np.ndarray:
    """π_0 … π_T of sim's sampled mode on the game (tabular policy over the candidates, ``pairs`` pairs per
    iteration drawn with the rule's scheme): (T+1, M, K)."""
    settings = RunSpec(
        mode="sampled",
        pairs_per_iteration=int(pairs),
        pair_scheme=sampled_scheme(rule, game),
        candidates=rule.samples,
        optimizer=spec.sampled_optimizer,
        learning_rate=float(spec.sampled_learning_rate),
        inner_steps=spec.sampled_inner_steps,
    )
    with float64():
        problem = problem_from_arrays(
            game.preference,
            np.zeros(game.shape + (0,)),
            rewards=None if not np.all(np.isfinite(game.rewards)) else game.rewards,
            reference=np.exp(game.log_reference),
            tau=tau,
        )
        try:
            init, iteration = build_iteration(rule.name, rule.parameters, settings)
        except PrefsimError as exc:
            raise PrefsimError(f"prediction, sampled mode: {exc}") from None
        key_init, key_run = jax.random.split(seed_key(seed))
        state = init(key_init, problem)
        step = jax.jit(iteration)
        policies = [np.exp(np.asarray(state.log_policy))]
        for _ in range(iterations):
            state, info = step(state, problem, key_run)
            if bool(info.nonfinite):
                raise PrefsimError(
                    "prediction, sampled mode: the inner loop diverged; lower prediction.sampled_learning_rate."
                )
            policies.append(np.exp(np.asarray(state.log_policy)))
    return np.stack(policies)


# --------------------------------------------------------------------------------------------- the LM


def lm_trajectory(
    model: torch.nn.Module,
    pad_id: int,
    rule: BridgeRule,
    game: CandidateGame,
    training: TrainingSpec,
    iterations: int,
    pairs_per_prompt: int,
    seed: int,
    score_batch_size: int = 16,
    precision: Precision | None = None,
    progress: bool = False,
    optimizer: torch.optim.Optimizer | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Train ``model`` (holding π_ref's weights on entry) with ``rule`` on pairs among the candidates.

    Per iteration, the rule's proximal stages in the bridge's order (:func:`llm_bridge.stages.run_stages`; one
    stage for most rules, two for extragradient and optimistic MD): each stage draws ``pairs_per_prompt``
    pair-scheme draws per prompt from the restriction of its source policy (π_t, the previous stage's output,
    or the pairs optimistic MD carried from the previous iteration; ``rule.samples`` candidates each, labelled
    by the game's oracle; a rule with an opponent, Nash-MD, draws y from π_t and y′ from the opponent
    restricted to the candidates), then trains from θ_t (``training``) with the rule's reference and the
    loss's anchor ``previous`` precomputed: log π_t, or for a rule with a history anchor (MNPO) its combination
    of log π_t … log π_{t−m+1} (iterates before π_0 given as π_0, as in the bridge's loop).  The reference is
    log π_ref (the game's ``reference_logps``), or with ``reference_every = M`` for t ≥ M the LM's scores of the
    candidates at the last advance kM = M·⌊t/M⌋ (:func:`sim.rules.reference.anchor_iteration`, the checkpoint
    the bridge's loop reads); at an advance the rule restarts: MNPO's iterates before kM are π_kM's
    (:func:`sim.rules.reference.steps_since_advance`) and optimistic MD's carried pairs are dropped (its
    leading stage draws from π_t).  APO's parameter form then extrapolates the weights.

    Returns π_0 … π_T restricted, (T+1, M, K); log Σ_y π_t(y | x) over the candidates, (T+1, M) (the mass
    the LM keeps on the game: it moves because the weights are shared with every other response); and per
    iteration ``{"pairs", "loss_first", "loss_last", "steps"}`` (pairs and
    steps of every stage; the losses of the last).
    """
    autocast = precision.autocast if precision is not None else None
    oracle = game.oracle()
    optimizer = optimizer or make_optimizer(model.parameters(), training)
    previous = trainable_state(model) if rule.form == "parameters" else None
    previous = None if previous is None else {k: v.detach().clone().cpu() for k, v in previous.items()}
    m_count, k = game.shape
    history = rule_info(rule.base).data.history
    parameters = base_parameters(rule.name, rule.parameters)
    remembered = 1 if history is None else history.length(parameters)
    stages, opponent, every = rule.stages, rule.opponent, rule.reference_every
    scored: list[np.ndarray] = []  # log π_t(y | x) of the candidates, the last ``remembered`` iterates
    reference_logps = game.reference_logps  # the loss's log π_ref: π_ref's, then the LM's at the last advance
    policies, masses, stats = [], [], []
    carried = None  # the pairs optimistic MD's leading stage drew in the previous iteration
    for t in range(iterations + 1):
        logps = score_candidates(model, game, pad_id, score_batch_size, autocast)
        scored = [logps, *scored][:remembered]
        policies.append(np.exp(restrict(logps)))
        masses.append(logsumexp(logps, axis=-1))
        if t == iterations:
            break
        advanced = anchor_iteration(t, every)  # the iterate whose policy is the rule's reference (0: π_ref)
        if t > 0 and advanced == t:  # a reference advance: the rule restarts from π_t with reference π_t
            reference_logps, carried = logps, None
        anchor = logps  # the loss's ``previous``: log π_t, or MNPO's mixture of log π_t … log π_{t−m+1}
        if history is not None:  # iterates before the last (re)start are that iterate's (weighed 0)
            since = steps_since_advance(t, every)
            anchor = history.combine([scored[min(j, since)] for j in range(remembered)], since, parameters)
        log_anchor = restrict(reference_logps)  # the rule's reference restricted (Nash-MD's opponent mixes it)
        iterate = trainable_state(model) if len(stages) > 1 else None  # θ_t, put back before a later stage trains

        def draw(
            index: int, initial: bool, t: int = t, logps: np.ndarray = logps, log_anchor: np.ndarray = log_anchor
        ) -> tuple[list, int]:
            # the policy the model holds: θ_t for the first stage, else the previous stage's output
            held = logps if index == 0 else score_candidates(model, game, pad_id, score_batch_size, autocast)
            log_policy = restrict(held)
            stream = stage_stream(index, initial)
            drawn_pairs = []
            for m in range(m_count):
                weights = np.exp(log_policy[m])
                weights /= weights.sum()
                for r in range(pairs_per_prompt):
                    rng = np.random.default_rng(stream_seed(seed, t, Purpose.LABELS, stream, m, r))
                    texts = game.texts[m]
                    if opponent is None:
                        drawn = [int(i) for i in rng.choice(k, size=rule.samples, p=weights)]
                        built = build_pairs(rule.pairs, [game.prompts[m]], [[texts[i] for i in drawn]], oracle, rng)
                    else:  # y ~ π_t, y′ ~ the opponent, both restricted to the candidates; the pair keeps its order
                        against = np.exp(restrict(opponent(log_policy[m], log_anchor[m])))
                        drawn = [int(rng.choice(k, p=weights)), int(rng.choice(k, p=against / against.sum()))]
                        built = opponent_pairs([game.prompts[m]], [[texts[drawn[0]], texts[drawn[1]]]], oracle)
                    drawn_pairs += [(m, drawn[pair.winner], drawn[pair.loser], pair) for pair in built]
            return drawn_pairs, 0

        def restore(iterate: dict | None = iterate) -> None:
            assign_weights(model, iterate)

        def train(
            index: int,
            drawn_pairs: list,
            t: int = t,
            anchor: np.ndarray = anchor,
            reference_logps: np.ndarray = reference_logps,
        ) -> tuple[int, object]:
            if not drawn_pairs:
                raise PrefsimError(
                    f"prediction: iteration {t + 1} drew no training pairs (every tournament final lost, or "
                    "every prompt's K responses one candidate under best_second_by_win_rate)."
                )
            values = {
                "reference_w": [reference_logps[m, w] for m, w, _, _ in drawn_pairs],
                "reference_l": [reference_logps[m, l] for m, _, l, _ in drawn_pairs],
                "previous_w": [anchor[m, w] for m, w, _, _ in drawn_pairs],
                "previous_l": [anchor[m, l] for m, _, l, _ in drawn_pairs],
                "win_rate_w": [pair.win_rate_w for *_, pair in drawn_pairs],
                "win_rate_l": [pair.win_rate_l for *_, pair in drawn_pairs],
                "preference": [pair.preference for *_, pair in drawn_pairs],
                "weight": [1.0] * len(drawn_pairs),
            }
            data = PairTensors(
                [game.prompt_ids[m] for m, *_ in drawn_pairs],
                [game.response_ids[m][w] for m, w, _, _ in drawn_pairs],
                [game.response_ids[m][l] for m, _, l, _ in drawn_pairs],
                {key: torch.tensor([float(v) for v in column], dtype=torch.float64) for key, column in values.items()},
            )
            stage = f", stage {index}" if index else ""
            result = train_on_pairs(
                model,
                optimizer,
                data,
                rule.at_step(t),
                training,
                pad_id,
                seed=stream_seed(seed, t, Purpose.TRAIN, index),
                progress=progress,
                description=f"{rule.name} it{t + 1} train" + (f" stage {index}" if index else ""),
                precision=precision,
                where=f"prediction: rule {rule.name}, seed {seed}, iteration {t + 1} (update π_{t} → π_{t + 1}){stage}",
            )
            return len(drawn_pairs), result

        outcome = run_stages(stages, draw, restore, train, carried)
        carried = outcome.carried
        if previous is not None:
            previous = extrapolate_parameters(model, previous, rule.hook.weight(t))
        stats.append(
            {
                "pairs": sum(count for count, _ in outcome.results),
                "loss_first": outcome.results[-1][1].loss_first,
                "loss_last": outcome.results[-1][1].loss_last,
                "steps": sum(result.steps for _, result in outcome.results),
            }
        )
    return np.stack(policies), np.stack(masses), stats


# --------------------------------------------------------------------------------------------- comparison


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """½ Σ_y |p(y) − q(y)| over the last axis."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


def win_rate_against(policy: np.ndarray, preference: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """πᵀ P π_ref per prompt: policy (…, M, K), preference (M, K, K), reference (M, K) → (…, M)."""
    return np.einsum("...mi,mij,mj->...m", policy, preference, reference)


def compare_trajectories(game: CandidateGame, trajectories: dict) -> pd.DataFrame:
    """Per rule, iteration and prompt, the columns of :data:`METRICS`.

    ``trajectories``: label → ``{"lm", "exact", "sampled"}``, each (T+1, M, K), and optionally
    ``"lm_log_mass"`` (T+1, M): then a column ``lm_mass_change`` = log Σ_y π_t(y|x) − log Σ_y π_ref(y|x) over
    the candidates.
    """
    reference = np.exp(game.log_reference)
    rows = []
    for label, runs in trajectories.items():
        lm, exact, sampled = (np.asarray(runs[e]) for e in ENGINES)
        columns = {
            "tv_lm_exact": total_variation(lm, exact),
            "tv_lm_sampled": total_variation(lm, sampled),
            "tv_sampled_exact": total_variation(sampled, exact),
            "tv_lm_reference": total_variation(lm, reference),
            "tv_exact_reference": total_variation(exact, reference),
            "tv_sampled_reference": total_variation(sampled, reference),
            "gain_exact": total_variation(lm, reference) - total_variation(lm, exact),
            "gain_sampled": total_variation(lm, reference) - total_variation(lm, sampled),
            "win_lm": win_rate_against(lm, game.preference, reference),
            "win_exact": win_rate_against(exact, game.preference, reference),
            "win_sampled": win_rate_against(sampled, game.preference, reference),
        }
        if "lm_log_mass" in runs:
            mass = np.asarray(runs["lm_log_mass"])
            columns["lm_mass_change"] = mass - mass[:1]
        iterations, prompts = lm.shape[0], lm.shape[1]
        for t in range(iterations):
            for m in range(prompts):
                rows.append(
                    {"rule": label, "iteration": t, "prompt": m, **{c: float(v[t, m]) for c, v in columns.items()}}
                )
    return pd.DataFrame(rows)


def summarise(per_prompt: pd.DataFrame, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean over prompts of every metric with a 95% percentile-bootstrap CI, per rule and iteration."""
    rows = []
    for (label, t), group in per_prompt.groupby(["rule", "iteration"], sort=False):
        group = group.sort_values("prompt")
        row = {"rule": label, "iteration": int(t), "prompts": len(group)}
        for metric in [m for m in METRICS + ("lm_mass_change",) if m in group]:
            centre, low, high = bootstrap_ci(group[metric].to_numpy(), resamples=resamples, seed=seed)
            row.update({metric: float(centre), f"{metric}_low": float(low), f"{metric}_high": float(high)})
        rows.append(row)
    return pd.DataFrame(rows)


def rule_ordering(per_prompt: pd.DataFrame, resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """At the last iteration, per pair of rules (a, b): win(a) − win(b) under each engine with a paired
    bootstrap CI over prompts, and whether the LM's sign agrees with the exact and sampled predictions."""
    last = per_prompt[per_prompt["iteration"] == per_prompt["iteration"].max()]
    labels = list(dict.fromkeys(last["rule"]))
    rows = []
    for a, b in itertools.combinations(labels, 2):
        first = last[last["rule"] == a].sort_values("prompt")
        second = last[last["rule"] == b].sort_values("prompt")
        row = {"rule_a": a, "rule_b": b}
        for engine in ENGINES:
            difference = first[f"win_{engine}"].to_numpy() - second[f"win_{engine}"].to_numpy()
            centre, low, high = bootstrap_ci(difference, resamples=resamples, seed=seed)
            row.update(
                {f"{engine}_difference": float(centre), f"{engine}_low": float(low), f"{engine}_high": float(high)}
            )
        for engine in ("exact", "sampled"):
            row[f"agrees_{engine}"] = bool(np.sign(row["lm_difference"]) == np.sign(row[f"{engine}_difference"]))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- a whole study


@dataclasses.dataclass
class PredictionResult:
    """What :func:`run_prediction` measured (also written to ``DIR/prediction/``)."""

    game: CandidateGame
    trajectories: dict
    per_prompt: pd.DataFrame
    summary: pd.DataFrame
    ordering: pd.DataFrame
    lm_stats: dict
    notes: list = dataclasses.field(default_factory=list)
    """What the columns of a rule compare beyond the rule itself (:func:`loss_notes`)."""


def loss_notes(spec: BridgeSpec) -> list[str]:
    """One note per rule whose loss is a step's surrogate, not an argmin (:func:`llm_bridge.rules.surrogate_note`):
    its LM and sampled columns minimise the loss, its exact column takes the rule's step."""
    notes = []
    for entry in spec.rules:
        note = surrogate_note(entry.label, entry.rule)
        if note is not None:
            notes.append(
                f"{note} The study's LM and sampled columns minimise it; its exact column takes "
                f"{entry.rule.base}'s step, so their distance to it includes that gap."
            )
    return notes


def run_prediction(
    spec: BridgeSpec, session: Session | None, out: str | Path | None = None, progress: bool = True
) -> PredictionResult:
    """The prediction study of a bridge spec (:class:`llm_bridge.spec.BridgeSpec`; ``[prediction]`` table).

    ``session``: :func:`llm_bridge.loop.open_session` of the spec (one process), holding π_ref.  Builds the
    candidate game from the session's model (π_ref), then for every ``[[rule]]``: exact and
    sampled trajectories on the game, and the LM trained from π_ref on pairs among the candidates.
    Writes ``prediction/{game.json, per_prompt.csv, summary.csv, ordering.csv}`` under ``out`` if given.
    """
    prediction = spec.prediction
    prediction.validate()
    for entry in spec.rules:
        _check_rule(entry.rule, f"rule {entry.label!r}")
    if prediction.prompts > len(spec.prompts.train):
        raise PrefsimError(
            f"prediction.prompts = {prediction.prompts} exceeds the {len(spec.prompts.train)} training prompts."
        )
    if session.accelerator.num_processes != 1:
        raise PrefsimError("prefsim llm --predict runs in one process; run it without accelerate launch.")
    model, pad_id = session.policy, session.tokenizer.pad_token_id
    start = {k: v.detach().clone() for k, v in trainable_state(model).items()}
    game = build_candidate_game(
        model,
        session.tokenizer,
        session.oracle,
        list(spec.prompts.train[: prediction.prompts]),
        prediction.candidates,
        spec.sampling,
        seed=stream_seed(spec.seed, 0, Purpose.CANDIDATES),
        chat_template=spec.prompts.chat_template,
        oversample=prediction.oversample,
        score_batch_size=spec.score_batch_size,
        autocast=session.autocast,
        progress=progress,
    )
    tau = float(spec.raw.get("tau", LLM_TAU))
    pairs = game.shape[0] * prediction.pairs_per_prompt  # the LM's budget: per distinct prompt of the game
    trajectories, lm_stats = {}, {}
    for entry in spec.rules:
        assign_weights(model, {k: v.clone() for k, v in start.items()})
        lm, mass, stats = lm_trajectory(
            model,
            pad_id,
            entry.rule,
            game,
            spec.training,
            spec.iterations,
            prediction.pairs_per_prompt,
            spec.seed,
            spec.score_batch_size,
            session.precision,
            progress=progress,
            optimizer=session.optimizer,
        )
        trajectories[entry.label] = {
            "lm": lm,
            "lm_log_mass": mass,
            "exact": exact_trajectory(entry.rule, game, spec.iterations, tau),
            "sampled": sampled_trajectory(entry.rule, game, spec.iterations, tau, pairs, prediction, spec.seed),
        }
        lm_stats[entry.label] = stats
    assign_weights(model, start)
    per_prompt = compare_trajectories(game, trajectories)
    summary = summarise(per_prompt, prediction.resamples, spec.seed)
    ordering = rule_ordering(per_prompt, prediction.resamples, spec.seed)
    notes = loss_notes(spec)
    if out is not None:
        directory = Path(out) / PREDICTION_DIR
        directory.mkdir(parents=True, exist_ok=True)
        per_prompt.to_csv(directory / "per_prompt.csv", index=False)
        summary.to_csv(directory / "summary.csv", index=False)
        ordering.to_csv(directory / "ordering.csv", index=False)
        record = {
            "prompts": game.prompts,
            "candidates": game.texts,
            "preference": game.preference.tolist(),
            "log_reference": game.log_reference.tolist(),
            "lm_training": lm_stats,
            "notes": notes,
            "policies": {label: {e: runs[e].tolist() for e in runs} for label, runs in trajectories.items()},
        }
        (directory / "game.json").write_text(json.dumps(record))
    return PredictionResult(game, trajectories, per_prompt, summary, ordering, lm_stats, notes)


def format_summary(result: PredictionResult) -> list[str]:
    """One line per rule at the last iteration (the CLI's printout)."""
    last = result.summary[result.summary["iteration"] == result.summary["iteration"].max()]
    lines = []
    for _, row in last.iterrows():
        lines.append(
            f"{row['rule']}: π_{int(row['iteration'])} on the candidates: TV(LM, exact) {row['tv_lm_exact']:.3f} "
            f"[{row['tv_lm_exact_low']:.3f}, {row['tv_lm_exact_high']:.3f}], "
            f"TV(LM, sampled) {row['tv_lm_sampled']:.3f}, "
            f"TV(LM, π_ref) {row['tv_lm_reference']:.3f}; win rate vs π_ref: LM {row['win_lm']:.3f}, exact "
            f"{row['win_exact']:.3f}, sampled {row['win_sampled']:.3f}"
        )
    for _, row in result.ordering.iterrows():
        lines.append(
            f"{row['rule_a']} − {row['rule_b']}: LM {row['lm_difference']:+.3f} [{row['lm_low']:+.3f}, "
            f"{row['lm_high']:+.3f}], exact {row['exact_difference']:+.3f}, sampled {row['sampled_difference']:+.3f}"
        )
    lines += [f"note: {note}" for note in result.notes]
    return lines
