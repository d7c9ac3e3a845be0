"""The outer loop: sample from π_t → label pairs → precompute log π_t, log π_ref → train → extrapolate → save.

For every ``[[rule]]`` of the spec, starting from π_0 = π_ref, iteration t = 0 … T−1 does

1. take the iteration's prompts (``per_iteration`` of them, cycling through ``prompts.train``) and sample
   K responses per prompt from π_t with HF ``generate`` (batched, left padding; :mod:`generation`);
2. build pairs with the rule's scheme and the oracle (:mod:`pairs`, :mod:`oracles`);
3. precompute log π_t(y|x) and log π_ref(y|x) of every pair member **once**, with the single model in
   memory (π_ref's weights are swapped in from ``reference/policy.safetensors`` for that pass); APO's
   implicit form also scores with π̂_{t−1} and shifts log π_t (:mod:`apo`);
4. minimise the rule's loss (:mod:`trainer`), which gives π̂_{t+1};
5. APO (parameter form): θ_{t+1} = θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t);
6. save ``<label>/iter_{t+1}/policy.safetensors`` (and ``proximal.safetensors`` for APO), evaluate π_{t+1}
   on the held-out prompts (:mod:`metrics`), append the row to ``<label>/metrics.csv`` and record
   ``<label>/state.json``.  A run interrupted at any point resumes (``resume=True``) from the last
   iteration whose state was recorded; seeds depend only on (spec seed, iteration, what the draw is for),
   so a resumed run equals an uninterrupted one.

Steps 1–4 run once per stage of the rule's definition (:mod:`llm_bridge.stages`): extragradient's full
step samples from the half-step policy and optimistic MD's leading step trains on the pairs its previous
main step drew (``iter_XXX/carried.json``; at a reference advance, where the rule restarts, it draws anew
from π_t); every stage trains from θ_t, read back from its checkpoint.
A rule whose definition names an opponent (Nash-MD) samples its second response from it, token by token
(:class:`llm_bridge.generation.GeometricMixture`).

Every rule sees the same seeds (common random numbers): iteration 0 draws the same samples for all.  Each
draw has a stream of its own, seeded by hashing (spec seed, iteration, purpose, stage, prompt or batch)
(:func:`llm_bridge.seeds.stream_seed`), so no two draws share one.
Distributed runs go through Accelerate (on CPU: ``accelerate launch --multi_gpu --num_processes P``,
gloo) and give the same samples, pairs and steps for any number of processes: generation batches are
seeded by their global index and shared out (:func:`_generate_global`), each prompt's labels come from
its own random stream, precomputation is split by prompt, and the gathered pairs are trained on in
global steps of ``batch_size`` pairs that the processes share (:func:`llm_bridge.trainer.train_on_pairs`;
DDP via ``accelerator.prepare``).  Every iteration checks that the processes hold identical parameters
(``iter_XXX/ranks.json``); only the main process writes files, and only it holds ``out``'s lock
(:func:`sim.results_io.output_lock`, for the whole run: a second run into the directory is refused at once).
The manifest records what computes the run (:mod:`llm_bridge.provenance`: the SHA-256 of the bridge's source
files, versions, git commit and dirty flag, the SHA-256 of the model's files); ``--resume`` refuses other model
weights, another shard, and other source files or package versions than any start of the run recorded
(unless ``allow_other_code``: ``--allow-other-code``, recorded in the start's ``resumed`` entry).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from bandits.errors import PrefsimError, describe_os_error
from llm_bridge import apo as apo_forms
from llm_bridge.generation import Generated, GeometricMixture, check_sequence_length, encode_prompts, generate
from llm_bridge.logprobs import batched_sequence_logprobs
from llm_bridge.metrics import COLUMNS, mean_with_interval
from llm_bridge.models import (
    add_lora,
    assign_weights,
    export_pretrained,
    load_causal_lm,
    load_config,
    load_tokenizer,
    read_weights,
    save_state,
    save_weights,
    swapped_weights,
    trainable_state,
)
from llm_bridge.oracles import build_oracle
from llm_bridge.pairs import Pair, build_pairs, opponent_pairs
from llm_bridge.plot import plot_curves, png_bytes
from llm_bridge.precision import Precision, precision_for
from llm_bridge.provenance import changed_models, run_provenance, starts
from llm_bridge.reporting import Reporter, make_reporter
from llm_bridge.rules import surrogate_note
from llm_bridge.run_layout import (
    CURVES_FIGURE,
    MANIFEST_FILE,
    METRICS_FILE,
    REFERENCE_DIR,
    TENSORBOARD_DIR,
    WIN_RATE_FIGURE,
)
from llm_bridge.seeds import Purpose, stage_stream, stream_seed
from llm_bridge.sizes import check_run_size, memory_note, model_shape, work_note
from llm_bridge.spec import BridgeSpec, RuleEntry, changed_prompt_files
from llm_bridge.stages import run_stages
from llm_bridge.trainer import PairTensors, make_optimizer, train_on_pairs
from sim.provenance import code_differences
from sim.results_io import LOCK_NAME, json_bytes, output_lock, read_json_object, write_files_atomic
from sim.rules import base_parameters, rule_info
from sim.rules.reference import anchor_iteration, steps_since_advance
from sim.stop_request import check_stop
from sim.win_rate import plot_win_rate

if TYPE_CHECKING:
    import pandas as pd
    from accelerate import Accelerator


@dataclasses.dataclass
class Session:
    """What one bridge run holds in memory: the one model, its tokenizer, the oracle, Accelerate."""

    spec: BridgeSpec
    out: Path
    model: torch.nn.Module
    """The (possibly DDP-wrapped) model trained by the optimiser."""
    tokenizer: object
    oracle: object
    accelerator: object
    optimizer: torch.optim.Optimizer
    progress: bool
    precision: Precision | None = None
    """Master-weight dtype and autocast (:mod:`llm_bridge.precision`); None: as ``training.bf16`` says."""
    reporter: Reporter = dataclasses.field(default_factory=Reporter)
    """Experiment tracking (``[run] report_to``; :mod:`llm_bridge.reporting`), set by :func:`run_bridge`."""

    @property
    def policy(self) -> torch.nn.Module:
        """The unwrapped model (generation, scoring, checkpoints)."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def autocast(self) -> Callable[[], torch.autocast] | None:
        """Context-manager factory for every forward pass (generation, scoring, training), or None."""
        precision = self.precision or precision_for("float32", self.accelerator.device.type, self.spec.training.bf16)
        return precision.autocast


def make_accelerator(device: str) -> Accelerator:
    """Accelerate's handle: CPU when asked (or when no CUDA), else the launcher's / the first GPU.

    On CPU, ``Accelerator(cpu=True)`` is what turns the processes of ``accelerate launch --multi_gpu
    --num_processes P`` into one gloo process group (``--cpu`` starts a single process).
    """
    from accelerate import Accelerator

    if device == "cuda" and not torch.cuda.is_available():
        raise PrefsimError('model.device = "cuda" but torch sees no CUDA device; use "auto" or "cpu".')
    return Accelerator(cpu=device == "cpu" or (device == "auto" and not torch.cuda.is_available()))


def open_session(
    spec: BridgeSpec,
    out: str | Path,
    progress: bool = True,
    accelerator: Accelerator | None = None,
    predict: bool = False,
) -> Session:
    """Load the model (once) and the oracle; wrap for training with Accelerate.

    Before the weights load, the model's config and the tokenized prompts refuse a run that cannot fit: prompts
    and ``max_new_tokens`` beyond the model's positions (:func:`llm_bridge.generation.check_sequence_length`), a
    memory or disk estimate beyond what the machine has (:func:`llm_bridge.sizes.check_run_size`; ``predict``:
    the sizes of ``prefsim llm --predict``)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    accelerator = accelerator or make_accelerator(spec.model.device)
    config = load_config(spec.model.path)  # read once: the tokenizer, the estimate and the weights' load share it
    tokenizer = load_tokenizer(spec.model.path, config)
    precision = precision_for(
        spec.model.dtype, accelerator.device.type, spec.training.bf16, lora=spec.model.lora is not None
    )
    shape, _ = model_shape(spec.model.path, spec.model.lora, config)
    longest = 0
    for where in ("train", "heldout"):
        prompts = list(dict.fromkeys(getattr(spec.prompts, where)))
        prompt_ids = encode_prompts(tokenizer, prompts, spec.prompts.chat_template)
        check_sequence_length(config, prompt_ids, spec.sampling.max_new_tokens, f"prompts.{where}")
        longest = max([longest, *map(len, prompt_ids)])
    size = check_run_size(spec, shape, longest, accelerator.device.type, Path(out), predict=predict)
    if progress and accelerator.is_main_process:
        print(memory_note(size), flush=True)
    model = load_causal_lm(spec.model.path, precision.load_dtype, config)
    if spec.model.lora is not None:
        model = add_lora(model, spec.model.lora)
    model.to(accelerator.device)
    model.eval()
    oracle = build_oracle(
        spec.oracle.kind, scale=spec.oracle.scale, path=spec.oracle.path, function=spec.oracle.function
    )
    optimizer = make_optimizer(model.parameters(), spec.training)
    model, optimizer = accelerator.prepare(model, optimizer)
    return Session(
        spec,
        Path(out),
        model,
        tokenizer,
        oracle,
        accelerator,
        optimizer,
        progress and accelerator.is_main_process,
        precision,
    )


def run_bridge(
    spec: BridgeSpec,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    session: Session | None = None,
    shard: dict | None = None,
    allow_other_code: bool = False,
) -> pd.DataFrame:
    """Run every rule of ``spec`` into ``out``; returns the metrics of all rules as a DataFrame.  ``shard``:
    the manifest entry of a shard (:func:`llm_bridge.shards.shard_record`; ``spec`` then holds its rules).
    ``allow_other_code`` (``--allow-other-code``): resume a run that other code (source files, package
    versions) started or resumed, with a warning, recording the differences in this start's ``resumed`` entry.

    The main process holds ``out``'s lock (:func:`sim.results_io.output_lock`) from before ``out`` is
    checked until the run ends: a second run into the directory is refused at once, naming the process
    that holds it.
    """
    out = Path(out)
    accelerator = session.accelerator if session is not None else make_accelerator(spec.model.device)
    with contextlib.ExitStack() as held:
        current = _start(spec, out, resume, shard, accelerator, held, allow_other_code)
        session = session or open_session(spec, out, progress, accelerator)
        if session.main:
            manifest = _resumed_manifest(out, current, accelerator.num_processes) if resume else None
            manifest = manifest or {**_manifest(spec, current, accelerator.num_processes), **_shard_entry(shard)}
            write_files_atomic({out / MANIFEST_FILE: json_bytes(manifest)})
        return _run_rules(session)


def _start(
    spec: BridgeSpec,
    out: Path,
    resume: bool,
    shard: dict | None,
    accelerator,
    held: contextlib.ExitStack,
    allow_other_code: bool = False,
) -> dict:
    """On the main process: take ``out``'s lock (in ``held``), check ``out`` (:func:`_check_out`: what needs
    no model hash), then record what computes the run (:func:`llm_bridge.provenance.run_provenance`: hashing
    the model, only once those checks pass) and, resuming, compare it with the run's (:func:`_check_resumed`).
    Returns the record, on every process; a failure on the main process is raised on every process."""
    _check_foreign(out)  # before the lock file is made in a directory that is not a run's
    failure, current = None, None
    if accelerator.is_main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            held.enter_context(output_lock(out))
            record = _check_out(spec, out, resume, shard)
            current = run_provenance(spec)
            if record is not None:
                current = _check_resumed(out, record, current, allow_other_code)
        except PrefsimError as exc:
            failure = str(exc)
        except OSError as exc:
            failure = f"--out {str(out)!r}: {describe_os_error(exc)}"
    failure, current = _from_main(accelerator, (failure, current))
    if failure is not None:
        raise PrefsimError(failure)
    return current


def _from_main(accelerator, value):
    """``value`` as the main process holds it, on every process."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _shard_entry(shard: dict | None) -> dict:
    return {"shard": shard} if shard else {}


def _run_rules(session: Session) -> pd.DataFrame:
    """Every rule of the session's spec, then the run's ``metrics.csv`` and figures."""
    import pandas as pd

    spec, out = session.spec, session.out
    if session.progress:
        print(work_note(spec), flush=True)
        print(checkpoint_note(spec, checkpoint_bytes(session.policy)), flush=True)
        for entry in spec.rules:  # Nash-MD-PG: what training its loss for the epochs reaches
            note = surrogate_note(entry.label, entry.rule)
            if note is not None:
                print(f"note: {note}", flush=True)
    _prepare_reference(session)
    session.reporter = make_reporter(spec.report_to, out / TENSORBOARD_DIR, session.main)
    frames = []
    try:
        for entry in spec.rules:
            frames.append(run_rule(session, entry))
    finally:
        session.reporter.close()
    table = pd.concat(frames, ignore_index=True)
    if session.main:
        write_files_atomic(
            {
                out / METRICS_FILE: table.to_csv(index=False).encode(),
                out / WIN_RATE_FIGURE: png_bytes(lambda path: plot_win_rate(table, path)),
                out / CURVES_FIGURE: png_bytes(lambda path: plot_curves(table, out, path)),
            }
        )
    return table


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Bytes of one checkpoint: the trainable parameters that :func:`save_weights` writes."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def _size(value: float) -> str:
    """Bytes in the largest binary unit that keeps a nonzero integer part: KB below 1 MiB (a tiny model's
    checkpoint read "0 MB"), MB below 1 GiB, GB with one decimal above."""
    if value < 2**20:
        return f"{value / 2**10:.0f} KB"
    return f"{value / 2**20:.0f} MB" if value < 2**30 else f"{value / 2**30:.1f} GB"


def checkpoint_note(spec: BridgeSpec, each: int) -> str:
    """What the run will keep on disk: one checkpoint per iteration and rule (two for APO's parameter form,
    whose proximal weights are kept as well), all of them with ``keep_checkpoints = 0``, else per rule the
    last ``keep_checkpoints``, or the last ``history`` where a rule's loss reads more (MNPO), and the
    reference advancement's anchor (:func:`_prune`)."""
    total = each
    for entry in spec.rules:
        files = 2 if entry.rule.form == "parameters" else 1
        kept = max(spec.keep_checkpoints, checkpoints_read(entry)) + 1
        total += each * files * (spec.iterations if spec.keep_checkpoints <= 0 else min(spec.iterations, kept))
    note = f"checkpoints: {_size(each)} each (the trainable weights); this run keeps up to {_size(total)}"
    also = "and more where a rule reads them: MNPO's last `history` iterates, the reference advancement's anchor"
    if spec.keep_checkpoints <= 0:
        return f"{note} (every iteration of every rule; [run] keep_checkpoints = 2 keeps the last two per rule, {also})"
    return (
        f"{note} ([run] keep_checkpoints = {spec.keep_checkpoints}: the last {spec.keep_checkpoints} per rule, {also})"
    )


def checkpoints_read(entry: RuleEntry) -> int:
    """How many of its latest iterates' checkpoints a rule's loss reads: MNPO's ``history`` m (π_t … π_{t−m+1}),
    else 1 (π_t)."""
    history = rule_info(entry.rule.base).data.history
    return 1 if history is None else history.length(base_parameters(entry.rule.name, entry.rule.parameters))


# --------------------------------------------------------------------------------------------- reference


def _prepare_reference(session: Session) -> None:
    """θ_0 checkpoint, π_ref's held-out responses, and the row of π_0 (shared by every rule)."""
    spec, out = session.spec, session.out
    directory = out / REFERENCE_DIR
    done = directory / "row0.json"
    if done.is_file():
        return
    if session.main:
        save_weights(session.policy, directory / "policy.safetensors")
    session.accelerator.wait_for_everyone()
    heldout_ids = encode_prompts(session.tokenizer, list(spec.prompts.heldout), spec.prompts.chat_template)
    seed = stream_seed(spec.seed, 0, Purpose.REFERENCE)
    reference = _generate_sharded(session, heldout_ids, 1, seed, "π_ref held-out")
    texts = [r[0] for r in reference["texts"]]
    rewards = session.oracle.rewards(list(spec.prompts.heldout), texts)
    record = {
        "prompt_ids": heldout_ids,
        "response_ids": [r[0] for r in reference["ids"]],
        "texts": texts,
        "rewards": None if rewards is None else rewards.tolist(),
    }
    if session.main:
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / "heldout.json", json.dumps(record))
    row, heldout = _evaluate(session, record, iteration=0, previous=None)
    if session.main:
        _write_atomic(directory / "heldout_policy_000.json", json.dumps(heldout))
        _write_atomic(done, json.dumps(row))
    session.accelerator.wait_for_everyone()


def _reference_record(out: Path) -> dict:
    return json.loads((out / REFERENCE_DIR / "heldout.json").read_text())


# --------------------------------------------------------------------------------------------- one rule


def run_rule(session: Session, entry: RuleEntry) -> pd.DataFrame:
    """All iterations of one rule (resuming after the last recorded one)."""
    import pandas as pd

    spec, out = session.spec, session.out
    rule_dir = out / entry.label
    state_file = rule_dir / "state.json"
    metrics_file = rule_dir / "metrics.csv"
    finished = json.loads(state_file.read_text())["finished"] if state_file.is_file() else 0
    if finished == 0:
        assign_weights(session.policy, read_weights(out / REFERENCE_DIR / "policy.safetensors"))
        if session.main:
            rule_dir.mkdir(parents=True, exist_ok=True)
            row = json.loads((out / REFERENCE_DIR / "row0.json").read_text())
            row["rule"] = entry.label
            table = pd.DataFrame([row], columns=list(COLUMNS))
            session.reporter.start_rule(entry.label, 0, 0)
            session.reporter.log_iteration(entry.label, table.iloc[0].to_dict())
            _write_atomic(metrics_file, table.to_csv(index=False))
    else:
        assign_weights(session.policy, read_weights(_checkpoint(out, entry.label, finished)))
        if session.main:
            # rows of an iteration whose state was never recorded (killed between the two writes) are redone;
            # columns added since an older prefsim wrote the rows take their place, NaN (not measured) in them
            table = pd.read_csv(metrics_file)
            table = table.reindex(columns=[*COLUMNS, *(c for c in table.columns if c not in COLUMNS)])
            table = table[table["iteration"] <= finished]
            steps = table["optimizer_steps"] if "optimizer_steps" in table else pd.Series(dtype=float)
            session.reporter.start_rule(entry.label, finished, int(steps.fillna(0).sum()))
    for iteration in range(finished, spec.iterations):
        check_stop()  # a stop whose exception Python dropped ends the run here, at a committed iteration
        row = _update(session, entry, iteration)
        if session.main:
            # commit: the table with the new row replaces metrics.csv, then state.json records it (both atomic)
            table = pd.concat([table, pd.DataFrame([row], columns=list(COLUMNS))], ignore_index=True)
            session.reporter.log_iteration(entry.label, table.iloc[-1].to_dict())
            _write_atomic(metrics_file, table.to_csv(index=False))
            _write_atomic(state_file, json.dumps({"finished": iteration + 1}))
            _prune(spec, rule_dir, iteration + 1)
            _plot_so_far(spec, out)
        session.accelerator.wait_for_everyone()
    if spec.export_final and session.main:
        export_pretrained(session.policy, session.tokenizer, rule_dir / "final")
    return pd.read_csv(rule_dir / "metrics.csv")


def _plot_so_far(spec: BridgeSpec, out: Path) -> None:
    """Redraw ``win_rate.png`` from every rule's rows so far (after each iteration, so that a long run
    shows its curves while it runs, and an interrupted one keeps them)."""
    import pandas as pd

    files = [out / entry.label / "metrics.csv" for entry in spec.rules]
    table = pd.concat([pd.read_csv(f) for f in files if f.is_file()], ignore_index=True)
    write_files_atomic({out / WIN_RATE_FIGURE: png_bytes(lambda path: plot_win_rate(table, path))})


def _checkpoint(out: Path, label: str, iteration: int, kind: str = "policy") -> Path:
    if iteration == 0:
        return out / REFERENCE_DIR / "policy.safetensors"
    return out / label / f"iter_{iteration:03d}" / f"{kind}.safetensors"


def _update(session: Session, entry, t: int) -> dict:
    """Update t → t+1 of one rule; returns the metrics row of π_{t+1}."""
    spec, out, rule = session.spec, session.out, entry.rule
    begin = time.perf_counter()
    prompts_text = [
        spec.prompts.train[(t * spec.prompts.per_iteration + i) % len(spec.prompts.train)]
        for i in range(spec.prompts.per_iteration)
    ]
    prompt_ids = encode_prompts(session.tokenizer, prompts_text, spec.prompts.chat_template)

    # 1–4 for each of the rule's stages (one for most rules; extragradient and optimistic MD have two):
    # draw pairs from the stage's source, put θ_t back, precompute log π_t and log π_ref, train from θ_t
    rank, world = session.accelerator.process_index, session.accelerator.num_processes
    directory = out / entry.label / f"iter_{t + 1:03d}"
    generation = {"tokens": 0, "seconds": 0.0}
    clocks = dict.fromkeys(PHASES, 0.0)  # wall seconds of each part of the update (metrics' *_seconds)

    def draw(index: int, initial: bool) -> tuple[dict, int]:
        stream = stage_stream(index, initial)
        # 1. sample K responses per prompt from π_t — or the policy the model holds (generation batches
        # shared out over the processes, gathered); a rule with an opponent draws its second response from it
        with _timed(clocks, "generation"):
            generated = _draw_responses(session, entry, t, prompt_ids, stream)
        generation["tokens"] += generated.tokens
        generation["seconds"] += generated.seconds
        # 2. pairs from the oracle for this process's prompts, each prompt's labels from its own random stream
        queries_before = session.oracle.queries
        pairs = []
        with _timed(clocks, "label"):
            for i in range(rank, len(prompt_ids), world):
                rng = np.random.default_rng(stream_seed(spec.seed, t, Purpose.LABELS, stream, i))
                texts = [generated.response_texts[i]]
                if rule.opponent is not None:  # y ~ π_t, y′ ~ the opponent: one query, the pair is not reordered
                    built = opponent_pairs([prompts_text[i]], texts, session.oracle)
                else:
                    built = build_pairs(rule.pairs, [prompts_text[i]], texts, session.oracle, rng)
                pairs.extend(dataclasses.replace(p, prompt=i) for p in built)
            gathered = _gather(session, {"pairs": pairs, "queries": session.oracle.queries - queries_before})
        every = sorted((p for part in gathered for p in part["pairs"]), key=lambda p: p.prompt)
        drawn = {"prompts": prompts_text, "generated": generated, "pairs": every}
        return drawn, sum(part["queries"] for part in gathered)

    def restore() -> None:
        assign_weights(session.policy, read_weights(_checkpoint(out, entry.label, t)))

    def train(index: int, drawn: dict):
        # 3. precompute log π_t and log π_ref once (this process's prompts)
        generated = drawn["generated"]
        mine = [p for p in drawn["pairs"] if p.prompt % world == rank]
        with _timed(clocks, "score"):
            records = _precompute(session, entry, t, mine, generated, list(range(len(generated.prompt_ids))))
            gathered = _gather(session, {"records": records})
        # prompt order, and build order within a prompt (a stable sort): the same records for any number of processes
        records = sorted((r for part in gathered for r in part["records"]), key=lambda r: r["prompt"])
        if session.main:
            where = directory if index == 0 else directory / f"stage_{index}"
            _write_pairs(where / "pairs.jsonl", records, drawn["prompts"], session.tokenizer)
        # 4. train (θ_t → the stage's output; the last stage's is θ̂_{t+1}) on all the pairs (each process
        # takes its share of every step)
        with _timed(clocks, "train"):
            stats = train_on_pairs(
                session.model,
                session.optimizer,
                records_to_tensors(records),
                rule.at_step(t),
                spec.training,
                session.tokenizer.pad_token_id,
                seed=stream_seed(spec.seed, t, Purpose.TRAIN, index),
                accelerator=session.accelerator,
                progress=session.progress,
                description=f"{entry.label} it{t + 1} train" + (f" stage {index}" if index else ""),
                precision=session.precision,
                on_step=lambda values: session.reporter.log_step(
                    entry.label, _step_values(values, t, index, len(rule.stages))
                ),
                where=f"rule {entry.label}, seed {spec.seed}, iteration {t + 1} (update π_{t} → π_{t + 1})"
                + (f", stage {index}" if index else ""),
            )
        return len(records), stats

    carries = any(stage.carry for stage in rule.stages)
    # at a reference advance the rule restarts from π_t (sim.rules.reference): a carried stage draws anew
    restarts = t > 0 and anchor_iteration(t, rule.reference_every) == t
    carried = _read_carried(out / entry.label / f"iter_{t:03d}") if carries and t > 0 and not restarts else None
    outcome = run_stages(rule.stages, draw, restore, train, carried)
    if carries and session.main:
        _write_carried(directory, outcome.carried)
    queries = outcome.queries
    generation_rate = generation["tokens"] / generation["seconds"] if generation["seconds"] > 0 else float("nan")
    stats = outcome.results[-1][1]
    trained_pairs = sum(count for count, _ in outcome.results)
    optimizer_steps = sum(result.steps for _, result in outcome.results)
    train_tokens_per_s = sum(result.tokens for _, result in outcome.results) / max(
        sum(result.seconds for _, result in outcome.results), 1e-12
    )
    # 5. a wrapper's hook after the proximal step (APO's parameter form: weight arithmetic)
    if rule.form == "parameters":
        previous = read_weights(_checkpoint(out, entry.label, t, kind="proximal" if t else "policy"))
        proximal_now = apo_forms.extrapolate_parameters(session.policy, previous, rule.hook.weight(t))
        if session.main:
            save_state(proximal_now, _checkpoint(out, entry.label, t + 1, kind="proximal"))
        # the two host copies (θ̂_t, θ̂_{t+1}) are on disk now: release them before saving and evaluating
        del previous, proximal_now
    # 6. checkpoint and evaluation
    fingerprints = _rank_fingerprints(session)
    if session.main:
        save_weights(session.policy, _checkpoint(out, entry.label, t + 1))
        if world > 1:
            _write_atomic(
                out / entry.label / f"iter_{t + 1:03d}" / "ranks.json",
                json.dumps({"processes": world, "parameter_sha256": fingerprints}),
            )
    session.accelerator.wait_for_everyone()
    with _timed(clocks, "eval"):
        row, heldout = _evaluate(
            session, _reference_record(out), t + 1, previous=_checkpoint(out, entry.label, t), label=entry.label
        )
    if session.main:
        _write_atomic(out / entry.label / f"iter_{t + 1:03d}" / "heldout.json", json.dumps(heldout))
    row.update(
        rule=entry.label,
        loss_first=stats.loss_first,
        loss_last=stats.loss_last,
        pairs=trained_pairs,
        optimizer_steps=optimizer_steps,
        oracle_queries=queries,
        generation_tokens=generation["tokens"],
        train_tokens=sum(result.tokens for _, result in outcome.results),
        generation_tokens_per_s=generation_rate,
        train_tokens_per_s=train_tokens_per_s,
        **{f"{phase}_seconds": seconds for phase, seconds in clocks.items()},
        seconds=time.perf_counter() - begin,
    )
    if session.progress:
        print(iteration_line(entry.label, t + 1, spec.iterations, row), flush=True)
    return row


#: The parts of an update whose wall time a metrics row records, as ``<part>_seconds`` (:mod:`llm_bridge.metrics`).
PHASES = ("generation", "label", "score", "train", "eval")


@contextlib.contextmanager
def _timed(clocks: dict, phase: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``clocks[phase]`` (also when the block raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        clocks[phase] += time.perf_counter() - start


def _draw_responses(session: Session, entry, t: int, prompt_ids, stream: int) -> Generated:
    """``rule.samples`` responses per prompt from the policy the model holds (draw ``stream`` of iteration t).

    A rule whose definition names an opponent (Nash-MD) gets one response from the policy and one from
    the opponent: the token-level geometric mixture of the policy and the rule's reference
    (:class:`llm_bridge.generation.GeometricMixture`), generated with a copy of the model holding the
    reference's weights, released afterwards.
    """
    spec, rule = session.spec, entry.rule
    seed = stream_seed(spec.seed, t, Purpose.SAMPLE, stream)
    description = f"{entry.label} it{t + 1} generate" + (f" stream {stream}" if stream else "")
    if rule.opponent is None:
        return _generate_global(session, prompt_ids, rule.samples, seed, description)
    own = _generate_global(session, prompt_ids, 1, seed, description)
    reference = copy.deepcopy(session.policy).eval()
    anchor = _checkpoint(session.out, entry.label, anchor_iteration(t, rule.reference_every))
    assign_weights(reference, read_weights(anchor))
    mixture = GeometricMixture(reference, rule.opponent)
    against = stream_seed(spec.seed, t, Purpose.OPPONENT, stream)
    theirs = _generate_global(session, prompt_ids, 1, against, f"{description} opponent", mixture=mixture)
    del mixture, reference  # the reference's copy of the model lives only while the opponent is sampled
    return Generated(
        prompt_ids=own.prompt_ids,
        response_ids=[mine + other for mine, other in zip(own.response_ids, theirs.response_ids)],
        response_texts=[mine + other for mine, other in zip(own.response_texts, theirs.response_texts)],
        tokens=own.tokens + theirs.tokens,
        seconds=own.seconds + theirs.seconds,
    )


def _write_carried(directory: Path, drawn: dict) -> None:
    """Keep a ``carry`` stage's pairs (prompts, response ids and texts, oracle labels) for the next iteration."""
    generated = drawn["generated"]
    record = {
        "prompts": list(drawn["prompts"]),
        "prompt_ids": generated.prompt_ids,
        "response_ids": generated.response_ids,
        "response_texts": generated.response_texts,
        "pairs": [dataclasses.asdict(p) for p in drawn["pairs"]],
    }
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / "carried.json", json.dumps(record))


def _read_carried(directory: Path) -> dict:
    """The pairs :func:`_write_carried` kept in ``directory`` (log-probabilities are recomputed under π_t)."""
    path = directory / "carried.json"
    if not path.is_file():
        raise PrefsimError(
            f"{str(path)!r} is missing: the optimistic step trains on the pairs the previous iteration drew; the "
            "run directory lost it; run again into a new directory."
        )
    record = json.loads(path.read_text())
    generated = Generated(record["prompt_ids"], record["response_ids"], record["response_texts"], 0, 0.0)
    return {"prompts": record["prompts"], "generated": generated, "pairs": [Pair(**p) for p in record["pairs"]]}


def iteration_line(label: str, iteration: int, iterations: int, row: dict) -> str:
    """The progress line of one finished iteration, saying what each number is: the held-out win rate of
    π_t against π_ref (0.5 = no change) with its 95% CI over prompts, KL(π_t‖π_ref) as estimated (the mean
    log π_t − log π_ref over one sample of π_t per held-out prompt: unbiased, but it can be negative, which the
    line says), and the rule's training loss on the first and the last minibatch, each before its step
    (different pairs, so the two are not a before/after of the same quantity)."""
    return (
        f"[{label}] iteration {iteration}/{iterations}: held-out win rate of π_{iteration} vs π_ref "
        f"{row['win_rate']:.3f} [{row['win_rate_low']:.3f}, {row['win_rate_high']:.3f}] (0.5 = no change), "
        f"KL(π_{iteration}‖π_ref) ≈ {row['kl_reference']:.3f} (sample estimate, can be < 0), "
        f"training loss {row['loss_first']:.4g} on the first minibatch and {row['loss_last']:.4g} on the last "
        f"(each before its step; other pairs, not a trend), "
        f"{row['seconds']:.0f} s"
    )


def _precompute(session: Session, entry, t: int, pairs, generated, local) -> list[dict]:
    """Per pair: ids and the no-grad log-probs under π_t (current weights) and π_ref (swapped in)."""
    spec, out, rule = session.spec, session.out, entry.rule
    prompts = [generated.prompt_ids[p.prompt] for p in pairs]
    responses = [generated.response_ids[p.prompt][p.winner] for p in pairs] + [
        generated.response_ids[p.prompt][p.loser] for p in pairs
    ]
    both_prompts = prompts + prompts

    def score():
        return batched_sequence_logprobs(
            session.policy,
            both_prompts,
            responses,
            session.tokenizer.pad_token_id,
            spec.score_batch_size,
            autocast=session.autocast,
        )

    current = score() if pairs else torch.zeros(0, dtype=torch.float64)
    # the loss's reference: π_ref, or with reference_every = M the checkpoint of the last advance
    advanced = anchor_iteration(t, rule.reference_every)
    anchor = _checkpoint(out, entry.label, advanced)
    with swapped_weights(session.policy, anchor):
        reference = score() if pairs else torch.zeros(0, dtype=torch.float64)
    previous = current
    history = rule_info(rule.base).data.history
    if history is not None:
        # the anchor mixes the last m iterates' checkpoints (MNPO) since the rule's last (re)start: before
        # π_0, or before the last reference advance, that iterate's (weighed 0)
        parameters = base_parameters(rule.name, rule.parameters)
        past = []
        for j in range(1, history.length(parameters)):
            with swapped_weights(session.policy, _checkpoint(out, entry.label, max(t - j, advanced))):
                past.append(score() if pairs else torch.zeros(0, dtype=torch.float64))
        previous = history.combine([current, *past], steps_since_advance(t, rule.reference_every), parameters)
    if rule.form == "implicit_reference" and t > 0:
        with swapped_weights(session.policy, _checkpoint(out, entry.label, t - 1)):
            proximal_before = score()
        previous = apo_forms.implicit_reference(current, proximal_before, rule.hook.weight(t - 1))
    n = len(pairs)
    return [
        {
            "prompt": local[p.prompt],
            "prompt_ids": prompts[i],
            "winner_ids": responses[i],
            "loser_ids": responses[n + i],
            "reference_w": float(reference[i]),
            "reference_l": float(reference[n + i]),
            "previous_w": float(previous[i]),
            "previous_l": float(previous[n + i]),
            "win_rate_w": p.win_rate_w,
            "win_rate_l": p.win_rate_l,
            "preference": p.preference,
            "weight": p.weight,
        }
        for i, p in enumerate(pairs)
    ]


def records_to_tensors(records: list[dict]) -> PairTensors:
    """The trainer's input from precomputed pair records."""
    keys = (
        "reference_w",
        "reference_l",
        "previous_w",
        "previous_l",
        "win_rate_w",
        "win_rate_l",
        "preference",
        "weight",
    )
    return PairTensors(
        [r["prompt_ids"] for r in records],
        [r["winner_ids"] for r in records],
        [r["loser_ids"] for r in records],
        {k: torch.tensor([r[k] for r in records], dtype=torch.float64) for k in keys},
    )


def _rank_fingerprints(session: Session) -> list[str]:
    """SHA-256 of every process's trainable parameters (in process order); an error if the processes diverged.

    DDP keeps the replicas identical by construction (same initial weights, synchronised gradients, the
    same optimiser step); this checks it every iteration.  One process: no hashing, an empty list.
    """
    if session.accelerator.num_processes == 1:
        return []
    digest = hashlib.sha256()
    for name, tensor in sorted(trainable_state(session.policy).items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    fingerprints = _gather(session, digest.hexdigest())
    if len(set(fingerprints)) != 1:
        raise PrefsimError(
            f"the {len(fingerprints)} processes hold different parameters after training ({fingerprints}); "
            "the distributed run is inconsistent (a process-dependent seed or dropout?)."
        )
    return fingerprints


# --------------------------------------------------------------------------------------------- evaluation


def _evaluate(session: Session, reference: dict, iteration: int, previous: Path | None, label: str | None = None):
    """Win rate of π_t against π_ref's held-out responses, rewards and KL estimates on π_t's samples
    (``label``: the rule's, named in the progress bar and errors; None for π_ref)."""
    spec = session.spec
    prompts = list(spec.prompts.heldout)
    prompt_ids = reference["prompt_ids"]
    description = f"{label} eval π_{iteration} (seed {spec.seed})" if label else f"eval π_{iteration}"
    seed = stream_seed(spec.seed, iteration, Purpose.EVALUATE)
    sample = _generate_sharded(session, prompt_ids, 1, seed, description)
    ids = [r[0] for r in sample["ids"]]
    texts = [r[0] for r in sample["texts"]]
    before = session.oracle.queries
    wins = session.oracle.probabilities(prompts, texts, reference["texts"])
    eval_queries = session.oracle.queries - before
    rewards = session.oracle.rewards(prompts, texts)

    def score():
        return batched_sequence_logprobs(
            session.policy,
            prompt_ids,
            ids,
            session.tokenizer.pad_token_id,
            spec.score_batch_size,
            autocast=session.autocast,
        )

    current = score()
    with swapped_weights(session.policy, session.out / REFERENCE_DIR / "policy.safetensors"):
        reference_logps = score()
    kl_previous = float("nan")
    if previous is not None:
        with swapped_weights(session.policy, previous):
            kl_previous = float((current - score()).mean())
    win, low, high = mean_with_interval(wins)
    row = {c: float("nan") for c in COLUMNS}
    row.update(
        iteration=iteration,
        win_rate=win,
        win_rate_low=low,
        win_rate_high=high,
        mean_reward=float(np.mean(rewards)) if rewards is not None else float("nan"),
        reference_reward=float(np.mean(reference["rewards"])) if reference.get("rewards") else float("nan"),
        kl_reference=float((current - reference_logps).mean()),
        kl_previous=kl_previous,
        eval_queries=eval_queries,
        pairs=0,
        optimizer_steps=0,
        oracle_queries=0,
        generation_tokens=0,
        train_tokens=0,
    )
    heldout = {
        "texts": texts,
        "win_probability": wins.tolist(),
        "rewards": None if rewards is None else rewards.tolist(),
        "log_ratio_reference": (current - reference_logps).tolist(),  # per prompt: the KL estimate's terms
    }
    return row, heldout


def _generate_sharded(session: Session, prompt_ids, samples: int, seed: int, description: str) -> dict:
    """:func:`_generate_global` for evaluation, as ``{"ids", "texts"}`` (per prompt, a list of samples)."""
    generated = _generate_global(session, prompt_ids, samples, seed, description)
    return {"ids": generated.response_ids, "texts": generated.response_texts}


def _generate_global(
    session: Session, prompt_ids, samples: int, seed: int, description: str, mixture: GeometricMixture | None = None
) -> Generated:
    """``samples`` responses per prompt from the policy, the same for any number of processes.

    :func:`llm_bridge.generation.generate` seeds each generation batch by its global index and gives
    batch b to process b mod P; the processes' responses are gathered, so every process returns all of
    them.  Tokens and seconds are summed over the processes.
    """
    rank, world = session.accelerator.process_index, session.accelerator.num_processes
    generated = generate(
        session.policy,
        session.tokenizer,
        prompt_ids,
        samples,
        session.spec.sampling,
        seed=seed,
        progress=session.progress,
        description=description,
        autocast=session.autocast,
        shard=(rank, world),
        mixture=mixture,
    )
    if world == 1:
        return generated
    parts = _gather(
        session,
        {
            "ids": generated.response_ids,
            "texts": generated.response_texts,
            "tokens": generated.tokens,
            "seconds": generated.seconds,
        },
    )
    ids = [[None] * samples for _ in prompt_ids]
    texts = [[None] * samples for _ in prompt_ids]
    for part in parts:
        for i in range(len(prompt_ids)):
            for k in range(samples):
                if part["ids"][i][k] is not None:
                    ids[i][k], texts[i][k] = part["ids"][i][k], part["texts"][i][k]
    return Generated(
        prompt_ids=list(prompt_ids),
        response_ids=ids,
        response_texts=texts,
        tokens=sum(part["tokens"] for part in parts),
        seconds=sum(part["seconds"] for part in parts),
    )


def _gather(session: Session, obj) -> list:
    """One object per process, on every process (Accelerate's gather_object)."""
    if session.accelerator.num_processes == 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])


# --------------------------------------------------------------------------------------------- files


def _step_values(values: dict, t: int, stage: int = 0, stages: int = 1) -> dict:
    """The trainer's per-step values of stage ``stage`` of ``stages`` with ``iteration_fraction`` (the fraction
    of the stage's steps done) turned into the fractional iteration t + (stage + fraction) / stages.

    Each stage of a two-stage rule (extragradient, optimistic) takes an equal share of the update t → t+1, so
    the value grows monotonically from t to t + 1 over the iteration.  Their stages train on λ_p pairs (the
    only scheme they take), one per prompt in each stage, hence equally many steps: the value is t + the
    fraction of the iteration's optimiser steps done (a later stage's count is not known while the first
    one trains, so unequal stages would get equal shares).
    """
    values = dict(values)
    values["iteration"] = t + (stage + values.pop("iteration_fraction")) / stages
    return values


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (:func:`sim.results_io.write_files_atomic`: a temporary file
    of its own next to ``path``, flushed, then ``os.replace``).

    A process killed at any moment leaves either the old or the new content, never a partial file; a full
    disk leaves the old file and raises a :class:`PrefsimError` naming it.
    """
    write_files_atomic({path: text.encode()})


def _write_pairs(path: Path, records, prompts_text, tokenizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for r in records:
            handle.write(
                json.dumps(
                    {
                        "prompt": prompts_text[r["prompt"]],
                        "chosen": tokenizer.decode(r["winner_ids"], skip_special_tokens=True),
                        "rejected": tokenizer.decode(r["loser_ids"], skip_special_tokens=True),
                        "preference": r["preference"],
                        "win_rate_chosen": r["win_rate_w"],
                        "win_rate_rejected": r["win_rate_l"],
                    }
                )
                + "\n"
            )
    # what the loss saw, pair by pair: log π_ref (the rule's reference: the last advance's checkpoint under
    # reference advancement) and log π_t (APO's implicit form: its shifted anchor).  Kept apart from
    # pairs.jsonl because scores differ in the last float32 digit between process counts.
    with (path.parent / "logprobs.jsonl").open("w") as handle:
        for r in records:
            row = {
                "logp_reference_chosen": r["reference_w"],
                "logp_reference_rejected": r["reference_l"],
                "logp_previous_chosen": r["previous_w"],
                "logp_previous_rejected": r["previous_l"],
            }
            handle.write(json.dumps(row) + "\n")


def _prune(spec: BridgeSpec, rule_dir: Path, finished: int) -> None:
    if spec.keep_checkpoints <= 0:
        return
    every = next((e.rule.reference_every for e in spec.rules if e.label == rule_dir.name), None)
    anchor = anchor_iteration(finished, every)
    entry = next((e for e in spec.rules if e.label == rule_dir.name), None)
    window = 1 if entry is None else checkpoints_read(entry)
    for iteration in range(1, finished - max(spec.keep_checkpoints, window) + 1):
        if iteration == anchor:  # the loss's reference under reference advancement: keep it
            continue
        for kind in ("policy", "proximal"):
            path = rule_dir / f"iter_{iteration:03d}" / f"{kind}.safetensors"
            if path.exists():
                path.unlink()


def _manifest(spec: BridgeSpec, current: dict, processes: int = 1) -> dict:
    """The manifest of a new run: the spec, its seed and prompt files, the process count and what computes
    the run (``current``: :func:`llm_bridge.provenance.run_provenance`; git commit and dirty flag, versions,
    the model's and reward model's SHA-256)."""
    return {
        "spec": spec.raw,
        "seed": spec.seed,
        "prompt_files": spec.prompt_files,
        "processes": processes,
        **current,
        "created": _now(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _resumed_manifest(out: Path, current: dict, processes: int) -> dict | None:
    """The manifest of a resumed run: the one the run started with (what computed its first iterations),
    with this start appended to its ``resumed`` list (when, the process count and ``current``, with the
    ``allowed_other_code`` that :func:`_check_resumed` added); None when ``out`` holds no manifest yet (a
    fresh start)."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return None
    record = read_manifest(path, "--resume")
    start = {"created": _now(), "processes": processes, **current}
    return {**record, "resumed": [*record.get("resumed", []), start]}


def read_manifest(path: Path, what: str) -> dict:
    """A run's ``manifest.json`` as a dict, or an error naming the file (``what``: the option that reads it)."""
    record = read_json_object(path)
    if record is None:
        raise PrefsimError(
            f"{what}: {str(path.parent)!r} holds no bridge run (no readable manifest.json: {str(path)!r} is not a "
            "JSON object); restore the file, or start a new directory."
        )
    return record


def _check_out(spec: BridgeSpec, out: Path, resume: bool, shard: dict | None = None) -> dict | None:
    """Refuse ``out`` unless it is new or empty, or (``resume``) holds a run of the same spec, shard and
    prompt files; returns the run's manifest (None for a fresh start).  Needs no model hash: the models and
    the code are compared afterwards (:func:`_check_resumed`).

    A manifest written before prompt files were recorded lacks them: they are then unknown and not checked.
    The lock file (:data:`sim.results_io.LOCK_NAME`) does not make a directory non-empty.
    """
    manifest = out / MANIFEST_FILE
    if not manifest.is_file():
        _check_foreign(out)
        return None
    recorded = read_json_object(manifest)
    if isinstance(recorded, dict) and isinstance(recorded.get("spec"), dict) and "game" in recorded["spec"]:
        # a `prefsim run` directory (a simulator spec has a [game] table, a bridge spec cannot): it was called a
        # bridge run, and the --resume the message suggested then said the spec differs
        raise PrefsimError(
            f"--out {str(out)!r} holds the results of `prefsim run` (a simulator spec with a [game] table), not a "
            "bridge run; choose another directory."
        )
    if not resume:
        raise PrefsimError(
            f"--out {str(out)!r} already holds a bridge run; pass --resume to continue it, or choose another directory."
        )
    record = read_manifest(manifest, "--resume")
    if "merged_from" in record:
        raise PrefsimError(
            f"--resume: {str(out)!r} holds merged shards (prefsim llm --merge), not a run to continue; resume each "
            "shard in its own directory and merge again."
        )
    saved = record.get("spec")
    if json.loads(json.dumps(saved, default=str)) != json.loads(json.dumps(spec.raw, default=str)):
        raise PrefsimError(
            f"--resume: the spec differs from the one the run in {str(out)!r} was started with "
            f"({manifest}); resume with the same spec or start a new directory."
        )
    recorded_shard = record.get("shard")
    if _shard_text(recorded_shard) != _shard_text(shard):
        raise PrefsimError(
            f"--resume: {str(out)!r} holds {_shard_text(recorded_shard)}, but this command runs "
            f"{_shard_text(shard)}; resume it with "
            + (f"--shard {recorded_shard['index']}/{recorded_shard['count']}" if recorded_shard else "no --shard")
            + ", or give this one its own directory."
        )
    for key in changed_prompt_files(spec, record.get("prompt_files")):
        raise PrefsimError(
            f"--resume: {key} {spec.prompt_files[key]['path']!r} has changed since the run in {str(out)!r} was "
            f"started (its SHA-256 differs from the one in {manifest}); restore the file the run started with, or "
            "start a new directory."
        )
    return record


def _check_resumed(out: Path, record: dict, current: dict, allow_other_code: bool) -> dict:
    """Refuse to resume the run of ``record`` (its manifest) with other models than it started with, or
    with other code (source files, package versions: :func:`sim.provenance.code_differences`) than
    any of its starts recorded, unless ``allow_other_code``: then warn and return ``current`` with the
    differences as ``allowed_other_code`` (recorded in this start's ``resumed`` entry); else ``current``.

    ``current``: what computes this start (:func:`llm_bridge.provenance.run_provenance`).  A field a
    manifest written before it was recorded lacks is unknown and not compared."""
    manifest = out / MANIFEST_FILE
    for line in changed_models(record, current):
        raise PrefsimError(
            f"--resume: {line} has changed since the run in {str(out)!r} was started ({manifest}); restore the "
            "model the run started with, or start a new directory."
        )
    reasons = list(dict.fromkeys(reason for start in starts(record) for reason in code_differences(start, current)))
    if not reasons:
        return current
    commits = sorted({str(start["git_commit"]) for start in starts(record) if start.get("git_commit")})
    if not allow_other_code:
        where = " or ".join(commits) or "its commit"
        raise PrefsimError(
            f"--resume: the run in {str(out)!r} was computed by other code than this prefsim: "
            f"{'; '.join(reasons)} ({manifest}); iterations computed by two versions of the code cannot be repeated "
            f"from one manifest. Resume with the code it recorded (a checkout of {where}: git worktree add …; the "
            "same package versions), pass --allow-other-code to continue with this code (recorded in the "
            "manifest), or start a new directory."
        )
    print(
        f"warning: --resume --allow-other-code: the run in {str(out)!r} was computed by other code than this "
        f"prefsim: {'; '.join(reasons)}; it goes on with this code (recorded under 'resumed' in {manifest}).",
        file=sys.stderr,
        flush=True,
    )
    return {**current, "allowed_other_code": reasons}


def _check_foreign(out: Path) -> None:
    """Refuse an ``out`` that exists, holds no bridge run (no manifest) and is not empty (but for the lock file)."""
    if not (out / MANIFEST_FILE).is_file() and out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise PrefsimError(f"--out {str(out)!r} exists and is not an empty bridge run directory; choose another.")


def _shard_text(shard: dict | None) -> str:
    """``shard 0/2 (rules sppo, dpo)``, or ``the whole spec`` for no shard, for :func:`_check_out`'s messages."""
    if not shard:
        return "the whole spec (no --shard)"
    return f"shard {shard['index']}/{shard['count']} (rules {', '.join(shard.get('labels', []))})"
