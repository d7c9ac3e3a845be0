"""Seed-last updates (sim.trajectory.simulate_seeds_block): on a CPU, for K ≤ SMALL_ARMS arms and a state
per seed, the updates run with the seed on the last axis of every array, so that a reduction over the
arms is element-wise work over rows of seeds.  The numbers equal the seed-first run (vmap of
simulate_block) up to rounding, for every rule, on a P per seed and on a shared P; a rule whose update
multiplies P itself runs seed-first; the compiled loop keeps P as it is; and a divergence is located
per seed as before."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sim.trajectory as trajectory
from bandits.games import GameSpec, build_game
from sim.experiment import run
from sim.game import Game, game_from_instance
from sim.rules import build_rule
from sim.shared_engine import COMPILED_RUNS, stack_over_seeds
from sim.trajectory import SeedsMinorView, keeps_seeds_minor, seeds_minor_layout

RULES = [
    {"name": "inpo", "label": "inpo_grid", "eta": [0.5, 2.0]},
    {"name": "inpo", "label": "inpo_theorem4", "schedule": "theorem4"},
    {"name": "mmd", "eta": 1.0},
    {"name": "nash_md", "eta": 0.2},
    {"name": "online_ipo"},
    {"name": "extragradient", "eta": 1.0},
    {"name": "optimistic", "eta": 0.5},
    {"name": "sppo", "eta": 0.2},
    {"name": "dno", "eta": 2.0},
    {"name": "comal"},
    {"name": "mpo", "eta": 1.0},
    {"name": "mnpo", "eta": 0.5},
    {"name": "apo", "base": "inpo", "eta": 0.5, "alpha": 0.3},
    {"name": "dpo", "beta": 0.5},
]
GAMES = {
    "per_seed_P": {"kind": "bradley_terry", "rewards": "random", "arms": 6, "tau": 0.1, "reference": "random"},
    "random_P": {"kind": "random", "arms": 5, "tau": 0.1, "reference": "random"},
    "shared_P": {"kind": "cyclic", "arms": 7, "strength": 1.0, "tau": 0.1, "initial": "random"},
}


def _table(game: dict, rules: list, seed_last: bool, monkeypatch) -> object:
    monkeypatch.setattr(trajectory, "seeds_minor_layout", (lambda arms: True) if seed_last else (lambda arms: False))
    spec = {"iterations": 40, "seeds": 5, "game": game, "rule": rules, "run": {"mode": "exact"}}
    return run(spec).sort_values(["rule", "seed", "iteration"]).reset_index(drop=True)


@pytest.mark.parametrize("game", list(GAMES))
def test_seed_last_updates_equal_the_seed_first_run_for_every_rule(game, monkeypatch):
    rules = [rule for rule in RULES if game == "per_seed_P" or rule["name"] != "dpo"]  # DPO needs BT rewards
    if game == "random_P":
        rules = rules[:6]  # the random-P case repeats a few rules on a game without rewards
    seed_last = _table(GAMES[game], rules, True, monkeypatch)
    seed_first = _table(GAMES[game], rules, False, monkeypatch)
    assert seed_last[["rule", "seed", "iteration"]].equals(seed_first[["rule", "seed", "iteration"]])
    columns = [c for c in seed_last.columns if seed_last[c].dtype.kind == "f"]
    last, first = seed_last[columns].to_numpy(), seed_first[columns].to_numpy()
    assert np.array_equal(np.isnan(last), np.isnan(first))
    np.testing.assert_allclose(last, first, rtol=1e-10, atol=1e-13)


def _view(name: str, parameters: dict, shared_preference: bool = False, seeds: int = 3, arms: int = 4):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(seeds, arms, arms))
    preference = 1.0 / (1.0 + np.exp(-(logits - np.swapaxes(logits, 1, 2))))
    log_reference = np.log(rng.dirichlet(np.ones(arms), size=seeds))
    game = Game(
        jnp.asarray(preference[0] if shared_preference else preference),
        jnp.asarray(log_reference),
        jnp.asarray(log_reference),
        jnp.zeros((seeds, arms)),
        jnp.asarray(0.1),
    )
    axes = Game(None if shared_preference else 0, 0, 0, 0, None)
    return SeedsMinorView(build_rule(name, parameters), game, axes)


def test_rules_that_multiply_P_themselves_run_seed_first():
    # INPO reads Pπ_t from the caller; Nash-MD multiplies P by its geometric mixture inside its update,
    # which vmap writes as a product with a batch dimension (XLA would copy P seed-first every update),
    # and with one P for every seed as a dot, around which XLA may lay the loop's arrays out seed-first
    for shared in (False, True):
        assert _view("inpo", {"eta": 0.5}, shared_preference=shared).keeps_layout()
        assert _view("sppo", {"eta": 0.2}, shared_preference=shared).keeps_layout()
        for name in ("nash_md", "extragradient", "optimistic"):
            assert not _view(name, {"eta": 0.2}, shared_preference=shared).keeps_layout()


def test_the_layout_check_flags_a_transposed_matrix_per_seed_and_a_product():
    rows = jnp.ones((3, 4))
    cubes = jnp.ones((3, 4, 5))
    assert keeps_seeds_minor(jax.make_jaxpr(lambda x: (x.T * 2.0).T)(rows).jaxpr)  # small transposes fold away
    assert not keeps_seeds_minor(jax.make_jaxpr(lambda x: jnp.moveaxis(x, 2, 0))(cubes).jaxpr)
    batched = jax.make_jaxpr(lambda a, b: jnp.einsum("sij,sj->si", a, b))(cubes[..., :4], rows)
    assert not keeps_seeds_minor(batched.jaxpr)
    assert not keeps_seeds_minor(jax.make_jaxpr(lambda a, b: a @ b)(rows[:, :3], rows).jaxpr)  # any dot
    inside_a_loop = jax.make_jaxpr(lambda x: jax.lax.fori_loop(0, 2, lambda _, y: jnp.moveaxis(y, 2, 0), x))
    assert not keeps_seeds_minor(inside_a_loop(jnp.ones((4, 4, 4))).jaxpr)


def test_the_seed_last_view_computes_the_products_and_the_update_of_every_seed():
    for shared in (False, True):
        view = _view("inpo", {"eta": 0.5}, shared_preference=shared)
        state = view.init()
        assert state.log_policy.shape == (4, 3) and state.step.shape == ()
        preference = np.asarray(view.games.preference)
        policy = np.asarray(state.policy)
        expected = [(preference if shared else preference[s]) @ policy[:, s] for s in range(3)]
        np.testing.assert_allclose(np.asarray(view.product(state)), np.stack(expected, axis=1), rtol=1e-14)
        after = view.update(state, None)
        rule = view.rule
        for s in range(3):
            game = jax.tree_util.tree_map(
                lambda leaf, axis, s=s: leaf if axis is None else leaf[s], view.games, view.game_axes
            )
            one = rule.update(rule.init(game), game)
            np.testing.assert_allclose(np.asarray(after.log_policy)[:, s], np.asarray(one.log_policy), rtol=1e-13)
        assert int(after.step) == 1


def test_the_compiled_loop_reads_each_P_where_it_lies(monkeypatch):
    # K = 10, 64 seeds, a P per seed: no seed-first copy of P ((64, 10, 10)) anywhere in the program
    monkeypatch.setattr(trajectory, "seeds_minor_layout", lambda arms: True)
    rng = np.random.default_rng(1)
    seeds, arms = 64, 10
    logits = rng.normal(size=(seeds, arms, arms))
    preference = 1.0 / (1.0 + np.exp(-(logits - np.swapaxes(logits, 1, 2))))
    log_reference = np.log(rng.dirichlet(np.ones(arms), size=seeds))
    games = Game(
        jnp.asarray(preference),
        jnp.asarray(log_reference),
        jnp.asarray(log_reference),
        jnp.zeros((seeds, arms)),
        jnp.asarray(0.1),
    )
    axes = Game(0, 0, 0, 0, None)
    COMPILED_RUNS.clear()
    make_rule = lambda point: build_rule("inpo", {"eta": 0.5})  # noqa: E731
    compiled = trajectory._compiled(make_rule, (), axes, "seeds-minor-hlo", arms=arms)
    targets = jnp.exp(jnp.stack([jnp.asarray(log_reference)] * 2, axis=1))
    schedule = tuple(jnp.asarray(a) for a in trajectory.whole_run_schedule(np.array([0, 5, 10])))
    text = compiled.lower({"__none__": jnp.zeros(1)}, games, targets, None, schedule).compile().as_text()
    per_device = seeds  # the arrays are not sharded here: one device holds every seed
    produced = [re.search(r"= (f64\[[0-9,]+\])\S* ([a-z-]+)\(", line) for line in text.splitlines()]
    produced = [(found.group(1), found.group(2)) for found in produced if found]
    moved = {"parameter", "get-tuple-element", "tuple", "bitcast"}
    # P seed-first is only ever read (the recordings' batched dots), never copied or transposed ...
    seed_first = (f"f64[{per_device},10,10]", f"f64[1,{per_device},10,10]")
    assert not [op for shape, op in produced if shape in seed_first and op not in moved]
    # ... and the updates multiply its seed-last copy (a fused multiply-and-sum over P's columns)
    assert (f"f64[10,10,{per_device}]", "multiply") in produced


def test_seed_last_layout_is_for_small_games_on_a_cpu():
    assert seeds_minor_layout(trajectory.SMALL_ARMS) == (jax.default_backend() == "cpu")
    assert not seeds_minor_layout(trajectory.SMALL_ARMS + 1)


def test_the_first_bad_iteration_of_each_seed_is_found_seed_last(monkeypatch):
    # DPO in float32 with β = 1e-37 overflows at iteration 35 on rewards (0, 1, 0.5) (tests/test_trajectory.py);
    # other rewards overflow at other iterations: each seed's first non-finite iteration is its own
    rewards = [[0.0, 1.0, 0.5], [0.0, 3.0, 0.5], [0.0, 0.2, 0.1]]
    games = [
        game_from_instance(build_game(GameSpec(kind="bradley_terry", rewards=r).validate()), jnp.float32)
        for r in rewards
    ]
    games, axes = stack_over_seeds(games)
    targets = jnp.asarray([[0.0, 1.0, 0.0]] * 3, jnp.float32)
    record = trajectory.default_record_iterations(60)
    found = {}
    for seed_last in (True, False):
        monkeypatch.setattr(trajectory, "seeds_minor_layout", lambda arms, seed_last=seed_last: seed_last)
        for block_size in (None, 7):
            metrics, first_bad = trajectory.simulate_grid(
                lambda point: build_rule("dpo", {"beta": 1e-37}),
                {},
                games,
                axes,
                targets,
                record,
                block_size=block_size,
            )
            found[seed_last, block_size] = first_bad.tolist(), metrics
    first_bad = found[True, None][0]
    assert first_bad[0][0] == 35 and len(set(first_bad[0])) > 1  # the seeds diverge at different iterations
    for key, (bad, metrics) in found.items():
        assert bad == first_bad, key
        for name, values in metrics.items():
            np.testing.assert_allclose(values, found[True, None][1][name], rtol=1e-5, err_msg=f"{key} {name}")
