"""``prefsim llm SPEC.toml --out DIR [--resume] [--shard I/N]``: the bridge as a plugin command of the prefsim CLI.

``--shard I/N`` trains only the rules of shard I (:mod:`llm_bridge.shards`), ``--merge DIR… --out OUT``
merges finished shards (``prefsim launch`` of a bridge spec runs both as jobs).  ``--resume`` and
``--merge`` refuse a run or shard computed by other code (source files, package versions;
:mod:`llm_bridge.provenance`) unless ``--allow-other-code``, which warns and records it in the manifest.

The lead's CLI (``sim/cli.py``) discovers ``command`` through the entry point
``[project.entry-points."prefsim.commands"] llm = "llm_bridge.cli:command"``; bad input raises
:class:`~bandits.errors.PrefsimError`, which the CLI prints without a traceback.  Multi-GPU (or a
CPU run) goes through Accelerate: ``accelerate launch --multi_gpu --num_processes P -m llm_bridge.cli
SPEC.toml --out DIR`` runs the same code under the launcher (on a machine without CUDA: P CPU processes,
gloo; ``--cpu`` would start only one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bandits.errors import PrefsimError, describe_os_error
from llm_bridge.run_layout import CURVES_FIGURE, METRICS_FILE, PREDICTION_DIR, WIN_RATE_FIGURE
from sim.shards import parse_shard
from sim.stop_request import stop_on_signals, stopped

EXIT_BAD_INPUT = 2
"""Exit status of a run stopped by bad input or a file-system error (``prefsim``'s own, ``sim.cli``)."""

#: The environment variables that give the number of processes a launcher started (``accelerate launch`` /
#: torchrun: ``WORLD_SIZE``; MPI launchers the others), as Accelerate's ``PartialState`` reads them.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")

#: Top-level modules of the ``llm`` extra (pyproject.toml) that the bridge imports.
LLM_EXTRA_MODULES = frozenset(
    {"torch", "transformers", "accelerate", "safetensors", "tokenizers", "gguf", "peft", "vaderSentiment", "tqdm"}
)


def missing_extra_error(exc: ModuleNotFoundError) -> Exception:
    """The install hint for a module of the ``llm`` extra that is missing; ``exc`` itself for any other module."""
    top = (exc.name or "").split(".")[0]
    if top not in LLM_EXTRA_MODULES:
        return exc
    return PrefsimError(
        f"`prefsim llm` needs the LLM extra (torch, transformers, accelerate, …), which is not installed: no "
        f"module named {top!r}. Install it from the repository root with `export PIP_CONSTRAINT=$PWD/"
        'constraints-cpu.txt && pip install -e ".[llm]"` (the CPU build of torch; on a GPU machine see the '
        "README's GPU install), then run the command again."
    )


class LlmCommand:
    """The ``llm`` subcommand."""

    name = "llm"
    help = "train a Hugging Face causal LM with a verified rule (outer loop: sample, label, train, extrapolate)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("spec", help="bridge spec (TOML); examples/llm_demo.toml is the SmolLM2 sentiment demo")
        parser.add_argument(
            "--out", required=True, help="run directory (checkpoints, metrics.csv, win_rate.png, curves.png)"
        )
        parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
        parser.add_argument("--quiet", action="store_true", help="no progress bars or per-iteration lines")
        parser.add_argument(
            "--shard",
            metavar="I/N",
            help="run only shard I of N (counting from 0): rule i goes to shard i mod N; N = number of rules puts "
            "each rule in its own job",
        )
        parser.add_argument(
            "--merge",
            nargs="+",
            metavar="DIR",
            help="instead of training: merge these shard directories of SPEC into --out (metrics.csv, win_rate.png)",
        )
        parser.add_argument(
            "--predict",
            action="store_true",
            help="instead of training on free samples, test the simulator's prediction: a candidate game from π_ref "
            "([prediction] table), exact and sampled mode on it, the LM trained on pairs among the candidates; writes "
            "DIR/prediction/ (llm_bridge.prediction)",
        )
        parser.add_argument(
            "--allow-other-code",
            action="store_true",
            help="with --resume or --merge: go on although other code (the source files of llm_bridge, sim and "
            "bandits, or package versions) computed the run or a shard; a warning, and the differences are "
            "recorded in the manifest",
        )

    def run(self, args: argparse.Namespace) -> int:
        # torch & co. load only when the command runs (`prefsim --help` lists it without them); in the
        # README's base install they are absent: say how to install them, not a traceback
        try:
            from accelerate import PartialState

            from llm_bridge.loop import run_bridge
            from llm_bridge.shards import merge_llm_shards, shard_entries, shard_record
            from llm_bridge.spec import load_spec
        except ModuleNotFoundError as exc:
            raise missing_extra_error(exc) from None
        from sim.results_io import check_directory_path

        spec = load_spec(args.spec)  # UTF-8 text, or a clear error (binary, UTF-16, …)
        check_directory_path(args.out)
        if args.predict:
            if args.merge or args.shard or args.resume or args.allow_other_code:
                raise PrefsimError(
                    "--predict: a prediction run takes none of --merge, --shard, --resume, --allow-other-code."
                )
            return _predict(spec, Path(args.out), args.quiet)
        if args.allow_other_code and not (args.resume or args.merge):
            raise PrefsimError("--allow-other-code goes with --resume or --merge (a new run has no other code).")
        if args.merge:
            if args.shard or args.resume:
                raise PrefsimError("--merge: merges finished shards; it takes neither --shard nor --resume.")
            merge_llm_shards(spec, args.merge, Path(args.out), allow_other_code=args.allow_other_code)
            print(f"merged {len(args.merge)} shard(s): wrote {Path(args.out) / 'metrics.csv'} and win_rate.png")
            return 0
        shard = None
        if args.shard is not None:
            index, count = parse_shard(args.shard)
            shard = shard_record(spec, index, count)
            spec = dataclasses.replace(spec, rules=shard_entries(spec, index, count))
        table = run_bridge(
            spec,
            Path(args.out),
            resume=args.resume,
            progress=not args.quiet,
            shard=shard,
            allow_other_code=args.allow_other_code,
        )
        if not args.quiet and PartialState().is_main_process:  # one summary under accelerate launch
            last = table.sort_values("iteration").groupby("rule").tail(1)
            for _, row in last.iterrows():
                print(
                    f"{row['rule']}: win rate of π_{int(row['iteration'])} vs π_ref = {row['win_rate']:.3f} "
                    f"[{row['win_rate_low']:.3f}, {row['win_rate_high']:.3f}]"
                )
            print(f"wrote {Path(args.out) / METRICS_FILE}, {WIN_RATE_FIGURE} and {CURVES_FIGURE}")
        return 0


def _predict(spec, out: Path, quiet: bool) -> int:
    """``prefsim llm SPEC --out DIR --predict``: the simulator-versus-LM study of :mod:`llm_bridge.prediction`."""
    from llm_bridge.loop import open_session
    from llm_bridge.prediction import format_summary, run_prediction
    from sim.results_io import check_directory_path, output_lock  # pandas: not for `prefsim --help`

    if launched_processes() > 1:  # before the lock: each process would take it, and all but one be refused
        raise PrefsimError("prefsim llm --predict runs in one process; run it without accelerate launch.")
    out = check_directory_path(out)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # one study (or training run) per directory at a time, as for every prefsim run
        if (out / PREDICTION_DIR).exists():
            raise PrefsimError(
                f"--out {str(out)!r} already holds a prediction study ({PREDICTION_DIR}/); choose another directory."
            )
        session = open_session(spec, out, progress=not quiet, predict=True)
        result = run_prediction(spec, session, out, progress=not quiet)
    if not quiet:
        for line in format_summary(result):
            print(line)
        print(f"wrote {out / PREDICTION_DIR}/(per_prompt, summary, ordering).csv and game.json")
    return 0


def launched_processes() -> int:
    """The number of processes the launcher started (1 without ``accelerate launch``), from the environment
    (:data:`WORLD_SIZE_VARIABLES`), without starting Accelerate (which would join the process group)."""
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


command = LlmCommand()


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m llm_bridge.cli`` / ``accelerate launch -m llm_bridge.cli``): bad input
    and file-system errors (an unwritable or vanished ``--out``, a full disk) are printed as one ``error:``
    line with exit status 2, as ``prefsim llm`` prints them, not as a traceback."""
    parser = argparse.ArgumentParser(prog="prefsim llm", description=command.help)
    command.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with stop_on_signals():  # Ctrl-C and SIGTERM stop it between steps, as under `prefsim llm`
            return command.run(args)
    except PrefsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        what, status = stopped(exc)
        print(
            f"{what}: finished iterations are saved; rerun the same command with --resume to continue.", file=sys.stderr
        )
        return status


if __name__ == "__main__":
    sys.exit(main())
