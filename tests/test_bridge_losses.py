"""Conformance: every torch loss of llm_bridge.losses equals its JAX twin in sim.rules, and the loss the
bridge trains on (BridgeRule.pair_loss) equals sampled mode's on the same pairs, for every bridge rule.

Values and gradients with respect to every input, on the same random vectors, float32 (1e-6) and
float64 (1e-12).  The inputs are scaled like summed response log-probabilities (tens of nats).
"""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bandits.oracles import PairBatch
from llm_bridge import losses as torch_losses
from llm_bridge.rules import build_bridge_rule
from sim.sampled.losses import pair_loss as sampled_pair_loss

# the modules, not the factories of the same name that sim.rules re-exports
jdno = importlib.import_module("sim.rules.dno")
jdpo = importlib.import_module("sim.rules.dpo")
jinpo = importlib.import_module("sim.rules.inpo")
jnash = importlib.import_module("sim.rules.nash_md")
jipo = importlib.import_module("sim.rules.online_ipo")
jsppo = importlib.import_module("sim.rules.sppo")

N = 64

# name: (JAX loss, torch loss, kinds of the array inputs in order, scalar hyper-parameters)
CASES = {
    "dpo": (jdpo.dpo_loss, torch_losses.dpo_loss, ["logp"] * 4, (0.3,)),
    "ipo": (jipo.ipo_loss, torch_losses.ipo_loss, ["logp"] * 4, (0.7,)),
    "inpo": (jinpo.inpo_loss, torch_losses.inpo_loss, ["logp"] * 6, (0.9, 0.3)),
    "sppo": (jsppo.sppo_loss, torch_losses.sppo_loss, ["logp", "logp", "prob"], (2.0,)),
    "sppo_code": (
        jsppo.sppo_code_loss,
        torch_losses.sppo_code_loss,
        ["logp", "logp", "prob", "logp", "logp", "prob"],
        (1.5,),
    ),
    "dno": (jdno.dno_loss, torch_losses.dno_loss, ["logp"] * 4 + ["margin"], (0.8,)),
    "nash_md_pg": (jnash.nash_md_pg_loss, torch_losses.nash_md_pg_loss, ["logp", "logp", "prob"], (0.2,)),
}

TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}


def _inputs(kinds, dtype, seed):
    rng = np.random.default_rng(seed)
    out = []
    for kind in kinds:
        if kind == "logp":
            # summed log-probs of responses: around −30 with pairwise differences of a few nats
            out.append((-30.0 + rng.normal(0.0, 2.0, N)).astype(dtype))
        elif kind == "prob":
            out.append(rng.uniform(0.0, 1.0, N).astype(dtype))
        else:
            out.append(rng.normal(0.0, 0.5, N).astype(dtype))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_loss_equals_jax_loss_values_and_gradients(name, dtype):
    jax_fn, torch_fn, kinds, scalars = CASES[name]
    arrays = _inputs(kinds, dtype, seed=len(name))
    n_in = len(arrays)

    def jax_total(*xs):
        return jnp.sum(jax_fn(*xs, *scalars))

    jax_values = np.asarray(jax_fn(*[jnp.asarray(a) for a in arrays], *scalars))
    jax_grads = jax.grad(jax_total, argnums=tuple(range(n_in)))(*[jnp.asarray(a) for a in arrays])
    assert jax_values.dtype == dtype

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    torch_values = torch_fn(*tensors, *scalars)
    assert torch_values.dtype == torch.from_numpy(arrays[0]).dtype
    torch_values.sum().backward()

    tol = TOLERANCE[dtype]
    scale = max(1.0, float(np.max(np.abs(jax_values))))
    np.testing.assert_allclose(torch_values.detach().numpy(), jax_values, rtol=tol, atol=tol * scale)
    for index, (tensor, jax_grad) in enumerate(zip(tensors, jax_grads)):
        jax_grad = np.asarray(jax_grad)
        torch_grad = tensor.grad.numpy() if tensor.grad is not None else np.zeros_like(jax_grad)
        gscale = max(1.0, float(np.max(np.abs(jax_grad))))
        np.testing.assert_allclose(
            torch_grad, jax_grad, rtol=tol, atol=tol * gscale, err_msg=f"{name}: gradient w.r.t. input {index}"
        )


def test_conformance_would_catch_a_wrong_target():
    """The check is not vacuous: INPO with target η/2 instead of 1/(2η) is detected."""
    arrays = [torch.tensor(a) for a in _inputs(["logp"] * 6, np.float64, 0)]
    eta, tau = 0.9, 0.3
    right = jinpo.inpo_loss(*[jnp.asarray(a.numpy()) for a in arrays], eta, tau)
    h = (arrays[0] - arrays[1]) - (tau / eta) * (arrays[2] - arrays[3]) - ((eta - tau) / eta) * (arrays[4] - arrays[5])
    wrong = (h - eta / 2.0) ** 2
    assert not np.allclose(wrong.numpy(), np.asarray(right), rtol=1e-6)
    np.testing.assert_allclose(torch_losses.inpo_loss(*arrays, eta, tau).numpy(), np.asarray(right), rtol=1e-12)


def test_nash_md_pg_gradient_ignores_the_advantage():
    """Stop-gradient: the gradient of the surrogate is −advantage w.r.t. log π(y) and 0 w.r.t. log π_ref."""
    policy = torch.tensor([-3.0, -5.0], dtype=torch.float64, requires_grad=True)
    reference = torch.tensor([-4.0, -4.0], dtype=torch.float64, requires_grad=True)
    preference = torch.tensor([0.9, 0.2], dtype=torch.float64)
    torch_losses.nash_md_pg_loss(policy, reference, preference, 0.1).sum().backward()
    expected = -(preference - 0.5 - 0.1 * (policy.detach() - reference.detach()))
    np.testing.assert_allclose(policy.grad.numpy(), expected.numpy(), rtol=1e-14)
    assert reference.grad is None or torch.all(reference.grad == 0)


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("online_ipo", {"tau": 0.7}),
        ("inpo", {"eta": 0.9, "tau": 0.3}),
        ("inpo", {"schedule": "theorem4", "tau": 0.3}),
        ("nash_md", {"eta": 0.5, "tau": 0.4}),
        ("sppo", {"eta": 1.5}),
        ("dno", {"eta": 0.8}),
        ("extragradient", {"eta": 0.6, "tau": 0.2}),
        ("optimistic", {"eta": 0.6, "tau": 0.2}),
        ("dpo", {"beta": 0.3}),
        ("apo", {"base": "inpo", "eta": 0.9, "tau": 0.3, "alpha": 0.4}),
        ("comal", {"tau": 0.2}),
        ("mnpo", {"eta": 0.9, "tau": 0.3, "history": 3}),
    ],
)
def test_the_bridges_training_loss_equals_sampled_modes_on_the_same_pairs(name, given):
    """The path training takes: BridgeRule.pair_loss (torch, the bridge's resolved parameters, the opponent
    flag, the iteration t) against sampled mode's sim.sampled.losses.pair_loss (JAX) on one batch of pairs of
    a random tabular policy, values and gradients w.r.t. log π in float64 (1e-12); a parameter passed
    differently in one mode (a wrapper's base parameters, COMAL's derived η, theorem4's t) fails here."""
    rule = build_bridge_rule(name, given, tau=0.2)
    step = 3
    rule = dataclasses.replace(rule, step=step)
    arms, pairs = 6, 40
    rng = np.random.default_rng(7)
    log_policy, log_previous, log_reference = (np.log(rng.dirichlet(np.ones(arms)))[None, :] for _ in range(3))
    first, second = rng.integers(0, arms, pairs), rng.integers(0, arms, pairs)
    win_first = rng.uniform(size=pairs)
    batch = PairBatch(
        jnp.zeros(pairs, jnp.int32), jnp.asarray(first), jnp.asarray(second), jnp.asarray(win_first),
        jnp.asarray(1 - win_first), jnp.ones(pairs),
    )  # fmt: skip
    prepare, evaluate = sampled_pair_loss(name, rule.parameters, "lambda_p")
    terms = prepare(jnp.asarray(log_previous), jnp.asarray(log_reference), batch, jnp.asarray(step))
    jax_value, jax_grad = jax.value_and_grad(evaluate)(jnp.asarray(log_policy), terms)

    policy = torch.tensor(log_policy[0], requires_grad=True)
    previous, reference = torch.tensor(log_previous[0]), torch.tensor(log_reference[0])
    rows, others = torch.tensor(first), torch.tensor(second)
    torch_batch = {
        "policy_w": policy[rows], "policy_l": policy[others],
        "previous_w": previous[rows], "previous_l": previous[others],
        "reference_w": reference[rows], "reference_l": reference[others],
        "win_rate_w": torch.tensor(win_first), "win_rate_l": torch.tensor(1 - win_first),
    }  # fmt: skip
    torch_value = rule.pair_loss(torch_batch).mean()
    torch_value.backward()
    np.testing.assert_allclose(torch_value.item(), float(jax_value), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(policy.grad.numpy(), np.asarray(jax_grad)[0], rtol=1e-10, atol=1e-14)
