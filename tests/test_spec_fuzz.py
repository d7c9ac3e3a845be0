"""Seeded fuzzing of the spec parsers: every spec in ``examples/`` (simulator specs, ``[game]``/``[run]`` sweeps
made by the mutations, bridge specs), mutated, goes through the checks ``prefsim run`` and ``prefsim llm`` make
before they compute (:func:`sim.spec.parse_spec` / :func:`sim.spec.load_spec`, the work parts, the memory
estimate and the first seed's game; :func:`llm_bridge.spec.parse_spec` / ``load_spec``).  Each outcome must be
a valid spec or a one-line :class:`PrefsimError` naming the mutated field (the file for a broken file); any other
exception is a defect, and so is a mutated value accepted when it cannot mean what it says (a float for a count,
a boolean, a string or a table for a number, NaN or ∞).

The mutations are drawn with fixed seeds from a fixed catalogue, so a failure names a case that reproduces.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import tomllib
from pathlib import Path

import pytest

from bandits.errors import PrefsimError
from bandits.games import GameSpec, build_game
from sim.limits import memory_estimate
from sim.rules import GAME_TAU, rule_info
from sim.shards import work_parts
from sim.spec import RunSpec, load_spec, parse_spec
from sim.spec_checks import reads_own_problem

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPEC_FILES = sorted(EXAMPLES.glob("*.toml"))
#: Mutations drawn per example (dicts) and per example file (bytes): about a second of parsing for all of them.
DICT_CASES = 150
FILE_CASES = 20

#: Values a key is set to (the key's own type among them, so that some mutations are valid).
VALUES = {
    "string": "fuzz",
    "unicode": "ñé😀\u202e",
    "control": "a\x00b",
    "empty string": "",
    "integer": 7,
    "negative": -3,
    "zero": 0,
    "fraction": 2.5,
    "integral float": 3.0,
    "negative float": -0.5,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "huge integer": 2**62,
    "beyond 64 bits": 2**70,
    "huge float": 1e300,
    "true": True,
    "false": False,
    "list": [1, 2],
    "empty list": [],
    "strings": ["x", "y"],
    "table": {"a": 1},
}


def _paths(node, prefix=()):
    """The path of every key in the spec, tables of ``[[rule]]`` arrays by index."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, dict):
                yield from _paths(value, (*prefix, index))


def _at(data, path):
    for key in path:
        data = data[key]
    return data


def _deep(levels: int) -> dict:
    table = {}
    for _ in range(levels):
        table = {"n": table}
    return table


def _absent_keys(data: dict):
    """``(path, default)`` of the keys the spec could give but does not: the fields of its tables (the dataclasses
    the parsers build) and the parameters of its rules, with their defaults where they are plain values."""
    if "model" in data:
        bridge_spec = pytest.importorskip("llm_bridge.spec")
        tables = {
            "model": bridge_spec.ModelSpec,
            "prompts": bridge_spec.PromptSpec,
            "generation": bridge_spec.SamplingSpec,
            "oracle": bridge_spec.OracleSpec,
            "training": bridge_spec.TrainingSpec,
            "prediction": bridge_spec.PredictionSpec,
        }
        fields = {table: {f.name: f.default for f in dataclasses.fields(kind)} for table, kind in tables.items()}
        fields["run"] = {key: getattr(bridge_spec.BridgeSpec, key) for key in bridge_spec.RUN_KEYS}
    else:
        fields = {
            table: {f.name: f.default for f in dataclasses.fields(kind)}
            for table, kind in (("game", GameSpec), ("run", RunSpec))
        }
    for table, defaults in fields.items():
        for key, default in defaults.items():
            if key not in data.get(table, {}):
                yield (table, key), default
    for index, rule in enumerate(data["rule"]):
        parameters = {parameter.name: parameter.default for parameter in rule_info(rule["name"]).parameters}
        for key, default in {"reference_every": None, "history": None, **parameters}.items():
            if key not in rule:
                yield ("rule", index, key), default


def _mutations(data: dict):
    """``(description, path, old value, new value or None for a deletion, mutated spec)`` for every mutation of
    ``data`` (the catalogue the tests draw from).  A key the spec does not give is added with each of
    :data:`VALUES`, its default standing for the old value."""
    for path, default in _absent_keys(data):
        old = default if isinstance(default, (bool, int, float, str)) and default != GAME_TAU else None
        for name, new in VALUES.items():
            mutated = copy.deepcopy(data)
            table = mutated
            for key in path[:-1]:
                table = table.setdefault(key, {}) if isinstance(table, dict) else table[key]
            table[path[-1]] = copy.deepcopy(new)
            yield f"added {name}", path, old, new, mutated
    for path in _paths(data):
        old = _at(data, path)
        changes = {name: value for name, value in VALUES.items()}
        if isinstance(old, str):
            changes |= {"upper case": old.upper(), "title case": old.title(), "trailing space": old + " "}
        if isinstance(old, list) and old:
            changes |= {"duplicated item": old + old[:1], "one item": old[:1]}
            if not isinstance(old[0], dict):
                changes["nested list"] = [old]
        if isinstance(old, (int, float)) and not isinstance(old, bool):
            changes |= {"×1e9": old * 10**9, "as float": float(old), "negated": -old, "+0.5": old + 0.5}
        if isinstance(old, dict):
            changes |= {"unknown key": {**old, "fuzz_key": 1}, "deep table": {**old, "deep": _deep(100)}}
        for name, new in changes.items():
            mutated = copy.deepcopy(data)
            _at(mutated, path[:-1])[path[-1]] = copy.deepcopy(new)
            yield name, path, old, new, mutated
        mutated = copy.deepcopy(data)
        del _at(mutated, path[:-1])[path[-1]]
        yield "deleted", path, old, None, mutated
    yield "unknown top-level key", ("fuzz_key",), None, 1, {**copy.deepcopy(data), "fuzz_key": 1}
    rules = copy.deepcopy(data["rule"])
    yield "duplicated rule table", ("rule",), None, None, {**copy.deepcopy(data), "rule": rules + rules[:1]}


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def _senseless_acceptance(path, old, new) -> str | None:
    """Why accepting ``new`` in place of ``old`` cannot be right, or None.  A number may become a list of numbers
    (a sweep) and a list a name ("random"); an integer a float only where the example's value was a float."""
    if new is None or old is None:
        return None
    old_kind, new_kind = _kind(old), _kind(new)
    if isinstance(new, float) and not math.isfinite(new):
        return "a NaN or infinite number was accepted"
    if new_kind == "bool" and old_kind != "bool" or old_kind == "bool" and new_kind != "bool":
        return f"a {new_kind} was accepted where the example has a {old_kind}"
    if old_kind == "int" and new_kind == "float":
        return "a float was accepted where the example gives an integer count"
    if new_kind == "dict" and old_kind != "dict":
        return "a table was accepted where the example has a value"
    if new_kind == "str" and old_kind in ("int", "float"):
        return "a string was accepted where the example has a number"
    return None


def _simulator_checks(data: dict) -> None:
    """What ``prefsim run`` checks before it computes: the spec, its work parts and memory estimate, and each
    point's game (built for its first seed, where the run builds one)."""
    spec = parse_spec(data)
    work_parts(spec)
    memory_estimate(spec)
    for point in spec.points or (spec,):
        if not reads_own_problem(point.run.mode, point.run.problem):
            build_game(point.game, point.seeds[0])


def _check_outcome(check, name, path, old, new, mutated) -> None:
    case = f"{name} at {'.'.join(map(str, path))}"
    try:
        check(mutated)
    except PrefsimError as error:
        message = str(error)
        assert "\n" not in message.strip(), f"{case}: a message of several lines: {message!r}"
        if new is not None or not isinstance(old, dict):  # a deleted table: the message names what is now missing
            names = [str(key) for key in path if isinstance(key, str)]
            assert any(key in message for key in names), f"{case}: the message names none of {names}: {message!r}"
        return
    except Exception as error:  # noqa: BLE001 — any other exception is what the test is for
        pytest.fail(f"{case}: {type(error).__name__}: {error}")
    reason = _senseless_acceptance(path, old, new)
    assert reason is None, f"{case}: {reason} (value {new!r})"


def _drawn(path: Path, count: int) -> list:
    """``count`` mutations of the example drawn with a fixed seed, and every count (an integer in the example, or
    an integer default) given as an integral float such as 3.0, which no sample of a few percent would find."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    cases = list(_mutations(data))
    counts = [case for case in cases if _kind(case[2]) == "int" and _kind(case[3]) == "float" and case[3].is_integer()]
    return random.Random(path.name).sample(cases, min(count, len(cases))) + counts


SIMULATOR_SPECS = [path for path in SPEC_FILES if not path.name.startswith("llm_")]
BRIDGE_SPECS = [path for path in SPEC_FILES if path.name.startswith("llm_")]


def test_the_examples_hold_simulator_and_bridge_specs():
    assert len(SIMULATOR_SPECS) >= 10 and len(BRIDGE_SPECS) >= 3
    for path in BRIDGE_SPECS:
        assert "model" in tomllib.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", SIMULATOR_SPECS, ids=lambda path: path.stem)
def test_mutated_simulator_specs_are_valid_or_refused_naming_the_field(path):
    for case in _drawn(path, DICT_CASES):
        _check_outcome(_simulator_checks, *case)


@pytest.mark.parametrize("path", BRIDGE_SPECS, ids=lambda path: path.stem)
def test_mutated_bridge_specs_are_valid_or_refused_naming_the_field(path):
    bridge_spec = pytest.importorskip("llm_bridge.spec")  # the bridge's spec module needs torch
    for case in _drawn(path, DICT_CASES):
        _check_outcome(lambda data: bridge_spec.parse_spec(data, base=EXAMPLES), *case)


def _file_mutations(data: bytes, rng: random.Random):
    """``(name, bytes)``: the file truncated, with bytes, text or TOML syntax inserted, re-encoded, nested deep."""
    for cut in sorted(rng.sample(range(1, len(data)), 8)):
        yield f"truncated at {cut}", data[:cut]
    for _ in range(4):
        at = rng.randrange(len(data))
        yield f"binary bytes at {at}", data[:at] + bytes(rng.randrange(256) for _ in range(3)) + data[at:]
    for text in ("é", "😀", "\ufeff", '"', "[", "]]", "=", "\n[[rule]]\n", "'''", "\\u0000"):
        at = rng.randrange(len(data))
        yield f"{text!r} at {at}", data[:at] + text.encode() + data[at:]
    yield "empty", b""
    yield "UTF-16", data.decode("utf-8").encode("utf-16")
    yield "random bytes", bytes(rng.randrange(256) for _ in range(400))
    yield "deep arrays", b"a = " + b"[" * 2000 + b"]" * 2000 + b"\n" + data
    yield "deep table header", data + b"\n[x" + b".y" * 2000 + b"]\n"


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: path.stem)
def test_broken_spec_files_are_valid_or_refused_in_one_line(path, tmp_path):
    bridge = path in BRIDGE_SPECS
    load = pytest.importorskip("llm_bridge.spec").load_spec if bridge else load_spec
    data = path.read_bytes()
    cases = list(_file_mutations(data, random.Random(path.name)))
    for name, content in random.Random(path.name).sample(cases, min(FILE_CASES, len(cases))):
        broken = tmp_path / path.name  # the bridge reads prompt files beside the spec: none of the examples has one
        broken.write_bytes(content)
        try:
            load(broken)
        except PrefsimError as error:
            assert "\n" not in str(error).strip(), f"{name}: a message of several lines: {error}"
        except Exception as error:  # noqa: BLE001 — any other exception is what the test is for
            pytest.fail(f"{path.name}, {name}: {type(error).__name__}: {error}")
