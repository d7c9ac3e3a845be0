"""``[run] report_to = "tensorboard"`` writes every metric per iteration and per optimiser step (issue 13 §5).

The event files are read back with TensorBoard's own ``EventAccumulator``: every numeric column of each
rule's ``metrics.csv`` row at steps 0 … T, and per optimiser step the loss (whose first/last steps of
each update are the row's ``loss_first`` / ``loss_last``), gradient norm, learning rate, pairs and the
fractional iteration.  A run interrupted after an iteration's events were written but before it was
recorded resumes without duplicated events (TensorBoard's ``purge_step``).  The fractional iteration
grows monotonically through both stages of a two-stage rule.
"""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bandits.errors import PrefsimError
from llm_bridge import loop as bridge_loop
from llm_bridge.spec import parse_spec
from llm_bridge.tiny import build_tiny_model

torch.set_num_threads(1)  # tiny models: one intra-op thread is far faster on small shared machines


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama", "llama", seed=0)


def _raw(model_dir, report_to="tensorboard"):
    return {
        "iterations": 2,
        "seed": 1,
        "model": {"path": str(model_dir)},
        "prompts": {
            "train": ["tell me a story", "write a review of the film", "the movie was", "i love this", "what a"],
            "heldout": ["the weather is", "she said it was", "this is the"],
            "per_iteration": 5,
        },
        "generation": {"max_new_tokens": 4, "batch_size": 5},
        "oracle": {"kind": "vader", "scale": 0.25},
        "training": {"learning_rate": 5e-3, "batch_size": 2, "micro_batch_size": 1, "epochs": 2},
        "rule": [{"name": "dpo", "beta": 0.5}, {"name": "inpo", "eta": 1.0, "tau": 0.3}],
        "run": {"report_to": report_to},
    }


def _scalars(directory):
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_events_hold_every_metric_per_iteration_and_per_step(tiny_llama, tmp_path):
    out = tmp_path / "run"
    table = bridge_loop.run_bridge(parse_spec(_raw(tiny_llama)), out, progress=False)
    for label in ("dpo", "inpo"):
        rows = table[table["rule"] == label].reset_index(drop=True)
        iterations = _scalars(out / "tensorboard" / label / "iterations")
        numeric = [c for c in rows.columns if c not in ("rule", "iteration")]
        for column in numeric:
            expected = [
                (int(r["iteration"]), float(r[column])) for _, r in rows.iterrows() if not math.isnan(r[column])
            ]
            got = iterations.get(f"iteration/{column}", [])
            assert [s for s, _ in got] == [s for s, _ in expected], column
            np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6, err_msg=column)
        assert [s for s, _ in iterations["iteration/win_rate"]] == [0, 1, 2]

        steps = _scalars(out / "tensorboard" / label / "steps")
        per_update = rows["optimizer_steps"].iloc[1:].astype(int).tolist()
        assert per_update == [2 * 3, 2 * 3]  # 2 epochs × ⌈5 pairs / 2⌉
        total = sum(per_update)
        for tag in ("loss", "grad_norm", "learning_rate", "pairs", "iteration"):
            assert [s for s, _ in steps[f"train/{tag}"]] == list(range(1, total + 1)), tag
        losses = [v for _, v in steps["train/loss"]]
        first = 0
        for t, count in enumerate(per_update, start=1):
            assert losses[first] == pytest.approx(rows.loc[t, "loss_first"], rel=1e-6)
            assert losses[first + count - 1] == pytest.approx(rows.loc[t, "loss_last"], rel=1e-6)
            first += count
        assert [v for _, v in steps["train/pairs"]][:3] == [2, 2, 1]
        assert all(v > 0 for _, v in steps["train/grad_norm"])
        assert [v for _, v in steps["train/learning_rate"]] == pytest.approx([5e-3] * total)
        iteration = [v for _, v in steps["train/iteration"]]
        assert iteration[per_update[0] - 1] == pytest.approx(1.0) and iteration[-1] == pytest.approx(2.0)
        assert iteration == sorted(iteration)


def test_the_fractional_iteration_of_a_two_stage_rule_grows_through_both_stages(tiny_llama, tmp_path):
    """Extragradient trains twice per iteration (half step, full step): ``train/iteration`` is t + the fraction
    of the iteration's steps over both stages, so it grows steadily from t to t + 1 (it restarted per stage)."""
    raw = _raw(tiny_llama)
    raw["rule"] = [{"name": "extragradient", "eta": 1.0, "tau": 0.3}]
    raw["training"]["epochs"] = 1
    out = tmp_path / "run"
    table = bridge_loop.run_bridge(parse_spec(raw), out, progress=False)
    assert table["optimizer_steps"].tolist() == [0, 2 * 3, 2 * 3]  # 2 stages × ⌈5 pairs / 2⌉
    steps = _scalars(out / "tensorboard" / "extragradient" / "steps")
    iteration = [v for _, v in steps["train/iteration"]]
    assert iteration == pytest.approx([t + k / 6 for t in (0, 1) for k in range(1, 7)])
    assert iteration == sorted(iteration)


@pytest.mark.parametrize("finished", [0, 1])
def test_resume_after_events_of_an_unrecorded_iteration_keeps_one_event_per_step(tiny_llama, tmp_path, finished):
    spec = parse_spec(_raw(tiny_llama))
    bridge_loop.run_bridge(spec, tmp_path / "full", progress=False)
    crashed = tmp_path / "crashed"
    shutil.copytree(tmp_path / "full", crashed)  # later iterations' events and rows written, their state not
    for label in ("dpo", "inpo"):
        (crashed / label / "state.json").write_text(json.dumps({"finished": finished}))
    bridge_loop.run_bridge(spec, crashed, resume=True, progress=False)
    for label in ("dpo", "inpo"):
        full_iterations = _scalars(tmp_path / "full" / "tensorboard" / label / "iterations")
        iterations = _scalars(crashed / "tensorboard" / label / "iterations")
        assert [s for s, _ in iterations["iteration/win_rate"]] == [0, 1, 2]
        assert [v for _, v in iterations["iteration/kl_reference"]] == pytest.approx(
            [v for _, v in full_iterations["iteration/kl_reference"]]
        )
        steps = _scalars(crashed / "tensorboard" / label / "steps")
        full_steps = _scalars(tmp_path / "full" / "tensorboard" / label / "steps")
        assert [s for s, _ in steps["train/loss"]] == [s for s, _ in full_steps["train/loss"]]
        assert [v for _, v in steps["train/loss"]] == pytest.approx([v for _, v in full_steps["train/loss"]])


def test_report_to_is_validated_and_none_writes_nothing(tiny_llama, tmp_path):
    with pytest.raises(PrefsimError, match="unknown reporter"):
        parse_spec(_raw(tiny_llama, report_to="wandb"))
    with pytest.raises(PrefsimError, match="string or a list"):
        parse_spec(_raw(tiny_llama, report_to=3))
    assert parse_spec(_raw(tiny_llama, report_to=["tensorboard", "none"])).report_to == ("tensorboard",)
    raw = _raw(tiny_llama, report_to="none")
    raw["iterations"], raw["rule"] = 1, raw["rule"][:1]
    bridge_loop.run_bridge(parse_spec(raw), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["optimizer_steps"].tolist() == [0, 6]


def test_a_full_disk_under_the_event_writers_is_a_clear_error_without_a_thread_traceback(tmp_path, monkeypatch):
    """TensorBoard writes in a thread of its own: a full disk there printed that thread's traceback and was raised
    in the run as a bare OSError ("error: No space left on device", naming no file)."""
    import errno
    import os
    import threading

    from tensorboard.summary.writer import record_writer

    from llm_bridge.reporting import TensorBoardReporter

    printed = []
    monkeypatch.setattr(threading, "excepthook", printed.append)  # what Python would print, recorded
    real_write, writes = record_writer.RecordWriter.write, []

    def full_after_the_first_events(self, data):
        writes.append(data)
        if len(writes) > 10:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full_after_the_first_events)
    reporter = TensorBoardReporter(tmp_path / "tensorboard")
    reporter.start_rule("dpo", 0, 0)
    with pytest.raises(PrefsimError, match=r"TensorBoard events under '.*tensorboard' \(No space left on device\)"):
        for _ in range(50):
            reporter.log_step("dpo", {"loss": 0.5, "pairs": 2})
        reporter.log_iteration("dpo", {"rule": "dpo", "iteration": 1, "win_rate": 0.5})
    with pytest.raises(PrefsimError, match="No space left on device"):
        reporter.close()
    assert printed == [] and threading.excepthook == printed.append  # nothing printed; the hook is back
