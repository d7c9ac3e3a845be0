"""docs/theory.md: every section the code and docs cite exists, and nothing cites a file outside the product."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bandits.continuous import ring_reward
from bandits.games import GameSpec, build_game
from sim.rules import RULES
from sim.rules.catalogue import describe_rules

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
#: "THEORY §A.3" (old form, rewritten at merge time) and "docs/theory.md §A.3".
REFERENCE = re.compile(r"(?:THEORY|docs/theory\.md) §([A-Z0-9]+(?:\.[0-9]+)?)")


def _sections() -> set[str]:
    """Section numbers of the document's headings: "## 1. …" → "1", "## A. …" → "A", "### C.12 …" → "C.12"."""
    numbers = set()
    for line in THEORY.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{2,3} ([A-Z0-9]+(?:\.[0-9]+)?)\.?\s", line)
        if match:
            numbers.add(match.group(1))
    return numbers


def _product_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "*.md", "*.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_sections_are_parsed():
    sections = _sections()
    # the numbering kept from the team's reference: top-level parts and a sample of subsections
    for number in ("0", "1", "A", "B", "C", "D", "E", "F", "G", "H", "A.3", "B.3", "C.12", "D.10", "E.4", "F.1"):
        assert number in sections, number
    assert {f"C.{i}" for i in range(1, 16)} <= sections
    assert {f"D.{i}" for i in range(1, 14)} <= sections
    assert {f"E.{i}" for i in range(1, 12)} <= sections


def test_every_cited_section_exists():
    sections = _sections()
    missing = []
    for path in _product_files():
        for match in REFERENCE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            if match.group(1) not in sections:
                missing.append(f"{path.relative_to(ROOT)}: §{match.group(1)}")
    assert not missing, missing


def test_docs_cite_the_document_not_the_team_reference():
    """README, docs, notebooks and examples point at docs/theory.md, and at no git-ignored notes."""
    offenders = []
    for path in _product_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in ("docs", "notebooks", "examples") and relative.name != "README.md":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"THEORY(?!_)", text) or ".notes/" in text:
            offenders.append(str(relative))
    assert not offenders, offenders


def test_document_states_each_rule_update():
    """Every registered rule's name appears in docs/theory.md next to its update (docs/adding_a_rule.md, step 4)."""
    text = THEORY.read_text(encoding="utf-8")
    missing = [name for name in RULES if f"`{name}`" not in text]
    assert not missing, f"docs/theory.md states no update for rule(s) {missing}: add it (docs/adding_a_rule.md, step 4)"


def test_the_ring_reward_the_document_states_is_the_one_the_code_computes():
    """§B.5 states prefsim's ring reward r(a) = exp(−|‖a‖ − R|/s) with R = 1, s = 0.25 (not a Gaussian
    exp(−(‖a‖ − R)²/s²)): what bandits.continuous.ring_reward computes, e.g. at ‖a‖ = 1.5, exp(−2)."""
    section = THEORY.read_text(encoding="utf-8").split("### B.5", 1)[1].split("\n## ", 1)[0]
    assert "ring reward exp(−|‖a‖ − R|/s) (R = 1, s = 0.25" in section
    assert "²/s²" not in section
    radius, width = 1.0, 0.25
    for point in ([0.0, 1.5], [0.3, 0.4], [2.0, -2.0]):
        norm = float(np.hypot(*point))
        assert ring_reward(np.array(point)) == pytest.approx(np.exp(-abs(norm - radius) / width), rel=1e-15)


#: A number as the docs write it: 0.048, −3.97, 1.1e-13, 5.2e-4.
NUMBER = re.compile(r"[−+-]?\d+(?:\.\d+)?(?:e[−-]?\d+)?")
#: The first cell of a notebook row of README's and docs/theory_and_notebooks.md's notebook tables.
NOTEBOOK_ROW = re.compile(r"\| \[?`?(?:notebooks/)?(\d\d_[a-z_]+)")


def _unsigned(text: str) -> str:
    return text.replace("−", "-").replace("+", "").replace("-", "")


@pytest.mark.parametrize("document", ["README.md", "docs/theory_and_notebooks.md"])
def test_every_number_of_a_notebook_headline_is_one_its_notebook_records(document):
    """Each number the notebook tables state as a result (the last cell of a row) is one the notebook
    itself records (its Results cell, prints or assertions), up to sign: e.g. README's "(to 3e-12)" for
    notebook 02, whose Results cell records a relative error of 1.1e-13, is refused."""
    rows = 0
    stale = []
    for line in (ROOT / document).read_text(encoding="utf-8").splitlines():
        match = NOTEBOOK_ROW.match(line)
        if not match:
            continue
        rows += 1
        notebook = _unsigned((ROOT / "notebooks" / f"{match.group(1)}.py").read_text(encoding="utf-8"))
        headline = line.rstrip().rstrip("|").rsplit("|", 1)[1]
        stale += [f"{match.group(1)}: {n}" for n in NUMBER.findall(headline) if _unsigned(n) not in notebook]
    notebooks = len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
    assert rows == notebooks, f"{document}: expected one row per notebook ({notebooks}), found {rows}"
    assert not stale, f"{document} states numbers its notebooks do not record: {stale}"


def _regularised_nash_and_omega(preference: np.ndarray, reference: np.ndarray, tau: float) -> tuple[np.ndarray, float]:
    """π*_τ = softmax(log π_ref + Pπ*/τ) by damped fixed-point iteration, and ω_max: the largest |imaginary
    part| of the eigenvalues of (P − ½)J*, J* = diag(π*) − π*π*ᵀ (docs/theory.md §A.3), in plain NumPy."""
    logits = np.log(reference)
    policy = reference.copy()
    for _ in range(5000):
        logits = 0.9 * logits + 0.1 * (np.log(reference) + preference @ policy / tau)
        policy = np.exp(logits - logits.max())
        policy /= policy.sum()
    jacobian = np.diag(policy) - np.outer(policy, policy)
    return policy, float(np.abs(np.linalg.eigvals((preference - 0.5) @ jacobian).imag).max())


def _example(name: str) -> tuple[dict, str]:
    path = ROOT / "examples" / f"{name}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")), path.read_text(encoding="utf-8")


def test_the_example_specs_eta_values_are_the_ones_their_comments_derive():
    """The η values of the notebook examples are what their comments say they are (η_crit of docs/theory.md
    §A.3 = (τ² + ω_max²)/(2τ), recomputed here in NumPy from each seed's game), so a changed game or τ
    cannot leave a comment stating a relation the values no longer have."""
    cyclic = 0.5 + 0.5 * np.array([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])

    spec, text = _example("inpo_eta_crit")
    tau = spec["game"]["tau"]
    _, omega = _regularised_nash_and_omega(cyclic, np.full(3, 1 / 3), tau)
    critical = (tau**2 + omega**2) / (2 * tau)
    assert critical == pytest.approx((tau**2 + 1 / 12) / (2 * tau), rel=1e-9) and f"{critical:.5f}" in text
    assert [rule["eta"] for rule in spec["rule"]] == pytest.approx([0.8 * critical, 1.25 * critical], rel=1e-9)

    spec, text = _example("reviewer_d3_online_ipo")
    tau = spec["game"]["tau"]
    _, omega = _regularised_nash_and_omega(cyclic, np.array(spec["game"]["reference"]), tau)
    critical = (tau**2 + omega**2) / (2 * tau)
    assert f"η_crit = {critical:.5f}" in text
    assert spec["rule"][1]["eta"] == pytest.approx([(tau + critical) / 2, 2 * critical, tau + 1 / tau], rel=1e-9)

    spec, text = _example("reviewer_d11_last_vs_average")
    tau = spec["game"]["tau"]
    criticals = []
    for seed in range(10):  # "at seeds 0–9"
        game = build_game(GameSpec(**spec["game"]), seed)
        _, omega = _regularised_nash_and_omega(np.asarray(game.preference), np.asarray(game.reference), tau)
        criticals.append((tau**2 + omega**2) / (2 * tau))
    assert f"range {min(criticals):.3f}–{max(criticals):.3f} at seeds 0–9" in text
    etas = [rule for rule in spec["rule"] if rule.get("label") == "inpo"][0]["eta"]
    assert etas == [round(2 * max(criticals), 4), round((tau + min(criticals)) / 2, 4)]

    spec, _ = _example("inpo_theorem4")
    tau = spec["game"]["tau"]
    assert [rule["eta"] for rule in spec["rule"] if "eta" in rule] == [pytest.approx(tau + 1 / tau)]

    spec, _ = _example("apo_exact")
    apo, dpo = spec["rule"][0], spec["rule"][1]
    assert dpo["beta"] == pytest.approx([apo["beta"] * (1 - alpha) for alpha in apo["alpha"]])  # β(1 − α)

    spec, text = _example("default")
    dno, sppo = ({rule["name"]: rule for rule in spec["rule"]}[name] for name in ("dno", "sppo"))
    assert f"SPPO with eta = 1/{dno['eta']:g}" in text and 1 / dno["eta"] != sppo["eta"]  # π_t·exp(Pπ_t/η)


def test_the_defaults_examples_default_toml_states_are_the_registry_s():
    """default.toml's comments name the defaults of the rules it leaves them to: COMAL's η = 3τ and reference
    every 12, MPO's magnet every 40, MNPO's history 2 with uniform (decay 1) weights of its geometric mixture."""
    defaults = {rule["name"]: {p["name"]: p["default"] for p in rule["parameters"]} for rule in describe_rules()}
    _, text = _example("default")
    assert str(defaults["comal"]["eta"]).startswith("3·tau") and defaults["comal"]["reference_every"] == 12
    assert "INPO (eta = 3 tau) whose reference moves to π_t every 12 iterations" in text
    assert defaults["mpo"]["reference_every"] == 40 and "magnet moves to π_t every 40 iterations" in text
    assert defaults["mnpo"]["history"] == 2 and defaults["mnpo"]["decay"] == 1.0
    assert "geometric mean of its last 2 iterates (history = 2" in text and "decay = 1" in text
