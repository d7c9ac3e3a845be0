"""The sampled engine: N labelled pairs per iteration, a parametric policy, an optax inner loop.

One iteration t (:func:`build_iteration`):

1. draw the iteration's pairs from π_t with the configured scheme (:mod:`bandits.oracles`) — or,
   with ``data = "offline"``, take the seed's fixed dataset of ``offline_pairs`` pairs drawn once
   from π_ref at ``init`` (:mod:`sim.sampled.offline`);
2. starting from the current parameters, minimise the rule's loss (:mod:`sim.sampled.losses`) with a
   **fresh** optax optimiser (``sgd`` / ``adam`` / ``rmsprop``, optax defaults besides the learning
   rate): ``inner_steps`` steps (``lax.fori_loop``), or — when ``tolerance`` is set — until the
   largest absolute gradient entry is ≤ ``tolerance`` or ``inner_steps`` steps have been taken
   (``lax.while_loop``, full batch).  With ``minibatch_size = B`` each iteration shuffles its pairs
   once and step s uses the (s mod ⌊N/B⌋)-th block of B pairs;
3. for APO, extrapolate (:mod:`sim.sampled.apo`); otherwise the proximal output is the next iterate;
4. measure ``inner_gradient`` = the largest absolute entry of the full-batch gradient of the loss at the
   inner loop's final parameters (the quantity ``tolerance`` stops on; the largest over a multi-stage
   rule's stages): near 0 only where the inner problem is solved; and ``distance_to_exact`` = max over
   contexts x and responses y of |log π̂_{t+1}(y|x) − log π̂^{exact}_{t+1}(y|x)|, where π̂_{t+1} is the
   sampled proximal output (the trained policy, before any APO extrapolation) and π̂^{exact}_{t+1} is the
   rule's exact population update (:mod:`sim.rules`; APO: its base rule's) applied to the **same** π_t the loss
   used as reference (normalised).  For ``dpo_reference = "reference"`` the exact counterpart is
   π_ref·exp(r/β).  For offline data it is the population minimiser of the loss on pairs from π_ref
   (:func:`sim.sampled.offline.offline_exact_proximal`: BR_τ(π_ref) for ``online_ipo``, the INPO
   step with Pπ_ref in place of Pπ_t for ``inpo``).

A run is a jitted ``lax.scan`` over recorded segments (a ``fori_loop`` of iterations inside, like
:mod:`sim.trajectory`), vmapped over seeds (inner) and over a swept rule-parameter grid (outer); a long
run goes in blocks of at most B iterations (one compiled call each on the carried state, progress
reported between them: :func:`sim.shared_engine.run_blocks`), a short one in one call.
Diverging inner loops — a non-finite loss, parameter or log-probability, or a final loss more than
:data:`DIVERGENCE_FACTOR` = 10 times (1 + the starting loss) — are caught inside the scan: each seed
carries the first bad iteration, and :func:`sim.sampled.experiment.run_sampled_rule` raises a
:class:`~bandits.errors.PrefsimError` naming rule, seed and iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bandits.errors import PrefsimError
from bandits.inputs import check_integer
from bandits.oracles import make_pairs, mixture_opponent_pairs
from sim import shared_engine
from sim.checkpoint import CheckpointScope
from sim.game import normalize
from sim.headtohead import FINAL_POLICY
from sim.metrics import all_metrics, log_ratio
from sim.rules import base_of, base_parameters, build_rule, iteration_hook, rule_info
from sim.rules.apo import Iterate
from sim.rules.base import ExactState
from sim.rules.definition import Stage
from sim.rules.reference import REFERENCE_EVERY, advances_at, steps_since_advance
from sim.sampled.apo import ApoSampledState, sampled_space
from sim.sampled.losses import pair_loss
from sim.sampled.offline import (
    OFFLINE_KEY,
    check_data_settings,
    check_offline_rule,
    offline_dataset,
    offline_exact_proximal,
    training_pairs,
)
from sim.sampled.policies import make_policy
from sim.sampled.problem import GAME_AXES, Problem, context_games
from sim.shared_engine import compile_over_grid_and_seeds, grid_arrays, regret_from_mixture_sum, shard_over_seeds

OPTIMIZERS = ("sgd", "adam", "rmsprop")
#: The inner loop counts as diverged when |final loss| > DIVERGENCE_FACTOR·(1 + |loss at its start|)
#: (e.g. Adam with a huge learning rate keeps the logits finite but the loss explodes), or when the
#: loss, parameters or log-policy become non-finite.  The inner loop starts at θ_t and minimises the
#: loss, so a working optimiser ends at or near its starting loss or below it; ten times (1 + that)
#: is far outside its noise (an MLP under RMSprop at learning rate 100 on the ring ends an inner loop
#: at 5000× its starting loss, all values finite, and the next iterate is a point mass).
DIVERGENCE_FACTOR = 10.0


class SampledState(NamedTuple):
    """Carry of the outer scan (one seed).

    Attributes:
      params: the parameters the next proximal step starts from.
      log_policy: log π_t (M, K), the distribution the next pairs are drawn from.
      reference: the log π_t the next loss uses as its reference (unnormalised only for APO's
        ``implicit_reference``).
      wrapper: a wrapper rule's own named state (APO: :class:`sim.sampled.apo.ApoSampledState`, the
        last proximal output θ̂_t and log π̂_t); ``()`` for a plain rule.
      step: t, the number of iterations done (int32).
      data: the seed's offline dataset (a :class:`bandits.oracles.PairBatch` of ``offline_pairs``
        pairs from π_ref, constant along the run) with ``data = "offline"``; ``None`` online.
      anchor: the rule's own reference log π_ref (M, K): the problem's π_ref, or with
        ``reference_every = M`` the iterate of the last advance (:mod:`sim.rules.reference`); ``None``
        reads the problem's.
      carried: the pairs a ``carry`` stage drew this iteration, which the next iteration's ``carried``
        stage trains on (optimistic MD's pairs from π̄_{t+1}); ``None`` for single-stage rules.
      history: log π_{t−1}, …, log π_{t−m+1} (m − 1, M, K) for a rule whose anchor mixes its last m
        iterates (:class:`sim.rules.definition.HistoryAnchor`, MNPO; those before the last reference
        advance weigh 0, the rule restarts there); ``None`` otherwise.
    """

    params: Any
    log_policy: jax.Array
    reference: jax.Array
    wrapper: Any
    step: jax.Array
    data: Any = None
    anchor: Any = None
    carried: Any = None
    history: Any = None


class IterationInfo(NamedTuple):
    """Diagnostics of one iteration: final inner loss, distance to the exact update, divergence flag, and the
    largest absolute gradient entry of the inner loss where the inner loop ended."""

    loss: jax.Array
    distance_to_exact: jax.Array
    nonfinite: jax.Array
    inner_gradient: jax.Array


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """optax ``sgd`` / ``adam`` / ``rmsprop`` with their default constants and ``learning_rate``."""
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "rmsprop":
        return optax.rmsprop(learning_rate)
    raise PrefsimError(f"run.optimizer: unknown optimiser {name!r}; choose one of {', '.join(OPTIMIZERS)}.")


def check_settings(settings: Any) -> None:
    """Validate the sampled-mode fields of a :class:`sim.spec.RunSpec` (or any object with them)."""
    pairs = settings.pairs_per_iteration
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise PrefsimError(f"run.pairs_per_iteration: expected an integer ≥ 1 (pairs per iteration), got {pairs!r}.")
    steps = settings.inner_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrefsimError(f"run.inner_steps: expected an integer ≥ 1, got {steps!r}.")
    make_optimizer(settings.optimizer, 1.0)
    check_data_settings(settings)
    rate = settings.learning_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not np.isfinite(rate) or rate <= 0:
        raise PrefsimError(f"run.learning_rate: expected a finite number > 0, got {rate!r}.")
    if settings.tolerance is not None:
        tol = settings.tolerance
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise PrefsimError(f"run.tolerance: expected a number > 0 (or leave it out), got {tol!r}.")
        if settings.minibatch_size is not None:
            raise PrefsimError("run.tolerance: a gradient tolerance needs full-batch steps; leave minibatch_size out.")
    if settings.minibatch_size is not None:
        size = settings.minibatch_size
        batch_pairs = training_pairs(settings)
        bound = (
            f"offline_pairs = {batch_pairs}" if settings.data == "offline" else f"pairs_per_iteration = {batch_pairs}"
        )
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= batch_pairs:
            raise PrefsimError(f"run.minibatch_size: expected an integer in [1, {bound}], got {size!r}.")
    make_policy(settings.policy, settings.mlp_width, settings.mlp_hidden_layers)


def exact_proximal(
    rule_name: str, parameters: dict, problem: Problem, log_reference_policy: jax.Array, step: int | jax.Array
) -> jax.Array:
    """The exact population update of the rule (a wrapper: its base) applied to π_t = ``log_reference_policy``
    (M, K)."""
    games = context_games(problem)
    rule = build_rule(base_of(rule_name, parameters), base_parameters(rule_name, parameters))

    def one(game, log_policy):
        return rule.update(ExactState(log_policy, step, ()), game).log_policy

    return jax.vmap(one, in_axes=(GAME_AXES, 0))(games, log_reference_policy)


class Carried(NamedTuple):
    """Pairs a ``carry`` stage drew and the policy (log-probabilities, (M, K)) they were drawn from."""

    batch: Any
    source: jax.Array


#: Folded into the seed's initial key to draw the pairs of a ``carried`` first stage (before t = 0).
CARRY_KEY = 10_007


def stage_plan(rule_name: str, parameters: dict, settings: Any) -> tuple[tuple, str]:
    """``(stages, scheme)``: the proximal solves of one iteration and the pair scheme they draw with."""
    data = rule_info(base_of(rule_name, parameters)).data
    override = data.scheme(base_parameters(rule_name, parameters)) if data.scheme is not None else None
    return (data.stages or (Stage(),)), (override or settings.pair_scheme)


def build_iteration(rule_name: str, parameters: dict, settings: Any) -> tuple[Callable, Callable]:
    """``(init, iteration)`` pure functions of one seed's sampled run.

    ``init(key, problem) -> SampledState`` and
    ``iteration(state, problem, key) -> (SampledState, IterationInfo)``.

    An iteration runs the rule's stages in turn (one for most rules; extragradient and optimistic MD
    have two, :class:`sim.rules.definition.Stage`): each draws its pairs (from π_t, from the previous
    stage's output, or the pairs carried from the last iteration), minimises the rule's loss from the
    current parameters with anchor π_t, and hands its output to the next stage; the last stage's output
    is the proximal output π̂_{t+1}.
    """
    check_settings(settings)
    hook = iteration_hook(rule_name, parameters, "sampled")
    offline = settings.data == "offline"
    if offline:
        check_offline_rule(rule_name)
    policy = make_policy(settings.policy, settings.mlp_width, settings.mlp_hidden_layers)
    stages, scheme = stage_plan(rule_name, parameters, settings)
    prepare, evaluate = pair_loss(rule_name, parameters, scheme)
    optimizer = make_optimizer(settings.optimizer, settings.learning_rate)
    pairs = settings.pairs_per_iteration
    base = base_of(rule_name, parameters)
    opponent = rule_info(base).data.opponent
    history = rule_info(base).data.history
    every = parameters.get(REFERENCE_EVERY.name)
    fixed_parameters = {k: v for k, v in parameters.items() if k != REFERENCE_EVERY.name}
    own_parameters = base_parameters(rule_name, fixed_parameters)
    carries = any(stage.carry for stage in stages)
    window = history.length(own_parameters) if history is not None else 0
    implicit = hook is not None and hook.form == "implicit_reference"  # APO (the one wrapper) with that form

    def draw(key, log_policy, problem, anchor):
        if opponent is not None:
            against = normalize(opponent(log_policy, anchor, own_parameters))
            batch, _ = mixture_opponent_pairs(
                key, log_policy, against, problem.preference, problem.context_probs, pairs
            )
            return batch
        batch, _ = make_pairs(
            scheme,
            key,
            log_policy,
            problem.preference,
            problem.rewards,
            problem.context_probs,
            pairs,
            settings.candidates,
            settings.self_comparison,
        )
        return batch

    def init(key, problem):
        params = policy.init(key, problem)
        log_policy = policy.log_probs(params, problem)
        data = offline_dataset(jax.random.fold_in(key, OFFLINE_KEY), problem, settings) if offline else None
        wrapper = ApoSampledState(params, log_policy) if hook is not None else ()
        carried = None
        if carries:
            carried = Carried(
                draw(jax.random.fold_in(key, CARRY_KEY), log_policy, problem, problem.log_reference), log_policy
            )
        past = jnp.broadcast_to(log_policy, (window - 1, *log_policy.shape)) if history is not None else None
        return SampledState(
            params,
            log_policy,
            log_policy,
            wrapper,
            jnp.zeros((), jnp.int32),
            data,
            problem.log_reference,
            carried,
            past,
        )

    def staged_exact(log_policy, anchored, carried_state, step, restart):
        """The exact counterpart of a multi-stage iteration: each stage's population minimiser
        (the definition's ``offline``: U(ℓ_t; μ)) on its source μ, chained from π_t (M, K); at a
        reference advance (``restart``) a ``carried`` stage's source is π_t, as the restarted rule's."""
        minimiser = rule_info(base).offline
        output = log_policy
        for stage in stages:
            if stage.pairs_from == "iterate":
                source = log_policy
            elif stage.pairs_from == "carried":
                source = jnp.where(restart, log_policy, carried_state.source)
            else:
                source = output
            rates = jnp.einsum("mij,mj->mi", anchored.preference, jnp.exp(source))
            output = normalize(minimiser(own_parameters, log_policy, anchored.log_reference, rates, step))
        return output

    def objective_for(problem):
        def objective(params, sub_terms):
            return evaluate(policy.log_probs(params, problem), sub_terms)

        return objective

    def iteration(state, problem, key):
        key_data, key_inner = jax.random.split(jax.random.fold_in(key, state.step))
        anchor = problem.log_reference if state.anchor is None else state.anchor
        restart = jnp.zeros((), bool) if every is None else advances_at(state.step, every)
        if every is not None:
            anchor = jnp.where(restart, state.log_policy, anchor)
        anchored = problem._replace(log_reference=anchor)
        reference = state.reference
        if history is not None:  # the loss's anchor mixes the last m iterates (since the last advance: restarted)
            since = steps_since_advance(state.step, every)
            reference = history.combine([state.log_policy, *state.history], since, own_parameters)
        objective = objective_for(problem)
        carried = state.carried
        log_stage = state.log_policy
        exploded = jnp.zeros((), bool)
        gradient = jnp.zeros((), state.log_policy.dtype)
        for index, stage in enumerate(stages):
            stage_data_key = key_data if index == 0 else jax.random.fold_in(key_data, index)
            stage_inner_key = key_inner if index == 0 else jax.random.fold_in(key_inner, index)
            if offline:
                batch = state.data
            elif stage.pairs_from == "carried" and every is not None:
                # the rule restarts at a reference advance: its leading iterate is π_t, so are the pairs
                batch = jax.lax.cond(
                    restart,
                    lambda key: draw(key, state.log_policy, problem, anchor),
                    lambda key: state.carried.batch,
                    stage_data_key,
                )
            elif stage.pairs_from == "carried":
                batch = state.carried.batch
            else:
                source = state.log_policy if stage.pairs_from == "iterate" else log_stage
                batch = draw(stage_data_key, source, problem, anchor)
            if stage.carry:
                carried = Carried(batch, log_stage)
            terms = jax.lax.stop_gradient(prepare(reference, anchor, batch, state.step))
            initial_loss = objective(state.params, terms)
            params, final_loss, final_gradient = optimise(
                objective, state.params, terms, stage_inner_key, optimizer, settings
            )
            gradient = jnp.maximum(gradient, final_gradient)
            log_stage = policy.log_probs(params, problem)
            exploded = exploded | (jnp.abs(final_loss) > DIVERGENCE_FACTOR * (1.0 + jnp.abs(initial_loss)))
        log_hat = log_stage
        if offline:
            exact = offline_exact_proximal(rule_name, fixed_parameters, anchored, normalize(reference), state.step)
        elif history is not None or (implicit and rule_info(base).offline is not None):
            # the population minimiser from the loss's anchor with pairs from the iterate, as exact mode
            # steps: MNPO's mixed anchor and π_t, APO implicit_reference's extrapolated reference and π̂_t
            # (the base's own update would take the win rates of the anchor)
            rates = jnp.einsum("mij,mj->mi", anchored.preference, jnp.exp(state.log_policy))
            exact = normalize(
                rule_info(base).offline(own_parameters, reference, anchored.log_reference, rates, state.step)
            )
        elif len(stages) > 1:
            exact = staged_exact(normalize(state.reference), anchored, state.carried, state.step, restart)
        else:
            exact = exact_proximal(rule_name, fixed_parameters, anchored, normalize(state.reference), state.step)
        distance = jnp.max(jnp.abs(log_hat - exact))
        if hook is not None:
            previous = Iterate(state.wrapper.previous_params, state.wrapper.previous_log_policy)
            following = hook.next_iterate(
                state.step, Iterate(params, log_hat), previous, sampled_space(policy, problem)
            )
            next_params, next_log_policy, next_reference = following
            wrapper = ApoSampledState(params, log_hat)
        else:
            next_params, next_log_policy, next_reference = params, log_hat, log_hat
            wrapper = ()
        leaves_finite = jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(next_params)])
        )
        nonfinite = ~(jnp.isfinite(final_loss) & leaves_finite & jnp.all(jnp.isfinite(next_log_policy))) | exploded
        past = None
        if history is not None:
            past = jnp.concatenate([state.log_policy[None], state.history], axis=0)[: window - 1]
        new_state = SampledState(
            next_params, next_log_policy, next_reference, wrapper, state.step + 1, state.data, anchor, carried, past
        )
        return new_state, IterationInfo(final_loss, distance, nonfinite, gradient)

    return init, iteration


def optimise(
    objective: Callable[[Any, Any], jax.Array],
    params: Any,
    batch: Any,
    key: jax.Array,
    optimizer: optax.GradientTransformation,
    settings: Any,
) -> tuple[Any, jax.Array, jax.Array]:
    """Minimise ``objective(params, batch)`` from ``params``; returns ``(params, final full-batch loss, largest
    absolute entry of the full-batch gradient at the final params)``.

    ``batch`` is a pytree whose leaves of rank ≥ 1 have the pairs on axis 0 (minibatches slice them);
    rank-0 leaves are shared.
    """
    opt_state = optimizer.init(params)
    grad_fn = jax.grad(objective)
    if settings.tolerance is not None:
        tolerance = settings.tolerance

        # the carry holds the gradient at the carried params, so the loop stops *at* params whose gradient is
        # ≤ tolerance (testing the gradient before a step and then taking it let Adam, whose step is ≈ lr
        # whatever the gradient's size, leave the solved point: 8e-6 after stopping at ≤ 1e-6)
        def cond(carry):
            _, _, count, grads = carry
            return (count < settings.inner_steps) & (largest_entry(grads) > tolerance)

        def body(carry):
            params, opt_state, count, grads = carry
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return params, opt_state, count + 1, grad_fn(params, batch)

        start = (params, opt_state, jnp.zeros((), jnp.int32), grad_fn(params, batch))
        params, _, _, grads = jax.lax.while_loop(cond, body, start)
        return params, objective(params, batch), largest_entry(grads)

    pairs = max(leaf.shape[0] for leaf in jax.tree_util.tree_leaves(batch) if leaf.ndim)
    size = settings.minibatch_size
    if size is None or size >= pairs:

        def step(_, carry):
            params, opt_state = carry
            updates, opt_state = optimizer.update(grad_fn(params, batch), opt_state, params)
            return optax.apply_updates(params, updates), opt_state

    else:
        blocks = pairs // size
        order = jax.random.permutation(key, pairs)[: blocks * size].reshape(blocks, size)

        def step(index, carry):
            params, opt_state = carry
            rows = order[index % blocks]
            sub_batch = jax.tree_util.tree_map(lambda leaf: leaf[rows] if leaf.ndim else leaf, batch)
            updates, opt_state = optimizer.update(grad_fn(params, sub_batch), opt_state, params)
            return optax.apply_updates(params, updates), opt_state

    params, _ = jax.lax.fori_loop(0, settings.inner_steps, step, (params, opt_state))
    return params, objective(params, batch), largest_entry(grad_fn(params, batch))


def largest_entry(tree: Any) -> jax.Array:
    """max |g| over every entry of every leaf of ``tree`` (a gradient pytree)."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def simulate_sampled(
    rule_name: str, parameters: dict, settings: Any, problem: Problem, key: jax.Array, record_iterations: np.ndarray
) -> tuple[dict[str, jax.Array], jax.Array]:
    """One seed's run: ``(metrics, first_nonfinite)``, the whole run as one block of
    :func:`simulate_sampled_block`.

    ``metrics``: column → (R,) for :data:`sim.metrics.METRIC_COLUMNS` (context-weighted; ``max_log_ratio_so_far``
    weights each context's running maximum over every iteration, recorded or not) plus
    ``distance_to_exact`` (NaN at iteration 0), ``loss`` (the last inner loss of the iteration) and
    ``inner_gradient`` (the largest absolute gradient entry of that loss where the inner loop ended; NaN at 0).
    ``first_nonfinite``: the first iteration with a non-finite loss/parameter/log-policy, or −1.
    """
    schedule = shared_engine.whole_run_schedule(record_iterations)
    carry, out = simulate_sampled_block(rule_name, parameters, settings, problem, key, schedule)
    keep = np.asarray(schedule.measures)
    metrics = {name: jnp.concatenate([out["first"][name][None], out["rows"][name][keep]]) for name in out["first"]}
    metrics[FINAL_POLICY] = out["final"]  # π_T (M, K), for the head-to-head table
    return metrics, carry[2]


def sampled_states(
    rule_name: str, parameters: dict, settings: Any, problem: Problem, key: jax.Array, iterations: int
) -> SampledState:
    """Every state of one seed's sampled run, t = 0, …, T: a :class:`SampledState` whose leaves are
    stacked over t on a new leading axis (``log_policy``: (T + 1, M, K)).

    The run :func:`simulate_sampled` makes with the same ``key`` (the same pairs, the same inner loops),
    without its measurements: ``log_policy[t]`` is the policy it measures at iteration t (for APO the
    extrapolated π_t; π̂_t for ``form = "implicit_reference"``), ``params[t]`` where the next proximal step
    starts, ``wrapper[t]`` APO's last proximal output θ̂_t, log π̂_t.  For comparing whole trajectories,
    e.g. APO's forms on the same draws (notebook 10).  No divergence check: non-finite iterates come back
    as they are.  Pure (jit and vmap it over seeds).
    """
    iterations = check_integer(iterations, "sampled_states: iterations", 0)
    init, iteration = build_iteration(rule_name, parameters, settings)
    key_init, key_run = jax.random.split(key)  # as simulate_sampled_block
    start = init(key_init, problem)

    def body(state, _):
        state, _ = iteration(state, problem, key_run)
        return state, state

    _, later = jax.lax.scan(body, start, None, length=iterations)
    return jax.tree_util.tree_map(lambda first, rest: jnp.concatenate([first[None], rest]), start, later)


def simulate_sampled_block(
    rule_name: str,
    parameters: dict,
    settings: Any,
    problem: Problem,
    key: jax.Array,
    schedule: shared_engine.Schedule,
    carry: tuple | None = None,
) -> tuple[tuple, dict]:
    """One block of a seed's sampled run: ``(carry, out)`` after the pieces of ``schedule``
    (:class:`sim.shared_engine.Schedule`; ``fresh`` plays no part here).

    ``carry`` is ``(state, mixture_sum, first_bad, last IterationInfo, largest_log_ratio)`` as the previous
    block returned it (the last: per context, max_{s≤t} max_y |log π_s(y|x)/π_ref(y|x)| over every
    iteration so far, π_0 included, which measurements write as ``max_log_ratio_so_far``), or ``None``: the
    block starts the run and measures iteration 0 (``out["first"]``).  Each piece runs its iterations in a
    ``fori_loop`` and measures where it ends (a measurement costs little next to an iteration's inner
    loop; the rows of pieces that do not end at a recorded iteration are dropped), so the numbers are the
    same to the bit however the run is cut into blocks.  ``out``: ``rows`` (column → (n,)), ``seen`` (−1:
    divergence is carried in ``first_bad``), ``final`` (π after the block).
    """
    init, iteration = build_iteration(rule_name, parameters, settings)
    key_init, key_run = jax.random.split(key)
    games = context_games(problem)
    weights = problem.context_probs
    start = init(key_init, problem) if carry is None else None
    dtype = (start if carry is None else carry[0]).log_policy.dtype

    def measure(state, mixture_sum, largest):
        count = state.step.astype(dtype) + 1.0
        regret = regret_from_mixture_sum(mixture_sum, jnp.exp(state.log_policy), problem.rewards, state.step)
        rows = jax.vmap(all_metrics, in_axes=(GAME_AXES, 0, 0, 0, 0, 0, 0))(
            games,
            state.log_policy,
            jnp.log(mixture_sum / count),
            regret,
            largest,
            problem.target,
            problem.unregularised_target,
        )
        return {name: jnp.sum(weights * value) for name, value in rows.items()}

    def one_iteration(_, carry):
        state, mixture_sum, first_bad, last, largest = carry
        state, info = iteration(state, problem, key_run)
        mixture_sum = mixture_sum + jnp.exp(state.log_policy)
        first_bad = jnp.where((first_bad < 0) & info.nonfinite, state.step, first_bad)
        largest = jnp.maximum(largest, log_ratio(games, state.log_policy))  # every iteration's, per context
        return state, mixture_sum, first_bad, info, largest

    def piece(carry, item):
        length = item[0]
        carry = jax.lax.fori_loop(0, length, one_iteration, carry)
        state, mixture_sum, _, info, largest = carry
        # Measured after every piece (the host keeps the rows of pieces that end at a recording): in a
        # cond, XLA compiles the metrics apart and rounds some differently (duality_gap's last bits).
        row = measure(state, mixture_sum, largest)
        row["distance_to_exact"] = info.distance_to_exact
        row["loss"] = info.loss
        row["inner_gradient"] = info.inner_gradient
        return carry, row

    out = {}
    if carry is None:
        state = start
        zero = jnp.zeros((), dtype)
        nan = jnp.asarray(jnp.nan, dtype)
        info0 = IterationInfo(nan, nan, jnp.zeros((), bool), nan)
        largest = log_ratio(games, state.log_policy)  # π_0's, per context
        carry = (state, jnp.exp(state.log_policy), jnp.asarray(-1, jnp.int32), info0, largest)
        out["first"] = measure(state, jnp.exp(state.log_policy), largest)
        out["first"]["distance_to_exact"] = jnp.asarray(jnp.nan, dtype) + zero
        out["first"]["loss"] = jnp.asarray(jnp.nan, dtype)
        out["first"]["inner_gradient"] = jnp.asarray(jnp.nan, dtype)
    items = tuple(jnp.asarray(values) for values in schedule)
    carry, out["rows"] = jax.lax.scan(piece, carry, items)
    out["seen"] = jnp.full(items[0].shape, -1, jnp.int32)
    out["final"] = jnp.exp(carry[0].log_policy)
    return carry, out


def simulate_sampled_grid(
    rule_name: str,
    fixed: dict,
    grid: dict,
    settings: Any,
    problems: Problem,
    problem_axes: Problem,
    keys: jax.Array,
    record_iterations: np.ndarray,
    progress: Callable[[int, int], object] | None = None,
    block_size: int | None = None,
    own: dict | None = None,
    point_axes: Problem | None = None,
    checkpoint: CheckpointScope | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """vmap :func:`simulate_sampled` over seeds (``keys`` (S, 2), batched problem leaves) and a grid.

    Args:
      rule_name: registry name.
      fixed: fixed (scalar) rule parameters.
      grid: swept parameter → array (G,); may be empty.
      settings: the ``[run]`` table (a :class:`sim.spec.RunSpec`).
      problems: a :class:`Problem` whose leaves are stacked over seeds where ``problem_axes`` is 0.
      problem_axes: a :class:`Problem` of 0 / None per leaf.
      keys: PRNG keys per seed, shape (S, 2).
      record_iterations: recorded iterations (start with 0).
      progress: called with ``(iterations done, T)`` between blocks when the run takes more than one.
      block_size: iterations per block; ``None``: :func:`block_iterations` of the run's size.
      own: rule parameter → its value per point (P,), for a group of points of a ``[game]`` sweep
        (:func:`sim.point_groups.run_sampled_rule_over_points`); ``None`` for a plain run.  With it
        ``problems`` are stacked over the points too, where ``point_axes`` is 0 (``problem_axes``: the
        seed axes within a point), and ``keys`` are (P, S, 2): the points run as one call, outermost
        (:func:`sim.shared_engine.compile_over_grid_and_seeds`), each with its own keys and its own copy
        of the grid holding its parameters (batched as the grid's values, not per seed), and the results
        hold point × seed on their seed axis (P·S, point-major).
      point_axes: a :class:`Problem` of 0 / None per leaf (with ``own``).
      checkpoint: where the run keeps its state between blocks and finds it again (:mod:`sim.checkpoint`).

    Like the exact engine (:func:`sim.trajectory.simulate_grid`) the run goes in blocks of at most
    ``block_size`` iterations, each one compiled call of :func:`simulate_sampled_block` on the carried
    state (:func:`sim.shared_engine.run_blocks`); a short run is one call, and the numbers do not
    depend on the block size.

    Returns:
      metrics: column → (G, S, R) NumPy;  first_nonfinite: (G, S).
    """
    names = None if own is None else tuple(sorted(own))
    grid_values = grid_arrays(grid)
    if names is not None:  # a group of points: the grid per point, with each point's own parameters in it
        count = len(next(iter(grid_values.values())))
        grid_values = {name: jnp.broadcast_to(v, (keys.shape[0], count)) for name, v in grid_values.items()}
        grid_values.update({name: jnp.repeat(jnp.asarray(own[name])[:, None], count, axis=1) for name in names})
    fixed_items, grid_names = tuple(sorted(fixed.items())), tuple(sorted(grid))
    run = _compiled(rule_name, fixed_items, grid_names, settings, problem_axes, names, point_axes)
    problems, keys, padded = shard_over_seeds(problems, problem_axes if point_axes is None else point_axes, keys)
    batch = int(keys.shape[0]) if point_axes is None else int(keys.shape[0] * keys.shape[1])
    kept = (keys.shape[0] - padded) * (batch // keys.shape[0])  # padded seeds (or points) are dropped
    if names is not None and padded:
        grid_values = {k: jnp.concatenate([v, jnp.repeat(v[-1:], padded, axis=0)]) for k, v in grid_values.items()}
    if block_size is None:
        points = int(next(iter(grid_values.values())).shape[-1])
        block_size = block_iterations(points, batch, settings, problems.log_initial.shape[-2:])
    arguments = (grid_values, problems, keys)
    carry, metrics, _, _ = shared_engine.run_blocks(
        run, arguments, record_iterations, block_size, progress, separate_start=True, checkpoint=checkpoint
    )
    metrics[FINAL_POLICY] = metrics.pop("final")
    return {k: np.asarray(v)[:, :kept] for k, v in metrics.items()}, np.asarray(carry[2])[:, :kept]


#: Work one sampled block may do, in the units of :data:`sim.trajectory.BLOCK_WORK`; an iteration of one
#: seed at one grid point counts inner_steps × (pairs + M·K) × :data:`SAMPLED_STEP_COST` (a step's
#: gradient touches every pair and every context's K logits) plus M·K² for the exact counterpart.
SAMPLED_BLOCK_WORK = 2e9
#: Rough multiply-adds per pair or logit of one inner step (forward, backward and the optimiser).
SAMPLED_STEP_COST = 32


def block_iterations(grid_points: int, seeds: int, settings: Any, contexts_arms: tuple) -> int:
    """Iterations per sampled block (at least 1): :data:`SAMPLED_BLOCK_WORK` over the work of one iteration."""
    contexts, arms = (int(n) for n in contexts_arms)
    pairs = int(settings.pairs_per_iteration)
    if settings.data == "offline":
        pairs = int(settings.offline_pairs or pairs)
    width = int(settings.mlp_width) if settings.policy == "mlp" else 1
    step = SAMPLED_STEP_COST * (pairs + contexts * arms) * width
    per_iteration = max(1, grid_points) * max(1, seeds) * (int(settings.inner_steps) * step + contexts * arms * arms)
    return max(1, int(SAMPLED_BLOCK_WORK // per_iteration))


def _compiled(rule_name, fixed_items, grid_names, settings, item_axes, names=None, point_axes=None):
    """The jitted grid × seeds block of the sampled run (:func:`simulate_sampled_block` through
    :func:`sim.shared_engine.compile_over_grid_and_seeds` with ``blocks=True``).  ``names``: the rule
    parameters each point of a group carries in its own copy of the grid (``point_axes``: the problems'
    axes over the points), ``None``: a plain run."""
    fixed = dict(fixed_items)

    def one(point, problem, key, carry, schedule):
        return simulate_sampled_block(
            rule_name, {**fixed, **point}, settings, problem, key, shared_engine.Schedule(*schedule), carry
        )

    key = ("sampled", rule_name, fixed_items, grid_names, settings)
    if names is not None:
        key = ("sampled-points", rule_name, fixed_items, grid_names, names, settings)
    return compile_over_grid_and_seeds(one, item_axes, key, blocks=True, point_axes=point_axes)
