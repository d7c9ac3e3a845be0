"""Preference oracles behind one interface (INPO Definition 1): P(y ≻ y′ | x) ∈ [0, 1].

* :class:`CallableOracle` — any Python callable ``f(prompt, response, response′) -> probability``.
* :class:`BradleyTerryOracle` — Bradley–Terry over a scalar reward: P = σ((r(x,y) − r(x,y′))/scale).
* :func:`vader_oracle` — the offline text oracle of the demo: Bradley–Terry over VADER's compound
  sentiment score ∈ [−1, 1] of the response (``vaderSentiment``; a lexicon, no model download).
* :class:`RewardModelOracle` — Bradley–Terry over a sequence-classification reward model loaded from a
  local directory (logit 0 of ``prompt + response``); a checkpoint without its classification head (a
  causal LM, say) is refused, since transformers would give it a random head.
* :class:`UserFunction` — a spec's ``oracle.function``, whose exceptions become a
  :class:`~bandits.errors.PrefsimError` naming it and the call it got.

Every oracle counts its pairwise queries in ``queries`` (a Bradley–Terry oracle also caches rewards,
but a comparison is still one query).  Labels are drawn by the pair schemes (:mod:`pairs`) as
z ~ Ber(P(y ≻ y′)).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from bandits.errors import PrefsimError


class Oracle:
    """Base class: ``probabilities(prompts, a, b)`` → P(a_i ≻ b_i | prompt_i), counted in ``queries``."""

    name = "oracle"

    def __init__(self):
        self.queries = 0

    def probabilities(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> np.ndarray:
        values = np.asarray(self._probabilities(list(prompts), list(first), list(second)), dtype=np.float64)
        if values.shape != (len(prompts),) or not np.all((values >= 0.0) & (values <= 1.0)):
            bad = values[~((values >= 0.0) & (values <= 1.0))][:3] if values.shape == (len(prompts),) else values.shape
            raise PrefsimError(f"oracle {self.name} must return one probability in [0, 1] per pair; got {bad}.")
        self.queries += len(prompts)
        return values

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray | None:
        """Scalar rewards if the oracle is reward-based (for the mean-reward metric), else None."""
        return None

    def _probabilities(self, prompts, first, second):
        raise NotImplementedError


class CallableOracle(Oracle):
    """A general preference oracle from a Python callable
    ``fn(prompt, response, response′) -> P(response ≻ response′)``."""

    def __init__(self, fn: Callable[[str, str, str], float], name: str = "callable"):
        super().__init__()
        self.fn, self.name = fn, name

    def _probabilities(self, prompts, first, second):
        values = []
        for x, a, b in zip(prompts, first, second):
            value = self.fn(x, a, b)
            try:
                values.append(float(value))
            except (TypeError, ValueError):
                raise PrefsimError(
                    f"oracle {self.name} must return one probability in [0, 1] per pair (a number), got "
                    f"{_short(value)}."
                ) from None
        return values


class BradleyTerryOracle(Oracle):
    """Bradley–Terry over a reward function: P(y ≻ y′ | x) = σ((r(x, y) − r(x, y′)) / scale).

    Args:
      reward_fn: ``(prompts, responses) -> rewards`` (batched; list in, sequence of floats out).
      scale: temperature of the comparison (smaller = more decisive).
    """

    def __init__(
        self, reward_fn: Callable[[list, list], Sequence[float]], scale: float = 1.0, name: str = "bradley_terry"
    ):
        super().__init__()
        if not scale > 0:
            raise PrefsimError(f"oracle.scale must be > 0, got {scale!r}.")
        self.reward_fn, self.scale, self.name = reward_fn, float(scale), name
        self._cache: dict = {}

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        keys = list(zip(prompts, responses))
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if todo:
            returned = self.reward_fn([k[0] for k in todo], [k[1] for k in todo])
            try:
                values = [float(v) for v in returned]
            except (TypeError, ValueError):
                raise PrefsimError(
                    f"oracle {self.name}: the reward function must return one finite number per response (a list), "
                    f"got {_short(returned)}."
                ) from None
            if len(values) != len(todo) or not all(math.isfinite(v) for v in values):
                raise PrefsimError(
                    f"oracle {self.name}: the reward function must return one finite number per response."
                )
            self._cache.update(zip(todo, values))
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def _probabilities(self, prompts, first, second):
        margin = (self.rewards(prompts, first) - self.rewards(prompts, second)) / self.scale
        return expit(margin)


def vader_reward(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
    """VADER compound sentiment score of each response, in [−1, 1] (positive = more positive text)."""
    analyzer = _vader_analyzer()
    return [analyzer.polarity_scores(text)["compound"] for text in responses]


_ANALYZER = None


def _vader_analyzer():
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def vader_oracle(scale: float = 0.25) -> BradleyTerryOracle:
    """The offline sentiment oracle: Bradley–Terry over VADER compound scores with temperature ``scale``."""
    return BradleyTerryOracle(vader_reward, scale, name="vader")


class RewardModelOracle(BradleyTerryOracle):
    """Bradley–Terry over a local sequence-classification reward model (reward = logit 0 of prompt + response)."""

    def __init__(self, path: str, scale: float = 1.0, batch_size: int = 16, max_length: int = 512):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        if not Path(path).is_dir():
            raise PrefsimError(
                f"oracle.path {path!r} is not a directory; the reward model must be a local "
                "sequence-classification model (nothing is downloaded)."
            )
        # transformers' own load report (its MISSING/UNEXPECTED table) is held back while loading: the
        # missing weights it would list are checked below and refused with a message that says what to give.
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, output_loading_info=True
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise PrefsimError(
                f"could not load a sequence-classification reward model from oracle.path {path!r}: {exc}"
            ) from None
        finally:
            transformers_logging.set_verbosity(verbosity)
        missing = sorted(loading.get("missing_keys") or ())
        if missing:
            architectures = ", ".join(getattr(model.config, "architectures", None) or ()) or "an unnamed architecture"
            raise PrefsimError(
                f"oracle.path {path!r} is not a trained reward model: its checkpoint ({architectures}) lacks weights "
                f"that a sequence classifier needs ({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}), "
                "which transformers would initialise at random, so its rewards would be noise. Give a reward model "
                "saved as a sequence classifier (…ForSequenceClassification, one label), or use oracle.kind = "
                '"vader" or "reward_function".'
            )
        self.model = model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size, self.max_length = batch_size, max_length
        self._torch = torch
        super().__init__(self._score, scale, name=f"reward_model:{path}")

    def _score(self, prompts, responses):
        torch = self._torch
        values = []
        with torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                texts = [
                    p + r
                    for p, r in zip(
                        prompts[start : start + self.batch_size], responses[start : start + self.batch_size]
                    )
                ]
                batch = self.tokenizer(
                    texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
                )
                batch = {k: v.to(self.model.device) for k, v in batch.items()}
                values.extend(self.model(**batch).logits[:, 0].float().tolist())
        return values


class UserFunction:
    """A user's Python function named in a spec (``oracle.function = "module:function"``), called as the
    oracle calls it; any exception it raises becomes a :class:`PrefsimError` naming the function, the call
    (``call``, e.g. ``"f(prompts, responses) with two lists of strings"``) and the exception, which is kept
    as ``__cause__``."""

    def __init__(self, fn: Callable, reference: str, call: str):
        self.fn, self.reference, self.call = fn, reference, call

    def __call__(self, *arguments: Any) -> Any:
        try:
            return self.fn(*arguments)
        except Exception as exc:
            detail = " ".join(str(exc).split())
            detail = detail if len(detail) <= 300 else detail[:300] + " …"
            raise PrefsimError(
                f"oracle.function {self.reference!r} failed when called as {self.call}: {type(exc).__name__}"
                f"{': ' + detail if detail else ''}. Fix the function or point oracle.function at one that takes "
                "these arguments."
            ) from exc


def _short(value: Any) -> str:
    """A value for an error message: its type's name and a repr cut to 80 characters."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:80] + ' …'}"


def python_object(reference: str, field: str) -> Any:
    """Import ``module:attribute`` (for user callables in specs)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise PrefsimError(f'{field} must look like "package.module:function", got {reference!r}.')
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PrefsimError(f"{field}: cannot import {reference!r}: {exc}") from None


def check_oracle_settings(kind: str, path: str | None, function: str | None) -> None:
    """Refuse an ``[oracle]`` table that lacks what its kind needs: ``oracle.path`` for reward_model,
    ``oracle.function`` for reward_function and preference_function (the spec parser asks before any model
    loads; :func:`build_oracle` asks again)."""
    if kind == "reward_model" and not path:
        raise PrefsimError('oracle.kind = "reward_model" needs oracle.path (a local sequence-classification model).')
    if kind == "reward_function" and not function:
        raise PrefsimError(
            'oracle.kind = "reward_function" needs oracle.function = "module:function" '
            "taking (prompts, responses) and returning rewards."
        )
    if kind == "preference_function" and not function:
        raise PrefsimError(
            'oracle.kind = "preference_function" needs oracle.function = "module:function" '
            "taking (prompt, response, response′) and returning P(response ≻ response′)."
        )


def build_oracle(kind: str, *, scale: float = 1.0, path: str | None = None, function: str | None = None) -> Oracle:
    """Oracle from the ``[oracle]`` table: kind ∈ vader, reward_model, reward_function, preference_function."""
    check_oracle_settings(kind, path, function)
    if kind == "vader":
        return vader_oracle(scale)
    if kind == "reward_model":
        return RewardModelOracle(path, scale)
    if kind == "reward_function":
        call = "f(prompts, responses) with two lists of strings, expecting one reward per response"
        reward = UserFunction(python_object(function, "oracle.function"), function, call)
        return BradleyTerryOracle(reward, scale, name=function)
    if kind == "preference_function":
        call = "f(prompt, response, response′) with three strings, expecting P(response ≻ response′)"
        preference = UserFunction(python_object(function, "oracle.function"), function, call)
        return CallableOracle(preference, name=function)
    raise PrefsimError(
        f"oracle.kind must be vader, reward_model, reward_function or preference_function, got {kind!r}."
    )
