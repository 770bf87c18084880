"""Print the benchmark report: per group, each row's median time as a ratio to the limit row and to fastopt.

Usage::

    python bench/report.py --run            # run every benchmark in bench/ (one JSON), then report
    python bench/report.py --run -- ARGS    # run `pytest ARGS` in bench/ instead, e.g. test_krylov.py -k hashed
    python bench/report.py RESULTS.json     # report on an existing pytest-benchmark JSON

Generic over groups: in each group, the row whose name contains "limit" is the limit (the cost of the one
unavoidable BLAS pass), rows whose name contains "fastopt" are fastopt's, and those that also match ``--vs``
(default: the Adam and estimator rows) get a column of ratios; ``extra_info`` is printed as is.

With ``--run``, pytest runs in bench/; an argument after ``--`` that names an existing file or folder from the
caller's directory is passed on as an absolute path, any other as it is (so ``test_krylov.py`` means bench's).
A benchmark that fails leaves its row out: the report of the others is printed, then how many failed, and the
exit status is pytest's; a run in which no benchmark finished (a collection error, say) reports nothing and leaves
the results file as it was. Exit status otherwise: 0 after a report, 1 when there is no benchmark to report, 2 when
the results file cannot be read or is not pytest-benchmark's JSON (one line on stderr naming the file; single
malformed entries are skipped with a note instead).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

BENCH = pathlib.Path(__file__).resolve().parent
DEFAULT_JSON = BENCH / "results" / "latest.json"
# fastopt rows with a ratio column: the closed form, the Adam epochs and the estimator epoch.
VS = r"adam|estimator|fastopt(\[|$)"
PROG = "report.py"
# The file the pytest run of --run appends the ids of its failed tests to (see pytest_runtest_logreport).
FAILED_ENV = "FASTOPT_BENCH_FAILED"


class BadResults(Exception):
    """The results file cannot be read, or is not a pytest-benchmark JSON document (the message says why)."""


def run(path: pathlib.Path, pytest_args: list[str] | None = None) -> tuple[int, set[str], bool]:
    """Run pytest once on the benchmarks, writing pytest-benchmark's JSON to ``path``.

    Parameters
    ----------
    path : pathlib.Path
        The JSON file (absolute). Replaced only when pytest writes results: a run that writes none (no benchmark
        finished) leaves an earlier run's file as it was.
    pytest_args : list of str, optional
        pytest's arguments; default: every benchmark in bench/.

    Returns
    -------
    status : int
        pytest's exit status.
    failed : set of str
        The ids of the tests that failed (pytest-benchmark's ``fullname`` of their rows).
    wrote : bool
        Whether pytest wrote results (now in ``path``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        failed_file, earlier = pathlib.Path(tmp) / "failed.txt", pathlib.Path(tmp) / "earlier.json"
        if path.exists():  # (set aside, not removed: a run that writes no results puts it back)
            shutil.move(path, earlier)
        # `-p report` loads this module into pytest for its hook below (bench/, pytest's working directory, is
        # first on the child's sys.path); the JSON option comes last so that it wins over one in pytest_args.
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *(pytest_args or [str(BENCH)]),
               "-p", "report", f"--benchmark-json={path}"]
        try:
            # From bench/, not the checkout's root: `python -m` puts the working directory first on sys.path, and
            # the root's fastopt/ is the unbuilt source, which would shadow the installed package.
            proc = subprocess.Popen(cmd, cwd=BENCH, env={**os.environ, FAILED_ENV: str(failed_file)})
            while True:
                try:
                    status = proc.wait()
                    break
                except KeyboardInterrupt:  # pytest got the same Ctrl-C: let it stop and write what ran, then report
                    continue
        finally:
            # pytest-benchmark before 5.3 opens (and so creates) the file when it parses its options and writes
            # it at the end: an empty file is a run that wrote no results.
            wrote = path.exists() and path.stat().st_size > 0
            if not wrote:
                path.unlink(missing_ok=True)
                if earlier.exists():
                    shutil.move(earlier, path)
        failed = set(failed_file.read_text().splitlines()) if failed_file.exists() else set()
    return status, failed, wrote


def pytest_runtest_logreport(report) -> None:
    """pytest hook, active in the run that :func:`run` starts: note each failed test's id (a failure in setup,
    call or teardown) in the file that ``FASTOPT_BENCH_FAILED`` names, so that its row is left out of the report
    (pytest-benchmark saves a row timed before a failing assertion)."""
    path = os.environ.get(FAILED_ENV)
    if path and report.failed:
        with open(path, "a", encoding="utf-8") as f:
            f.write(report.nodeid + "\n")


def _caller_paths(args: list[str]) -> list[str]:
    """``args`` with each one that names an existing file or folder from the working directory (the part before
    any ``::``) made absolute, for pytest running in bench/."""
    out = []
    for arg in args:
        target, sep, rest = arg.partition("::")
        if target and not arg.startswith("-") and pathlib.Path(target).exists():
            arg = str(pathlib.Path(target).absolute()) + sep + rest
        out.append(arg)
    return out


def load(path: pathlib.Path) -> dict:
    """The pytest-benchmark JSON document in ``path``, checked to be a mapping with a ``benchmarks`` list.

    Raises
    ------
    BadResults
        When the file cannot be read or is not such a document.
    """
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        hint = " (no saved run: `python bench/report.py --run` makes one)" if path == DEFAULT_JSON else ""
        raise BadResults(f"cannot be read ({e.strerror or e}){hint}") from None
    # (JSONDecodeError and UnicodeDecodeError are ValueErrors, as is an integer too long to convert; deep nesting
    # raises RecursionError)
    except (ValueError, RecursionError) as e:
        raise BadResults(f"not a pytest-benchmark JSON file ({e})") from None
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), list):
        raise BadResults("not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return results


def _problem(bench) -> str | None:
    """What makes ``bench`` (one entry of the ``benchmarks`` list) unusable for the report, or None."""
    if not isinstance(bench, dict):
        return "not a mapping"
    if not isinstance(bench.get("name"), str) or not bench["name"]:
        return "no 'name'"
    if bench.get("group") is not None and not isinstance(bench["group"], str):
        return "'group' is not a string"
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        return "no 'stats'"
    if "median" not in stats:
        return "no 'median' in its 'stats'"
    median = stats["median"]
    # (a JSON true is an int to Python; NaN and Infinity parse too)
    if isinstance(median, bool) or not isinstance(median, (int, float)) or not math.isfinite(median) or median < 0:
        return f"its median {str(median)[:40]!r} is not a time in seconds"
    if not isinstance(bench.get("extra_info", {}), dict):
        return "'extra_info' is not a mapping"
    return None


def usable(benchmarks: list) -> tuple[list[dict], list[str]]:
    """The entries of a ``benchmarks`` list that the report can show, and a note on each one it cannot."""
    good, notes = [], []
    for i, bench in enumerate(benchmarks, 1):
        problem = _problem(bench)
        if problem is None:
            good.append(bench)
        else:
            name = bench.get("name") if isinstance(bench, dict) else None
            notes.append(f"skipped benchmark #{i}" + (f" {name!r}" if isinstance(name, str) else "") + f": {problem}")
    return good, notes


def _row_name(bench: dict) -> str:
    return bench["name"].removeprefix("test_")


def _median(bench: dict) -> float:
    return bench["stats"]["median"]


def _ratio(median: float, base: dict | None, width: int) -> str:
    """``median`` over ``base``'s median in ``width`` columns, or "-" without a base (or a zero one)."""
    if base is None or _median(base) <= 0:
        return f"{'-':>{width}s}"
    return f"{median / _median(base):{width}.2f}"


def report(results: dict, vs: str = VS) -> str:
    """The report text for one pytest-benchmark JSON document; ratio columns for fastopt rows matching ``vs``.

    Every entry of ``results["benchmarks"]`` must be usable (see :func:`usable`).
    """
    groups = defaultdict(list)
    for bench in results["benchmarks"]:
        groups[bench.get("group") or "(no group)"].append(bench)
    machine = results.get("machine_info")
    machine = machine if isinstance(machine, dict) else {}
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    lines = [f"machine: {cpu.get('brand_raw', '?')}, {cpu.get('count', '?')} CPUs, "
             f"python {machine.get('python_version', '?')}"]
    for group, rows in groups.items():
        rows.sort(key=_median)
        limit = next((b for b in rows if "limit" in b["name"]), None)
        ours = [b for b in rows if "fastopt" in b["name"] and re.search(vs, b["name"])]
        header = f"{'row':34s} {'median s':>10s} {'x limit':>8s}"
        header += "".join(f" {'x ' + _row_name(b):>16s}" for b in ours)
        lines += ["", f"group {group!r}", header]
        for b in rows:
            median = _median(b)
            line = f"{_row_name(b):34s} {median:10.4f} {_ratio(median, limit, 8)}"
            line += "".join(f" {_ratio(median, o, 16)}" for o in ours)
            extra = ", ".join(f"{k}={v}" for k, v in b.get("extra_info", {}).items())
            lines.append(line + (f"   [{extra}]" if extra else ""))
    return "\n".join(lines)


def _say(message: str) -> None:
    """One line on stderr, after whatever stdout holds (so that the two interleave in order on a terminal)."""
    sys.stdout.flush()
    print(f"{PROG}: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after the first "--" is pytest's (argparse would take it for positionals).
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     usage="%(prog)s [-h] [--vs VS] [json] [--run [-- PYTEST_ARGS ...]]")
    parser.add_argument("json", nargs="?", type=pathlib.Path, default=DEFAULT_JSON,
                        help="pytest-benchmark's JSON (default: bench/results/latest.json)")
    parser.add_argument("--run", action="store_true",
                        help="run the benchmarks first (pytest bench/, or pytest with the arguments after --)")
    parser.add_argument("--vs", default=VS, help="regex: fastopt rows that get a ratio column (default %(default)s)")
    args = parser.parse_args(argv)
    if pytest_args and not args.run:
        parser.error("the arguments after -- are pytest's: they need --run")
    args.json = args.json.absolute()  # (run() writes it from bench/: a relative name is the caller's)
    try:
        re.compile(args.vs)
    except re.error as e:
        parser.error(f"--vs: not a regular expression ({e})")

    status, failed = 0, set()
    if args.run:
        # (checked before the run, not after it: its results would be lost)
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            problem = ("it is a folder; name the JSON file to write" if args.json.is_dir()
                       else None if os.access(args.json.parent, os.W_OK) else "its folder is not writable")
        except OSError as e:
            problem = e.strerror or str(e)
        if problem:
            _say(f"error: {args.json}: cannot be written ({problem})")
            return 2
        try:
            status, failed, wrote = run(args.json, _caller_paths(pytest_args))
        except OSError as e:  # (an earlier run's file could not be set aside, or pytest could not start)
            _say(f"error: --run: {e}")
            return 2
        if not wrote:  # (pytest-benchmark writes no file when no benchmark finished)
            what = (f"pytest exited with status {status} and wrote no benchmark results (see its output above)"
                    if status else "pytest ran no benchmark")
            left = "still holds an earlier run's results" if args.json.exists() else "was not written"
            _say(f"error: {what}; {args.json} {left}")
            return status or 1
    try:
        results = load(args.json)
    except BadResults as e:
        _say(f"error: {args.json}: {e}")
        return 2
    if not results["benchmarks"]:
        _say(f"no benchmarks in {args.json}")
        return status or 1
    rows, notes = usable(results["benchmarks"])
    for note in notes:
        _say(f"note: {args.json}: {note}")
    if not rows:
        _say(f"error: {args.json}: no usable benchmark entry ({len(notes)} skipped)")
        return 2
    # A row saved by a test that then failed (timed, then an assertion) is left out: the report is of those passed.
    rows = [b for b in rows if b.get("fullname") not in failed]
    if rows:
        print(report({**results, "benchmarks": rows}, args.vs))
    if failed:
        _say(f"{len(failed)} benchmark(s) failed (see pytest output above)")
    elif status:
        _say(f"pytest exited with status {status} (see its output above)")
    return status or (1 if failed else 0)


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()  # (inside the try: what stays buffered would fail at exit, out of reach)
    except BrokenPipeError:  # the reader went away (report.py | head): no traceback, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    sys.exit(status)
