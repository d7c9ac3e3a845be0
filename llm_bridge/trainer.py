"""Minimising a rule's loss on precomputed pairs: AdamW / RMSprop, gradient accumulation, mixed precision.

Only the policy is in memory: log π_ref and log π_t of every pair were computed before training
(:mod:`llm_bridge.loop`), so each step is one forward/backward pass over the pairs' winners and losers
(concatenated in one batch, like TRL's DPO trainer) — the same cost for every rule.

Optimiser steps see ``batch_size`` pairs, split into micro-batches of ``micro_batch_size``; the
micro-batch losses are Σ w_i ℓ_i / W_step with W_step the total weight of the step, so the accumulated
gradient is exactly that of the weighted mean over the step (equal to the plain mean for unit weights).

Several processes (Accelerate, DDP) train on the same pairs as one process would: ``batch_size`` is the
global number of pairs per optimiser step and the shuffle is global (seeded), so the steps are the same
for any number of processes; process r takes pairs r, r + P, … of each step, its micro-batch losses are
Σ_{its pairs} w_i ℓ_i / W_step (times P, since DDP averages the processes' gradients), and the gradients
are synchronised once per step (``no_sync`` for the other micro-batches).  No pair is dropped; the
logged step losses and token counts are summed over the processes.

Dropout is kept off (``model.eval()``) so that at the first step log π_θ equals the precomputed
log π_t.  The optimiser state is reset at the start of every iteration (each iteration is a new
training run from θ_t, as in the papers' pipelines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, is_finite_number, store_checked
from llm_bridge.generation import torch_seed
from llm_bridge.logprobs import sequence_logprobs
from llm_bridge.precision import Precision, check_trainable_precision, precision_for
from llm_bridge.rules import BridgeRule
from sim.stop_request import check_stop

if TYPE_CHECKING:
    from accelerate import Accelerator

OPTIMIZERS = ("adamw", "rmsprop", "sgd")
#: The integer fields of :class:`TrainingSpec` (each ≥ 1) and its real-valued ones.
COUNT_FIELDS = ("epochs", "batch_size", "micro_batch_size")
RATE_FIELDS = ("learning_rate", "weight_decay", "max_grad_norm", "eps", "rmsprop_alpha")


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """The ``[training]`` table."""

    optimizer: str = "adamw"
    """adamw, rmsprop (APO/SPPO's choice) or sgd."""
    learning_rate: float = 1e-5
    """Step size of the optimiser."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW) / L2 (RMSprop, SGD)."""
    epochs: int = 1
    """Passes over the iteration's pairs."""
    batch_size: int = 8
    """Pairs per optimiser step."""
    micro_batch_size: int = 8
    """Pairs per forward/backward pass (gradient accumulation = batch_size / micro_batch_size)."""
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this value (0 = no clipping)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (β₁, β₂)."""
    eps: float = 1e-8
    """AdamW / RMSprop ε (added to the root, outside the square root, in both)."""
    rmsprop_alpha: float = 0.99
    """RMSprop smoothing constant (decay of the squared-gradient average)."""
    bf16: bool = True
    """bf16 autocast on CUDA for a float32 model (ignored on CPU; ``model.dtype = "bfloat16"`` autocasts on both)."""

    def validate(self) -> None:
        """Raise a :class:`PrefsimError` naming the first field that is out of range or of the wrong type; then
        store the fields as the spec parser does (:func:`bandits.inputs.store_checked`)."""
        if self.optimizer not in OPTIMIZERS:
            raise PrefsimError(f"training.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}.")
        if not is_finite_number(self.learning_rate) or not self.learning_rate > 0:
            raise PrefsimError(f"training.learning_rate must be a finite number > 0, got {self.learning_rate!r}.")
        if not is_finite_number(self.eps) or not self.eps > 0:
            raise PrefsimError(
                f"training.eps must be a finite number > 0 (the optimiser's denominator term), got {self.eps!r}."
            )
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not is_finite_number(value) or value < 0:
                raise PrefsimError(f"training.{name} must be a finite number ≥ 0 (0 = off), got {value!r}.")
        betas = self.adam_betas
        if (
            not isinstance(betas, (tuple, list))
            or len(betas) != 2
            or not all(is_finite_number(beta) and 0 <= beta < 1 for beta in betas)
        ):
            raise PrefsimError(
                f"training.adam_betas must be two numbers in [0, 1), [β₁, β₂] such as [0.9, 0.999], got {betas!r}."
            )
        if not is_finite_number(self.rmsprop_alpha) or not 0 <= self.rmsprop_alpha < 1:
            raise PrefsimError(
                f"training.rmsprop_alpha must be a number in [0, 1) (such as 0.99), got {self.rmsprop_alpha!r}."
            )
        counts = {name: check_integer(getattr(self, name), f"training.{name}", 1) for name in COUNT_FIELDS}
        if self.batch_size % self.micro_batch_size:
            raise PrefsimError(
                f"training.batch_size ({self.batch_size}) must be a multiple of training.micro_batch_size "
                f"({self.micro_batch_size})."
            )
        rates = {name: float(getattr(self, name)) for name in RATE_FIELDS}
        store_checked(self, {**counts, **rates, "adam_betas": tuple(float(beta) for beta in betas)})


def make_optimizer(parameters: Iterable[torch.nn.Parameter], spec: TrainingSpec) -> torch.optim.Optimizer:
    """The torch optimiser of ``spec`` over ``parameters``."""
    parameters = [p for p in parameters if p.requires_grad]
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(
            parameters,
            lr=spec.learning_rate,
            betas=tuple(spec.adam_betas),
            eps=spec.eps,
            weight_decay=spec.weight_decay,
        )
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            parameters, lr=spec.learning_rate, alpha=spec.rmsprop_alpha, eps=spec.eps, weight_decay=spec.weight_decay
        )
    return torch.optim.SGD(parameters, lr=spec.learning_rate, weight_decay=spec.weight_decay)


@dataclasses.dataclass
class PairTensors:
    """The pairs of one iteration in the form the trainer reads (all lists/tensors indexed by pair)."""

    prompt_ids: list
    winner_ids: list
    loser_ids: list
    values: dict
    """``reference_w/l``, ``previous_w/l``, ``win_rate_w/l``, ``preference``, ``weight``: 1-D float64 tensors."""

    def __len__(self):
        return len(self.prompt_ids)


@dataclasses.dataclass
class TrainingStats:
    loss_first: float
    """Weighted mean loss of the first optimiser step (before it)."""
    loss_last: float
    """Weighted mean loss of the last optimiser step (before it)."""
    loss_mean: float
    """Mean of the step losses over the whole iteration."""
    steps: int
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def weighted_loss_sum(
    model: torch.nn.Module,
    data: PairTensors,
    index: list[int],
    rule: BridgeRule,
    pad_id: int,
    dtype: torch.dtype = torch.float32,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Σ_i w_i·ℓ_i over the pairs ``index`` of ``data``: one forward pass over their winners and losers.

    Divided by Σ_i w_i over all pairs it is the population loss for :func:`llm_bridge.pairs.population_pairs`.
    """
    device = next(model.parameters()).device
    prompts = [data.prompt_ids[i] for i in index]
    logps = sequence_logprobs(
        model,
        prompts + prompts,
        [data.winner_ids[i] for i in index] + [data.loser_ids[i] for i in index],
        pad_id,
        device=device,
        autocast=autocast,
    )
    count = len(index)
    batch = {"policy_w": logps[:count].to(dtype), "policy_l": logps[count:].to(dtype)}
    for key, value in data.values.items():
        batch[key] = value[index].to(device=device, dtype=dtype)
    return (batch["weight"] * rule.pair_loss(batch)).sum()


def _check_after_last_step(
    model: torch.nn.Module,
    data: PairTensors,
    index: list[int],
    rule: BridgeRule,
    spec: TrainingSpec,
    pad_id: int,
    dtype: torch.dtype,
    autocast: Callable[[], contextlib.AbstractContextManager] | None,
    accelerator: Accelerator | None,
    where: str,
) -> None:
    """Raise if the last optimiser step diverged: a trainable parameter is not finite, or the loss on the pairs
    ``index`` that step trained on (one no-grad forward pass) is not — huge but finite weights overflow the logits.

    The loss is checked before every step; this checks the result of the last one, before the caller saves it.
    Every process holds the same parameters and checks the same pairs, so all of them stop, or none.
    """
    policy = accelerator.unwrap_model(model) if accelerator is not None else model
    non_finite = [
        name for name, p in policy.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())
    ]
    if non_finite:
        trainable = sum(1 for p in policy.parameters() if p.requires_grad)
        what = (
            f"{len(non_finite)} of {trainable} trainable parameter tensors are not finite (NaN or inf; the first is "
            f"{non_finite[0]!r})"
        )
    else:
        with torch.no_grad():
            loss = weighted_loss_sum(policy, data, index, rule, pad_id, dtype, autocast)
        if bool(torch.isfinite(loss)):
            return
        what = f"the {rule.name} loss on its pairs is {loss.item()} (the logits overflow)"
    raise PrefsimError(
        f"{where}: the {rule.name} training diverged: after the last optimiser step {what}; the learning rate "
        f"{spec.learning_rate:g} is too large for this model: lower training.learning_rate or set "
        "training.max_grad_norm."
    )


def train_on_pairs(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: PairTensors,
    rule: BridgeRule,
    spec: TrainingSpec,
    pad_id: int,
    seed: int,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    description: str = "train",
    precision: Precision | None = None,
    on_step: Callable[[dict[str, float]], object] | None = None,
    where: str | None = None,
) -> TrainingStats:
    """Run ``spec.epochs`` passes of ``rule``'s weighted loss over ``data`` (shuffled with ``seed``).

    ``precision`` (:mod:`llm_bridge.precision`): autocast dtype and, for float16, dynamic loss scaling;
    by default bf16 autocast on CUDA when ``spec.bf16``.  The trainable weights must not be bfloat16 or
    float16 (float32 master weights; a clear error otherwise).  ``on_step``: called after every optimiser
    step with ``{"loss", "grad_norm", "learning_rate", "pairs", "iteration_fraction"}`` (the step's
    weighted mean loss before it, the global gradient norm before clipping, …) for experiment tracking.
    ``where``: the training run as error messages name it (the loop's "rule inpo, seed 3, iteration 2 (update
    π_1 → π_2)"); by default ``description``, the progress bar's label.  A non-finite loss before a step, or
    non-finite trainable parameters or loss after the last step, raise a :class:`PrefsimError` (before the
    caller saves anything).
    """
    where = where or description
    if len(data) == 0:
        raise PrefsimError(
            f"{where}: no training pairs (every tournament final lost, or every prompt's K responses one text under "
            "best_second_by_win_rate?); nothing to train on."
        )
    check_trainable_precision(model, description)
    model.eval()  # dropout off: the policy at step 0 equals the precomputed π_t
    optimizer.state.clear()
    device = next(model.parameters()).device
    float_dtype = next(p for p in model.parameters() if p.requires_grad).dtype
    if precision is None:
        precision = precision_for("float32", device.type, spec.bf16)
    autocast = precision.autocast
    scaler = precision.grad_scaler()

    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    generator = torch.Generator().manual_seed(torch_seed(seed))
    step_losses, tokens = [], 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps_per_epoch = -(-len(data) // spec.batch_size)
    bar = tqdm(total=spec.epochs * steps_per_epoch, desc=description, unit="step", disable=not progress, leave=False)
    start = time.perf_counter()
    for epoch in range(spec.epochs):
        order = torch.randperm(len(data), generator=generator).tolist()
        for first in range(0, len(order), spec.batch_size):
            check_stop()  # Ctrl-C / SIGTERM whose exception Python dropped (sim.stop_request): stop between steps
            step_index = order[first : first + spec.batch_size]
            # a step whose pairs all weigh 0 (population pairs with π(y)π(y′)P(y ≻ y′) = 0) has loss 0 and no
            # gradient, not 0 / 0; the optimiser still steps, as sampled mode's does on a batch of weight 0
            step_weight = float(data.values["weight"][step_index].sum()) or 1.0
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            # this process's share of the step, in micro-batches; every process runs as many micro-batches as
            # the largest share needs (DDP synchronises buffers at each forward and gradients at the last
            # backward), padding with one pair at factor 0 (no gradient, no logged loss) where it has fewer
            share = step_index[rank::world]
            micro_batches = [
                (share[m : m + spec.micro_batch_size], float(world))
                for m in range(0, len(share), spec.micro_batch_size)
            ]
            largest = -(-len(step_index) // world)
            micro_batches += [(step_index[:1], 0.0)] * (-(-largest // spec.micro_batch_size) - len(micro_batches))
            for number, (index, factor) in enumerate(micro_batches):
                loss = weighted_loss_sum(model, data, index, rule, pad_id, float_dtype, autocast) / step_weight
                if not torch.isfinite(loss):
                    overflow = (
                        "float16 compute overflowed: use model.dtype = bfloat16 or float32"
                        if precision.autocast_dtype is torch.float16
                        else "or log-probabilities overflowed"
                    )
                    raise PrefsimError(
                        f"{where}: the {rule.name} loss became {loss.item()} (learning rate "
                        f"{spec.learning_rate:g} too large, {overflow})."
                    )
                # DDP averages the processes' gradients: scaling by the number of processes makes it their sum
                scaled = loss * factor if world > 1 else loss
                scaled = scaler.scale(scaled) if scaler is not None else scaled
                if accelerator is None:
                    scaled.backward()
                else:
                    last = number == len(micro_batches) - 1  # gradients are synchronised once per step
                    with contextlib.nullcontext() if last else accelerator.no_sync(model):
                        accelerator.backward(scaled)
                if factor > 0:
                    step_loss += float(loss.detach())
                    tokens += sum(
                        2 * len(data.prompt_ids[i]) + len(data.winner_ids[i]) + len(data.loser_ids[i]) for i in index
                    )
            if world > 1:  # the step's weighted mean loss over all processes' pairs
                step_loss = float(accelerator.reduce(torch.tensor([step_loss], dtype=torch.float64, device=device)))
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = None
            if spec.max_grad_norm > 0:
                if accelerator is not None:
                    grad_norm = accelerator.clip_grad_norm_(trainable, spec.max_grad_norm)
                else:
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, spec.max_grad_norm)
            elif on_step is not None:
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in trainable if p.grad is not None])
            if scaler is not None:
                scaler.step(optimizer)  # skipped (and the scale halved) if a gradient overflowed
                scaler.update()
            else:
                optimizer.step()
            step_losses.append(step_loss)
            if on_step is not None:
                on_step(
                    {
                        "loss": step_loss,
                        "grad_norm": float(grad_norm),
                        "learning_rate": optimizer.param_groups[0]["lr"],
                        "pairs": len(step_index),
                        "iteration_fraction": (epoch * steps_per_epoch + first // spec.batch_size + 1)
                        / (spec.epochs * steps_per_epoch),
                    }
                )
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4g}")
    bar.close()
    optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    # the last step's first micro-batch: the same pairs on every process
    last_pairs = step_index[: spec.micro_batch_size]
    _check_after_last_step(model, data, last_pairs, rule, spec, pad_id, float_dtype, autocast, accelerator, where)
    if world > 1:
        tokens = int(accelerator.reduce(torch.tensor([tokens], dtype=torch.float64, device=device)))
    return TrainingStats(
        step_losses[0], step_losses[-1], sum(step_losses) / len(step_losses), len(step_losses), tokens, seconds
    )
