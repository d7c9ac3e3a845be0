"""Game specifications: the ``[game]`` table of an experiment spec, turned into instances per seed.

A :class:`GameSpec` is data; :func:`build_game` turns it and a seed into a :class:`GameInstance`
(NumPy arrays).  Instances vary with the seed exactly when the spec asks for randomness (a
``random`` game, ``rewards = "random"`` (Bradley–Terry or ``bt_mixture``), ``reference = "random"``
or ``initial = "random"``), so one run can average over many games; :func:`depends_on_seed` says
whether it does, which lets the simulator share one matrix across all seeds (a matrix–matrix product
instead of S matrix–vector products).

Kinds: ``matrix``, ``bradley_terry`` (P = σ(r_i − r_j)), ``bt_mixture`` (P(i≻j) = Σ_k w_k σ(r_k(i) −
r_k(j)), n reward vectors and weights summing to 1; :func:`bandits.preference.bradley_terry_mixture`),
``cyclic`` and ``random`` (see :class:`GameSpec`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from bandits import preference as preference_models
from bandits import reference as reference_policies
from bandits.errors import PrefsimError
from bandits.inputs import check_integer, check_size, shortened

GAME_KINDS = ("matrix", "bradley_terry", "bt_mixture", "cyclic", "random")
RANDOM_CONSTRUCTIONS = ("lower_triangle", "skew_logits")
#: The :class:`GameSpec` fields a game reads under some settings only: field → ``((setting, values), …)``, all of
#: which must hold (the setting one of the values); the other fields are always read.  A field given (not at its
#: default) where one does not hold is refused (:meth:`GameSpec.validate`), as a spec file refuses such a key
#: (:data:`sim.spec_checks.READ_WHEN` builds its ``[game]`` entries from this table).
READ_ONLY_WITH: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "preference": (("kind", ("matrix",)),),
    "rewards": (("kind", ("bradley_terry", "bt_mixture")),),
    "reward_scale": (("kind", ("bradley_terry", "bt_mixture")), ("rewards", ("random",))),
    "weights": (("kind", ("bt_mixture",)),),
    "components": (("kind", ("bt_mixture",)),),
    "strength": (("kind", ("cyclic",)),),
    "construction": (("kind", ("random",)),),
    "scale": (("kind", ("random",)), ("construction", ("skew_logits",))),
    "reference_scale": (("reference", ("random",)),),
    "reference_min_mass": (("reference", ("random",)),),
}


@dataclasses.dataclass(frozen=True)
class GameSpec:
    """The ``[game]`` table of a spec.  Every field has a default so small specs stay small."""

    kind: str = "cyclic"
    """``matrix`` (give ``preference``), ``bradley_terry`` (give ``rewards``), ``bt_mixture`` (give
    ``rewards`` as n reward vectors, and ``weights``), ``cyclic`` (``arms``, ``strength``) or ``random``
    (``arms``, ``construction``; a new game per seed)."""
    arms: int | None = None
    """Number of arms K.  Required for ``cyclic`` and ``random``, and for ``bradley_terry`` or
    ``bt_mixture`` with ``rewards = "random"``; otherwise read off the matrix or reward vector(s)."""
    preference: Any = None
    """K×K preference matrix for ``kind = "matrix"``: entries in [0, 1] and P + Pᵀ = 1."""
    rewards: Any = None
    """Bradley–Terry rewards: a list of K numbers, or ``"random"`` for r ~ U[0, reward_scale]^K
    drawn per seed.  ``bt_mixture``: a list of n such lists (one reward vector r_k per component), or
    ``"random"`` (n = ``components`` vectors drawn per seed)."""
    reward_scale: float = 1.0
    """Width of the uniform draw for ``rewards = "random"``."""
    weights: Any = None
    """``bt_mixture``: the n mixture weights w_k ≥ 0, summing to 1, of
    P(i≻j) = Σ_k w_k σ(r_k(i) − r_k(j)); default uniform 1/n."""
    components: int | None = None
    """``bt_mixture`` with ``rewards = "random"``: the number n of reward vectors, each drawn
    r_k ~ U[0, reward_scale]^K per seed (may be left out when ``weights`` gives n)."""
    strength: float = 1.0
    """Cyclic strength c ∈ [0, 1]: arm i beats arm i+1 with probability (1 + c)/2."""
    construction: str = "lower_triangle"
    """Random-game construction: ``lower_triangle`` (U[0,1] lower triangle) or ``skew_logits``
    (P = σ(S), S skew-symmetric Gaussian times ``scale``)."""
    scale: float = 1.0
    """Logit scale of the ``skew_logits`` construction."""
    reference: Any = "uniform"
    """π_ref: ``"uniform"``, a list of K positive probabilities summing to 1, or ``"random"``
    (softmax of ``reference_scale``·N(0, 1) logits mixed to keep ``reference_min_mass``)."""
    reference_scale: float = 1.0
    """Logit scale of a random reference."""
    reference_min_mass: float = 0.0
    """Smallest mass a random reference may give an arm (0 ≤ m ≤ 1/K)."""
    tau: float = 0.0
    """Regularisation τ ≥ 0 of the game used by the metrics (the KL(π‖π_ref) weight of J)."""
    initial: str = "reference"
    """Initial policy π_0: ``reference`` (π_ref, as in the papers) or ``random`` (softmax of
    N(0, 1) logits, drawn per seed)."""

    def __new__(cls, *args: Any, **fields: Any) -> GameSpec:
        """Refuse a field name that :class:`GameSpec` does not have (a misspelt ``arm = 3``) with a
        :class:`~bandits.errors.PrefsimError` naming it and the kind, as a spec file's ``[game]`` table refuses an
        unknown key (the dataclass's own ``__init__`` would raise a bare ``TypeError``)."""
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(fields) - set(names))
        if unknown:
            kind = fields.get("kind", args[0] if args else cls.kind)
            raise PrefsimError(
                f"GameSpec(kind={kind!r}): unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}."
            )
        return super().__new__(cls)

    def validate(self) -> GameSpec:
        """Check the fields that can be checked without building the game."""
        if not isinstance(self.kind, str) or self.kind not in GAME_KINDS:
            raise PrefsimError(f"game.kind: unknown kind {self.kind!r}; choose one of {', '.join(GAME_KINDS)}.")
        if not isinstance(self.construction, str) or self.construction not in RANDOM_CONSTRUCTIONS:
            raise PrefsimError(
                f"game.construction: unknown construction {self.construction!r}; "
                f"choose one of {', '.join(RANDOM_CONSTRUCTIONS)}."
            )
        if not isinstance(self.initial, str) or self.initial not in ("reference", "random"):
            raise PrefsimError(f'game.initial: must be "reference" or "random", got {self.initial!r}.')
        self._refuse_unread_fields()
        self.validate_tau_and_arms()
        if self.kind == "matrix" and self.preference is None:
            raise PrefsimError('game.preference: kind = "matrix" needs a K×K preference matrix.')
        if self.kind == "bradley_terry" and self.rewards is None:
            raise PrefsimError('game.rewards: kind = "bradley_terry" needs a list of rewards or "random".')
        self._validate_mixture()
        if self.kind in ("cyclic", "random") and self.arms is None:
            raise PrefsimError(f'game.arms: kind = "{self.kind}" needs the number of arms.')
        for field in ("preference", "rewards", "reference", "weights"):
            _check_numbers(getattr(self, field), f"game.{field}")
        if isinstance(self.rewards, str) and self.rewards != "random":
            raise PrefsimError(f'game.rewards: expected a list of numbers or "random", got {self.rewards!r}.')
        if isinstance(self.rewards, str) and self.rewards == "random" and self.arms is None:
            raise PrefsimError('game.arms: rewards = "random" needs the number of arms.')
        if isinstance(self.reference, str) and self.reference not in ("uniform", "random"):
            raise PrefsimError(
                f'game.reference: expected "uniform", "random" or a list of probabilities, got {self.reference!r}.'
            )
        for field in ("strength", "reward_scale", "scale", "reference_scale", "reference_min_mass"):
            if not _is_number(getattr(self, field)):
                raise PrefsimError(f"game.{field}: expected a finite number, got {getattr(self, field)!r}.")
        if not 0.0 <= self.strength <= 1.0:
            raise PrefsimError(f"game.strength: the cyclic strength c must lie in [0, 1], got {self.strength!r}.")
        # a negative scale draws from the same distribution as its absolute value (the draws are symmetric), so it
        # says nothing a positive one does not: refused, as a negative reward scale is
        for field in ("reward_scale", "scale", "reference_scale"):
            if getattr(self, field) < 0:
                raise PrefsimError(f"game.{field}: must be ≥ 0, got {getattr(self, field)!r}.")
        if self.reference_min_mass < 0:
            raise PrefsimError(f"game.reference_min_mass: must be ≥ 0, got {self.reference_min_mass!r}.")
        if self.kind == "cyclic" and _is_number(self.arms) and self.arms < 3:
            raise PrefsimError(f"game.arms: a cyclic game needs at least 3 arms, got {self.arms!r}.")
        return self

    def validate_tau_and_arms(self) -> GameSpec:
        """Check τ and K (when given) only: all that a sampled run reads of the table when its
        ``run.problem`` builds its own preferences (the ring reads τ, the linear bandits τ and K)."""
        if not _is_number(self.tau) or self.tau < 0:
            raise PrefsimError(f"game.tau: the regularisation must be a number ≥ 0, got {self.tau!r}.")
        if self.arms is not None and (
            isinstance(self.arms, bool) or not isinstance(self.arms, (int, np.integer)) or self.arms < 2
        ):
            raise PrefsimError(f"game.arms: expected an integer ≥ 2, got {self.arms!r}.")
        return self

    def _refuse_unread_fields(self) -> None:
        """Refuse a field given (not at its default) that this game does not read (:data:`READ_ONLY_WITH`):
        ``scale`` of a cyclic game, ``strength`` of a random one, ``reward_scale`` with a list of rewards.  A field
        at its default counts as not given, as a spec file's defaults never count."""
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        for field, conditions in READ_ONLY_WITH.items():
            if _is_default(getattr(self, field), defaults[field]):
                continue
            for setting, values in conditions:
                if not (isinstance(getattr(self, setting), str) and getattr(self, setting) in values):
                    wanted = " or ".join(f'"{value}"' for value in values)
                    has = "" if setting == "kind" else f", {setting} = {shortened(repr(getattr(self, setting)), 60)}"
                    raise PrefsimError(
                        f"game.{field}: only {setting} = {wanted} reads it, got kind = {self.kind!r}{has}; leave "
                        f"{field} out or set {setting} = {wanted}."
                    )

    def _validate_mixture(self) -> None:
        """The ``bt_mixture`` fields (``weights``, ``components``); other kinds refuse them
        (:meth:`_refuse_unread_fields`)."""
        if self.kind != "bt_mixture":
            return
        if self.rewards is None:
            raise PrefsimError(
                'game.rewards: kind = "bt_mixture" needs a list of reward vectors (one list of K numbers per '
                'component) or "random" (with components or weights).'
            )
        if self.components is not None and (
            isinstance(self.components, bool)
            or not isinstance(self.components, (int, np.integer))
            or self.components < 1
        ):
            raise PrefsimError(f"game.components: expected an integer ≥ 1, got {self.components!r}.")
        weights = None
        if self.weights is not None:
            weights = preference_models.validate_mixture_weights(self.weights, self.components, name="game.weights")
        if isinstance(self.rewards, str):
            if self.rewards != "random":
                raise PrefsimError(
                    f'game.rewards: expected a list of reward vectors or "random", got {self.rewards!r}.'
                )
            if self.components is None and weights is None:
                raise PrefsimError(
                    'game.components: rewards = "random" in a bt_mixture needs the number of components '
                    "(components = n, or n weights)."
                )
        else:
            try:
                count = len(self.rewards)
            except TypeError:
                raise PrefsimError(
                    f'game.rewards: expected a list of reward vectors or "random", got {self.rewards!r}.'
                ) from None
            if self.components is not None and count != self.components:
                raise PrefsimError(
                    f"game.components: says {self.components} but game.rewards lists {count} reward vector(s)."
                )
            if weights is not None and count != weights.shape[0]:
                raise PrefsimError(
                    f"game.weights: {weights.shape[0]} weight(s) for {count} reward vector(s); give one weight per "
                    "component."
                )


@dataclasses.dataclass(frozen=True)
class GameInstance:
    """One concrete game: NumPy float64 arrays."""

    preference: np.ndarray
    """P, shape (K, K)."""
    reference: np.ndarray
    """π_ref, shape (K,), all entries > 0."""
    initial: np.ndarray
    """π_0, shape (K,)."""
    rewards: np.ndarray | None
    """Bradley–Terry rewards, shape (K,), or ``None`` for a general preference game."""
    tau: float
    """The game's regularisation τ."""

    @property
    def arms(self) -> int:
        return int(self.preference.shape[0])


def preference_depends_on_seed(spec: GameSpec) -> bool:
    """Whether :func:`build_game` gives different preference matrices P for different seeds: a ``random``
    game, or rewards drawn per seed (``rewards = "random"``, Bradley–Terry or ``bt_mixture``)."""
    return spec.kind == "random" or (isinstance(spec.rewards, str) and spec.rewards == "random")


def depends_on_seed(spec: GameSpec) -> bool:
    """Whether :func:`build_game` gives different games for different seeds: P
    (:func:`preference_depends_on_seed`), a random π_ref or a random π_0."""
    return (
        preference_depends_on_seed(spec)
        or (isinstance(spec.reference, str) and spec.reference == "random")
        or spec.initial == "random"
    )


def build_game(spec: GameSpec, seed: int = 0) -> GameInstance:
    """Build the game of ``spec`` for ``seed``, an integer ≥ 0 (deterministic; independent streams per
    component: ``default_rng([seed, c])``)."""
    if not isinstance(spec, GameSpec):
        raise PrefsimError(
            f"spec: expected a bandits.games.GameSpec (e.g. GameSpec(kind='cyclic', arms=3)), got "
            f"{type(spec).__name__}."
        )
    seed = check_integer(seed, "seed", 0)
    spec.validate()
    rewards = None
    if spec.kind == "matrix":
        matrix = preference_models.validate_preference_matrix(spec.preference, name="game.preference")
    elif spec.kind == "bradley_terry":
        if isinstance(spec.rewards, str):
            arms = _arms(spec)
            check_size(arms * arms, "game.arms", f"the {arms}×{arms} preference matrix")  # before drawing the rewards
            rng = np.random.default_rng([int(seed), 1])
            rewards = float(spec.reward_scale) * rng.uniform(size=arms)
        else:
            rewards = _vector(spec.rewards, "game.rewards")
        matrix = preference_models.bradley_terry(rewards, name="game.rewards")
    elif spec.kind == "bt_mixture":
        if isinstance(spec.rewards, str):
            count, arms = int(spec.components if spec.components is not None else len(spec.weights)), _arms(spec)
            # the mixture's n·K² terms, before the n·K rewards are drawn
            check_size(count * arms * arms, "game.components", f"{count} component(s) of a {arms}×{arms} matrix")
            rng = np.random.default_rng([int(seed), 5])
            mixture_rewards = float(spec.reward_scale) * rng.uniform(size=(count, arms))
        else:
            mixture_rewards = spec.rewards
        matrix = preference_models.bradley_terry_mixture(
            mixture_rewards, spec.weights, rewards_name="game.rewards", weights_name="game.weights"
        )
    elif spec.kind == "cyclic":
        matrix = preference_models.cyclic(_arms(spec), spec.strength)
    else:
        rng = np.random.default_rng([int(seed), 2])
        if spec.construction == "lower_triangle":
            matrix = preference_models.random_lower_triangle(_arms(spec), rng)
        else:
            matrix = preference_models.random_skew_logits(_arms(spec), rng, spec.scale)
    arms = matrix.shape[0]
    if spec.arms is not None and _arms(spec) != arms:
        raise PrefsimError(f"game.arms: says {spec.arms} arms but the {spec.kind} game has {arms}.")

    if isinstance(spec.reference, str) and spec.reference == "uniform":
        reference = reference_policies.uniform(arms)
    elif isinstance(spec.reference, str):
        if spec.reference_min_mass > 1.0 / arms:
            raise PrefsimError(
                f"game.reference_min_mass: at most 1/K = {1.0 / arms:g} for {arms} arms, "
                f"got {spec.reference_min_mass!r}."
            )
        rng = np.random.default_rng([int(seed), 3])
        try:
            reference = reference_policies.random_logits(arms, rng, spec.reference_scale, spec.reference_min_mass)
        except PrefsimError as exc:
            raise PrefsimError(
                f"game.reference_scale: the random reference for seed {seed} (scale {spec.reference_scale!r}, "
                f"reference_min_mass {spec.reference_min_mass!r}) is not a valid policy ({exc}); lower "
                f"reference_scale or set reference_min_mass > 0."
            ) from None
    else:
        reference = reference_policies.validate_reference(spec.reference, arms, name="game.reference")

    if spec.initial == "random":
        rng = np.random.default_rng([int(seed), 4])
        logits = rng.standard_normal(arms)
        initial = np.exp(logits - logits.max())
        initial /= initial.sum()
    else:
        initial = reference.copy()
    return GameInstance(preference=matrix, reference=reference, initial=initial, rewards=rewards, tau=float(spec.tau))


def _arms(spec: GameSpec) -> int:
    arms = spec.arms
    if isinstance(arms, bool) or not isinstance(arms, (int, np.integer)) or arms < 2:
        raise PrefsimError(f"game.arms: expected an integer ≥ 2, got {arms!r}.")
    return int(arms)


def _vector(values, field: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PrefsimError(f"{field}: expected a list of numbers.") from None
    if array.ndim != 1:
        raise PrefsimError(f"{field}: expected a flat list of numbers, got shape {array.shape}.")
    return array


def _check_numbers(value, field: str) -> None:
    """Refuse a list (or array) of ``field`` holding anything but numbers: a quoted "0.5" or a boolean would
    otherwise be converted silently (a name such as "random" is checked by the field's own rules)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise PrefsimError(f"{field}: expected numbers, got an array of {value.dtype}.")
        return
    if not isinstance(value, (list, tuple)):
        return
    for item in value:
        if isinstance(item, (list, tuple, np.ndarray)):
            _check_numbers(item, field)
        elif isinstance(item, bool) or not isinstance(item, (int, float, np.integer, np.floating)):
            raise PrefsimError(f"{field}: expected numbers, got {item!r} (write numbers without quotes).")


def _is_default(value, default) -> bool:
    """Whether a :class:`GameSpec` field's ``value`` is its ``default`` (None, a name or a number), compared
    without NumPy's elementwise ``==`` on an array."""
    if default is None:
        return value is None
    if isinstance(default, str):
        return isinstance(value, str) and value == default
    return _is_number(value) and value == default


def _is_number(value) -> bool:
    """Whether ``value`` is one finite int or float (Python's or NumPy's), not a bool; an int beyond float64's range
    is not (``np.isfinite`` raised a TypeError on one beyond 64 bits)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
