"""``python -m fastopt``: the landscape and bench subcommands, --help for each, --version and a closed pipe."""
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastopt
from fastopt import __main__ as cli


@pytest.mark.parametrize("command", [[], ["demo"], ["landscape"], ["bench"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastopt")
    if command == ["landscape"]:
        assert "--methods" in out and "rosenbrock" in out
        assert "--x0=-1e5,2" in out  # the form that gives several values after "="


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"fastopt {fastopt.__version__}\n"


def _table(out):
    """Rows of the landscape table by method: [lr, steps, final f, distance, ends at, stopped by]."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in cli_methods():
            rows[parts[0]] = [*parts[1:5], " ".join(parts[5:-1]), parts[-1]]
    return rows


def cli_methods():
    from fastopt.minimize import METHODS

    return METHODS


def test_landscape_prints_a_table_and_writes_the_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "dw.png"
    assert cli.main(["landscape", "double_well", "--methods", "sgd", "momentum", "newton", "--output", str(png)]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert set(rows) == {"sgd", "momentum", "newton"}
    # From (-1.8, 1): plain descent stops in the local minimum; momentum carries over the saddle.
    assert rows["sgd"][4] == "local minimum" and float(rows["sgd"][3]) == pytest.approx(3.354, abs=0.01)
    assert rows["momentum"][4] == "global minimum" and float(rows["momentum"][3]) < 1e-5
    assert all(r[5] == "gtol" for r in rows.values())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"written to {png}" in out


def test_landscape_distance_is_to_the_nearest_global_minimum(capsys):
    # Himmelblau has four global minima: a run ending at (-2.81, 3.13) showed 3.89, its distance to (3, 2), beside
    # "ends at global minimum"
    assert cli.main(["landscape", "himmelblau", "--methods", "sgd", "momentum", "adam", "--noise", "1",
                     "--batch-size", "1024", "--output", "none"]) == 0
    for row in _table(capsys.readouterr().out).values():
        if row[4] == "global minimum":
            assert float(row[3]) < 1e-4


def test_landscape_options(tmp_path, capsys):
    args = ["landscape", "saddle", "--methods", "sgd", "saddle_free_newton", "--x0", "0.5", "0.001",
            "--lr", "0.1", "--maxiter", "50", "--output", "none"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert rows["sgd"][0] == "0.1" and rows["sgd"][1] == "50" and rows["sgd"][3] == "nan"
    assert "no minimum" in out and "written" not in out
    # x^2 - y^2 is unbounded below: |H| = 2I doubles y every step, so f falls like -4^k.
    assert rows["saddle_free_newton"][5] == "maxiter" and float(rows["saddle_free_newton"][2]) < -1e20


def test_landscape_with_minibatch_noise_is_seeded(capsys):
    args = ["landscape", "double_well", "--methods", "sgd", "--noise", "5", "--maxiter", "300", "--lr", "0.05",
            "--output", "none"]
    cli.main([*args, "--seed", "1"])
    first = capsys.readouterr().out
    cli.main([*args, "--seed", "1"])
    assert capsys.readouterr().out == first
    cli.main([*args, "--seed", "2"])
    assert capsys.readouterr().out != first


def test_landscape_list(capsys):
    assert cli.main(["landscape", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("risk", "empirical_risk", "cubic", "saddle", "tanh", "rosenbrock", "beale", "himmelblau",
                 "ill_conditioned", "double_well"):
        assert f"\n{name} " in f"\n{out}"


def test_unknown_function_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["landscape", "sphere"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--lr", "-1"], "--lr: must be a finite number > 0, got -1"),
    (["--lr", "abc"], "--lr: 'abc' is not a number"),
    (["--maxiter", "1.5"], "--maxiter: '1.5' is not an integer"),  # (it read "is not a int")
    (["--x0", "1,abc"], "--x0: 'abc' is not a number"),
    # (negative values in scientific notation or non-finite ones were taken for unknown options: "expected one
    # argument", not what is wrong with them)
    (["--lr", "-1e-3"], "--lr: must be a finite number > 0, got -1e-3"),
    (["--x0", "-inf", "1"], "--x0: must be a finite number, got -inf"),
    (["--maxiter", "-1"], "--maxiter: must be a finite number > 0"),
    (["--maxiter", str(10**20)], "--maxiter: must be at most"),  # (a traceback from the schedule's int64 check)
    (["--gtol", "-1"], "--gtol: must be a finite number >= 0"),
    (["--x0", "nan", "1"], "--x0: must be a finite number, got nan"),
    (["--noise", "-1"], "--noise: must be a finite number >= 0"),
    (["--noise", "1", "--batch-size", "0"], "--batch-size: must be a finite number > 0"),
    (["--output", "no-such-folder/x.png"], "--output: the folder 'no-such-folder' does not exist"),
    # (these raised tracebacks: NumPy's seed error, the noise model's batch check, fun(x0) or an lr of 1 / inf,
    # and IsADirectoryError after all the runs)
    (["--seed", "-1"], "--seed: must be a finite number >= 0, got -1"),
    (["--noise", "1", "--batch-size", "100000000000"], "--batch-size: must be at most 1024"),
    (["--x0", "1e200", "1e200"], "--x0: rosenbrock is not finite there"),
    # (a bare "error: --x0 needs ..." without argparse's usage line and "fastopt landscape: error:" prefix)
    (["--x0", "1.0"], "usage: fastopt landscape"),
    (["--x0", "1.0"], "fastopt landscape: error: --x0: rosenbrock takes 2 value(s), got 1"),
    (["--x0=1.0"], "(e.g. --x0 -1.2 1 or --x0=-1.2,1)"),  # (after "=", one argument: the comma form)
    (["--output", "."], "--output: '.' cannot be written (it is a folder"),
    # (OSError tracebacks after all the runs: a name beyond the file system's limit, a folder of no files)
    (["--output", "a" * 300 + ".png"], "cannot be written (File name too long)"),
    # (PNG bytes went into x.pdf; the suffix names the format, and one no backend writes is refused)
    (["--output", "paths.xyz"], "--output: cannot write a figure as 'xyz'"),
    # (a row for each in the table, one path in the figure: results are keyed by name)
    (["--methods", "sgd", "adam", "sgd"], "--methods: sgd given more than once"),
    pytest.param(["--output", "/proc/x.png"], "--output: '/proc/x.png' cannot be written (",
                 marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")),
])
def test_bad_landscape_options_are_usage_errors(options, message, tmp_path, monkeypatch, capsys):
    # (they raised tracebacks from inside the optimizers, or after all runs, from the figure)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["landscape", "rosenbrock", "--methods", "adam", *options])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("function, options, start", [
    ("rosenbrock", ["--x0", "-1e5", "2"], [-1e5, 2.0]),
    ("rosenbrock", ["--x0", "2", "-1E+5"], [2.0, -1e5]),
    ("rosenbrock", ["--x0", "-.5", "-2_0"], [-0.5, -20.0]),
    ("rosenbrock", ["--x0=-1e5,2"], [-1e5, 2.0]),
    ("rosenbrock", ["--x0", "-1e5,2"], [-1e5, 2.0]),
    ("cubic", ["--x0=-1e5"], [-1e5]),
])
def test_landscape_takes_negative_starts(function, options, start, capsys):
    # Python < 3.14 took "-1e5" for an unknown option: "--x0: expected at least one argument"
    assert cli.main(["landscape", function, *options, "--methods", "newton", "--maxiter", "1", "--output",
                     "none"]) == 0
    assert f"start {start}" in capsys.readouterr().out


def _module_env(**extra):
    """The environment of a child ``python -m fastopt``: it must import the fastopt under test (installed, or
    built in place in a checkout)."""
    package_root = str(pathlib.Path(fastopt.__file__).resolve().parent.parent)
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    env.pop("PYTHONUNBUFFERED", None)
    return env | extra


@pytest.mark.parametrize("command, unbuffered", [
    (["landscape", "--list"], False),  # the output stays buffered: it fails in the flush at exit
    (["landscape", "--list"], True),   # every print writes: the first one fails
    (["--help"], False),               # argparse prints, then exits
])
def test_a_closed_pipe_ends_quietly(command, unbuffered, tmp_path):
    # `fastopt demo | head -3` ended in a BrokenPipeError traceback, or "Exception ignored ... BrokenPipeError" and
    # status 120. The reader's end is closed before the child starts, so that every write fails whatever the timing
    # (one closed after reading a line may still take the next few). --list is the cheapest subcommand that prints.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "fastopt", *command], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, env=_module_env(**({"PYTHONUNBUFFERED": "1"} if unbuffered
                                                                           else {})), timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_closed_pipe_in_process(monkeypatch):
    class Closed:  # a stdout whose reader went away, and that has no file descriptor (like pytest's capture)
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Closed())
    assert cli.main(["landscape", "--list"]) == 1


def test_bench_without_a_checkout_says_so(tmp_path, capsys):
    assert cli.main(["bench", "--source", str(tmp_path)]) == 2
    assert "bench/report.py not found" in capsys.readouterr().err


def test_bench_runs_the_report_with_its_arguments(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "report.py").write_text(
        "import pathlib, sys\npathlib.Path('ran.txt').write_text(' '.join(sys.argv[1:]))\nsys.exit(3)\n"
    )
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    monkeypatch.chdir(caller)  # the report runs in the caller's directory: its relative file names are the caller's
    assert cli.main(["bench", "--source", str(tmp_path), "--", "--quick", "x"]) == 3
    assert (caller / "ran.txt").read_text() == "--quick x"
    assert cli.main(["bench", "--source", str(tmp_path)]) == 3
    assert (caller / "ran.txt").read_text() == "--run"  # by default: run the benchmarks, then report


CHECKOUT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (CHECKOUT / "bench" / "report.py").is_file(), reason="needs the source checkout's bench/")
def test_bench_report_names_bad_arguments_and_reads_the_callers_files(tmp_path, monkeypatch, capfd):
    # A missing or unreadable results file and a bad --vs pattern ended in tracebacks (FileNotFoundError,
    # JSONDecodeError, re.error), and a relative file name was looked for in the checkout's root.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("not json")
    (tmp_path / "ok.json").write_text('{"machine_info": {"cpu": {"brand_raw": "x", "count": 2}, '
                                      '"python_version": "3"}, "benchmarks": [{"name": "test_x", "group": "g", '
                                      '"stats": {"median": 1.0}}]}')
    for extra, message in [(["nothere.json"], "nothere.json"), (["bad.json"], "not a pytest-benchmark JSON"),
                           (["ok.json", "--vs", "("], "--vs: not a regular expression")]:
        assert cli.main(["bench", "--source", str(CHECKOUT), "--", *extra]) == 2
        err = capfd.readouterr().err
        assert message in err and "Traceback" not in err
    assert cli.main(["bench", "--source", str(CHECKOUT), "--", "ok.json"]) == 0


def test_module_runs_as_a_script(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastopt", "landscape", "ill_conditioned", "--methods", "sgd",
                           "newton", "--output", "none"], capture_output=True, text=True, cwd=tmp_path,
                          env=_module_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ill_conditioned" in done.stdout and "newton" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges")
def test_landscape_writes_through_a_dangling_link(tmp_path, capsys):
    # the check of --output before the runs replaced the link by the figure and left an empty file at its target
    link, target = tmp_path / "link.png", tmp_path / "target.png"
    link.symlink_to(target)
    assert cli.main(["landscape", "double_well", "--methods", "sgd", "--maxiter", "5", "--output", str(link)]) == 0
    assert link.is_symlink() and target.read_bytes()[:4] == b"\x89PNG"


def test_landscape_says_why_the_figure_could_not_be_written(tmp_path, monkeypatch, capsys):
    # a full disk, or a format whose writer needs a program that is missing (pgf: TeX), failed after the runs
    # with chained tracebacks
    from fastopt import plotting

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plotting, "plot_trajectories", full)
    code = cli.main(["landscape", "double_well", "--methods", "sgd", "--maxiter", "5",
                     "--output", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 1 and "the figure could not be written to" in err and "No space left on device" in err
    assert "Traceback" not in err


def test_landscape_output_suffix_names_the_format(tmp_path, capsys):
    svg = tmp_path / "paths.svg"
    assert cli.main(["landscape", "double_well", "--methods", "sgd", "--output", str(svg)]) == 0
    assert b"<svg" in svg.read_bytes()[:400]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups and SIGINT")
def test_bench_ctrl_c_lets_the_report_finish(tmp_path):
    # Ctrl-C reaches the whole process group. subprocess.run killed report.py at once (no report of what ran) and
    # the fastopt process ended with a KeyboardInterrupt traceback; it now waits for report.py, which stops pytest
    # and reports, and returns its status.
    import signal
    import time

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "report.py").write_text(
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (print('reported what ran', flush=True), sys.exit(130)))\n"
        f"pathlib.Path({str(tmp_path / 'started')!r}).write_text('')\n"
        "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-m", "fastopt", "bench", "--source", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_module_env(),
                             start_new_session=True, cwd=tmp_path)  # (not a checkout's root: its unbuilt fastopt/)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 130
    assert "reported what ran" in out and "Traceback" not in err


def test_a_run_that_ends_far_out_prints_no_numpy_warning():
    # A run that ends beyond 1e154 (CG on the unbounded saddle did, before its line search's fallback): the
    # distance to the known points overflowed outside the run's np.errstate, and NumPy's "overflow encountered
    # in dot" reached stderr beside the table
    from fastopt.functions import get

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli._where(get("saddle"), [1e155, 1e155]) == "-"
        assert cli._where(get("saddle"), [np.inf, 0.0]) == "-"
