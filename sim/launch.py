"""``prefsim launch``: the shards of a spec as a job array on an existing scheduler, then one merge job.

Built on `submitit <https://github.com/facebookincubator/submitit>`_ (``pip install "prefsim[cluster]"``):
``--executor slurm`` submits a SLURM job array (``map_array``; ``--array-parallelism`` is
``slurm_array_parallelism``) whose tasks run ``prefsim run SPEC --out OUT/shards/shard-I-of-N --shard I/N
--resume``, and a merge job that starts when every task has succeeded (``--dependency=afterok``) and runs
``prefsim merge … --out OUT``; ``--executor local`` runs the same jobs as processes on this machine
(submitit's local executor), waits for the shards and then runs the merge.  Partition, time limit, GPUs,
CPUs and memory per task are passed through to SLURM.  Shard runs always pass ``--resume``, so a
preempted or failed task that is run again (or the whole launch, repeated) continues from its finished
parts.

Several shards per GPU: with ``--shards-per-gpu k`` each array task runs k shards as k processes on
its device(s), and every shard process gets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (JAX allocates
what it uses instead of 75% of the device up front) and ``XLA_PYTHON_CLIENT_MEM_FRACTION`` = 0.9 / k
(``--mem-fraction`` overrides), so k JAX processes share one device without running out of memory at
start-up.

LLM bridge specs (a ``[model]`` table) are sharded by rule: each ``[[rule]]`` table is one shard run
by ``prefsim llm SPEC --out OUT/shards/shard-I-of-N --shard I/N --resume`` (``accelerate`` inside the
job as usual; ``--shards`` defaults to the number of rules), and the merge job runs
``prefsim llm SPEC --merge … --out OUT``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from bandits.errors import PrefsimError
from sim.shards import check_shard_count, part_count

EXECUTORS = ("slurm", "local")
#: The SLURM commands submitit's SLURM executor calls (it submits with sbatch and tells a cluster by srun).
SLURM_COMMANDS = ("sbatch", "srun")
#: Device memory shared out among the shard processes of one task (the rest is left to the driver).
SHARED_MEMORY = 0.9


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``prefsim launch``."""
    parser.add_argument("spec", help="the spec TOML (a prefsim run spec, or an LLM bridge spec with a [model] table)")
    parser.add_argument(
        "--shards",
        type=int,
        help="number of shards N (default and most: one per part — [[rule]] table × seed block of [run] "
        "seed_block, or for a [game]/[run] sweep group of points × table; an LLM spec: one per rule)",
    )
    parser.add_argument("--out", help="result directory of the merged run (default: results/<spec name>)")
    parser.add_argument("--executor", choices=EXECUTORS, default="slurm", help="submitit executor (default: slurm)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--time", type=int, default=60, help="time limit per job in minutes (default: 60)")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per array task (default: 0)")
    parser.add_argument("--cpus-per-task", type=int, help="CPUs per array task")
    parser.add_argument("--mem-gb", type=float, help="memory per array task in GB")
    parser.add_argument("--array-parallelism", type=int, help="most array tasks running at once (SLURM)")
    parser.add_argument(
        "--shards-per-gpu", type=int, default=1, help="shards run as processes side by side in one task (default: 1)"
    )
    parser.add_argument(
        "--mem-fraction", type=float, help="XLA_PYTHON_CLIENT_MEM_FRACTION per shard (default: 0.9 / shards-per-gpu)"
    )
    parser.add_argument("--wait", action="store_true", help="SLURM: wait for the merge job to finish")


def launch_from_arguments(args: argparse.Namespace) -> int:
    """``prefsim launch``: check the spec and options, submit, and report the jobs."""
    spec_path = Path(args.spec)
    llm, tables, name = _read_spec(spec_path)
    if llm:
        count = tables if args.shards is None else args.shards
        if count > tables:
            raise PrefsimError(f"--shards {count}: this LLM spec has {tables} rule(s); a shard holds whole rules.")
    else:
        from sim.spec import load_spec

        spec = load_spec(spec_path)
        count = part_count(spec) if args.shards is None else args.shards
        if count >= 1:
            check_shard_count(spec, count)
    if count < 1:
        raise PrefsimError(f"--shards: expected a number ≥ 1, got {count}.")
    per_gpu = args.shards_per_gpu
    if per_gpu < 1:
        raise PrefsimError(f"--shards-per-gpu: expected a number ≥ 1, got {per_gpu}.")
    check_job_options(args)
    fraction = SHARED_MEMORY / per_gpu if args.mem_fraction is None else args.mem_fraction
    if not 0 < fraction <= 1:
        raise PrefsimError(f"--mem-fraction: expected a fraction in (0, 1], got {fraction}.")
    out = Path(args.out) if args.out else Path("results") / name
    plan = launch_plan(spec_path, out, count, per_gpu, llm)
    env = memory_environment(fraction)
    jobs, merge = submit(plan, args, env, out / "launch")
    print(f"submitted {len(jobs)} shard job(s) ({', '.join(job.job_id for job in jobs)}) and merge job {merge.job_id}")
    if args.executor == "local" or args.wait:
        wait_for(merge, "the merge job")
        print(f"merged {count} shard(s) into {out}")
    else:
        print(f"the merged results will be in {out}; job logs in {out / 'launch'}")
    return 0


def check_job_options(args: argparse.Namespace) -> None:
    """Refuse job options no scheduler can take, and SLURM where there is none, before anything is submitted
    (submitit would fail later: a job killed at once with empty logs, or a traceback)."""
    if args.time < 1:
        raise PrefsimError(f"--time: expected a time limit of at least 1 minute, got {args.time}.")
    if args.gpus_per_task < 0:
        raise PrefsimError(f"--gpus-per-task: expected a number ≥ 0, got {args.gpus_per_task}.")
    for option, value in (("--cpus-per-task", args.cpus_per_task), ("--array-parallelism", args.array_parallelism)):
        if value is not None and value < 1:
            raise PrefsimError(f"{option}: expected a number ≥ 1, got {value}.")
    if args.mem_gb is not None and not args.mem_gb > 0:
        raise PrefsimError(f"--mem-gb: expected a memory size > 0, got {args.mem_gb}.")
    missing = [command for command in SLURM_COMMANDS if shutil.which(command) is None]
    if args.executor == "slurm" and missing:
        raise PrefsimError(
            f"--executor slurm: this machine has no SLURM ({' and '.join(missing)} not found); run prefsim launch on "
            "the cluster's login node, or use --executor local to run the shards here."
        )


def _read_spec(path: Path) -> tuple[bool, int, str]:
    """``(is an LLM spec, number of [[rule]] tables, name)`` of a spec file."""
    from sim.spec_checks import load_toml, read_spec_text

    if path.suffix == ".json":
        from sim.spec import load_spec

        spec = load_spec(path)
        return False, len(spec.rules), spec.raw.get("name") or path.resolve().parent.name
    try:
        data = load_toml(read_spec_text(path), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise PrefsimError(f"{path}: not valid TOML ({exc}).") from None
    rules = data.get("rule")
    tables = len(rules) if isinstance(rules, list) else 0
    return "model" in data, tables, str(data.get("name") or path.stem)


def launch_plan(spec: Path, out: Path, count: int, per_gpu: int, llm: bool) -> dict:
    """The command lines of the jobs: ``shards`` (one list of commands per array task) and ``merge``."""
    module = "llm_bridge.cli" if llm else "sim.cli"
    head = [module] if llm else [module, "run"]
    directories = [out / "shards" / f"shard-{index}-of-{count}" for index in range(count)]
    commands = [
        [*head, str(spec), "--out", str(directory), "--shard", f"{index}/{count}", "--resume", "--quiet"]
        + ([] if llm else ["--no-plots"])
        for index, directory in enumerate(directories)
    ]
    tasks = [commands[start : start + per_gpu] for start in range(0, count, per_gpu)]
    if llm:
        merge = [module, str(spec), "--out", str(out), "--merge", *map(str, directories)]
    else:
        merge = [module, "merge", *map(str, directories), "--out", str(out), "--quiet"]
    return {"shards": tasks, "merge": merge}


def memory_environment(fraction: float) -> dict:
    """The JAX memory settings of a shard process (several per device)."""
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction:.3f}"}


def run_commands(commands: list, env: dict, cwd: str) -> list[int]:
    """One job's work: ``python -m <command>`` for each command, side by side; fails if any fails."""
    environment = {**os.environ, **env}
    processes = [subprocess.Popen([sys.executable, "-m", *command], env=environment, cwd=cwd) for command in commands]
    codes = [process.wait() for process in processes]
    failed = [(" ".join(command), code) for command, code in zip(commands, codes) if code != 0]
    if failed:
        raise RuntimeError("; ".join(f"`python -m {command}` exited with status {code}" for command, code in failed))
    return codes


def submit(plan: dict, args: argparse.Namespace, env: dict, logs: Path) -> tuple[list, Any]:
    """Submit the array and the merge job with submitit; returns ``(array jobs, merge job)``."""
    try:
        import submitit
    except ImportError:
        raise PrefsimError(
            'prefsim launch needs submitit: pip install "prefsim[cluster]" (or pip install submitit).'
        ) from None
    executor = submitit.AutoExecutor(folder=str(logs), cluster=args.executor)
    parameters = {"name": "prefsim-shard", "timeout_min": args.time}
    if args.gpus_per_task:
        parameters["gpus_per_node"] = args.gpus_per_task
    if args.cpus_per_task:
        parameters["cpus_per_task"] = args.cpus_per_task
    if args.mem_gb:
        parameters["mem_gb"] = args.mem_gb
    if args.partition:
        parameters["slurm_partition"] = args.partition
    if args.array_parallelism:
        parameters["slurm_array_parallelism"] = args.array_parallelism
    executor.update_parameters(**parameters)
    cwd = os.getcwd()
    tasks = plan["shards"]
    jobs = executor.map_array(run_commands, tasks, [env] * len(tasks), [cwd] * len(tasks))
    merge_parameters = {"name": "prefsim-merge", "gpus_per_node": 0}
    if args.executor == "slurm":
        array_id = jobs[0].job_id.split("_")[0]
        merge_parameters["slurm_additional_parameters"] = {"dependency": f"afterok:{array_id}"}
    else:
        for job in jobs:  # the local executor has no dependencies: the merge starts when the shards are done
            wait_for(job, "shard job")
    executor.update_parameters(**merge_parameters)
    merge = executor.submit(run_commands, [plan["merge"]], {}, cwd)
    return jobs, merge


#: The line submitit's FailedJobError draws above and below the job's traceback.
_TRACE_FRAME = "-" * 22


def job_failure(message: str, log: str) -> str:
    """Why a job failed, from submitit's exception ``message`` and the job's stderr ``log``: the exception that
    ended it (the last line of the traceback of a FailedJobError, without its type when it is run_commands'
    RuntimeError; the state of an UncompletedJobError, e.g. a TIMEOUT), then the ``error:`` lines the prefsim
    commands of the job printed, which say what was wrong."""
    lines = message.splitlines()
    if _TRACE_FRAME in lines:  # "…with trace:", frame, traceback, frame, "You can check full logs … at paths:"
        start = lines.index(_TRACE_FRAME) + 1
        end = lines.index(_TRACE_FRAME, start) if _TRACE_FRAME in lines[start:] else len(lines)
        trace = [line for line in lines[start:end] if line.strip()]
        reason = trace[-1].removeprefix("RuntimeError: ") if trace else "an exception"
    else:
        reason = next((line.strip() for line in lines if "has not produced any output" in line), None)
        reason = reason or next((line.strip() for line in lines if line.strip()), "no reason given")
    errors = [line.strip() for line in log.splitlines() if line.startswith("error:")]
    return reason + "".join(f"; {error}" for error in errors)


def wait_for(job: Any, what: str) -> Any:
    """The job's result, or a :class:`PrefsimError` naming the job, why it failed (:func:`job_failure`) and its
    logs (no scheduler traceback)."""
    try:
        return job.result()
    except Exception as exc:  # submitit's FailedJobError / UncompletedJobError carry the job's traceback
        try:
            log = Path(job.paths.stderr).read_text(encoding="utf-8", errors="replace")
        except OSError:
            log = ""
        reason = job_failure(str(exc), log).rstrip(".")
        raise PrefsimError(
            f"{what} {job.job_id} failed: {reason}. Its output is in {job.paths.stdout} and {job.paths.stderr}. "
            "Launching again resumes every shard from its finished parts."
        ) from None
