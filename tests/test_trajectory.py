"""Trajectories and runs (sim/trajectory.py, sim/run.py): against plain NumPy loops and separate runs."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from exact_reference import best_response, kl, make_game, mirror_step, random_matrix, random_policy, regularised_nash

import sim
import sim.trajectory as trajectory
from bandits.errors import PrefsimError
from sim.game import Game
from sim.metrics import METRIC_COLUMNS
from sim.rules import build_rule
from sim.rules.extragradient import optimistic
from sim.shared_engine import options_key
from sim.trajectory import default_record_iterations, simulate

run_module = importlib.import_module("sim.experiment")

TAU = 0.2


def _numpy_policy_metrics(matrix, reference, target, p):
    """The metrics of policy ``p`` that apply to every game, written out in NumPy (τ = TAU)."""
    return {
        "duality_gap": 2 * TAU * kl(p, best_response(matrix, reference, TAU, p)),
        "exploitability": 2 * np.max(matrix @ p) - 1,
        "kl_to_nash": kl(target, p),
        "tv_to_optimum": 0.5 * np.abs(p - target).sum(),
        "max_log_ratio": np.abs(np.log(p / reference)).max(),
    }


def test_simulate_equals_a_plain_numpy_loop():
    matrix = random_matrix(4, seed=100)
    reference = random_policy(4, seed=101)
    initial = random_policy(4, seed=102, scale=2.0)
    target = regularised_nash(matrix, reference, TAU)
    record = np.array([0, 1, 2, 5, 9, 17, 40])
    eta = 0.9
    metrics, first_bad = jax.jit(lambda g, t: simulate(optimistic(eta=eta, tau=TAU), g, t, record))(
        make_game(matrix, reference, TAU, initial=initial), jnp.asarray(target)
    )
    assert int(first_bad) == -1
    # plain NumPy loop over iterations
    log_policy, leading = np.log(initial), np.log(initial)
    policies = [initial]
    for _ in range(40):
        leading = mirror_step(log_policy, np.log(reference), matrix @ np.exp(leading), eta, TAU)
        log_policy = mirror_step(log_policy, np.log(reference), matrix @ np.exp(leading), eta, TAU)
        policies.append(np.exp(log_policy))
    policies = np.array(policies)
    for index, t in enumerate(record):
        policy, mixture = policies[t], policies[: t + 1].mean(axis=0)
        for suffix, p in (("", policy), ("_mixture", mixture)):
            expected = _numpy_policy_metrics(matrix, reference, target, p)
            for name, value in expected.items():
                assert float(metrics[name + suffix][index]) == pytest.approx(value, rel=1e-9, abs=1e-13), (
                    name + suffix,
                    t,
                )
            assert np.isnan(float(metrics["suboptimality" + suffix][index]))
    assert metrics["duality_gap"].shape == (len(record),)


SWEEP_SPEC = {
    "iterations": 30,
    "seeds": [3, 8],
    "game": {"kind": "random", "arms": 4, "tau": TAU, "reference": "random", "reference_min_mass": 0.02},
    "rule": [{"name": "inpo", "eta": [0.5, 2.0]}],
}


@pytest.fixture(scope="module")
def swept_table():
    return sim.run(SWEEP_SPEC)


def test_vmapped_grid_equals_separate_runs(swept_table):
    assert sorted(set(swept_table["rule"])) == ["inpo[eta=0.5]", "inpo[eta=2]"]
    for eta, label in ((0.5, "inpo[eta=0.5]"), (2.0, "inpo[eta=2]")):
        alone = sim.run({**SWEEP_SPEC, "rule": [{"name": "inpo", "eta": eta}]})
        swept = swept_table[swept_table["rule"] == label].reset_index(drop=True)
        assert list(alone["seed"]) == list(swept["seed"]) and list(alone["iteration"]) == list(swept["iteration"])
        for column in METRIC_COLUMNS:
            np.testing.assert_allclose(swept[column], alone[column], rtol=1e-12, atol=1e-15, err_msg=column)
    # the two seeds are two different games, and the two η differ
    last = swept_table[swept_table["iteration"] == 30]
    assert last["duality_gap"].nunique() == 4


def test_recorded_iterations():
    record = default_record_iterations(1000)
    assert record[0] == 0 and record[-1] == 1000 and 3 in record
    assert np.all(np.diff(record) > 0)
    assert {1, 2, 3, 10, 12, 14, 17, 20, 25, 30, 100, 120, 500, 900}.issubset(set(record.tolist()))
    assert 11 not in record and len(record) < 50
    np.testing.assert_array_equal(default_record_iterations(5), [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(default_record_iterations(20, 7), [0, 7, 14, 20])
    np.testing.assert_array_equal(default_record_iterations(3, 1), [0, 1, 2, 3])


def test_run_records_the_requested_iterations(swept_table):
    assert sorted(set(swept_table["iteration"])) == default_record_iterations(30).tolist()
    table = sim.run({**SWEEP_SPEC, "seeds": 1, "record_every": 7, "rule": [{"name": "mmd", "eta": 1.0}]})
    assert table["iteration"].tolist() == [0, 7, 14, 21, 28, 30]


def test_float32_precision(swept_table):
    table = sim.run({**SWEEP_SPEC, "precision": "float32"})
    for column in METRIC_COLUMNS:
        assert table[column].dtype == np.float32, column
    for column in ("duality_gap", "kl_to_nash", "max_log_ratio", "exploitability"):
        np.testing.assert_allclose(table[column], swept_table[column], rtol=2e-3, atol=2e-5, err_msg=column)


def test_non_finite_policy_raises_naming_rule_seed_and_iteration():
    # float32, β = 1e-37: each DPO step moves the worst arm's log-probability by (r_max − r_min)/β = 1e37;
    # float32 overflows past 3.4028e38, i.e. at iteration ⌈3.4028e38/1e37⌉ = 35.
    spec = {
        "iterations": 50,
        "seeds": [4, 7],
        "precision": "float32",
        "game": {"kind": "bradley_terry", "rewards": [0.0, 1.0, 0.5]},
        "rule": [{"name": "dpo", "beta": [1.0, 1e-37]}],
    }
    with pytest.raises(PrefsimError) as info:
        sim.run(spec)
    message = str(info.value)
    assert "dpo[beta=1e-37]" in message and "seed 4" in message and "iteration 35" in message
    # the same step is representable in float64, so the run succeeds there
    table = sim.run({**spec, "precision": "float64"})
    assert np.isfinite(table["max_log_ratio"]).all()


# --------------------------------------------------------------------------- files, resume, manifest
RESUME_SPEC = {
    "iterations": 10,
    "seeds": 2,
    "game": {"kind": "cyclic", "arms": 3, "tau": TAU, "reference": [0.5, 0.3, 0.2]},
    "rule": [{"name": "inpo", "eta": 1.0}, {"name": "online_ipo"}],
}


def _counting_run_rule(monkeypatch):
    calls = []
    original = run_module.run_rule

    def counting(rule, *args, **kwargs):
        calls.append(rule.label)
        return original(rule, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_rule", counting)
    return calls


def test_out_directory_resume_and_manifest(tmp_path, monkeypatch):
    calls = _counting_run_rule(monkeypatch)
    out = tmp_path / "result"
    first = sim.run(RESUME_SPEC, out=out)
    assert calls == ["inpo", "online_ipo"]
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["inpo.csv", "online_ipo.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), first, check_dtype=False)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"] == RESUME_SPEC
    assert manifest["seeds"] == [0, 1]
    assert manifest["recorded_iterations"] == default_record_iterations(10).tolist()
    assert manifest["complete"] is True and manifest["seconds"] >= 0
    assert 0 <= manifest["target_duality_gap_max"] < 1e-12
    assert manifest["versions"]["jax"] == jax.__version__ and manifest["versions"]["numpy"] == np.__version__
    assert manifest["fingerprint"] == run_module.spec_fingerprint(sim.parse_spec(RESUME_SPEC))
    assert manifest["devices"] and "git_commit" in manifest

    # resume: nothing recomputed, identical table
    calls.clear()
    again = sim.run(RESUME_SPEC, out=out, resume=True)
    assert calls == []
    pd.testing.assert_frame_equal(again, first, check_dtype=False)

    # a lost part is recomputed, the other reused
    (out / "parts" / "online_ipo.csv").unlink()
    calls.clear()
    sim.run(RESUME_SPEC, out=out, resume=True)
    assert calls == ["online_ipo"]

    # without resume everything is recomputed
    calls.clear()
    sim.run(RESUME_SPEC, out=out)
    assert calls == ["inpo", "online_ipo"]

    # a changed spec invalidates the stored parts
    calls.clear()
    changed = {**RESUME_SPEC, "iterations": 12}
    table = sim.run(changed, out=out, resume=True)
    assert calls == ["inpo", "online_ipo"]
    assert table["iteration"].max() == 12


def test_done_criterion_inpo_reaches_the_regularised_nash_through_run():
    # The done-criterion through the whole pipeline: INPO with η = τ + 1/τ on random games
    # (a new P and π_ref per seed) ends with duality gap < 1e-10 and KL to π* at rounding level.
    table = sim.run(
        {
            "iterations": 1500,
            "seeds": 3,
            "game": {"kind": "random", "arms": 6, "tau": 0.2, "reference": "random", "reference_min_mass": 0.02},
            "rule": [{"name": "inpo", "eta": 0.2 + 1 / 0.2}],
        }
    )
    first, last = table[table["iteration"] == 0], table[table["iteration"] == 1500]
    assert len(last) == 3 and (first["duality_gap"] > 1e-3).all()
    assert (last["duality_gap"] < 1e-10).all()
    assert (last["kl_to_nash"] < 1e-14).all() and (last["kl_to_nash"] >= 0).all()
    assert (last["tv_to_optimum"] < 1e-10).all()


def test_fingerprint_follows_the_parsed_spec():
    fingerprint = run_module.spec_fingerprint
    parsed = sim.parse_spec(RESUME_SPEC)
    # an ExperimentSpec built in Python has no raw dict: it must still fingerprint its content
    built = sim.ExperimentSpec(iterations=parsed.iterations, seeds=parsed.seeds, game=parsed.game, rules=parsed.rules)
    assert fingerprint(built) == fingerprint(parsed)
    longer = sim.ExperimentSpec(iterations=11, seeds=parsed.seeds, game=parsed.game, rules=parsed.rules)
    assert fingerprint(longer) != fingerprint(built)
    # spelled-out defaults and cosmetic keys do not change results, so not the fingerprint either
    explicit = {**RESUME_SPEC, "precision": "float64", "description": "same experiment"}
    assert fingerprint(sim.parse_spec(explicit)) == fingerprint(parsed)
    other_game = {**RESUME_SPEC, "game": {**RESUME_SPEC["game"], "strength": 0.5}}
    assert fingerprint(sim.parse_spec(other_game)) != fingerprint(parsed)
    array_reference = sim.ExperimentSpec(
        iterations=10,
        seeds=(0, 1),
        rules=parsed.rules,
        game=sim.parse_spec(RESUME_SPEC).game.__class__(
            kind="cyclic", arms=3, tau=TAU, reference=np.array([0.5, 0.3, 0.2])
        ),
    )
    assert fingerprint(array_reference) == fingerprint(parsed)


def test_fast_finiteness_check_flags_the_recording_after_the_bad_step_and_locate_names_it():
    # Same overflow as above (DPO, float32, β = 1e-37: first non-finite log-policy at iteration 35).
    # The fast path only sums log-policies and tests the sum at recorded iterations (…, 30, 40, …), so
    # it reports 40; the per-step check that simulate_grid falls back to reports 35.
    from bandits.games import GameSpec, build_game
    from sim.game import game_from_instance

    game = game_from_instance(
        build_game(GameSpec(kind="bradley_terry", rewards=[0.0, 1.0, 0.5]).validate()), jnp.float32
    )
    rule = build_rule("dpo", {"beta": 1e-37})
    record = default_record_iterations(50)
    assert 30 in record and 40 in record and 35 not in record
    target = jnp.asarray([0.0, 1.0, 0.0], jnp.float32)
    _, fast = simulate(rule, game, target, record)
    _, exact = simulate(rule, game, target, record, locate_nonfinite=True)
    assert int(fast) == 40 and int(exact) == 35
    healthy = build_rule("dpo", {"beta": 1.0})
    assert int(simulate(healthy, game, target, record)[1]) == -1
    assert int(simulate(healthy, game, target, record, locate_nonfinite=True)[1]) == -1


def _run_with_xla_defaults(spec: dict, monkeypatch) -> pd.DataFrame:
    """``sim.run(spec)`` with no trajectory compiler options (XLA's defaults; patched for the rest of the
    test), the compiled runs cleared before and after it."""
    trajectory._COMPILED.clear()
    monkeypatch.setattr(trajectory, "compiler_options", lambda arms, dtype=None: None)
    table = sim.run(spec)
    trajectory._COMPILED.clear()
    return table


def test_small_games_compile_with_dot_only_ynn_fusion_and_give_the_same_numbers(monkeypatch):
    # K ≤ SMALL_ARMS gets XLA:CPU options (a speed choice); the numbers must not depend on it.
    options = trajectory.compiler_options(trajectory.SMALL_ARMS)
    if jax.default_backend() == "cpu" and trajectory._cpu_options_supported(
        options_key(trajectory.SMALL_ARMS_CPU_OPTIONS)
    ):
        assert options == trajectory.SMALL_ARMS_CPU_OPTIONS
    spec = {
        "iterations": 40,
        "seeds": 3,
        "game": {"kind": "random", "arms": 6, "tau": TAU},
        "rule": [{"name": "inpo", "eta": [0.5, 2.0]}, {"name": "nash_md", "eta": 0.5}],
    }
    tuned = sim.run(spec)
    plain = _run_with_xla_defaults(spec, monkeypatch)
    pd.testing.assert_frame_equal(tuned, plain, check_exact=False, rtol=1e-12, atol=1e-15)


def test_long_float64_rows_compile_without_the_tree_reduction_rewriter_and_give_the_same_numbers(monkeypatch):
    # Above SMALL_ARMS a float64 trajectory on a CPU sums its rows straight (one kernel per reduction,
    # not a reduce-window over windows of 32 and a reduce); float32 keeps XLA's pairwise-like sums.
    # on a CPU whose jaxlib knows the option (else XLA's defaults, as for the small games' options)
    on_cpu = jax.default_backend() == "cpu" and trajectory._cpu_options_supported(
        options_key(trajectory.LONG_ROWS_FLOAT64_CPU_OPTIONS)
    )
    expected = trajectory.LONG_ROWS_FLOAT64_CPU_OPTIONS if on_cpu else None
    assert trajectory.compiler_options(trajectory.SMALL_ARMS + 1, jnp.float64) == expected
    assert trajectory.compiler_options(100, jnp.float64) == expected
    assert trajectory.compiler_options(100, jnp.float32) is None
    spec = {
        "iterations": 60,
        "seeds": 3,
        "game": {"kind": "random", "arms": 70, "tau": TAU, "reference": "random"},
        "rule": [{"name": "inpo", "eta": 1.0}, {"name": "nash_md", "eta": 0.5}],
    }
    straight = sim.run(spec)
    if on_cpu:  # the compiled trajectory has no reduce-window: every row reduction is one reduce
        text = _compiled_inpo_trajectory(arms=70)
        assert " reduce(" in text and "reduce-window" not in text
    pairwise = _run_with_xla_defaults(spec, monkeypatch)
    if on_cpu:  # the check above can fail: XLA's default does split the rows
        assert "reduce-window" in _compiled_inpo_trajectory(arms=70)
    trajectory._COMPILED.clear()
    pd.testing.assert_frame_equal(straight, pairwise, check_exact=False, rtol=1e-11, atol=1e-14)


def _compiled_inpo_trajectory(arms: int, seeds: int = 3) -> str:
    """The optimised HLO text of INPO's float64 trajectory on a P per seed (sim.trajectory._compiled)."""
    preference = np.stack([random_matrix(arms, seed) for seed in range(seeds)])
    log_reference = jnp.log(jnp.full((seeds, arms), 1.0 / arms, jnp.float64))
    games = Game(jnp.asarray(preference), log_reference, log_reference, jnp.zeros((seeds, arms)), jnp.asarray(TAU))
    axes = Game(0, 0, 0, 0, None)
    run = trajectory._compiled(lambda point: build_rule("inpo", {"eta": 1.0}), (), axes, "rows", arms=arms)
    targets = jnp.exp(jnp.stack([log_reference] * 2, axis=1))
    schedule = tuple(jnp.asarray(a) for a in trajectory.whole_run_schedule(np.array([0, 5, 10])))
    return run.lower({"__none__": jnp.zeros(1)}, games, targets, None, schedule).compile().as_text()


def test_an_unknown_compiler_option_falls_back_to_xla_defaults(monkeypatch):
    monkeypatch.setattr(trajectory, "SMALL_ARMS_CPU_OPTIONS", {"xla_cpu_no_such_option_in_any_jaxlib": "1"})
    monkeypatch.setattr(trajectory, "LONG_ROWS_FLOAT64_CPU_OPTIONS", {"xla_cpu_no_such_option_either": "1"})
    trajectory._cpu_options_supported.cache_clear()
    try:
        assert trajectory.compiler_options(3) is None
        assert trajectory.compiler_options(100, jnp.float64) is None
    finally:
        monkeypatch.undo()
        trajectory._cpu_options_supported.cache_clear()


RULE_CASES = [
    ("inpo", {"eta": 1.0}),
    ("inpo", {"schedule": "theorem4"}),
    ("mmd", {}),
    ("nash_md", {}),
    ("sppo", {}),
    ("sppo", {"normaliser": "paper"}),
    ("dno", {}),
    ("online_ipo", {}),
    ("extragradient", {}),
    ("optimistic", {}),
    ("dpo", {}),
    ("apo", {"base": "inpo", "eta": 1.0}),
    ("apo", {"base": "sppo", "schedule": "nesterov"}),
    ("apo", {"base": "dpo"}),
]


@pytest.mark.parametrize(
    "name, given", RULE_CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in g.items())}" for n, g in RULE_CASES]
)
def test_every_rule_records_what_its_plain_updates_give(name, given):
    # The trajectory hands the product Pπ_t it computed for a recording to the next update
    # (ExactState.win_rates) and computes the metrics from π_t, log π_t and Pπ_t.  Against the rule's own
    # updates with nothing carried (iterate) and every metric written out again in NumPy.
    from exact_reference import bradley_terry_matrix, iterate

    from sim.rules import resolve_parameters

    bradley_terry = name in ("dpo", "apo")
    rewards = np.array([0.0, 1.0, -0.5, 0.4, 0.2])
    matrix = bradley_terry_matrix(rewards) if bradley_terry else random_matrix(5, seed=110)
    reference = random_policy(5, seed=111)
    game = make_game(
        matrix,
        reference,
        TAU,
        initial=random_policy(5, seed=112, scale=2.0),
        rewards=rewards if bradley_terry else None,
    )
    target = regularised_nash(matrix, reference, TAU)
    rule = build_rule(name, resolve_parameters(name, given, TAU))
    record = np.array([0, 1, 2, 3, 7, 12, 30])
    metrics, first_bad = jax.jit(lambda g, t: simulate(rule, g, t, record))(game, jnp.asarray(target))
    assert int(first_bad) == -1
    policies = np.exp(np.asarray(iterate(rule, game, int(record[-1]))))
    assert np.abs(policies[-1] - policies[0]).max() > 1e-3  # the rule moved
    for index, t in enumerate(record):
        policy, mixture = policies[t], policies[: t + 1].mean(axis=0)
        for suffix, p in (("", policy), ("_mixture", mixture)):
            expected = _numpy_policy_metrics(matrix, reference, target, p)
            if bradley_terry:
                expected["suboptimality"] = rewards.max() - p @ rewards
            for metric, value in expected.items():
                assert float(metrics[metric + suffix][index]) == pytest.approx(value, rel=1e-9, abs=1e-13), (
                    metric + suffix,
                    t,
                )
        if bradley_terry:
            regret = sum(rewards.max() - policies[s] @ rewards for s in range(t))
            assert float(metrics["regret"][index]) == pytest.approx(regret, rel=1e-9, abs=1e-13)


def test_column_product_rule_at_hand_points():
    # Columns from K = 512 on, for up to one policy per 8 arms (a speed choice; see shared_win_rates).
    from sim.trajectory import takes_column_product

    assert not takes_column_product(1, 511)
    assert takes_column_product(1, 512) and takes_column_product(64, 512) and not takes_column_product(65, 512)
    assert takes_column_product(125, 1000) and not takes_column_product(126, 1000)
    assert takes_column_product(250, 2000) and not takes_column_product(251, 2000)


def test_few_policies_on_a_large_shared_p_take_the_column_product_and_agree(monkeypatch):
    # shared_win_rates multiplies P by few policies of many arms as columns, (P·Πᵀ)ᵀ behind an
    # optimisation barrier; everything else as XLA's (N, K)·Pᵀ.  Both must give the same run.
    from sim.spec import parse_spec

    spec = {
        "iterations": 30,
        "seeds": 3,
        "game": {"kind": "cyclic", "arms": 600, "tau": 0.1, "initial": "random"},
        "rule": [{"name": "inpo", "eta": [0.5, 1.0]}, {"name": "extragradient"}, {"name": "apo", "base": "sppo"}],
    }
    games, game_axes, _, _ = run_module.build_games(parse_spec(spec), jnp.float64)
    assert game_axes.preference is None  # one P shared by the seeds
    policies = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (3, 600)))
    product = jax.jit(jax.vmap(lambda p: trajectory.shared_win_rates(games.preference, p[None])[0]))
    assert "optimization_barrier" in product.lower(policies).as_text()
    np.testing.assert_allclose(product(policies), policies @ games.preference.T, rtol=1e-13, atol=1e-15)
    columns = sim.run(spec)
    monkeypatch.setattr(trajectory, "MEMORY_BOUND_ARMS", 10**9)
    trajectory._COMPILED.clear()
    fresh = jax.jit(jax.vmap(lambda p: trajectory.shared_win_rates(games.preference, p[None])[0]))
    assert "optimization_barrier" not in fresh.lower(policies).as_text()
    rows = sim.run(spec)
    trajectory._COMPILED.clear()
    for column in METRIC_COLUMNS:
        np.testing.assert_allclose(columns[column], rows[column], rtol=1e-12, atol=1e-15, err_msg=column)
