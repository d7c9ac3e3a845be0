"""Result directories: checked up front, locked while a run writes, atomic writes, checksummed parts.

A result directory ``out`` of :func:`sim.run` / ``prefsim run`` holds

* ``metrics.csv`` and ``manifest.json`` — the last **complete** run; both are replaced together at
  the end of a run (each written to a temporary file first, then renamed), so a run that fails or is
  stopped (a full disk, a file-size limit, SIGINT/SIGTERM) leaves the previous pair intact;
* ``parts/<label>.csv`` — one file per ``[[rule]]`` table, written as soon as it is computed.  Its
  first two lines are comments: ``# fingerprint=<spec fingerprint>`` and ``# sha256=<hex> rows=<n>``,
  the SHA-256 of the CSV text that follows.  ``--resume`` reuses a part only when the fingerprint
  matches the spec and the code (:func:`sim.experiment.computing_code`) **and** the checksum and row
  count match the text (a part edited, cut short or with an extra row is recomputed, and the file is
  named);
* ``parts/manifest.json`` — the manifest of the run in progress (``complete = false``);
* ``figures.json`` — the figure files the last ``prefsim run``, ``merge`` or ``plot`` drew there
  (:data:`FIGURE_LIST`): ``prefsim report`` embeds those only, and the next drawing removes the ones
  it does not redraw (``--no-plots``: all of them), never a file the list does not name; with what each
  was drawn from, so that a drawing from the same results by the same code keeps it (:func:`kept_figures`);
* ``.prefsim.lock`` — held (``fcntl.flock``) while a run writes (``prefsim run`` and ``prefsim merge``:
  until ``summary.csv`` and the figures are written too), so a second run into the same
  directory stops at once with a clear error instead of interleaving its files.  The kernel drops
  the lock when the process ends, however it ends (POSIX only: without ``fcntl`` nothing is locked).

Every problem with the directory (a file where a directory should be, ``/dev/null``, a directory
that cannot be written, ``metrics.csv`` that is a directory, an empty path) is reported before any
computation as a :class:`~bandits.errors.PrefsimError`; OS errors while writing (ENOSPC, EFBIG) are
reported naming the file, with the temporary file removed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from bandits.errors import PrefsimError, os_reason
from bandits.inputs import as_path
from sim.bounds_file import BOUNDS_FILE
from sim.provenance import default_file_mode
from sim.stats import is_field_column

try:  # POSIX; on a platform without it (Windows) result directories are not locked
    import fcntl
except ImportError:  # pragma: no cover - not reached on Linux or macOS
    fcntl = None

LOCK_NAME = ".prefsim.lock"
RESULT_FILES = ("metrics.csv", "manifest.json")
RUNNING_MANIFEST = Path("parts") / "manifest.json"
#: A long part's state between its time blocks (:mod:`sim.checkpoint`): ``parts/<part>`` + this.
PROGRESS_SUFFIX = ".progress.npz"
#: Columns of a part that are not floating-point metrics (labels, integer ids, sampled mode's query count).
NON_FLOAT_COLUMNS = ("rule", "seed", "iteration", "queries")


#: The signals :func:`signals_held` holds while a part of the results is written.
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block writes results that belong together (a rule's rows and
    its final policies), then act on one that came, with the handler in effect before: a signal in the
    middle of a write would leave half of them (and a traceback from the half-written file).

    Only in the main thread (the only one Python delivers signals to); elsewhere the block just runs.
    The previous handlers are back when the block ends, whatever happens in it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {number: signal.getsignal(number) for number in HELD_SIGNALS}
    for number in HELD_SIGNALS:
        signal.signal(number, lambda number, frame: arrived.append(number))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # handled now, as if it had just arrived


def check_directory_path(out: str | os.PathLike) -> Path:
    """Refuse a result-directory path that cannot be one, without creating anything; return ``Path(out)``.

    Refused: an empty path (``--out ""`` is not the current directory), a NUL byte, a path that exists
    and is not a directory (a file, ``/dev/null``) or whose parent is not one, and a path whose nearest
    existing ancestor (or itself) cannot be written (``os.access``; root passes it, the probe write of
    :func:`check_output_directory` does not).
    """
    if out is None or str(out).strip() == "":
        raise PrefsimError("--out: the result directory is an empty path; give a directory name.")
    path = as_path(out, "--out")
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            what = "the result directory" if parent == path else f"its parent {str(parent)!r}"
            raise PrefsimError(
                f"--out {str(path)!r}: {what} exists and is not a directory; choose a directory path "
                "(a new one is created)."
            )
    existing = next((p for p in [path, *path.absolute().parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PrefsimError(
            f"--out {str(path)!r}: {str(existing)!r} is not writable (permission denied); choose a writable directory."
        )
    return path


def check_output_directory(out: str | os.PathLike, labels: Iterable[str] = ()) -> Path:
    """Validate (and create) the result directory ``out`` and ``out/parts``; return ``Path(out)``.

    Refused with a :class:`PrefsimError`: everything :func:`check_directory_path` refuses;
    ``out/parts`` that is not a directory; ``metrics.csv``, ``manifest.json`` or ``parts/<label>.csv``
    (``labels``) that exist but are not regular files; a directory where a probe file cannot be created
    and removed (no permission, read-only file system).
    """
    path = check_directory_path(out)
    try:
        (path / "parts").mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PrefsimError(
            f"--out {str(path)!r}: {str(path / 'parts')!r} exists and is not a directory; it holds the per-rule "
            "results of a run, so remove or rename it."
        ) from None
    except OSError as exc:
        raise PrefsimError(f"--out {str(path)!r}: cannot create the result directory ({os_reason(exc)}).") from None
    names = [*RESULT_FILES, str(RUNNING_MANIFEST)]
    names += [str(Path("parts") / f"{label}{suffix}") for label in labels for suffix in (".csv", PROGRESS_SUFFIX)]
    for name in names:
        target = path / name
        if target.exists() and not target.is_file():
            raise PrefsimError(
                f"--out {str(path)!r}: {str(target)!r} exists and is not a regular file; prefsim writes its results "
                "there, so remove or rename it."
            )
    for directory in (path, path / "parts"):
        try:
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-", suffix=".tmp"):
                pass
        except OSError as exc:
            raise PrefsimError(
                f"--out {str(path)!r}: cannot write in {str(directory)!r} ({os_reason(exc)}); choose a writable "
                "directory."
            ) from None
    return path


@contextlib.contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``out/.prefsim.lock`` for the duration of the block.

    Raises :class:`PrefsimError` at once (no waiting) when another process holds it, naming that
    process's id as it wrote it into the lock file.
    """
    path = Path(out) / LOCK_NAME
    if fcntl is None:
        yield path
        return
    try:
        handle = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise PrefsimError(
            f"--out {str(out)!r}: cannot create the lock file {str(path)!r} ({os_reason(exc)})."
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise PrefsimError(f"--out {str(out)!r}: cannot lock {str(path)!r} ({os_reason(exc)}).") from None
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise PrefsimError(
                f"--out {str(out)!r}: another prefsim run (process {holder}) is writing to this directory; wait for "
                "it to finish or choose another --out (two runs into one directory would mix their results)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        handle.close()  # closing the descriptor releases the lock


@contextlib.contextmanager
def output_lock_until(out: str | os.PathLike, keep_locked: contextlib.ExitStack | None) -> Iterator[Path]:
    """:func:`output_lock` for the block, or, given ``keep_locked``, entered into that stack and held until its
    owner closes it (``prefsim run`` and ``merge`` write ``summary.csv`` and the figures under the lock of the
    run or merge they call)."""
    if keep_locked is None:
        with output_lock(out) as path:
            yield path
    else:
        yield keep_locked.enter_context(output_lock(out))


# ----------------------------------------------------------------------------------------------
# atomic writes


#: What a failed :func:`write_files_atomic` tells the user to do once the cause is fixed, by default (a run's).
RERUN_RUN = "rerun with --resume (finished rule parts are kept)"
#: The errors of a full disk or the file-size limit; any other (a read-only or missing directory) is the path's.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def no_room(exc: BaseException) -> bool:
    """Whether a failed write ran out of room (a full disk, a quota, the file-size limit: :data:`_NO_ROOM`), as
    opposed to a path that cannot be written (a read-only or missing directory)."""
    return isinstance(exc, OSError) and exc.errno in _NO_ROOM


def write_files_atomic(contents: dict, removed: Iterable[Path] = (), rerun: str = RERUN_RUN) -> None:
    """Write ``{path: bytes}`` so that either every file is replaced or none is; ``removed``: files that go
    with the replacement (results derived from the files replaced), removed only when it happens; ``rerun``:
    what the error tells the user to do once the cause is fixed.

    Every file is first written in full (and flushed to disk) to a temporary file next to it; only
    when all are written are the ``removed`` files deleted and the temporaries renamed over their targets,
    with Ctrl-C and SIGTERM held (:func:`signals_held`) so that a signal between two renames stops the
    process after the last one, not with some files replaced and others not (:func:`replace_files_atomic`).  A
    failure while writing (a full disk, the file-size limit, a read-only directory) removes the temporary files
    and raises :class:`PrefsimError` naming the file and what to fix, so the previous files (the ``removed``
    ones too) stay as they were.
    """
    try:
        replace_files_atomic(contents, removed)
    except OSError as exc:
        failed = Path(exc.filename).name if getattr(exc, "filename", None) else None
        written = ", ".join(str(p) for p in contents)
        fix = (
            "Free disk space or raise the file-size limit"
            if no_room(exc)
            else "Give each a file name in an existing, writable directory"
        )
        raise PrefsimError(
            f"could not write {written} ({os_reason(exc)}{': ' + failed if failed else ''}); the previous "
            f"version of each file is left as it was. {fix}, and {rerun}."
        ) from None


def replace_files_atomic(contents: dict, removed: Iterable[Path] = ()) -> None:
    """The writes of :func:`write_files_atomic`, for a caller with an error message of its own: ``{path: data}``,
    ``data`` the file's bytes or a function that writes the file at the path it is given (the bridge's checkpoints,
    which safetensors writes itself: no second copy of their bytes in memory); ``removed`` as there.

    Each file goes to a temporary file of its own next to ``path`` (``.<name>.<random>.tmp``, with the user's
    umask rather than ``mkstemp``'s 0600), flushed to disk; then, with Ctrl-C and SIGTERM held, the ``removed``
    files are deleted and each temporary file is renamed over its target.  A failure (an OSError, or whatever a
    writing function raises) removes the temporary files and is raised as it came, an OSError with the file it
    was writing or removing as its ``filename`` (the target's name, not its temporary's).  A target that is a
    directory is refused (``IsADirectoryError``) before anything is written: its rename would fail after the
    files before it had been replaced.
    """
    temporary, current = {}, None
    try:
        for path in map(Path, contents):
            if path.is_dir():  # os.replace cannot put a file over it: fail before any file is replaced
                current = path
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        for path, data in contents.items():
            current = path = Path(path)
            descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporary[path] = name
            if callable(data):
                os.close(descriptor)
                data(name)
                with open(name, "rb") as handle:
                    os.fsync(handle.fileno())
            else:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chmod(name, default_file_mode())  # mkstemp creates 0600: give the user's umask instead
        with signals_held():  # a Ctrl-C or SIGTERM between two renames is acted on after the last one
            for current in map(Path, removed):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(current)
            for current, name in temporary.items():
                os.replace(name, current)
    except BaseException as exc:
        _remove_quietly(temporary.values())
        if isinstance(exc, OSError) and current is not None:
            exc.filename = str(current)  # under its own name, not its temporary's
        raise


def _remove_quietly(names) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            os.remove(name)


#: How prefsim's CSV files write a float: 17 significant digits, which read back as the same double.
CSV_FLOAT_FORMAT = "%.17g"
#: Characters that make the CSV writer quote a field.
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')


#: The last CSV text :func:`csv_bytes` wrote, under its frame's :func:`content_digest`: a run of one rule
#: table writes the same rows twice, its part and ``metrics.csv`` (K = 100, 256 seeds: ~0.1 s each).
_LAST_CSV: dict[bytes, bytes] = {}


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CSV text of a results frame as prefsim writes it: the bytes of pandas'
    ``frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)``, about twice as fast; a frame with the
    same content as the last one written (:func:`content_digest`) gets that text again, unformatted.

    pandas formats a float column through per-value Python calls wrapped in masks and copies (~1 µs a value;
    a K = 100, 256-seed run's table has 250 000, written twice: its part and ``metrics.csv``).  Here a
    column of floats, integers, booleans or strings (missing values empty) is formatted in one pass and the
    rows joined, through the :mod:`csv` writer (pandas' own) when a field needs quotes; a frame with any
    other column (an extension dtype, objects that are not strings) is left to pandas.
    """
    digest = content_digest(frame)
    if digest is not None and digest in _LAST_CSV:
        return _LAST_CSV[digest]
    text = _csv_text(frame)
    if digest is not None:
        _LAST_CSV.clear()
        _LAST_CSV[digest] = text
    return text


def frame_schema(frame: pd.DataFrame) -> bytes:
    """``frame``'s column names and dtypes as bytes: where a digest of its contents starts."""
    return repr(([str(name) for name in frame.columns], [str(t) for t in frame.dtypes])).encode()


def content_digest(frame: pd.DataFrame) -> bytes | None:
    """SHA-256 of everything :func:`csv_bytes` writes of ``frame``: its column names, dtypes and values (the
    bytes of numbers, so -0.0 and 0.0 differ, as their text does); ``None`` for a frame with a column that
    is neither numbers nor strings (never reused)."""
    digest = hashlib.sha256(frame_schema(frame))
    for index in range(frame.shape[1]):
        column = frame.iloc[:, index]
        kind = _column_kind(column)
        if kind in NUMBER_KINDS:
            digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
        elif kind == TEXT:
            values = column.tolist()
            if not all(isinstance(value, str) for value in values):
                return None
            digest.update(np.array([len(value) for value in values], np.int64).tobytes())
            digest.update("".join(values).encode("utf-8"))
        else:
            return None
    return digest.digest()


def _csv_text(frame: pd.DataFrame) -> bytes:
    texts = [_column_texts(frame.iloc[:, index]) for index in range(frame.shape[1])]
    if not texts or any(column is None for column in texts):
        return frame.to_csv(index=False, float_format=CSV_FLOAT_FORMAT).encode("utf-8")
    header = [str(name) for name in frame.columns]
    # numbers never need quotes: only the header and the text columns are searched
    searched = [header] + [fields for fields, dtype in zip(texts, frame.dtypes) if dtype.kind not in NUMBER_KINDS]
    if len(texts) > 1 and not any(_NEEDS_QUOTES.search(field) for fields in searched for field in set(fields)):
        # nothing to quote, and no row is one empty field (which the csv writer writes as "")
        return ("\n".join(map(",".join, [header, *zip(*texts)])) + "\n").encode("utf-8")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*texts))
    return text.getvalue().encode("utf-8")


#: :func:`_column_kind` of a column of NumPy numbers (float, signed, unsigned, bool), and of one of text.
NUMBER_KINDS, TEXT = ("f", "i", "u", "b"), "text"


def _column_kind(series: pd.Series) -> str | None:
    """How :func:`csv_bytes` writes a column: its NumPy kind (one of :data:`NUMBER_KINDS`), :data:`TEXT`
    (objects or strings), or ``None`` (left to pandas: an extension dtype, dates, …)."""
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else None
    if kind in NUMBER_KINDS:
        return kind
    if kind == "O" or pd.api.types.is_string_dtype(series.dtype):
        return TEXT
    return None


def _column_texts(series: pd.Series) -> list[str] | None:
    """The CSV fields of one column as pandas writes them (:func:`csv_bytes`), or ``None`` for a column
    left to pandas."""
    kind = _column_kind(series)
    if kind == "f":
        values = series.to_numpy()
        texts = list(map(CSV_FLOAT_FORMAT.__mod__, values.tolist()))
        for index in np.flatnonzero(np.isnan(values)).tolist():
            texts[index] = ""
        return texts
    if kind in NUMBER_KINDS:
        return list(map(str, series.tolist()))
    if kind == TEXT:
        texts = []
        for value in series.tolist():
            if isinstance(value, str):
                texts.append(value)
            elif value is None or value is pd.NA or (isinstance(value, float) and value != value):
                texts.append("")
            else:  # numbers or other objects in an object column: pandas' own formatting
                return None
        return texts
    return None


def json_bytes(data: dict) -> bytes:
    return json.dumps(data, indent=2, default=str).encode("utf-8")


#: The summary table of a result directory (:func:`sim.summary.write_summary`), written from ``metrics.csv``.
SUMMARY_FILE = "summary.csv"


#: A run's table of its final policies' win rates, rule against rule (:mod:`sim.headtohead`).
HEADTOHEAD_FILE = "headtohead.csv"


def read_headtohead(directory: str | Path) -> pd.DataFrame | None:
    """The head-to-head table of result directory ``directory``, or ``None`` where the run wrote none."""
    path = Path(directory) / HEADTOHEAD_FILE
    return pd.read_csv(path) if path.is_file() else None


def write_run_results(
    out: Path,
    table: pd.DataFrame,
    bounds: pd.DataFrame | None,
    manifest: dict,
    headtohead: pd.DataFrame | None = None,
) -> None:
    """Replace a finished run's ``metrics.csv``, ``manifest.json`` (and ``bounds.csv``, ``headtohead.csv``
    where given; a shard writes neither) together (:func:`write_files_atomic`), then remove the running
    manifest ``parts/manifest.json``.

    What was drawn or summarised from the results these replace stops claiming to be this run's: an
    earlier ``summary.csv`` is removed, and an earlier :data:`FIGURE_LIST` is marked not complete, in
    the same replacement (``prefsim report`` then says the figures may be from an earlier run, until
    ``prefsim run``'s or ``prefsim plot``'s drawing lists its own).  A replacement that fails (a full disk)
    leaves the earlier results whole, their ``summary.csv`` included."""
    files = {out / "metrics.csv": csv_bytes(table), out / "manifest.json": json_bytes(manifest)}
    if bounds is not None:
        files[out / BOUNDS_FILE] = csv_bytes(bounds)
    if headtohead is not None:
        files[out / HEADTOHEAD_FILE] = csv_bytes(headtohead)
    drawn = _figure_list_record(out)
    if drawn is not None:  # kept as it is (what each figure was drawn from included), but not complete
        files[out / FIGURE_LIST] = json_bytes({**drawn, "complete": False})
    write_files_atomic(files, removed=[out / SUMMARY_FILE])
    with contextlib.suppress(OSError):
        (out / RUNNING_MANIFEST).unlink()


# ----------------------------------------------------------------------------------------------
# the figures a run drew


#: The list of the figure files prefsim drew in a result directory (their names, relative to it).
FIGURE_LIST = "figures.json"
#: The suffixes of the figure files prefsim writes (``[plot] formats``).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def read_json_object(path: str | os.PathLike) -> dict | None:
    """The JSON object in file ``path``, or None when there is none: no file, unreadable, not JSON, or JSON
    that is not an object (each caller says what that file should have been)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _figure_list_record(directory: str | os.PathLike) -> dict | None:
    """``directory``'s :data:`FIGURE_LIST` as written (a list of ``files`` and a ``complete`` flag, with what each
    was drawn from), or None without one that has those."""
    record = read_json_object(Path(directory) / FIGURE_LIST)
    if record is None or not isinstance(record.get("files"), list) or "complete" not in record:
        return None
    return record


def read_figure_list(directory: str | os.PathLike) -> tuple[list[str], bool] | None:
    """``(names, complete)`` of ``directory``'s :data:`FIGURE_LIST`: the figure files its last drawing
    wrote (all of them when ``complete``; those it was to write when it was stopped otherwise); ``None``
    without the list (a directory from an older prefsim) or when it cannot be read.  Only plain names of
    figure files are taken (no folders: nothing outside the directory is named)."""
    record = _figure_list_record(directory)
    if record is None:
        return None
    names = [name for name in record["files"] if isinstance(name, str) and _is_figure_name(name)]
    return names, record["complete"] is True


def _is_figure_name(name: str) -> bool:
    path = Path(name)
    return path.name == name and name not in (".", "..") and path.suffix.lower() in FIGURE_SUFFIXES


def write_figure_list(
    directory: str | os.PathLike, names: Iterable[str], complete: bool, drawn_from: dict | None = None
) -> None:
    """Replace ``directory``'s :data:`FIGURE_LIST` (atomically) with ``names``; ``drawn_from``: file name →
    what it was drawn from (:func:`figure_record`), for the figures that have it."""
    record = {"files": list(names), "complete": complete}
    if drawn_from:
        record["drawn_from"] = drawn_from
    write_files_atomic({Path(directory) / FIGURE_LIST: json_bytes(record)})


def figure_record(path: str | os.PathLike, inputs: str) -> dict:
    """What a figure file was drawn from, as :data:`FIGURE_LIST` keeps it: ``inputs`` (the digest of its
    results and of the code and packages that drew it, :func:`sim.figure_plan.figure_inputs_digest`) and the
    SHA-256 of the file as written."""
    return {"inputs": inputs, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def kept_figures(directory: str | os.PathLike, names: Iterable[str], inputs: str) -> dict:
    """The figure files of ``names`` that an earlier drawing in ``directory`` made from the same ``inputs``
    (the same results, drawn by the same code and packages) and that are still as it wrote them: name →
    their :func:`figure_record`.  Drawing them again would give the same bytes."""
    record = _figure_list_record(directory)
    drawn_from = record.get("drawn_from") if record is not None else None
    if not isinstance(drawn_from, dict):
        return {}
    kept = {}
    for name in names:
        entry = drawn_from.get(name)
        if not (_is_figure_name(name) and isinstance(entry, dict) and entry.get("inputs") == inputs):
            continue
        try:
            if figure_record(Path(directory) / name, inputs) == entry:
                kept[name] = entry
        except OSError:  # gone or unreadable: drawn again
            continue
    return kept


def remove_old_figures(directory: str | os.PathLike, keep: Iterable[str]) -> list[Path]:
    """Delete the figure files that ``directory``'s :data:`FIGURE_LIST` names and ``keep`` does not (an
    earlier drawing's figures that the new one does not redraw, which would show another run's results);
    return the removed paths.  A file the list does not name is never removed."""
    listed = read_figure_list(directory)
    return _remove_files_not_kept([Path(directory) / name for name in ([] if listed is None else listed[0])], keep)


def _remove_files_not_kept(paths: Iterable[Path], keep: Iterable[str]) -> list[Path]:
    """Delete the files of ``paths`` whose names are not in ``keep``; return the removed paths."""
    keep = set(keep)
    removed = []
    for path in paths:
        if path.name not in keep and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


# ----------------------------------------------------------------------------------------------
# checksummed parts


def part_bytes(frame: pd.DataFrame, fingerprint: str) -> bytes:
    """A part file: fingerprint line, checksum line (SHA-256 of the CSV text and its row count), CSV."""
    body = csv_bytes(frame)
    digest = hashlib.sha256(body).hexdigest()
    header = f"# fingerprint={fingerprint}\n# sha256={digest} rows={len(frame)}\n"
    return header.encode("utf-8") + body


def write_part(path: str | os.PathLike, frame: pd.DataFrame, fingerprint: str) -> None:
    """Write one rule's part atomically with its fingerprint and checksum."""
    write_files_atomic({Path(path): part_bytes(frame, fingerprint)})


def read_part(
    path: str | os.PathLike, fingerprint: str, expected_rows: int | None = None
) -> tuple[pd.DataFrame | None, str | None]:
    """``(frame, None)`` for a part that can be reused, else ``(None, reason)`` (reason None: no file).

    Reusable: the fingerprint line equals ``fingerprint``, the checksum line's SHA-256 and row count
    match the CSV text after it, and (when given) the row count equals ``expected_rows``.
    """
    path = Path(path)
    if not path.is_file():
        return None, None
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"{path} cannot be read ({os_reason(exc)})"
    lines = data.split(b"\n", 2)
    if len(lines) < 3 or lines[0] != f"# fingerprint={fingerprint}".encode():
        return None, f"{path} was computed for another spec or by other code (its fingerprint differs)"
    fields = dict(
        item.split("=", 1) for item in lines[1].decode("utf-8", "replace").lstrip("# ").split() if "=" in item
    )
    body = lines[2]
    if "sha256" not in fields or "rows" not in fields:
        return None, f"{path} has no checksum line (written by an older prefsim)"
    if hashlib.sha256(body).hexdigest() != fields["sha256"]:
        return None, f"{path} does not match its checksum (it was changed, cut short or has extra rows)"
    header = body.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
    # metric columns are floats in the frame that was written: read them back as floats ("-0" stays -0.0,
    # "1" stays 1.0), so a table assembled from parts writes the bytes of the table the run computed
    floats = {column: "float64" for column in header if column not in NON_FLOAT_COLUMNS}
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=floats)
    except (ValueError, pd.errors.ParserError) as exc:
        return None, f"{path} cannot be parsed ({exc})"
    expected = fields["rows"] if expected_rows is None else str(expected_rows)
    if str(len(frame)) != fields["rows"] or str(len(frame)) != expected:
        return None, f"{path} holds {len(frame)} rows, expected {expected}"
    return frame, None


def remove_stale_parts(out: str | os.PathLike, labels: Iterable[str]) -> list[Path]:
    """Delete ``out/parts/*.csv`` (and the saved progress, ``*`` + :data:`PROGRESS_SUFFIX`) of rule labels
    that are not in ``labels``; return the removed paths."""
    keep = {f"{label}{suffix}" for label in labels for suffix in (".csv", PROGRESS_SUFFIX)}
    found = [*(Path(out) / "parts").glob("*.csv"), *(Path(out) / "parts").glob(f"*{PROGRESS_SUFFIX}")]
    return _remove_files_not_kept(sorted(found), keep)


# ----------------------------------------------------------------------------------------------
# reading a result directory back (prefsim plot)


def _read_csv(path: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrefsimError(f"{str(path)!r} is not a CSV table written by prefsim ({reason}).") from None
    except OSError as exc:
        raise PrefsimError(f"{str(path)!r} cannot be read ({os_reason(exc)}).") from None


def results_table_files(directory: str | os.PathLike) -> list[Path]:
    """The files :func:`read_results_table` reads: ``[metrics.csv]``, else ``parts/*.csv`` (a run in progress;
    of a sweep over ``[game]``/``[run]`` fields: ``points/*/parts/*.csv``); a clear error when there are none."""
    directory = Path(directory)
    metrics_file = directory / "metrics.csv"
    if metrics_file.is_file():
        return [metrics_file]
    parts = sorted((directory / "parts").glob("*.csv")) if (directory / "parts").is_dir() else []
    # a [game]/[run] sweep in progress: each point's parts (their labels name the point, sim.field_sweep)
    parts = parts or sorted(directory.glob("points/*/parts/*.csv"))
    if not parts:
        raise PrefsimError(f"{str(directory)!r} holds no metrics.csv and no parts/*.csv: nothing to plot.")
    return parts


def read_results_table(directory: str | os.PathLike) -> pd.DataFrame:
    """The table of a result directory: ``metrics.csv``, else the rows of its parts (:func:`results_table_files`)."""
    files = results_table_files(directory)
    if files[0].name == "metrics.csv":
        return _numeric_columns(_read_csv(files[0]), files[0])
    return pd.concat([_numeric_columns(_read_csv(p, comment="#"), p) for p in files], ignore_index=True)


def _numeric_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Every column but ``rule`` and swept fields (``run.pair_scheme``) must be numbers (empty cells are NaN);
    else the file is not a prefsim table.  A table with its header only (no rows) is refused as such."""
    if frame.empty:
        raise PrefsimError(f"{str(path)!r} holds no rows (its header only): nothing to plot.")
    for column in frame.columns:
        if column != "rule" and not is_field_column(column) and not pd.api.types.is_numeric_dtype(frame[column]):
            raise PrefsimError(
                f"{str(path)!r} is not a table written by prefsim: column {column!r} holds non-numeric values."
            )
    return frame


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """``manifest.json`` of a result directory (else the running ``parts/manifest.json``), or None."""
    directory = Path(directory)
    for path in (directory / "manifest.json", directory / RUNNING_MANIFEST):
        if path.is_file():
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise PrefsimError(f"{str(path)!r} is not a manifest written by prefsim ({exc}).") from None
            if not isinstance(manifest, dict) or any(
                not isinstance(manifest.get(key, {}), dict) for key in ("spec", "parsed_spec")
            ):
                raise PrefsimError(
                    f"{str(path)!r} is not a manifest written by prefsim (a JSON object whose spec and "
                    "parsed_spec are tables)."
                )
            return manifest
    return None
