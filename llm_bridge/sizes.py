"""What a bridge run holds at once, estimated from the parsed spec and the model's config before the weights load.

:func:`model_shape` reads the model's ``config.json`` (or a GGUF file's header) and builds the model on torch's
``meta`` device (no memory, no weights read) to count its parameters; :func:`run_size` turns the spec's counts into
bytes, and :func:`check_run_size` refuses (:class:`~bandits.errors.PrefsimError`, naming the fields that drive the
estimate) a run whose estimate exceeds the memory available, as :func:`sim.limits.check_memory` refuses a simulator
run; :func:`llm_bridge.loop.open_session` calls it after the tokenizer and before the model loads.

Notation: n = ``prompts.per_iteration``, K = a rule's ``samples``, T = ``generation.max_new_tokens``, p = the
longest prompt in tokens, L = p + T, B = ``generation.batch_size``, S = ``run.score_batch_size``, m =
``training.micro_batch_size``, H = held-out prompts; from the config h (hidden size), I (MLP width), ℓ (layers),
a (attention heads), c (key/value width: key/value heads × head size), V (vocabulary); W = all parameters, θ = the
trainable ones (the LoRA adapter's, or W); w, t, e = bytes per weight, per trainable parameter (float32 master
weights) and per activation (the autocast dtype's, else the weights').  A rule draws D = its stages' draws (2 for
extragradient and optimistic MD) of nK responses per iteration, and trains on at most nD pairs (one per prompt
and draw: every bridge pair scheme keeps at most one).

**Model** (the device's memory on CUDA, the host's on CPU): weights W·w, gradients θ·t, the optimiser's
moments (AdamW 2, RMSprop 1, SGD 0)·θ·t; the host also holds two copies of θ while another checkpoint is
swapped in (:class:`llm_bridge.models.swapped_weights`: the saved weights and the file read), two more for APO's
parameter form (θ̂_t and θ̂_{t+1}).

**Data of an iteration** (host, Python objects): the responses, D·nK of them, each T token ids (a list slot of
8 B, and a 32-byte int object for an id above 256: CPython caches the smaller ones) and its decoded text
(:data:`TEXT_BYTES_PER_TOKEN` a token); a record per pair (:data:`PAIR_BYTES`); the held-out samples of π_ref
and π_t (2H responses); while labelling, the oracle's K(K−1)/2 comparisons of one prompt (best/worst).

**Working memory of one phase** (the largest one counts, the phases run one after another):

* generation: the key/value cache B·L·ℓ·2c·e, the prompt's forward pass B·p·(:data:`FORWARD_HIDDEN`·h +
  :data:`FORWARD_MLP`·I + a·p)·e and the next-token logits B·V·4·:data:`GENERATION_LOGIT_COPIES`; Nash-MD's
  opponent doubles the cache and adds a copy of the model (W·w);
* scoring: S sequences of L tokens: their final hidden states S·L·h·e, one layer's forward pass as above, and a
  chunk of min(1024, S·T) response positions' logits (×2, float32);
* training: 2m sequences of L tokens (winner and loser of m pairs) keep, for the backward pass, per layer
  :data:`SAVED_HIDDEN`·h + :data:`SAVED_MLP`·I + a·L numbers a token (the attention probabilities), plus their
  response positions' logits (×3, float32: logits, log-softmax, gradient; a chunk of 1024 positions when more are
  checkpointed).

B, S and m count only as far as there are sequences to fill them (B ≤ nK, S ≤ 2nD, m ≤ min(batch_size, nD)).
``prefsim llm --predict`` adds the candidate game (M prompts × ``oversample``·K draws, the K×K preferences and the
oracle's table of them), the three engines' trajectories (T+1)·M·K per rule and the bootstrap's resamples × M
index matrix.  The constants were measured on the tiny models of :mod:`llm_bridge.tiny` (Llama and GPT-2,
tests/test_bridge_sizes.py: the training micro-batch's peak resident memory and the responses' Python objects
within a factor of 1.25 of the estimate); like :func:`sim.limits.memory_estimate` the estimate leaves out what does
not grow with the spec (the interpreter, torch and transformers themselves, a few hundred MB), so a run it refuses
cannot fit.

**Disk per iteration and rule**: the checkpoint θ·t (twice for APO's parameter form), ``pairs.jsonl`` and
``logprobs.jsonl`` (per pair two decoded responses and the prompt, :data:`PAIR_FILE_BYTES` of JSON), the held-out
samples' ``heldout.json`` and optimistic MD's ``carried.json`` (every response's ids and text).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bandits.errors import PrefsimError
from bandits.inputs import available_memory
from llm_bridge.logprobs import RESPONSE_CHUNK
from llm_bridge.models import LoraSpec, load_config
from llm_bridge.precision import precision_for

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from llm_bridge.spec import BridgeSpec

#: Bytes of a token id held in a Python list: the list's slot (8 B) and, for an id above CPython's cached small
#: integers (−5 … 256), its int object (28 B, a 32-byte block).
ID_SLOT_BYTES = 8
ID_OBJECT_BYTES = 32
CACHED_INTS = 257
#: Bytes of decoded text per response token (a str of ASCII characters: about 4 a token for BPE vocabularies, a
#: word and a space for the tiny models' word vocabulary; measured 6–8 there).
TEXT_BYTES_PER_TOKEN = 6
#: Python objects of one response besides its tokens: the headers of its id list and its str, their list slots.
RESPONSE_BYTES = 128
#: One labelled pair: the :class:`llm_bridge.pairs.Pair`, the loop's record dict of 12 entries and its floats.
PAIR_BYTES = 1600
#: One oracle comparison while a prompt's K responses are labelled (best/worst: index tuples, text slots, a float).
COMPARISON_BYTES = 160
#: Numbers a token per layer in a forward pass without gradient (normed input, q/k/v, attention output, residual)
#: in units of h, and of I (gate, up, their product).
FORWARD_HIDDEN = 8
FORWARD_MLP = 4
#: Numbers a token per layer that a forward pass with gradient keeps for the backward pass, in units of h and of I.
SAVED_HIDDEN = 10
SAVED_MLP = 5
#: float32 copies of a generation batch's next-token logits (the logits, the processors' and sampler's copies).
GENERATION_LOGIT_COPIES = 4
#: JSON bytes per pair in pairs.jsonl and logprobs.jsonl besides its texts (keys, numbers).
PAIR_FILE_BYTES = 400
#: JSON bytes of a token id (digits, comma, space).
ID_JSON_BYTES = 8
#: Python bytes of one entry of the candidate game's oracle table (tuple key, dict slot, float).
TABLE_ENTRY_BYTES = 200
OPTIMIZER_MOMENTS = {"adamw": 2, "rmsprop": 1, "sgd": 0}


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the estimate reads from a model's config (:func:`model_shape`)."""

    parameters: int
    """All parameters (the LoRA adapter included)."""
    trainable: int
    """The parameters the optimiser updates (the adapter's with LoRA, else all)."""
    hidden: int
    intermediate: int
    layers: int
    heads: int
    key_value_width: int
    """Key/value heads × head size: the numbers a token's key (or value) holds per layer in the cache."""
    vocabulary: int


def _first(config: PretrainedConfig, names: tuple, default: int | None = None) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def shape_of(config: PretrainedConfig, parameters: int, lora: LoraSpec | None = None, adapter: int = 0) -> ModelShape:
    """The :class:`ModelShape` of a transformers config with ``parameters`` parameters (the base model's) and a LoRA
    adapter of ``adapter`` parameters (when ``lora`` is given).  Fields a config names otherwise (GPT-2's ``n_embd``,
    ``n_layer``, ``n_head``, ``n_inner``) are read under those names; an absent MLP width is 4h, absent key/value
    heads are the attention heads."""
    hidden = _first(config, ("hidden_size", "n_embd", "d_model"), 1)
    heads = _first(config, ("num_attention_heads", "n_head"), 1)
    key_value_heads = _first(config, ("num_key_value_heads",), heads)
    head_size = _first(config, ("head_dim",), max(1, hidden // heads))
    return ModelShape(
        parameters=parameters + (adapter if lora is not None else 0),
        trainable=adapter if lora is not None else parameters,
        hidden=hidden,
        intermediate=_first(config, ("intermediate_size", "n_inner", "ffn_dim"), 4 * hidden),
        layers=_first(config, ("num_hidden_layers", "n_layer", "num_layers"), 1),
        heads=heads,
        key_value_width=key_value_heads * head_size,
        vocabulary=_first(config, ("vocab_size",), 1),
    )


def model_shape(
    path: str, lora: LoraSpec | None = None, config: PretrainedConfig | None = None
) -> tuple[ModelShape, PretrainedConfig]:
    """``(shape, config)`` of the model at ``path`` without loading its weights: the config
    (:func:`llm_bridge.models.load_config`, or ``config`` when already read; left unchanged) and the parameter
    count of the model built on the ``meta`` device (shapes only); with ``lora``, the adapter's r·(in + out) per
    targeted linear module (peft's matching: the module's name or its last component)."""
    from transformers import AutoModelForCausalLM

    config = load_config(path) if config is None else config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(copy.deepcopy(config))  # it may set fields of the config it builds
    parameters = sum(p.numel() for p in model.parameters())
    adapter = 0
    if lora is not None:
        targets = set(lora.target_modules)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and (name in targets or name.rsplit(".", 1)[-1] in targets):
                adapter += lora.r * (module.in_features + module.out_features)
    return shape_of(config, parameters, lora, adapter), config


def _bytes(name: str) -> int:
    return {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}[name]


def _id_bytes(shape: ModelShape) -> int:
    """Bytes of one token id in a Python list (:data:`ID_SLOT_BYTES`; ids above 256 add an int object)."""
    return ID_SLOT_BYTES + (ID_OBJECT_BYTES if shape.vocabulary > CACHED_INTS else 0)


def response_bytes(shape: ModelShape, responses: int, tokens: float) -> int:
    """Host bytes of ``responses`` generated responses of ``tokens`` tokens each: ids and decoded text."""
    return int(responses * (tokens * (_id_bytes(shape) + TEXT_BYTES_PER_TOKEN) + RESPONSE_BYTES))


def forward_bytes(shape: ModelShape, sequences: int, length: int, element: int) -> int:
    """One layer's working memory of a no-gradient forward pass over ``sequences`` × ``length`` tokens."""
    per_token = FORWARD_HIDDEN * shape.hidden + FORWARD_MLP * shape.intermediate + shape.heads * length
    return sequences * length * per_token * element


def training_bytes(shape: ModelShape, sequences: int, length: int, response: int, element: int) -> int:
    """What a forward pass with gradient over ``sequences`` × ``length`` tokens (``response`` of them scored per
    sequence) keeps for its backward pass: every layer's activations and the scored positions' logits."""
    per_token = SAVED_HIDDEN * shape.hidden + SAVED_MLP * shape.intermediate + shape.heads * length
    positions = sequences * response
    logits = min(positions, RESPONSE_CHUNK)  # all of them, or one checkpointed chunk at a time
    return sequences * length * shape.layers * per_token * element + 3 * logits * shape.vocabulary * 4


def training_model_bytes(shape: ModelShape, optimizer: str, weight: int, trainable: int) -> int:
    """Weights, gradients and the optimiser's moments."""
    return shape.parameters * weight + (1 + OPTIMIZER_MOMENTS[optimizer]) * shape.trainable * trainable


@dataclasses.dataclass(frozen=True)
class RunSize:
    """:func:`run_size`'s estimate: bytes by part."""

    host: dict
    """Host memory by part (the model's parts too on CPU)."""
    device: dict
    """CUDA memory by part (empty on CPU)."""
    disk: dict
    """Disk written per iteration of one rule, by file."""
    drivers: dict
    """Per part, the spec fields that drive it (for the refusal's message)."""

    @property
    def host_total(self) -> int:
        return sum(self.host.values())

    @property
    def device_total(self) -> int:
        return sum(self.device.values())


def run_size(
    spec: BridgeSpec, shape: ModelShape, prompt_tokens: int, device_type: str, predict: bool = False
) -> RunSize:
    """The run's peak memory (host, and device on CUDA) and disk per iteration (see the module docstring).

    ``prompt_tokens``: the longest prompt (training or held-out) in tokens, as the tokenizer encodes it;
    ``predict``: ``prefsim llm --predict`` (the candidate game instead of free samples)."""
    lora = spec.model.lora is not None
    precision = precision_for(spec.model.dtype, device_type, spec.training.bf16, lora=lora)
    weight = _bytes(precision.load_dtype)
    trainable = 8 if spec.model.dtype == "float64" else 4
    element = 2 if precision.autocast_dtype is not None else weight
    response = spec.sampling.max_new_tokens
    length = prompt_tokens + response
    heldout = len(spec.prompts.heldout)
    rules = [entry.rule for entry in spec.rules]
    if predict:
        prompts = min(spec.prediction.prompts, len(dict.fromkeys(spec.prompts.train)))
        per_prompt = spec.prediction.pairs_per_prompt
        draws = max(len(rule.stages) for rule in rules)
        pairs = prompts * per_prompt * draws
        responses = prompts * spec.prediction.oversample * spec.prediction.candidates
        samples = spec.prediction.candidates
    else:
        prompts = spec.prompts.per_iteration
        draws = max(len(rule.stages) for rule in rules)
        samples = max(rule.samples for rule in rules)
        pairs = prompts * draws
        responses = draws * prompts * samples
    generation_batch = max(1, min(spec.sampling.batch_size, max(prompts * samples, heldout, responses)))
    score_batch = max(1, min(spec.score_batch_size, max(2 * pairs, heldout, responses)))
    micro = max(1, min(spec.training.micro_batch_size, spec.training.batch_size, pairs))
    opponent = any(rule.opponent is not None for rule in rules)
    model = {
        "model": training_model_bytes(shape, spec.training.optimizer, weight, trainable),
    }
    kv = generation_batch * length * shape.layers * 2 * shape.key_value_width * element
    generation = (
        kv * (2 if opponent else 1)
        + forward_bytes(shape, generation_batch, prompt_tokens, element)
        + generation_batch * shape.vocabulary * 4 * GENERATION_LOGIT_COPIES
        + (shape.parameters * weight if opponent else 0)
    )
    scoring = (
        score_batch * length * shape.hidden * element
        + forward_bytes(shape, score_batch, length, element)
        + 2 * min(RESPONSE_CHUNK, score_batch * response) * shape.vocabulary * 4
    )
    training = training_bytes(shape, 2 * micro, length, response, element)
    working = {"generation": generation, "scoring": scoring, "training": training}
    phase = max(working, key=working.get)
    device = {**model, f"{phase} (largest phase)": working[phase]}
    copies = 2 + (2 if any(rule.form == "parameters" for rule in rules) else 0)
    comparisons = max((samples * (samples - 1) // 2 if rule.pairs != "lambda_p" else 1) for rule in rules)
    host = {
        "responses": response_bytes(shape, responses, response) + response_bytes(shape, 2 * heldout, response),
        "prompts": prompts * (prompt_tokens * _id_bytes(shape) + RESPONSE_BYTES),
        "pairs": pairs * PAIR_BYTES,
        "weight copies": copies * shape.trainable * trainable,
        "labelling": comparisons * COMPARISON_BYTES + samples * samples * 8,
    }
    if predict:
        iterations = spec.iterations + 1
        host["candidate game"] = prompts * samples * samples * (8 + TABLE_ENTRY_BYTES)
        host["trajectories"] = 3 * len(rules) * iterations * prompts * samples * 8
        host["bootstrap"] = 3 * spec.prediction.resamples * prompts * 8
    if device_type != "cuda":
        host, device = {**device, **host}, {}
    pair_text = 2 * response * TEXT_BYTES_PER_TOKEN + prompt_tokens * TEXT_BYTES_PER_TOKEN + PAIR_FILE_BYTES
    checkpoint = shape.trainable * trainable
    disk = {
        "checkpoint": checkpoint * (2 if any(rule.form == "parameters" for rule in rules) else 1),
        "pairs.jsonl": pairs * pair_text,
        "heldout.json": heldout * (response * TEXT_BYTES_PER_TOKEN + PAIR_FILE_BYTES),
    }
    if any(stage.carry for rule in rules for stage in rule.stages):
        disk["carried.json"] = prompts * samples * (response * (ID_JSON_BYTES + TEXT_BYTES_PER_TOKEN) + 64)
    gen_fields = "generation.batch_size, generation.max_new_tokens and the prompts' length"
    drivers = {
        "model": "the model's size, model.lora and training.optimizer",
        "generation (largest phase)": gen_fields,
        "scoring (largest phase)": "run.score_batch_size, generation.max_new_tokens and the prompts' length",
        "training (largest phase)": "training.micro_batch_size, generation.max_new_tokens and the prompts' length",
        "responses": (
            "prediction.prompts × prediction.oversample × prediction.candidates and generation.max_new_tokens"
            if predict
            else "prompts.per_iteration × the rules' samples and generation.max_new_tokens"
        ),
        "prompts": "prediction.prompts" if predict else "prompts.per_iteration",
        "pairs": "prediction.prompts × prediction.pairs_per_prompt" if predict else "prompts.per_iteration",
        "weight copies": "the model's size and model.lora",
        "labelling": "prediction.candidates" if predict else "the rules' samples",
        "candidate game": "prediction.prompts × prediction.candidates²",
        "trajectories": "iterations × prediction.prompts × prediction.candidates",
        "bootstrap": "prediction.resamples × prediction.prompts",
    }
    return RunSize(host, device, disk, drivers)


def work(spec: BridgeSpec) -> dict:
    """The work of the whole run, summed over rules and iterations: ``generations`` (responses sampled, each of at
    most ``generation.max_new_tokens`` tokens), ``scored`` (sequences scored without gradient: log π_t, log π_ref
    and the rule's other anchors of both members of every pair, and the held-out samples), ``trained`` (sequences
    through a forward and backward pass) and ``steps`` (optimiser steps).  Upper bounds: a tournament that drops a
    prompt's pair trains less."""
    heldout = len(spec.prompts.heldout)
    total = dict.fromkeys(("generations", "scored", "trained", "steps"), 0)
    for entry in spec.rules:
        rule = entry.rule
        draws = len(rule.stages)
        pairs = spec.prompts.per_iteration
        anchors = 2 + (1 if rule.form == "implicit_reference" else 0)
        total["generations"] += spec.iterations * (draws * pairs * rule.samples + heldout)
        total["scored"] += spec.iterations * (draws * 2 * pairs * anchors + 3 * heldout)
        total["trained"] += spec.iterations * draws * 2 * pairs * spec.training.epochs
        total["steps"] += spec.iterations * draws * spec.training.epochs * math.ceil(pairs / spec.training.batch_size)
    return total


def work_note(spec: BridgeSpec) -> str:
    """The progress line of :func:`work` (``prefsim llm`` prints it as the run starts)."""
    done = work(spec)
    rules = len(spec.rules)
    return (
        f"work: {spec.iterations} iteration(s) × {rules} rule(s): {done['generations']:,} responses generated (each "
        f"≤ {spec.sampling.max_new_tokens} tokens), {done['scored']:,} sequences scored, {done['trained']:,} trained "
        f"on in {done['steps']:,} optimiser steps"
    )


def _gib(value: float) -> str:
    return f"{value / 2**30:.3g} GiB"


def _parts(parts: dict) -> str:
    shown = sorted(((name, value) for name, value in parts.items() if value), key=lambda item: -item[1])
    return ", ".join(f"{name} {_gib(value)}" for name, value in shown)


def _refusal(where: str, parts: dict, available: int, drivers: dict) -> PrefsimError:
    largest = max(parts, key=parts.get)
    return PrefsimError(
        f"memory: this run needs at least {_gib(sum(parts.values()))} of {where} memory ({_parts(parts)}), but "
        f"{_gib(available)} is available; the largest part, {largest}, grows with {drivers.get(largest, largest)}: "
        "make them smaller (llm_bridge.sizes states the estimate)."
    )


def cuda_free_memory() -> int | None:
    """Bytes free on the current CUDA device (``torch.cuda.mem_get_info``), or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[0])


def check_run_size(
    spec: BridgeSpec,
    shape: ModelShape,
    prompt_tokens: int,
    device_type: str,
    out: Path | None = None,
    predict: bool = False,
    available_host: int | None = None,
    available_device: int | None = None,
    free_disk: int | None = None,
) -> RunSize:
    """Refuse a run whose :func:`run_size` exceeds the memory available (host: ``MemAvailable``,
    :func:`bandits.inputs.available_memory`; CUDA: the device's free memory), or one of whose iterations cannot be
    written to ``out``'s disk (one rule's files of one iteration and the reference checkpoint); returns the
    estimate.  The ``available_*`` and ``free_disk`` arguments replace what the machine reports (tests)."""
    size = run_size(spec, shape, prompt_tokens, device_type, predict)
    host = available_memory() if available_host is None else available_host
    if host is not None and size.host_total > host:
        raise _refusal("host", size.host, host, size.drivers)
    if device_type == "cuda":
        device = cuda_free_memory() if available_device is None else available_device
        if device is not None and size.device_total > device:
            raise _refusal("CUDA device", size.device, device, size.drivers)
    if free_disk is None and out is not None:
        existing = next((p for p in (Path(out), *Path(out).resolve().parents) if p.exists()), None)
        free_disk = shutil.disk_usage(existing).free if existing is not None else None
    needed = sum(size.disk.values()) + size.disk["checkpoint"]
    if free_disk is not None and not predict and needed > free_disk:
        raise PrefsimError(
            f"disk: one iteration of one rule writes about {_gib(needed)} ({_parts(size.disk)}, and the reference "
            f"checkpoint), but {str(out)!r} has {_gib(free_disk)} free; pairs.jsonl grows with prompts.per_iteration "
            "and generation.max_new_tokens, checkpoints with the model's size (model.lora trains an adapter only): "
            "free disk space or make them smaller."
        )
    return size


def memory_note(size: RunSize) -> str:
    """The progress line of :func:`run_size`'s estimate (``prefsim llm`` prints it before the model loads)."""
    host = available_memory()
    there = f", {_gib(host)} available" if host is not None else ""
    line = f"memory: at least {_gib(size.host_total)} of host memory needed{there}"
    if size.device:
        line += f"; at least {_gib(size.device_total)} of CUDA memory"
    return f"{line}; one iteration of a rule writes about {_gib(sum(size.disk.values()))} to disk"
