"""``bench/report.py`` and the bench helpers of ``bench/conftest.py``, run as a user runs them (subprocesses).

The report printed a traceback on a malformed results file and nothing on an empty one; ``--run`` ended in a
``CalledProcessError`` traceback when a benchmark failed; under ``--benchmark-disable`` the bench helpers took a
median of no timings (NaN) and ran each function several times. The ``--run`` cases use tiny benchmark files, not
the real (slow) benchmarks.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
REPORT = BENCH / "report.py"
pytestmark = pytest.mark.skipif(not REPORT.is_file(), reason="needs the source checkout's bench/")

MACHINE = {"cpu": {"brand_raw": "TestCPU", "count": 4}, "python_version": "3.11"}
ROWS = [
    {"name": "test_limit_pass", "group": "g", "stats": {"median": 0.5}},
    {"name": "test_fastopt", "group": "g", "stats": {"median": 1.0}, "extra_info": {"n_iter": 7}},
    {"name": "test_sklearn_other", "group": "g", "stats": {"median": 4.0}},
]


def _report(cwd, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env=env)


def _write(path: pathlib.Path, doc) -> pathlib.Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _row(out: str, name: str) -> list[str]:
    """The fields of the report line of row ``name``."""
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [name])


def test_valid_file_is_reported_with_ratios(tmp_path):
    _write(tmp_path / "ok.json", {"machine_info": MACHINE, "benchmarks": ROWS})
    done = _report(tmp_path, "ok.json")
    assert done.returncode == 0 and done.stderr == ""
    assert "machine: TestCPU, 4 CPUs, python 3.11" in done.stdout and "group 'g'" in done.stdout
    # median, x limit, x fastopt (the one fastopt row matching the default --vs)
    assert _row(done.stdout, "limit_pass") == ["limit_pass", "0.5000", "1.00", "0.50"]
    assert _row(done.stdout, "fastopt") == ["fastopt", "1.0000", "2.00", "1.00", "[n_iter=7]"]
    assert _row(done.stdout, "sklearn_other") == ["sklearn_other", "4.0000", "8.00", "4.00"]


@pytest.mark.parametrize("content, problem", [
    ("not json", "not a pytest-benchmark JSON file"),
    (b"\xff\xfe{", "not a pytest-benchmark JSON file"),
    ({"machine_info": MACHINE}, "no 'benchmarks' list"),
    ({"benchmarks": {"test_x": 1}}, "no 'benchmarks' list"),
    ([ROWS[0]], "no 'benchmarks' list"),
    (None, "cannot be read (No such file or directory)"),
], ids=["text", "not-utf8", "no-benchmarks", "benchmarks-not-a-list", "top-level-list", "missing"])
def test_unreadable_or_malformed_file_is_one_line_and_status_2(tmp_path, content, problem):
    path = tmp_path / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        _write(path, content)
    done = _report(tmp_path, "results.json")
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert str(path) in done.stderr and problem in done.stderr


def test_empty_benchmark_list_says_so(tmp_path):
    _write(tmp_path / "empty.json", {"machine_info": MACHINE, "benchmarks": []})
    done = _report(tmp_path, "empty.json")
    assert done.returncode == 1 and done.stdout == ""
    assert f"no benchmarks in {tmp_path / 'empty.json'}" in done.stderr


def test_malformed_entries_are_skipped_with_a_note(tmp_path):
    broken = [
        {"name": "test_no_stats", "group": "g"},
        {"name": "test_no_median", "group": "g", "stats": {"mean": 1.0}},
        {"name": "test_text_median", "group": "g", "stats": {"median": "fast"}},
        ["not", "a", "mapping"],
        {"group": "g", "stats": {"median": 1.0}},
    ]
    _write(tmp_path / "mixed.json", {"machine_info": MACHINE, "benchmarks": [ROWS[0], *broken, *ROWS[1:]]})
    done = _report(tmp_path, "mixed.json")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert _row(done.stdout, "fastopt") == ["fastopt", "1.0000", "2.00", "1.00", "[n_iter=7]"]
    assert "no_stats" not in done.stdout
    notes = done.stderr.splitlines()
    assert len(notes) == len(broken) and all("note:" in n and "mixed.json" in n for n in notes)
    assert "#2 'test_no_stats': no 'stats'" in notes[0]
    assert "'test_no_median': no 'median'" in notes[1]
    assert "'test_text_median'" in notes[2] and "not a time" in notes[2]
    assert "#5: not a mapping" in notes[3] and "#6: no 'name'" in notes[4]


TINY = '''
def test_limit_noop(benchmark):
    benchmark.pedantic(lambda: None, rounds=2, iterations=1)


def test_fastopt_sum(benchmark):
    benchmark.pedantic(sum, args=([1, 2],), rounds=2, iterations=1)


def test_fastopt_broken(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # (saved in the JSON: timed, then failed)
    assert False, "broken on purpose"
'''


def test_run_reports_the_passed_benchmarks_then_the_failures(tmp_path):
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_tiny.py").write_text(TINY)
    # (a relative path of the caller's: pytest runs in bench/, report.py passes it on absolute)
    done = _report(tmp_path, "out.json", "--run", "--", "test_tiny.py", "-p", "no:cacheprovider")
    assert done.returncode == 1, done.stdout + done.stderr  # pytest's status
    assert "Traceback" not in done.stderr and "CalledProcessError" not in done.stderr
    assert "broken on purpose" in done.stdout  # pytest's own output
    report = done.stdout[done.stdout.index("machine:"):]
    assert _row(report, "limit_noop")[2] == "1.00" and _row(report, "fastopt_sum")
    assert "fastopt_broken" not in report  # its row is in the JSON, but the test failed
    assert done.stderr.splitlines()[-1] == "report.py: 1 benchmark(s) failed (see pytest output above)"
    assert len(json.loads((tmp_path / "out.json").read_text())["benchmarks"]) == 3


# pytest-benchmark before 5.3 opens --benchmark-json's file when it parses its options (argparse.FileType) and
# writes it at the end: a run that stops early leaves it empty. This plugin does the same on any version.
OPENS_EARLY = """
import pathlib


def pytest_configure(config):
    path = config.getoption("benchmark_json")
    if isinstance(path, pathlib.Path):  # (before 5.3 it is already an open file)
        path.write_bytes(b"")
"""


def _opens_early(tmp_path) -> list[str]:
    """pytest arguments loading OPENS_EARLY (from tmp_path, which report.py's child finds on its PYTHONPATH)."""
    (tmp_path / "fastopt_opens_early.py").write_text(OPENS_EARLY)
    return ["-p", "fastopt_opens_early"]


def _env_with(path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("opens_early", [False, True], ids=["installed", "file-opened-at-start"])
def test_run_without_results_says_so(tmp_path, opens_early):
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_broken_import.py").write_text("import fastopt_no_such_module\n")
    plugin = _opens_early(tmp_path) if opens_early else []
    stale = _write(tmp_path / "out.json", {"machine_info": MACHINE, "benchmarks": ROWS})  # an earlier run's
    done = _report(tmp_path, str(stale), "--run", "--", str(tmp_path / "test_broken_import.py"), "-p",
                   "no:cacheprovider", *plugin, env=_env_with(tmp_path))
    assert done.returncode == 2  # pytest's: a collection error interrupts it
    assert "Traceback" not in done.stderr and "machine:" not in done.stdout  # (the stale rows are not reported)
    assert done.stderr.splitlines()[-1] == ("report.py: error: pytest exited with status 2 and wrote no benchmark "
                                            f"results (see its output above); {stale} still holds an earlier run's "
                                            "results")
    assert json.loads(stale.read_text())["benchmarks"] == ROWS  # (kept, not reported as this run's)


@pytest.mark.parametrize("opens_early", [False, True], ids=["installed", "file-opened-at-start"])
def test_run_without_results_and_no_earlier_file_leaves_none(tmp_path, opens_early):
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_broken_import.py").write_text("import fastopt_no_such_module\n")
    plugin = _opens_early(tmp_path) if opens_early else []
    out = tmp_path / "out.json"
    done = _report(tmp_path, str(out), "--run", "--", str(tmp_path / "test_broken_import.py"), "-p",
                   "no:cacheprovider", *plugin, env=_env_with(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == ("report.py: error: pytest exited with status 2 and wrote no benchmark "
                                            f"results (see its output above); {out} was not written")
    assert not out.exists()  # (no empty file left behind to fail the next report)


def test_pytest_arguments_need_run(tmp_path):
    done = _report(tmp_path, "x.json", "--", "-k", "krylov")
    assert done.returncode == 2 and "the arguments after -- are pytest's: they need --run" in done.stderr


DISABLED = '''
import numpy as np
from conftest import estimator_over_kernel, median_seconds, record, timing  # bench/conftest.py


def test_estimator_over_kernel_runs_one_pair(benchmark):
    calls = []
    estimator_over_kernel(benchmark, lambda *a: calls.append("kernel"), lambda: (1,), lambda: calls.append("fit"))
    assert sorted(calls) == ["fit", "kernel"]
    assert benchmark.extra_info == {}  # (it held the median of no ratios: NaN)
    assert not timing(benchmark) and median_seconds(benchmark) is None


def test_record_runs_once_without_probes(record, benchmark):
    calls = []
    record(lambda X, y: calls.append(1), np.ones((3, 2)), np.ones(3))
    assert calls == [1] and benchmark.extra_info == {}
'''


def test_bench_helpers_run_once_under_benchmark_disable(tmp_path):
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_disabled.py").write_text(DISABLED)
    done = subprocess.run([sys.executable, "-m", "pytest", "test_disabled.py", "-q", "-p", "no:randomly", "-p",
                           "no:cacheprovider", "--benchmark-disable", "-W", "error::RuntimeWarning"],
                          capture_output=True, text=True, cwd=tmp_path, env=_env_with(BENCH), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_closed_pipe_ends_quietly(tmp_path, unbuffered):
    # report.py | head: the write to a pipe whose reader has gone raised BrokenPipeError, a traceback (unbuffered)
    # or "Exception ignored" at exit (buffered). The read end is closed before the report starts, so every write fails.
    _write(tmp_path / "ok.json", {"machine_info": MACHINE, "benchmarks": ROWS})
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, str(REPORT), "ok.json"], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": unbuffered})
    finally:
        os.close(write)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
