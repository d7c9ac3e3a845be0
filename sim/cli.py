"""The ``prefsim`` command line.

    prefsim run SPEC.toml --out DIR [--resume]   run an experiment: DIR/metrics.csv, bounds.csv, summary.csv,
                                                 manifest.json and figures (SPEC may be a run's manifest.json)
    prefsim run SPEC.toml --out DIR --shard I/N  run shard I of N ([[rule]] tables or [run] seed_block blocks)
    prefsim merge DIR1 DIR2 … --out DIR          merge the shards of one spec into the unsharded run's results
    prefsim launch SPEC.toml --shards N --out DIR  a job array of the shards and a merge job (submitit;
                                                 --executor slurm or local; sim.launch)
    prefsim plot DIR                             redraw the figures of a run (also of `prefsim llm`), even partial
    prefsim compare DIR_A DIR_B                  paired differences B − A on shared seeds (DIR_B/compare.csv)
    prefsim report DIR                           one self-contained HTML page: DIR/report.html
    prefsim rules                                list the rules, their parameters and papers
    prefsim --version                            the installed version

More subcommands come from installed plugins in the entry-point group ``prefsim.commands`` (the LLM
bridge adds ``prefsim llm`` when ``prefsim[llm]`` is installed); ``sim`` itself never imports them.
Bad input ends with ``error: <one paragraph>`` on stderr and exit status 2, without a traceback (an
operating-system error such as a full disk is reported the same way).  SIGTERM (what batch schedulers
send first) is handled like Ctrl-C: finished rule parts are kept, the message says how to resume, and
the exit status is 128 + 15 = 143 (130 for SIGINT).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from bandits.errors import PrefsimError, describe_os_error
from sim.figure_worker import FigureWorker, start_workers
from sim.launch import add_launch_arguments
from sim.machine import usable_cores
from sim.process_exit import exit_now
from sim.progress import Progress
from sim.provenance import prefsim_version
from sim.stop_request import check_stop, stop_on_signals, stopped

if TYPE_CHECKING:
    from sim.spec import ExperimentSpec

EXIT_BAD_INPUT = 2


class _StoppableProgress(Progress):
    """:class:`Progress` that stops the command at its next message, step or block of a long rule once
    Ctrl-C or SIGTERM has arrived, where Python dropped the handler's exception (:mod:`sim.stop_request`)."""

    def __call__(self, message: str) -> None:
        check_stop()
        super().__call__(message)

    def stage(self, index: int, total: int, label: str, unit: str = "rules") -> None:
        check_stop()
        super().stage(index, total, label, unit)

    def within(self, label: str, done: int, total: int) -> None:
        check_stop()  # between two blocks of a long rule
        super().within(label, done, total)


PLUGIN_GROUP = "prefsim.commands"


def console() -> int:
    """The ``prefsim`` console script (and ``python -m sim.cli``): :func:`main` with the CPU cores as devices,
    then the process ends at once (:func:`sim.process_exit.exit_now`: ``atexit`` handlers and flushed
    streams, not the 0.3–0.7 s of freeing JAX's and Matplotlib's objects); returns the exit status only
    while another thread still runs."""
    status = main(cpu_devices="auto")
    exit_now(status)
    return status


def main(argv: Sequence[str] | None = None, cpu_devices: str | None = None) -> int:
    """Run a ``prefsim`` command line (``argv``: default ``sys.argv[1:]``); returns the exit status.

    ``cpu_devices``: the default of ``--cpu-devices`` when neither it nor ``$PREFSIM_CPU_DEVICES`` is
    given (:mod:`sim.cpu_cores`): the console script passes ``auto``; ``None`` leaves JAX's devices as
    they are (a caller in a process where JAX already runs).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    # a run's figure processes start first, before JAX is imported: their imports take the cores this
    # process leaves idle while it imports and builds its games
    wanted = args.handler is _run and not args.no_plots and args.shard is None
    args.figure_workers = start_figure_workers() if wanted else []
    try:
        return _handle(args, cpu_devices)
    finally:
        for worker in args.figure_workers:
            worker.stop()


def _handle(args, cpu_devices: str | None) -> int:
    """:func:`main` once the command line is parsed: the command's handler, with JAX set up around it where it
    computes with JAX (:func:`_with_jax`), under Ctrl-C and SIGTERM handling, and prefsim's errors turned into
    messages and exit statuses.  ``plot``, ``compare`` and ``report`` read results with NumPy, pandas and
    Matplotlib only, so they do not import JAX (~0.35 s of a kept ``prefsim plot``'s ~1 s)."""
    try:
        # Ctrl-C and SIGTERM stop a command even where Python drops their exception (sim.stop_request)
        with stop_on_signals():
            if not getattr(args, "needs_jax", True):
                return int(args.handler(args) or 0)
            return _with_jax(args, cpu_devices)
    except PrefsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(
            f"error: {describe_os_error(exc)}; prefsim writes each file whole or not at all, so results "
            "written before are left as they were.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except MemoryError:
        print(
            "error: the run ran out of memory; reduce the arms, seeds, sweep or recorded iterations.", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    except RuntimeError as exc:  # XLA's XlaRuntimeError is a RuntimeError; only its out-of-memory case is ours
        if "RESOURCE_EXHAUSTED" not in str(exc):
            raise
        detail = str(exc).splitlines()[0]
        print(
            f"error: the device ran out of memory ({detail}); prefsim's estimate is a lower bound of what a run "
            "needs: reduce the arms, seeds, sweep, pairs_per_iteration or recorded iterations.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        what, status = stopped(exc)
        print(
            f"{what}: finished parts and a long rule's progress are saved; rerun the same command with --resume "
            "to continue.",
            file=sys.stderr,
        )
        return status


def _with_jax(args, cpu_devices: str | None) -> int:
    """Run the command's handler with JAX's CPU devices, the compile cache and float64 set up around it."""
    # imports JAX: not for --version, --help or the commands that only read results
    from sim.cpu_cores import CPU_DEVICES_VARIABLE, use_cpu_cores
    from sim.precision import enable_compile_cache, float64
    from sim.program_cache import PROGRAMS_FOLDER, keep_programs

    devices = getattr(args, "cpu_devices", None) or os.environ.get(CPU_DEVICES_VARIABLE) or cpu_devices
    cache = enable_compile_cache()  # a repeated run of seen shapes compiles nothing (off: PREFSIM_NO_COMPILE_CACHE=1)
    if devices is not None:  # before JAX computes anything
        use_cpu_cores(devices)
    # exact mode computes in float64 (scoped: sim.precision); with the compile cache, the traced and compiled
    # programs are kept too, so a repeated run does not trace them again (sim.program_cache)
    with float64(), keep_programs(None if cache is None else cache / PROGRAMS_FOLDER):
        return int(args.handler(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefsim", description="Check preference-optimisation rules against their theory."
    )
    parser.add_argument("--version", action="version", version=f"prefsim {prefsim_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run_parser = commands.add_parser("run", help="run an experiment spec (TOML) and write metrics, manifest and plots")
    run_parser.add_argument(
        "spec", help="path to the spec TOML file, or to a run's manifest.json (reruns the spec it holds)"
    )
    run_parser.add_argument(
        "--out",
        help="result directory (default: results/<the spec file's name without .toml>; for a manifest.json, "
        "results/<the spec's name>-rerun)",
    )
    run_parser.add_argument(
        "--metrics",
        help="comma-separated metrics to print after the run (default: the headline metrics with data); "
        "summary.csv holds every metric",
    )
    run_parser.add_argument(
        "--at",
        help="comma-separated extra iterations for the summary (e.g. 3,100); the final iteration is always in it",
    )
    run_parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished rule results in --out, and continue a long rule from its saved progress",
    )
    run_parser.add_argument(
        "--no-plots",
        action="store_true",
        help="write no figures (metrics.csv, bounds.csv, headtohead.csv, summary.csv and manifest.json only)",
    )
    run_parser.add_argument(
        "--shard",
        metavar="I/N",
        help="run only shard I of N (counting from 0): whole [[rule]] tables, or with [run] seed_block their seed "
        "blocks, dealt out by cost; DIR then holds a shard for `prefsim merge` (default --out: "
        "results/<the spec file's name without .toml>/shard-I-of-N)",
    )
    run_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run_parser.add_argument(
        "--cpu-devices",
        metavar="N",
        help="run on N CPU devices, the seeds split over them (default: $PREFSIM_CPU_DEVICES, else auto: the "
        "cores this process may use; 1 runs as one device)",
    )
    run_parser.set_defaults(handler=_run)

    merge_parser = commands.add_parser(
        "merge", help="merge the shards of one spec (prefsim run --shard) into the unsharded run's results"
    )
    merge_parser.add_argument("shards", nargs="+", metavar="DIR", help="the shards' result directories (any order)")
    merge_parser.add_argument("--out", required=True, help="result directory of the merged run")
    merge_parser.add_argument("--metrics", help="comma-separated metrics to print (as for prefsim run)")
    merge_parser.add_argument("--at", help="comma-separated extra iterations for the summary (as for prefsim run)")
    merge_parser.add_argument("--no-plots", action="store_true", help="write no figures")
    merge_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    merge_parser.set_defaults(handler=_merge)

    launch_parser = commands.add_parser(
        "launch", help="submit the shards of a spec as a job array and a merge job (submitit: SLURM or local)"
    )
    add_launch_arguments(launch_parser)
    launch_parser.set_defaults(handler=_launch)

    plot_parser = commands.add_parser("plot", help="redraw the figures of a result directory")
    plot_parser.add_argument("directory", help="a directory written by `prefsim run` or `prefsim llm` (win_rate.png)")
    plot_parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    plot_parser.set_defaults(handler=_plot, needs_jax=False)

    compare_parser = commands.add_parser(
        "compare", help="paired differences between two runs of the same game and seeds (B − A, CIs)"
    )
    compare_parser.add_argument("run_a", metavar="DIR_A", help="the reference run (A)")
    compare_parser.add_argument("run_b", metavar="DIR_B", help="the run compared with it (B)")
    compare_parser.add_argument("--metrics", help="comma-separated metrics (default: the headline metrics of both)")
    compare_parser.add_argument("--at", help="comma-separated extra iterations (the final shared one is always in)")
    compare_parser.add_argument(
        "--out",
        help="CSV to write (default: DIR_B/compare.csv, which `prefsim report` shows; a .json beside it names A and B)",
    )
    compare_parser.set_defaults(handler=_compare, needs_jax=False)

    report_parser = commands.add_parser("report", help="write one self-contained HTML page of a result directory")
    report_parser.add_argument("directory", help="a directory written by `prefsim run`")
    report_parser.add_argument("--out", help="HTML file to write (default: DIR/report.html)")
    report_parser.set_defaults(handler=_report, needs_jax=False)

    rules_parser = commands.add_parser("rules", help="list the update rules with their parameters and papers")
    rules_parser.add_argument(
        "--json",
        action="store_true",
        help="print every rule as JSON: name, paper, parameters, modes and pair schemes (read from the registry)",
    )
    rules_parser.set_defaults(handler=_rules)

    for command in _plugins():
        plugin_parser = commands.add_parser(command.name, help=command.help)
        command.add_arguments(plugin_parser)
        plugin_parser.set_defaults(handler=command.run)
    return parser


def _plugins():
    """Commands registered by installed packages (e.g. ``prefsim llm``); broken plugins are reported, not fatal."""
    found = []
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            found.append(entry.load())
        except ImportError as exc:  # a plugin whose optional dependencies are missing
            found.append(_UnavailableCommand(entry.name, exc))
    return found


class _UnavailableCommand:
    """Stands in for a plugin that failed to import, and says why when used."""

    def __init__(self, name, error):
        self.name = name
        self.help = f"(unavailable: {type(error).__name__})"
        self._error = error

    def add_arguments(self, parser):
        parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(self, args):
        raise PrefsimError(
            f"the '{self.name}' command could not be loaded ({self._error}); install its extra, "
            f'e.g. `pip install -e ".[llm]"` with the constraints file of the README.'
        )


def _run(args) -> int:
    # figure processes started by main() (none with --no-plots or --shard); main() stops them
    return _run_with_figure_workers(args, getattr(args, "figure_workers", []))


#: Most figure processes ``prefsim run`` starts when the run begins (one per usable core).
EARLY_FIGURE_WORKERS = 3


def start_figure_workers() -> list[FigureWorker]:
    """Figure processes for a run's figures (:class:`sim.figure_worker.FigureWorker`): one per usable core,
    at most :data:`EARLY_FIGURE_WORKERS`, so that the run's process, once they are ready, leaves every
    figure to them (:func:`_draw`); none on one core, where a worker would only wait behind the run."""
    cores = usable_cores()
    return start_workers(min(cores, EARLY_FIGURE_WORKERS) if cores > 1 else 0, FigureWorker)


def _run_with_figure_workers(args, workers: list[FigureWorker]) -> int:
    from sim.diagnostics import report_warnings
    from sim.experiment import code_record, run
    from sim.provenance import code_differences
    from sim.shards import parse_shard, shard_rules
    from sim.spec import load_spec_and_manifest

    spec, manifest = load_spec_and_manifest(args.spec)  # the manifest of a rerun: read once, with its spec
    shard = parse_shard(args.shard) if args.shard is not None else None
    # --out "" is passed on as given (and refused by the directory check), not replaced by the default
    out = args.out if args.out is not None else str(default_out(args.spec, spec, shard))
    chosen, at = _summary_options(args, spec)
    say = _StoppableProgress(mode="quiet" if args.quiet else "auto")
    if manifest is not None:  # a rerun of a manifest's spec: with this code, which may differ
        changes = code_differences(manifest, code_record())
        messages = []
        if changes:
            messages.append(
                f"{args.spec} was written by other code ({'; '.join(changes)}); the rerun computes with this code, "
                "so its numbers may differ from the recorded run's."
            )
        held = manifest.get("shard") if isinstance(manifest, dict) else None
        if shard is None and isinstance(held, dict) and {"index", "count"} <= set(held):
            messages.append(
                f"{args.spec} is the manifest of shard {held['index']}/{held['count']}: the rerun computes the whole "
                f"spec; add --shard {held['index']}/{held['count']} to rerun that shard alone."
            )
        report_warnings(messages, say)
    rules = spec.rules if shard is None or spec.points else shard_rules(spec, *shard)
    which = "" if shard is None else f"shard {shard[0]}/{shard[1]}: "
    say(f"prefsim: {which}{len(rules)} rule table(s), {len(spec.seeds)} seed(s), {spec.iterations} iterations → {out}")
    # the directory stays locked until summary.csv and the figures are written: another run into it would
    # otherwise replace metrics.csv and the manifest under this run's summary and figures
    with contextlib.ExitStack() as locked:
        table = run(spec, out=out, resume=args.resume, progress=say, shard=shard, keep_locked=locked)
        say.finish()
        if shard is not None:
            held = ", ".join(rule.label for rule in rules)
            if spec.points:  # a [game]/[run] sweep: units of (group of points × rule table)
                from sim.sweep_runs import shard_contents

                held = shard_contents(spec, *shard)
            say(
                f"wrote shard {shard[0]}/{shard[1]} ({held}) to {out}; "
                "`prefsim merge` of every shard writes the run's results"
            )
            return 0
        return _write_summary_and_figures(table, spec, Path(out), chosen, at, args, say, workers)


def _merge(args) -> int:
    from sim.sweep_merge import merge_shards

    say = _StoppableProgress(mode="quiet" if args.quiet else "auto")
    with contextlib.ExitStack() as locked:  # held until summary.csv and the figures are written, as for a run
        table, spec = merge_shards(args.shards, args.out, progress=say, keep_locked=locked)
        chosen, at = _summary_options(args, spec)
        say.finish()
        return _write_summary_and_figures(table, spec, Path(args.out), chosen, at, args, say)


def _launch(args) -> int:
    from sim.launch import launch_from_arguments

    return launch_from_arguments(args)


def _summary_options(args, spec: ExperimentSpec) -> tuple[list[str] | None, list[int]]:
    """``--metrics`` and ``--at`` checked against the metrics and the spec's recorded iterations."""
    from sim.metrics import METRIC_COLUMNS
    from sim.stats import SAMPLED_COLUMNS
    from sim.trajectory import default_record_iterations, is_recorded

    chosen = _comma_list(args.metrics, "--metrics")
    unknown = sorted(set(chosen or ()) - set(METRIC_COLUMNS) - set(SAMPLED_COLUMNS))
    if unknown:
        raise PrefsimError(
            f"--metrics: unknown metric(s) {', '.join(unknown)}; metrics: "
            f"{', '.join((*METRIC_COLUMNS, *SAMPLED_COLUMNS))}."
        )
    at = [_iteration(value) for value in _comma_list(args.at, "--at") or []]
    # membership only: with record_every = 1 the recorded list has T + 1 entries (not built before the memory check)
    missing = [i for i in at if not is_recorded(i, spec.iterations, spec.record_every)]
    if missing:
        recorded = default_record_iterations(min(spec.iterations, 10**6), spec.record_every)
        shown = ", ".join(map(str, recorded[:20].tolist()))
        raise PrefsimError(
            f"--at: iteration(s) {', '.join(map(str, missing))} will not be recorded by this spec; recorded "
            f"iterations: {shown}{'…' if len(recorded) > 20 else ''} (set record_every to record others)."
        )
    return chosen, at


def _write_summary_and_figures(table, spec: ExperimentSpec, out: Path, chosen, at, args, say, workers=()) -> int:
    """summary.csv, the figures (unless --no-plots) and the printed summary of a finished (or merged) run;
    ``workers``: figure processes started earlier (:func:`start_figure_workers`)."""
    from sim.summary import choose_metrics, format_summary, summary_frame, write_summary

    metrics = choose_metrics(table, chosen)
    summary = summary_frame(table, iterations=at, precision=spec.precision, tau=spec.game.tau)
    write_summary(out, summary)
    if not args.quiet:  # the results first: the figures of a large run take longer than its table
        print()
        print(format_summary(summary, metrics, spec.precision, tau=spec.game.tau), flush=True)
    if not args.no_plots:
        paths = _draw(table, out, say, workers)
        say.finish()
        say(f"wrote {out / 'metrics.csv'}, summary.csv, bounds.csv, manifest.json and {len(paths)} figure(s)")
    else:  # an earlier run's figures would show its results next to this run's
        _remove_old_figures(out, [], say)
    return 0


def default_out(spec_path: str | Path, spec: ExperimentSpec, shard: tuple[int, int] | None = None) -> Path:
    """``results/<spec file stem>``; for a manifest.json, ``results/<spec name or its directory>-rerun``;
    a shard's goes under it: ``…/shard-I-of-N``."""
    path = Path(spec_path)
    if path.suffix == ".json":
        name = spec.raw.get("name") or path.resolve().parent.name
        base = Path("results") / f"{name}-rerun"
    else:
        base = Path("results") / path.stem
    return base if shard is None else base / f"shard-{shard[0]}-of-{shard[1]}"


def _comma_list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise PrefsimError(f"{option}: expected a comma-separated list, got {text!r}.")
    return items


def _iteration(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PrefsimError(f"--at: expected iteration numbers, got {text!r}.") from None
    if value < 0:
        raise PrefsimError(f"--at: iterations are ≥ 0, got {value}.")
    return value


def _plot(args) -> int:
    from sim.results_io import output_lock, read_results_table, results_table_files
    from sim.win_rate import is_win_rate_directory, plot_win_rate, read_win_rate_table

    directory = Path(args.directory)
    if not directory.is_dir():  # else the lock file's error, which names --out, an option plot does not have
        raise PrefsimError(
            f"prefsim plot: {str(directory)!r} is not a directory; give one written by `prefsim run` or `prefsim llm`."
        )
    say = _StoppableProgress(mode="quiet" if args.quiet else "auto")
    if is_win_rate_directory(directory):  # a `prefsim llm` run (finished or in progress)
        path = plot_win_rate(read_win_rate_table(directory), directory / "win_rate.png")
        say(f"wrote {path}")
        return 0
    results_table_files(directory)  # a folder with no results is refused before the lock file is made in it
    with output_lock(directory):  # not while a run or merge writes there (its figures would mix with these)
        table = read_results_table(directory)
        if not (directory / "bounds.csv").is_file():
            say(f"note: {directory} has no bounds.csv (written by runs of this prefsim version): no bounds drawn.")
        paths = _draw(table, directory, say)
    say.finish()
    say(f"wrote {len(paths)} figure(s) to {directory}")
    return 0


def _compare(args) -> int:
    from sim.compare import COMPARE_FILE, compare_runs, format_comparison, load_run, runs_record, runs_record_path
    from sim.diagnostics import precision_floor
    from sim.results_io import csv_bytes, json_bytes, write_files_atomic

    table_a, manifest_a = load_run(args.run_a)
    table_b, manifest_b = load_run(args.run_b)
    at = [_iteration(value) for value in _comma_list(args.at, "--at") or []]
    comparison = compare_runs(
        table_a, manifest_a, table_b, manifest_b, metrics=_comma_list(args.metrics, "--metrics"), iterations=at
    )
    out = Path(args.out) if args.out else Path(args.run_b) / COMPARE_FILE
    record = runs_record(args.run_a, manifest_a, args.run_b, manifest_b)
    write_files_atomic(
        {out: csv_bytes(comparison), runs_record_path(out): json_bytes(record)}, rerun="run `prefsim compare` again"
    )
    precision = (manifest_b.get("parsed_spec") or {}).get("precision", "float64")
    print(format_comparison(comparison, str(args.run_a), str(args.run_b), precision_floor(precision)))
    print(f"\nwrote {out} and {runs_record_path(out)} (which runs A and B are)")
    return 0


def _report(args) -> int:
    from sim.report import build_report

    path = build_report(args.directory, args.out)
    print(f"wrote {path}")
    return 0


def _draw(table, directory: Path, progress=None, workers=()):
    """Figures from the stored results only: metrics, manifest, bounds.csv and headtohead.csv (no games are
    rebuilt); ``workers``: figure processes started earlier, which draw every figure while as many of
    them as there are cores are ready (:func:`sim.figure_plan.draw_figures`); this process draws the
    rest, and only then imports Matplotlib.  A figure an earlier drawing made from the same inputs
    (:func:`sim.figure_plan.figure_inputs_digest`) and left as it wrote it is kept, not drawn again."""
    from sim.bounds_file import read_bounds
    from sim.figure_plan import draw_figures, figure_inputs_digest, plan_figures
    from sim.results_io import figure_record, kept_figures, read_headtohead, read_manifest, write_figure_list

    manifest, bounds = read_manifest(directory), read_bounds(directory)
    headtohead = read_headtohead(directory)
    plan = plan_figures(table, directory, manifest, bounds=bounds, headtohead=headtohead)
    if plan.without_data and progress is not None:
        progress(
            f"note: plot.metrics: {', '.join(plan.without_data)} has no value on the rules drawn (it does not "
            "apply to this game or these rules): no figure."
        )
    formats = plan.job.plot.formats
    # figures.json names what this drawing writes (then what it wrote): `prefsim report` shows those only
    planned = [f"{figure}.{kind}" for figure in plan.figures for kind in formats]
    # a figure an earlier drawing made from the same results with the same code is kept: the same bytes
    inputs = figure_inputs_digest(plan.job)
    kept = kept_figures(directory, planned, inputs)
    redrawn = [figure for figure in plan.figures if not all(f"{figure}.{kind}" in kept for kind in formats)]
    _remove_old_figures(directory, planned, progress)
    write_figure_list(directory, planned, complete=False, drawn_from=kept)
    if progress is not None and len(redrawn) < len(plan.figures):
        progress(
            f"kept {len(plan.figures) - len(redrawn)} figure(s) drawn earlier from the same results by the same code"
        )
    paths = draw_figures(
        dataclasses.replace(plan, figures=redrawn), _draw_here, workers, progress, cores=usable_cores()
    )
    written = {path.name for path in paths} | set(kept)
    names = [name for name in planned if name in written]  # the head-to-head map may draw nothing
    if len(names) < len(planned):  # then an earlier run's map, listed, is not this run's
        _remove_old_figures(directory, names, progress)
    drawn_from = {**kept, **{path.name: figure_record(path, inputs) for path in paths}}
    write_figure_list(directory, names, complete=True, drawn_from=drawn_from)
    return [directory / name for name in names]


def _remove_old_figures(directory: Path, planned: list[str], progress=None) -> None:
    """Remove the figures an earlier drawing wrote in ``directory`` (``figures.json``) that ``planned`` does not
    redraw, and say so; with nothing planned (``--no-plots``) the list is left empty.  Only files the list
    names are removed."""
    from sim.results_io import remove_old_figures, write_figure_list

    removed = remove_old_figures(directory, planned)
    if removed and progress is not None:
        names = ", ".join(path.name for path in removed)
        progress(f"removed {len(removed)} figure(s) of an earlier run in {directory}, not drawn by this one: {names}")
    if not planned:  # figures of an older prefsim, which wrote no list, are not this run's either
        write_figure_list(directory, [], complete=True)


def _draw_here(job, figure: str) -> list[Path]:
    """One figure drawn in this process (:func:`sim.plotting.draw_job_figure`): Matplotlib is imported
    only when a figure is drawn here."""
    from sim.plotting import draw_job_figure

    return draw_job_figure(job, figure)


def _rules(args) -> int:
    from sim.rules.catalogue import describe_rules, parameter_text

    rules = describe_rules()
    if args.json:
        print(json.dumps(rules, indent=2, ensure_ascii=False))
        return 0
    for rule in rules:
        modes = ", ".join(rule["modes"])
        print(f"{rule['name']}: {rule['summary']}  [{modes}]")
        print(f"    paper: {rule['paper']}")
        if rule["aliases"]:
            print(f"    old names (LLM specs, deprecated): {', '.join(rule['aliases'])}")
        for parameter in rule["parameters"]:
            print(f"    {parameter_text(parameter)}")
        if rule["pair_schemes"]:
            print(
                f"    pair schemes: sampled {', '.join(rule['pair_schemes']['sampled'])}; "
                f"llm {', '.join(rule['pair_schemes']['llm'])}; "
                f"default in both modes: {rule['pair_schemes']['default']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(console())
