"""Checks of spec input that the parsers share: the file's bytes, value types, labels, unused keys.

Each function raises :class:`~bandits.errors.PrefsimError` with one paragraph naming the field (or
the file) and what to do; none returns silently on input the run would ignore or misread.

* :func:`read_spec_text` — a spec file must be UTF-8 text (an optional UTF-8 byte-order mark is
  dropped); binary files, UTF-16/32 files and other encodings are refused, naming the encoding or
  the offending byte.
* :func:`check_label` — result labels become file names (``parts/<label>.csv``, LLM output
  folders), so they are limited to **1–100 ASCII letters, digits and** ``_ - . + = , [ ] ( )``,
  starting with a letter, digit or ``_`` (no whitespace, no NUL, no ``/``, never ``.`` or ``..``).
* :func:`check_exact_run_keys` — ``[run]`` keys other than ``mode`` (and ``data``, which has its
  own message) apply to sampled mode only; in an exact spec they are errors, like unknown keys.
* :func:`check_rule_tables` — APO's ``alpha`` is not read with ``schedule = "nesterov"`` (α_t =
  t/(t+3) replaces it), so giving both is an error.
* :func:`check_integer_range` — integers must fit in 64 bits (TOML's own limit; Python's parser
  accepts larger ones, which NumPy cannot hold).
* :func:`check_sampled_numbers` — ``tolerance`` must be finite (∞ would never stop the inner loop
  early, i.e. mean "unset" while saying something else).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bandits.errors import PrefsimError

#: Largest spec file read (a spec is a few kilobytes of text; a matrix of 300 arms is ~1 MB).
MAX_SPEC_BYTES = 16 * 2**20
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,\[\]()-]{0,99}")
LABEL_RULE = (
    "1–100 ASCII letters, digits and _ - . + = , [ ] ( ), starting with a letter, digit or _ (labels name result files)"
)
#: [run] keys that exact mode reads (every other key configures sampled mode).
EXACT_RUN_KEYS = {"mode", "data", "seed_block"}


def read_spec_text(path: str | Path, what: str = "spec file") -> str:
    """The text of a TOML file, or a :class:`PrefsimError` saying why it is not UTF-8 text."""
    path = Path(path)
    if not path.is_file():
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


def check_game_types(table: dict) -> None:
    """``[game]`` keys whose type must be checked before the kind-specific checks read them."""
    kind = table.get("kind", "cyclic")
    if not isinstance(kind, str):
        raise PrefsimError(
            "game.kind: expected a string (matrix, bradley_terry, cyclic or random), "
            f"got {type(kind).__name__} {kind!r}."
        )


def check_exact_run_keys(table: dict, mode: object) -> None:
    """In exact mode, every ``[run]`` key but ``mode``, ``data`` and ``seed_block`` is an error (the others
    configure sampling)."""
    if mode != "exact":
        return
    unused = sorted(set(table) - EXACT_RUN_KEYS)
    if unused:
        raise PrefsimError(
            f'run: key(s) {", ".join(unused)} apply to mode = "sampled" only and would be ignored by the exact '
            'run; remove them or set run.mode = "sampled".'
        )


def check_rule_tables(tables: object) -> None:
    """Rule keys that the rule would ignore: APO's ``alpha`` under ``schedule = "nesterov"``."""
    for index, table in enumerate(tables if isinstance(tables, list) else []):
        if not isinstance(table, dict):
            continue
        schedule = table.get("schedule")
        schedules = schedule if isinstance(schedule, list) else [schedule]
        if table.get("name") == "apo" and "nesterov" in schedules and "alpha" in table:
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
