"""Checks of spec input that the parsers share: the file's bytes, value types, labels, unused keys.

Each function raises :class:`~bandits.errors.PrefsimError` with one paragraph naming the field (or
the file) and what to do; none returns silently on input the run would ignore or misread.

* :func:`read_spec_text` — a spec file must be UTF-8 text (an optional UTF-8 byte-order mark is
  dropped); binary files, UTF-16/32 files and other encodings are refused, naming the encoding or
  the offending byte.
* :func:`check_label` — result labels become file names (``parts/<label>.csv``, LLM output
  folders), so they are limited to **1–100 ASCII letters, digits and** ``_ - . + = , [ ] ( )``,
  starting with a letter, digit or ``_`` (no whitespace, no NUL, no ``/``, never ``.`` or ``..``).
* :func:`unread_keys` / :func:`check_unread_keys` — a ``[game]`` or ``[run]`` key given explicitly
  must be one the run reads: :data:`READ_WHEN` says, for every key, under which settings it is read
  (``game.scale`` with ``kind = "random"`` and ``construction = "skew_logits"`` only, the ``[run]``
  keys but ``mode`` and ``seed_block`` in sampled mode only, …); any other given key is an error
  naming the key, its value and the setting that would read it, like an unknown key.  Defaults never
  count.  In a ``[game]``/``[run]`` sweep a key must be read at some point; a swept key at every
  point (else some points would repeat one run once per value).
* :func:`check_rule_tables` — APO's ``alpha`` is not read with ``schedule = "nesterov"`` (α_t =
  t/(t+3) replaces it), so giving both is an error.
* :func:`check_run_name` — the top-level ``name`` names a directory (a manifest's rerun goes to
  ``results/<name>-rerun``) and launch jobs, so it follows the label rule; ``description`` is a string.
* :func:`check_integer_range` — integers must fit in 64 bits (TOML's own limit; Python's parser
  accepts larger ones, which NumPy cannot hold).
* :func:`load_toml` / :func:`check_nesting` — tables and arrays nest at most :data:`MAX_SPEC_DEPTH` levels
  (a spec nests a few: a matrix is a list of lists); deeper ones ended in Python's ``RecursionError``, in
  the TOML parser or in the checks that walk the spec.
* :func:`check_sampled_numbers` — ``tolerance`` must be finite (∞ would never stop the inner loop
  early, i.e. mean "unset" while saying something else).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bandits.errors import PrefsimError, os_reason
from bandits.games import GAME_KINDS, READ_ONLY_WITH
from bandits.inputs import as_path
from bandits.pair_schemes import CANDIDATE_SCHEMES

#: Largest spec file read (a spec is a few kilobytes of text; a matrix of 300 arms is ~1 MB).
MAX_SPEC_BYTES = 16 * 2**20
#: Deepest nesting of tables and arrays in a spec: a swept preference matrix under ``[game]`` (a list of
#: lists of lists of numbers) is 4 levels below the top; Python's TOML parser fails near 500.
MAX_SPEC_DEPTH = 16
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,\[\]()-]{0,99}")
#: What :data:`LABEL_PATTERN` accepts, in words.
LABEL_CHARACTERS = "1–100 ASCII letters, digits and _ - . + = , [ ] ( ), starting with a letter, digit or _"
LABEL_RULE = f"{LABEL_CHARACTERS} (labels name result files)"
#: What the top-level ``name`` may be: a label's characters, as it names a directory too.
NAME_RULE = (
    f"{LABEL_CHARACTERS} (the name is the directory results/<name>-rerun of a rerun from the manifest, and the name "
    "of launch jobs)"
)


def plain_values(value: Any, other: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as a TOML file would give it, through dicts (their keys as strings), lists and tuples (returned
    as lists): NumPy scalars as Python numbers and booleans, NumPy arrays as (nested) lists.  Anything else is
    returned as it is, or as ``other(value)`` when ``other`` is given.  A spec built in Python with NumPy values
    then validates as its TOML text would, and its manifest records numbers, not their text."""
    if isinstance(value, dict):
        return {str(key): plain_values(item, other) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(item, other) for item in value]
    if isinstance(value, np.ndarray):
        return plain_values(value.tolist(), other)
    if isinstance(value, np.generic):
        return value.item()
    if other is None or value is None or isinstance(value, (bool, int, float, str)):
        return value
    return other(value)


def regular_file(path: Path, what: str) -> bool:
    """Whether ``path`` is a regular file; a :class:`PrefsimError` naming ``what`` when the system cannot say
    (a name too long, a path through a directory that cannot be searched)."""
    try:
        return path.is_file()
    except OSError as exc:
        raise PrefsimError(f"{what} {str(path)!r} cannot be read ({os_reason(exc)}).") from None


def read_spec_text(path: str | Path, what: str = "spec file") -> str:
    """The text of a TOML file, or a :class:`PrefsimError` saying why it is not UTF-8 text."""
    path = as_path(path, what)
    if not regular_file(path, what):
        raise PrefsimError(f"{what} {str(path)!r} does not exist or is not a regular file.")
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise PrefsimError(
                f"{what} {str(path)!r} is {size} bytes; a spec is a small TOML text file "
                f"(at most {MAX_SPEC_BYTES} bytes)."
            )
        data = path.read_bytes()
    except OSError as exc:
        raise PrefsimError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc}).") from None
    for bom, encoding in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if data.startswith(bom):
            raise PrefsimError(f"{what} {str(path)!r} is {encoding} text; TOML files are UTF-8: save it as UTF-8.")
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise PrefsimError(
            f"{what} {str(path)!r} is not a text file (a NUL byte at offset {offset}); give a TOML spec file."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrefsimError(
            f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); TOML "
            "files are UTF-8: save it as UTF-8."
        ) from None


def load_toml(text: str, what: str) -> dict:
    """``tomllib.loads(text)``, with tables and arrays nested too deeply refused naming ``what`` (the file):
    Python's parser recurses once per level of array or inline table and ends in a ``RecursionError`` near
    500 levels.  A :class:`tomllib.TOMLDecodeError` is left to the caller, which words it."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise PrefsimError(
            f"{what} nests arrays or inline tables hundreds of levels deep; a spec nests at most "
            f"{MAX_SPEC_DEPTH} (a matrix is a list of lists): give a spec TOML file."
        ) from None


def check_nesting(value: object, where: str = "spec") -> None:
    """Raise when tables (dicts) and arrays (lists, tuples) in the spec data nest more than
    :data:`MAX_SPEC_DEPTH` levels, naming the path to the first one too deep.  The walk keeps its own stack:
    the recursive checks that follow it (:func:`plain_values`, :func:`check_integer_range`) would end in a
    ``RecursionError`` on a table nested a few hundred levels (``[x.y.y.y…]`` headers parse without one)."""
    stack = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, dict):
            children = [(child, f"{at}.{key}" if at != "spec" else str(key)) for key, child in item.items()]
        elif isinstance(item, (list, tuple)):
            children = [(child, f"{at}[{index}]") for index, child in enumerate(item)]
        else:
            continue
        if children and depth == MAX_SPEC_DEPTH:
            raise PrefsimError(
                f"{at}: tables and arrays nest more than {MAX_SPEC_DEPTH} levels deep here; a spec nests a few "
                "(a matrix is a list of lists): remove the extra levels."
            )
        stack.extend((child, path, depth + 1) for child, path in children)


def check_integer_range(value: object, where: str = "spec") -> None:
    """Raise when an integer anywhere in the nested spec data lies outside [−2⁶³, 2⁶³ − 1]."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_integer_range(item, f"{where}.{key}" if where != "spec" else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_integer_range(item, f"{where}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise PrefsimError(
            f"{where}: the integer {value} does not fit in 64 bits (TOML integers are 64-bit); "
            "write a smaller number, or a float such as 1e30 where a real number is meant."
        )


def check_label(label: object, where: str) -> str:
    """Return ``label`` if it is a safe result name (see the module docstring), else raise."""
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        shown = (
            repr(label) if not isinstance(label, str) or len(label) <= 40 else f"{label[:40]!r}… ({len(label)} chars)"
        )
        raise PrefsimError(f"{where}: label must be {LABEL_RULE}; got {shown}.")
    return label


def check_run_name(data: dict) -> None:
    """The top-level ``name`` (as a label, :data:`LABEL_PATTERN`: it becomes the directory ``results/<name>-rerun``
    of a manifest's rerun and the name of launch jobs) and ``description`` (a string), where given."""
    name = data.get("name")
    if "name" in data and (not isinstance(name, str) or not LABEL_PATTERN.fullmatch(name)):
        raise PrefsimError(f"name: expected {NAME_RULE}; got {_shown(name)}.")
    description = data.get("description")
    if "description" in data and not isinstance(description, str):
        raise PrefsimError(
            f"description: expected a string (a line `prefsim report` prints under the name), got "
            f"{type(description).__name__} {_shown(description)}."
        )


def check_game_types(table: dict) -> None:
    """``[game]`` keys whose type must be checked before the kind-specific checks read them."""
    kind = table.get("kind", "cyclic")
    if not isinstance(kind, str):
        raise PrefsimError(
            f"game.kind: expected a string ({', '.join(GAME_KINDS)}), got {type(kind).__name__} {kind!r}."
        )


def check_rule_tables(tables: object) -> None:
    """Rule keys that the rule would ignore: APO's ``alpha`` under ``schedule = "nesterov"``."""
    for index, table in enumerate(tables if isinstance(tables, list) else []):
        if not isinstance(table, dict):
            continue
        schedule = table.get("schedule")
        schedules = schedule if isinstance(schedule, list) else [schedule]
        is_apo = isinstance(table.get("name"), str) and table["name"] == "apo"
        if is_apo and "nesterov" in schedules and "alpha" in table:
            swept = " (the schedule sweep includes nesterov; write one [[rule]] table per schedule)"
            raise PrefsimError(
                f'rule #{index + 1} (apo): alpha is not used with schedule = "nesterov" (its weight α_t = t/(t+3) '
                f"replaces α){swept if isinstance(schedule, list) else ''}; remove alpha, or use schedule = "
                '"constant" to set α.'
            )


def check_seed_block(value: object) -> None:
    """``[run] seed_block``: unset, or an integer ≥ 1 (seeds per block; more than the seeds is one block)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PrefsimError(
            f"run.seed_block: expected an integer ≥ 1 (the number of seeds run together in one block), got "
            f"{value!r}; leave it out to run all seeds of a rule table as one block."
        )


def check_sampled_numbers(run: Any) -> None:
    """``[run]`` numbers of sampled mode that must be finite."""
    tolerance = run.tolerance
    if isinstance(tolerance, float) and not math.isfinite(tolerance):
        raise PrefsimError(
            f"run.tolerance: expected a finite number > 0 (or leave it out to run exactly inner_steps steps), "
            f"got {tolerance!r}."
        )


# ----------------------------------------------------------------------------------------------------
# Which [game] and [run] key a run reads, and when


@dataclasses.dataclass(frozen=True)
class Needs:
    """A setting under which a run reads a ``[game]`` or ``[run]`` key (one condition of :data:`READ_WHEN`)."""

    fields: tuple
    """The settings it looks at (``run.policy``); an error quotes their values when it does not hold."""
    holds: Callable[[Mapping[str, Any]], bool]
    """Whether it holds, given the settings by name (``"run.policy"`` → ``"mlp"``, defaults filled;
    ``"rule.run_defaults"``: the rule parameters some ``[[rule]]`` table takes from the deprecated
    ``[run]`` keys)."""
    text: str
    """The setting as an error states it (``policy = "mlp"``; keys of the other table with its name)."""
    fix: str = ""
    """The error's advice; empty: ``remove it or set <text>``."""


#: Sampled-mode problems with a random contextual linear bandit (:mod:`bandits.linear`).
LINEAR_PROBLEMS = ("linear_bradley_terry", "linear_preference_game")
#: Sampled-mode problems that build their own preferences, π_ref and features: of the ``[game]`` table
#: they read ``tau`` (and the linear ones ``arms``).
OWN_PROBLEMS = ("ring", *LINEAR_PROBLEMS)


def reads_own_problem(mode: Any, problem: Any) -> bool:
    """Whether a run with these ``[run]`` settings samples one of :data:`OWN_PROBLEMS` (not the ``[game]`` table)."""
    return _is(mode, "sampled") and _is(problem, *OWN_PROBLEMS)


def _is(value: Any, *names: str) -> bool:
    """``value`` is one of the names ``names`` (a list or an array of numbers is none)."""
    return isinstance(value, str) and value in names


def _near(field: str, key: str) -> str:
    """``field`` as an error about ``key`` names it: without the table when both are in the same table."""
    table, name = field.split(".", 1)
    return name if key.startswith(f"{table}.") else field


def _few(names: Sequence[str]) -> str:
    """The first three point names, and ``…`` for more."""
    return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")


def _either(names: Sequence[str]) -> str:
    """``"a"``, ``"a" or "b"``, ``"a", "b" or "c"``."""
    shown = [_shown(name) for name in names]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _shown(value: Any) -> str:
    """A value as a spec writes it (``"random"``, ``2``, ``true``, ``[1, 0.5]``), cut at 60 characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_shown(item) for item in value) + "]"
    elif value is None:
        text = "unset"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


_SAMPLED = Needs(("run.mode",), lambda s: _is(s["run.mode"], "sampled"), 'mode = "sampled"')
_GAME_PROBLEM = Needs(
    ("run.problem",),
    lambda s: not reads_own_problem(s["run.mode"], s["run.problem"]),
    'run.problem = "game"',
    'remove it (the ring reads game.tau only, the linear problems game.arms and game.tau) or set run.problem = "game"',
)


def _game(field: str, *values: str) -> Needs:
    """``game.<field>`` is one of ``values`` (``kind = "random"``)."""
    return Needs((f"game.{field}",), lambda s: _is(s[f"game.{field}"], *values), f"{field} = {_either(values)}")


def _run(field: str, *values: str) -> Needs:
    """``run.<field>`` is one of ``values``."""
    return Needs((f"run.{field}",), lambda s: _is(s[f"run.{field}"], *values), f"{field} = {_either(values)}")


def _rule_takes(parameter: str, text: str) -> Needs:
    """Some ``[[rule]]`` table takes rule ``parameter`` from its deprecated ``[run]`` key (``text`` says which)."""
    return Needs((), lambda s: parameter in s["rule.run_defaults"], text, "remove it")


#: For every ``[game]`` and ``[run]`` key, the settings under which a run reads it (all must hold; ``()``:
#: always).  A key given explicitly where one does not hold is refused (:func:`unread_keys`).
READ_WHEN: dict[str, tuple] = {
    "game.kind": (_GAME_PROBLEM,),
    "game.arms": (
        Needs(
            ("run.problem",),
            lambda s: not (_is(s["run.mode"], "sampled") and _is(s["run.problem"], "ring")),
            'run.problem = "game", "linear_bradley_terry" or "linear_preference_game"',
            "remove it (the ring has ring_grid² actions)",
        ),
    ),
    # the fields a game reads under some settings only: bandits.games.READ_ONLY_WITH, the one definition
    **{
        f"game.{field}": (_GAME_PROBLEM, *(_game(setting, *values) for setting, values in conditions))
        for field, conditions in READ_ONLY_WITH.items()
    },
    "game.reference": (_GAME_PROBLEM,),
    "game.tau": (),
    "game.initial": (_GAME_PROBLEM,),
    "run.mode": (),
    "run.seed_block": (),
    "run.data": (_SAMPLED,),
    "run.pairs_per_iteration": (
        _SAMPLED,
        Needs(
            ("run.data", "run.offline_pairs"),
            lambda s: not _is(s["run.data"], "offline") or s["run.offline_pairs"] is None,
            'data = "online", or without offline_pairs',
            'remove it: with data = "offline", offline_pairs gives the dataset\'s size (pairs_per_iteration only '
            "sets its default, pairs_per_iteration × iterations)",
        ),
    ),
    "run.offline_pairs": (_SAMPLED, _run("data", "offline")),
    "run.pair_scheme": (_SAMPLED,),
    "run.candidates": (
        _SAMPLED,
        _run("pair_scheme", *CANDIDATE_SCHEMES),
    ),
    "run.self_comparison": (_SAMPLED, _run("pair_scheme", "sppo_win_rate")),
    "run.policy": (_SAMPLED,),
    "run.problem": (_SAMPLED,),
    "run.features": (
        _SAMPLED,
        Needs(
            ("run.problem", "run.policy"),
            lambda s: _is(s["run.problem"], "game") and not _is(s["run.policy"], "tabular"),
            'a log_linear or mlp policy on problem = "game"',
            "remove it (a tabular policy reads no features; the linear problems and the ring bring their own) or "
            'set policy = "log_linear" or "mlp"',
        ),
    ),
    "run.feature_dim": (
        _SAMPLED,
        Needs(
            ("run.problem", "run.policy", "run.features"),
            lambda s: (
                _is(s["run.problem"], *LINEAR_PROBLEMS)
                or (
                    _is(s["run.problem"], "game")
                    and not _is(s["run.policy"], "tabular")
                    and _is(s["run.features"], "random")
                )
            ),
            'problem = "linear_bradley_terry" or "linear_preference_game", or features = "random" with a '
            'log_linear or mlp policy on problem = "game"',
            "remove it or set one of those",
        ),
    ),
    "run.contexts": (_SAMPLED, _run("problem", *LINEAR_PROBLEMS)),
    "run.ring_grid": (_SAMPLED, _run("problem", "ring")),
    "run.optimizer": (_SAMPLED,),
    "run.learning_rate": (_SAMPLED,),
    "run.inner_steps": (_SAMPLED,),
    "run.tolerance": (_SAMPLED,),
    "run.minibatch_size": (_SAMPLED,),
    "run.apo_form": (_SAMPLED, _rule_takes("form", "an apo [[rule]] table that does not give its own form")),
    "run.dpo_reference": (
        _SAMPLED,
        _rule_takes("anchor", 'a dpo [[rule]] table (or apo with base = "dpo") that does not give its own anchor'),
    ),
    "run.mlp_width": (_SAMPLED, _run("policy", "mlp")),
    "run.mlp_hidden_layers": (_SAMPLED, _run("policy", "mlp")),
}


class Unread(NamedTuple):
    """A key given explicitly that the run (or one point of a sweep) does not read."""

    key: str
    """``game.scale``."""
    value: Any
    """Its value as given."""
    needs: Needs
    """The first setting of :data:`READ_WHEN` that does not hold."""
    current: str
    """The values of that setting's fields in the spec (``construction = "lower_triangle"``)."""

    def message(self) -> str:
        """One sentence: the key, its value, the setting that would read it and what to do."""
        has = f" (this spec has {self.current})" if self.current else ""
        fix = self.needs.fix or f"remove it or set {self.needs.text}"
        return f"{self.key} = {_shown(self.value)} is used only with {self.needs.text}{has}; {fix}."


def unread_keys(given: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Unread]:
    """``{key: Unread}``: the keys of ``given`` (``{"game.scale": 5.0}``, the keys a spec gives explicitly)
    that a run with ``settings`` (every setting by name, defaults filled, see :class:`Needs`) does not read.
    Keys :data:`READ_WHEN` does not know are left to the unknown-key checks."""
    unread = {}
    for key, value in given.items():
        for needs in READ_WHEN.get(key, ()):
            if not needs.holds(settings):
                current = ", ".join(f"{_near(field, key)} = {_shown(settings[field])}" for field in needs.fields)
                unread[key] = Unread(key, value, needs, current)
                break
    return unread


def check_unread_keys(
    given: Mapping[str, Any], points: Sequence[tuple[str, Mapping[str, Unread]]], swept: Collection[str] = ()
) -> list[set]:
    """Refuse keys given explicitly that the run does not read; return, per point, the keys to leave out.

    ``given``: the keys as given (a swept key with its list); ``points``: ``(name, unread_keys(...))``
    per point of a ``[game]``/``[run]`` sweep (one point named ``""`` for a spec without one);
    ``swept``: the swept keys.  Raises when a key is read at no point, or when a swept key is not read
    at some point (that point would repeat one run once per value).  A fixed key that only some points
    read is left out of the others (they run what they would without it).
    """
    messages, drop = [], [set() for _ in points]
    for key in sorted(given):
        missing = [(index, name, unread[key]) for index, (name, unread) in enumerate(points) if key in unread]
        if not missing:
            continue
        if len(points) == 1:
            messages.append(missing[0][2].message())
            continue
        # the settings that keep the key unread, each with the points that have them
        groups: dict[tuple, list] = {}
        for _, name, entry in missing:
            groups.setdefault((entry.needs, entry.current), []).append(name)
        shown = f"{key} = {_shown(given[key])}"
        if len(missing) == len(points):
            if len(groups) == 1:
                ((needs, current),) = groups
                has = f" (every point has {current})" if current else ""
                fix = needs.fix or f"remove it or set {needs.text}"
                messages.append(
                    f"{shown} is read at no point of the sweep: it is used only with {needs.text}{has}; {fix}."
                )
            else:
                reasons = " and only with ".join(
                    f"{needs.text} (at {_few(names)}: {current})" for (needs, current), names in groups.items()
                )
                messages.append(
                    f"{shown} is read at no point of the sweep: it is used only with {reasons}; remove it, or "
                    "sweep a setting under which it is read."
                )
        elif key in swept:
            reasons = "; ".join(
                f"only with {needs.text}, not at the points with {current}" for needs, current in groups
            )
            messages.append(
                f"{shown} is swept, but it is used {reasons}: each of those points would run the same thing once "
                f"per value. Sweep {key} in a spec of its own whose points all read it."
            )
        else:
            for index, _, _ in missing:
                drop[index].add(key)
    if messages:
        raise PrefsimError(" ".join(messages))
    return drop
