"""Sampling responses from π_t with Hugging Face ``generate``: batched, left padding, seeded.

Prompts are tokenised once (optionally through the tokenizer's chat template) and every batch is
left-padded by hand, so the prompt ids used for scoring are exactly the ones generation saw.  A
response is the generated ids up to and including the first end-of-sequence token (the padding after
it is dropped; EOS stays, since π assigns it probability).

Every draw first runs :class:`FiniteLogitsCheck`, which leaves the logits unchanged and stops with a clear
error if the policy's are NaN or +inf (weights that diverged in training), where sampling would fail.

**Opponent sampling** (Nash-MD's geometric mixture; ``generate(..., mixture=GeometricMixture(...))``):
the only logits processor ``generate`` runs that changes the logits before the requested warpers is
:class:`GeometricMixtureProcessor`, which at every token combines the policy's log-softmax with a second
model's (π_ref's) by the rule definition's opponent function and renormalises over the vocabulary:

    q(y_i | x, y_<i) = softmax_v[(1 − β)·log π(v | x, y_<i) + β·log π_ref(v | x, y_<i)]_{y_i},   β = ητ,

so a response is drawn with probability Π_i q(y_i | x, y_<i) — the **token-level** geometric mixture of
Nash-MD's language-model experiments (Munos et al. 2023), exact for one-token responses.  For longer
responses it is not the sequence-level mixture π^{1−β}π_ref^{β}/Z (whose conditional for the first token
sums over every continuation); the last token's conditional agrees with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from bandits.errors import PrefsimError
from llm_bridge.seeds import stream_seed
from sim.stop_request import check_stop

if TYPE_CHECKING:
    from transformers import GenerationConfig, PretrainedConfig, PreTrainedTokenizerBase


def torch_seed(value: int) -> int:
    """``value`` as a seed torch takes (``manual_seed`` accepts 0 … 2⁶⁴ − 1): ``value`` mod 2⁶⁴.

    The bridge's own seeds (:func:`llm_bridge.seeds.stream_seed`) lie in that range already; this keeps a
    caller's seed of :func:`llm_bridge.trainer.train_on_pairs` (negative, or 2⁶⁴ and beyond) from torch's
    ValueError, and leaves a seed below 2⁶⁴ unchanged.
    """
    return value % 2**64


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """Sampling settings of ``[generation]`` (the same for training samples and held-out evaluation)."""

    max_new_tokens: int = 32
    """Maximum response length in tokens."""
    temperature: float = 1.0
    """Softmax temperature (1.0 samples from π itself, which the theory assumes)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = off; anything else samples from a truncated π)."""
    top_k: int = 0
    """Top-k truncation (0 = off)."""
    batch_size: int = 16
    """Sequences per ``generate`` call."""


@dataclasses.dataclass(frozen=True)
class GeometricMixture:
    """Sample from a per-token mixture of the policy and ``reference`` (see the module docstring).

    Attributes:
      reference: the second model (π_ref, or the rule's advanced reference), same tokenizer and vocabulary.
      combine: ``(log π(·|prefix), log π_ref(·|prefix)) -> unnormalised log-weights`` over the vocabulary
        (the rule definition's ``PairData.opponent``; Nash-MD: (1 − ητ)·log π + ητ·log π_ref).
    """

    reference: torch.nn.Module
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FiniteLogitsCheck:
    """HF logits processor that returns the policy's next-token logits unchanged, or raises a
    :class:`PrefsimError` if any is NaN or +inf (−inf is a masked token).

    Sampling from such logits fails inside ``generate`` (torch's "probability tensor contains either inf,
    nan or element < 0" on CPU, a device-side assert on CUDA); they mean that the policy's weights overflow
    its computation, i.e. its training diverged, even where the weights themselves are finite.
    """

    def __init__(self, description: str):
        self.description = description
        """What is being sampled (the progress bar's label), for the error message."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if bool((scores.isnan() | scores.isposinf()).any()):
            raise PrefsimError(
                f"{self.description}: the policy's next-token logits are NaN or infinite, so nothing can be sampled "
                "from it: its weights overflow (its training diverged: a learning rate too large for this model?); "
                "lower training.learning_rate or set training.max_grad_norm."
            )
        return scores


class GeometricMixtureProcessor:
    """HF logits processor: the policy's next-token logits → log q, the renormalised per-token mixture.

    ``prompt_attention`` (B, W) is the left-padded prompts' mask; positions are derived from the mask as
    HF derives the policy's (so π_ref sees each sequence exactly as the policy does).  π_ref's keys and
    values are cached between steps when the model returns a cache (else it re-reads the whole prefix).
    """

    def __init__(self, mixture: GeometricMixture, prompt_attention: torch.Tensor):
        self.mixture, self.attention = mixture, prompt_attention
        self.cache, self.seen = None, 0
        # transformers ≥ 5.25 names the key/value cache ``cache``, earlier versions ``past_key_values``
        parameters = inspect.signature(_hf_model(mixture.reference).forward).parameters
        self.cache_name = next((n for n in ("cache", "past_key_values") if n in parameters), None)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        batch, length = input_ids.shape
        generated = self.attention.new_ones((batch, length - self.attention.shape[1]))
        mask = torch.cat([self.attention, generated], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cached = {self.cache_name: self.cache, "use_cache": True} if self.cache_name else {}
        output = self.mixture.reference(
            input_ids=input_ids[:, self.seen :],
            attention_mask=mask,
            position_ids=positions[:, self.seen :],
            **cached,
        )
        cache = getattr(output, self.cache_name, None) if self.cache_name else None
        if cache is not None:
            self.cache, self.seen = cache, length
        dtype = torch.promote_types(scores.dtype, torch.float32)
        log_policy = torch.log_softmax(scores.to(dtype), dim=-1)
        log_reference = torch.log_softmax(output.logits[:, -1, :].to(dtype), dim=-1)
        return torch.log_softmax(self.mixture.combine(log_policy, log_reference), dim=-1).to(scores.dtype)


@dataclasses.dataclass
class Generated:
    """Responses to a list of prompts, ``samples`` per prompt (prompt-major order)."""

    prompt_ids: list
    """Token ids of each prompt (unpadded), one entry per prompt."""
    response_ids: list
    """``response_ids[i][k]``: ids of the k-th response to prompt i."""
    response_texts: list
    """Decoded responses (special tokens skipped), same shape as ``response_ids``."""
    tokens: int
    """Generated tokens in total."""
    seconds: float
    """Wall time of the generation."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], chat_template: bool) -> list[list[int]]:
    """Token ids of each prompt, through the chat template if asked (with the generation prompt)."""
    encoded = []
    for prompt in prompts:
        if chat_template:
            if getattr(tokenizer, "chat_template", None) is None:
                raise PrefsimError(
                    "prompts.chat_template = true but the tokenizer has no chat template; set it to false."
                )
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(prompt)["input_ids"]
        if not ids:
            raise PrefsimError(f"prompt {prompt!r} tokenises to nothing; prompts must be non-empty.")
        encoded.append(list(ids))
    return encoded


#: Config fields that bound how many positions a model reads (the first one a config has counts).
POSITION_LIMITS = ("max_position_embeddings", "n_positions", "n_ctx")


def position_limit(model: torch.nn.Module | PretrainedConfig) -> tuple[int, str] | None:
    """``(positions, config field)``: the longest sequence ``model`` (or a model's config) reads
    (:data:`POSITION_LIMITS`), or ``None`` when its config states none.  With rotary scaling (``rope_scaling``
    with a ``factor`` and an ``original_max_position_embeddings``) it is at least the factor times that original
    context: some configs state the scaled context (Llama 3.1), others the original (YaRN); without the original,
    the stated context is taken as already scaled (Gemma 3)."""
    config = getattr(_hf_model(model), "config", model)  # a model, or its config itself
    for name in POSITION_LIMITS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            scaling = getattr(config, "rope_scaling", None)
            factor = scaling.get("factor") if isinstance(scaling, dict) else None
            original = scaling.get("original_max_position_embeddings") if isinstance(scaling, dict) else None
            if isinstance(factor, (int, float)) and factor > 1 and isinstance(original, int) and original > 0:
                scaled = int(factor * original)
                if scaled > value:
                    return scaled, f"{name} with rope_scaling factor {factor:g}"
            return value, name
    return None


def check_sequence_length(
    model: torch.nn.Module | PretrainedConfig, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, where: str
) -> None:
    """Refuse a run whose longest prompt (``prompt_ids``) and ``max_new_tokens`` response do not fit in the
    model's positions (a longer sequence indexes past a learned position table, or is read by positions
    the model never trained on); ``where`` names the prompts.  ``model`` may be the model's config, so that
    the run is refused before the weights load (:func:`llm_bridge.loop.open_session`)."""
    limit = position_limit(model)
    if limit is None or not prompt_ids:
        return
    positions, field = limit
    longest = max(len(ids) for ids in prompt_ids)
    if longest + max_new_tokens > positions:
        raise PrefsimError(
            f"{where}: the longest prompt has {longest} tokens and generation.max_new_tokens = {max_new_tokens}, "
            f"{longest + max_new_tokens} positions in all, but the model reads at most {positions} (config "
            f"{field}); lower generation.max_new_tokens to {max(positions - longest, 0)} or shorten the prompts."
        )


def _ids(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _hf_model(model):
    """The transformers model under a peft wrapper (whose ``generate`` reads the inner model's config)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def eos_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every end-of-sequence id: the tokenizer's first, then the generation config's and the model config's.

    Llama-3-style models list several (``eos_token_id = [128001, 128008, 128009]``); a response ends at
    the first of any of them.
    """
    inner = _hf_model(model)
    ids = _ids(tokenizer.eos_token_id)
    generation_config = getattr(inner, "generation_config", None)
    for value in (getattr(generation_config, "eos_token_id", None), getattr(inner.config, "eos_token_id", None)):
        ids += [i for i in _ids(value) if i not in ids]
    return ids


def exact_generation_config(sampling: SamplingSpec, pad_id: int, eos_ids: Sequence[int]) -> GenerationConfig:
    """A complete ``GenerationConfig`` that samples from π (tempered/truncated only as ``sampling`` asks).

    Starts from transformers' neutral defaults (repetition penalty 1, no n-gram blocking, no
    suppressed or forced tokens, one beam, no minimum length, …) rather than from the model's
    ``generation_config.json``; the warpers are exactly ``sampling``'s (temperature 1, top-p 1,
    top-k 0 leave π untouched).
    """
    from transformers import GenerationConfig

    config = GenerationConfig()
    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    if defaults is not None:  # transformers ≥ 5 leaves unset fields None and fills them from the model's config
        config.update(**defaults())
    config.update(
        do_sample=True,
        num_beams=1,
        num_return_sequences=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_new_tokens=sampling.max_new_tokens,
        max_length=None,  # max_new_tokens bounds the response
        min_length=0,
        min_new_tokens=None,
        pad_token_id=pad_id,
        eos_token_id=list(eos_ids) if eos_ids else None,
    )
    return config


@contextlib.contextmanager
def _generation_config_replaced(model, config):
    """Temporarily make ``config`` the model's own generation config (so nothing is filled in from it)."""
    inner = _hf_model(model)
    saved = inner.generation_config
    inner.generation_config = config
    try:
        yield
    finally:
        inner.generation_config = saved


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list,
    samples: int,
    sampling: SamplingSpec,
    seed: int,
    progress: bool = True,
    description: str = "generate",
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    shard: tuple[int, int] = (0, 1),
    mixture: GeometricMixture | None = None,
) -> Generated:
    """Draw ``samples`` responses per prompt from ``model`` (π_t); reproducible given ``seed``.

    Samples from π itself whatever the model's ``generation_config.json`` sets (see the module
    docstring); a response ends at the first of any end-of-sequence id (:func:`eos_token_ids`).
    ``autocast``: a context-manager factory for mixed precision (the same π the bridge scores), or None.

    ``shard = (rank, processes)``: the (prompt, sample) jobs are cut into batches of
    ``sampling.batch_size`` in prompt-major order and batch b, seeded with ``stream_seed(seed, b)``
    (:func:`llm_bridge.seeds.stream_seed`: distinct (``seed``, b) never share a stream), is generated by
    process b mod ``processes``; the other responses are None (gather them).  A response is therefore
    the same for any number of processes.

    ``mixture``: draw from the token-level geometric mixture of ``model`` and ``mixture.reference``
    instead (the module docstring); no other processor changes the logits.  Non-finite policy logits raise a
    :class:`PrefsimError` naming ``description`` (:class:`FiniteLogitsCheck`).
    """
    from transformers import LogitsProcessorList

    rank, processes = shard
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    eos_ids = eos_token_ids(model, tokenizer)
    config = exact_generation_config(sampling, pad_id, eos_ids)
    jobs = [(i, k) for i in range(len(prompt_ids)) for k in range(samples)]
    responses = [[None] * samples for _ in prompt_ids]
    tokens = 0
    start = time.perf_counter()
    starts = list(range(0, len(jobs), sampling.batch_size))
    mine = [(b, first) for b, first in enumerate(starts) if b % processes == rank]
    total = sum(len(jobs[first : first + sampling.batch_size]) for _, first in mine)
    bar = tqdm(total=total, desc=description, unit="seq", disable=not progress, leave=False)
    for batch_index, first in mine:
        check_stop()  # Ctrl-C / SIGTERM whose exception Python dropped (sim.stop_request): stop between batches
        batch = jobs[first : first + sampling.batch_size]
        prompts = [prompt_ids[i] for i, _ in batch]
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        torch.manual_seed(stream_seed(seed, batch_index))
        processors = LogitsProcessorList([FiniteLogitsCheck(description)])
        if mixture is not None:
            processors.append(GeometricMixtureProcessor(mixture, attention.to(device)))
        with _generation_config_replaced(model, config), autocast() if autocast else contextlib.nullcontext():
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                logits_processor=processors,
            )
        for row, (i, k) in enumerate(batch):
            ids = output[row, width:].tolist()
            ends = [position for position, token in enumerate(ids) if token in eos_ids]
            if ends:
                ids = ids[: ends[0] + 1]
            if not ids:  # an empty response cannot be scored; keep one EOS token
                ids = [eos_ids[0] if eos_ids else pad_id]
            responses[i][k] = ids
            tokens += len(ids)
        bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - start
    texts = [
        [None if ids is None else tokenizer.decode(ids, skip_special_tokens=True) for ids in row] for row in responses
    ]
    return Generated(
        prompt_ids=list(prompt_ids), response_ids=responses, response_texts=texts, tokens=tokens, seconds=seconds
    )
