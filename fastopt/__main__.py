"""Command line: ``python -m fastopt {demo,landscape,bench}`` (also installed as ``fastopt``)."""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import subprocess
import sys
import time

from fastopt import __version__


def _demo(args: argparse.Namespace) -> int:
    """Fit every solver on scikit-learn's diabetes data; print coefficients, R^2 and time."""
    import numpy as np
    from sklearn.datasets import load_diabetes
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fastopt import LinearRegressor
    from fastopt._solvers import SOLVERS

    X, y = load_diabetes(return_X_y=True)
    print(f"diabetes: n={X.shape[0]}, d={X.shape[1]}  (features standardised for every solver)")
    print(f"{'solver':>10} {'ran as':>10} {'R^2':>8} {'epochs':>7} {'time [ms]':>10}  coefficients")
    for name in SOLVERS:
        est = LinearRegressor(solver=name, random_state=0, **DEMO_PARAMS.get(name, {}))
        model = make_pipeline(StandardScaler(), est)
        t0 = time.perf_counter()
        model.fit(X, y)
        ms = 1e3 * (time.perf_counter() - t0)
        r2 = model.score(X, y)
        # (a scoped setting: main(["demo"]) in a process left NumPy's print options changed)
        with np.printoptions(precision=2, suppress=True, linewidth=140):
            coef = str(est.coef_)
        print(f"{name:>10} {est.solver_:>10} {r2:8.4f} {est.n_iter_:7d} {ms:10.2f}  {coef}")
    return 0


# Settings under which each iterative rule converges on standardised diabetes data within the demo's budget
# (R^2 equal to the closed form's to 4 decimals). The data are ill-conditioned (the six serum features are
# strongly collinear), so the minibatch rules anneal their automatic rate to 1e-4 of its start over 300 epochs;
# RMSProp needs PyTorch's long memory rho=0.99 for steady steps; AdaGrad, whose steps already shrink as
# 1/sqrt(t), runs full batches from a large rate.
NOISE_SAMPLES = 1024  # the landscape command's noise model: per-sample gradient noise of this many samples
_ANNEAL = dict(schedule="cosine", end_factor=1e-4, max_epochs=300, tol=None, batch_size=32)
DEMO_PARAMS: dict[str, dict] = {
    "sgd": _ANNEAL,
    "momentum": _ANNEAL,
    "nesterov": _ANNEAL,
    "rmsprop": _ANNEAL | {"rho": 0.99},
    "adam": _ANNEAL,
    "adamw": _ANNEAL,
    "adagrad": dict(learning_rate=100.0, batch_size=512, max_epochs=1000, tol=None),
}


def _default_lr(obj, method: str, x0) -> float:
    """A learning rate that suits ``method`` on ``obj`` without tuning.

    Plain and momentum descent get ``1 / lambda_max``, half the largest stable rate of gradient descent, with
    ``lambda_max`` the largest Hessian eigenvalue at the start and the known minima (the curvature the path must
    survive). Adaptive rules take steps of about ``lr`` per coordinate whatever the curvature, so theirs is 1% of
    the domain's width (AdaGrad 10%: its steps shrink like ``lr / sqrt(t)``). Newton takes the full step.
    """
    import numpy as np

    from fastopt import optim
    from fastopt.minimize import METHOD_CLASSES

    if METHOD_CLASSES[method].lr_free:  # Newton's full step; CG's line search ignores lr
        return 1.0
    rule = optim.OPTIMIZERS[method]
    width = float(np.mean([hi - lo for lo, hi in obj.bounds]))
    if rule.follows_gradient:
        points = [np.asarray(x0, float)] + [np.asarray(p.x) for p in obj.minima]
        lam_max = max(float(np.linalg.eigvalsh(obj.hess(p))[-1]) for p in points)
        if lam_max > 0:
            return 1.0 / lam_max
    return (0.1 if rule.accumulates else 0.01) * width


def _where(obj, x) -> str:
    """The known critical point within 1% of the domain's width of ``x`` (e.g. "local minimum"), or "-"."""
    import numpy as np

    radius = 0.01 * float(np.mean([hi - lo for lo, hi in obj.bounds]))
    for p in obj.critical_points:
        with np.errstate(over="ignore", invalid="ignore"):  # a diverged run's x (inf: no point is near it)
            near = np.linalg.norm(np.asarray(x, float) - np.asarray(p.x)) < radius
        if near:
            if p.kind == "minimum":
                return "global minimum" if p.value == obj.global_minimum.value else "local minimum"
            return p.kind
    return "-"


def _is_dir(path: pathlib.Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # (a name too long raises, where a missing one is False)
        return False


def _unwritable(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot be written (the system's reason), or None: opened for appending, and removed again if
    this made it, so that a name too long or a folder without write access fails before the runs, not after."""
    try:
        if path.is_dir():
            return "it is a folder; name the PNG file"
        # a symbolic link is written through, to its target (a dangling link's too): the target is what this
        # check opens and, if it made it, removes (the link itself had been removed, and an empty target left)
        path = path.resolve()
        existed = path.exists()
        with open(path, "ab"):
            pass
    except (OSError, RuntimeError) as exc:  # (RuntimeError: a loop of links)
        return getattr(exc, "strerror", None) or str(exc)
    if not existed:
        path.unlink(missing_ok=True)
    return None


def _landscape(args: argparse.Namespace) -> int:
    """Run chosen optimizers on a test function; print a table and write a PNG of the trajectories."""
    import numpy as np

    from fastopt import functions, minimize
    from fastopt.minimize import METHOD_CLASSES, Status

    if args.list:
        for name, obj in functions.FUNCTIONS.items():
            print(f"{name:16} {obj.formula}\n{'':16} {obj.description}")
        return 0
    repeated = sorted({m for m in args.methods if args.methods.count(m) > 1})
    if repeated:  # (the table showed a row for each, the figure one path: results are keyed by name)
        args.parser.error(f"--methods: {', '.join(repeated)} given more than once")
    folder = pathlib.Path(args.output).parent
    if args.output != "none" and not _is_dir(folder):  # before the runs, not after them
        args.parser.error(f"--output: the folder {str(folder)!r} does not exist")
    if args.output != "none" and (problem := _unwritable(pathlib.Path(args.output))):
        args.parser.error(f"--output: {args.output!r} cannot be written ({problem})")
    if args.output != "none":
        try:  # the suffix names the format (PNG bytes went into x.pdf): a bad one before the runs
            from fastopt.plotting import save_format

            save_format(args.output)
        except ValueError as exc:
            args.parser.error(f"--output: {exc}")
        except ImportError:
            pass  # no matplotlib: said after the runs, which need none
    obj = functions.get(args.function)
    # (each --x0 argument is a list: "-1,2" after "=" holds several values)
    x0 = np.array([v for part in args.x0 for v in part] if args.x0 is not None else obj.x0, dtype=float)
    if x0.shape != (obj.ndim,):  # a usage error like any other bad argument: usage line, prog prefix, exit 2
        example = [f"{v:g}" for v in obj.x0]
        args.parser.error(f"--x0: {obj.name} takes {obj.ndim} value(s), got {x0.size} (e.g. --x0 {' '.join(example)}"
                          f" or --x0={','.join(example)})")
    with np.errstate(all="ignore"):
        f0 = float(obj.fun(x0))
    if not math.isfinite(f0):  # (minimize would say so of fun(x0); the default rate came out 1 / inf = 0 first)
        args.parser.error(f"--x0: {obj.name} is not finite there (f = {f0}); start nearer its domain "
                          f"{[list(b) for b in obj.bounds]}")
    best = obj.global_minimum
    print(f"{obj.name}: {obj.formula}    start {x0.tolist()}"
          + (f"    global minimum {list(best.x)}, f = {best.value:.6g}" if best else "    (no minimum in the domain)"))
    print(f"{'method':>18} {'lr':>9} {'steps':>6} {'final f':>12} {'|x - x*|':>9}  {'ends at':<15} stopped by")
    results = {}
    for method in args.methods:
        kind = METHOD_CLASSES[method]
        lr = args.lr if args.lr and not kind.lr_free else _default_lr(obj, method, x0)
        if not (math.isfinite(lr) and lr > 0):  # the start's curvature overflowed
            args.parser.error(f"--x0: no default learning rate for {method} there (the curvature at the start "
                              "overflows); pass --lr or start nearer the domain")
        options = {"lr": lr,
                   "maxiter": args.maxiter, "gtol": args.gtol, "return_path": True, "seed": args.seed}
        jac = obj.grad
        if args.noise > 0 and kind.stochastic:
            jac = obj.minibatch_gradient(noise=args.noise, batch_size=args.batch_size, n_samples=NOISE_SAMPLES,
                                         seed=args.seed)
        with np.errstate(all="ignore"):  # diverging runs overflow on purpose; the status reports it
            res = minimize(obj.fun, x0, jac=jac, hess=obj.hess if kind.uses_hessian else None, method=method,
                           options=options)
        results[method] = res
        # to the nearest global minimum (Himmelblau has four): a run that ended at another one showed 3.89
        dist = min((np.linalg.norm(res.x - np.asarray(p.x)) for p in obj.minima if p.value == best.value),
                   default=float("nan")) if best else float("nan")
        status = Status(res.status).name.lower()
        print(f"{method:>18} {options['lr']:9.3g} {res.nit:6d} {res.fun:12.5g} {dist:9.2e}  "
              f"{_where(obj, res.x):<15} {status}")
    if args.output == "none":
        return 0
    try:
        from fastopt.plotting import plot_trajectories

        plot_trajectories(obj, results, path=args.output)
    except ImportError as exc:
        print(f"no figure written: {exc}", file=sys.stderr)
        return 0
    except (OSError, RuntimeError) as exc:  # a full disk; a format whose writer needs a missing program (pgf: TeX)
        print(f"fastopt landscape: the figure could not be written to {args.output!r}: {exc}", file=sys.stderr)
        return 1
    print(f"trajectories written to {args.output}")
    return 0


def _find_report(start: pathlib.Path | None) -> pathlib.Path | None:
    """``bench/report.py`` of a source checkout: under ``start``, the working directory, or next to the package."""
    here = pathlib.Path(__file__).resolve().parent.parent
    for root in ([start] if start is not None else [pathlib.Path.cwd(), here]):
        candidate = root / "bench" / "report.py"
        if candidate.is_file():
            return candidate
    return None


def _bench(args: argparse.Namespace) -> int:
    """Run the benchmark report of a source checkout, passing the remaining arguments on."""
    report = _find_report(args.source)
    if report is None:
        print("bench/report.py not found: the benchmarks live in fastopt's source tree, not in the installed "
              "package. Run `python -m fastopt bench` from a checkout (or pass --source DIR).", file=sys.stderr)
        return 2
    extra = args.report_args[1:] if args.report_args[:1] == ["--"] else args.report_args
    # With no arguments, run the benchmarks and report on them (report.py alone reads the last saved run).
    extra = extra or ["--run"]
    # From the caller's directory, so that a relative results file is the caller's (report.py runs pytest from
    # bench/ itself)
    child = subprocess.Popen([sys.executable, str(report), *extra])
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached the child too (one process group): it stops pytest and reports what ran. Waiting for
            # it, not killing it (subprocess.run's way), keeps that report and ends without a traceback here.
            continue


class _Parser(argparse.ArgumentParser):
    r"""An ArgumentParser that takes ``-1e5``, ``-.5``, ``-1_000`` and ``-inf`` as values, not as unknown options.

    Notes
    -----
    Python before 3.14 takes only ``-1`` and ``-1.5`` for negative numbers (the pattern ``^-\d+$|^-\d*\.\d+$``), so
    ``--x0 -1e5 2`` failed with "expected at least one argument". This is 3.14's pattern (``-\.?\d``) and the
    non-finite values, which the number types then name. It is safe only while no option looks like a negative
    number; subparsers are of this class too (``add_subparsers`` makes ``type(parent)``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-(\.?\d|inf|nan)", re.IGNORECASE)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``fastopt {demo,landscape,bench}`` and ``fastopt --version``.

    Returns
    -------
    argparse.ArgumentParser
        Each subcommand's namespace holds its handler as ``func``.
    """
    parser = _Parser(prog="fastopt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit every solver on the diabetes data and print a table")
    demo.set_defaults(func=_demo)
    _add_landscape(sub)
    bench = sub.add_parser(
        "bench", help="run the benchmark report (from a source checkout)",
        description="Run bench/report.py of a source checkout: by default with --run (run the benchmarks, then "
        "print the report); arguments after -- replace that, e.g. -- results.json.",
    )
    bench.add_argument("--source", type=pathlib.Path, default=None, metavar="DIR",
                       help="the checkout (default: the working directory, then the package's parent)")
    bench.add_argument("report_args", nargs=argparse.REMAINDER, help="arguments for bench/report.py (after --)")
    bench.set_defaults(func=_bench)
    return parser


# What the number types call their kind in "'1.5' is not an integer" (not the type's name: "a int")
_KIND_NAMES = {int: "an integer", float: "a number"}


def _number(kind, low: float | None = None, strict: bool = True, high: float | None = None):
    """An argparse type: a finite ``kind`` above ``low`` (at least, without ``strict``) and at most ``high``, else
    a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_KIND_NAMES[kind]}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if strict else value < low)):
            bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number{bound}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
        return value
    return parse


def _numbers(kind):
    """An argparse type: comma-separated ``_number(kind)`` values, as a list.

    An option's value after "=" is a single argument, so ``--x0=-1e5,2`` is the way to give several values in that
    form (``--x0 -1e5 2`` is the other).
    """
    one = _number(kind)

    def parse(text: str) -> list:
        return [one(part) for part in text.split(",")]
    return parse


def _add_landscape(sub) -> None:
    from fastopt.functions import FUNCTIONS
    from fastopt.minimize import METHODS

    p = sub.add_parser(
        "landscape", help="compare optimizers on a test function: a table and a PNG of the trajectories",
        description="Run optimizers from one start on a test function of fastopt.functions; print final loss, "
        "steps and distance to the global minimum, and draw the trajectories over the function.",
    )
    p.add_argument("function", nargs="?", default="rosenbrock", choices=list(FUNCTIONS), metavar="FUNCTION",
                   help=f"one of {', '.join(FUNCTIONS)} (default: rosenbrock)")
    p.add_argument("--methods", nargs="+", default=["sgd", "momentum", "adam", "newton"], choices=METHODS,
                   metavar="METHOD", help=f"any of {', '.join(METHODS)} (default: sgd momentum adam newton)")
    p.add_argument("--lr", type=_number(float, 0.0), default=None,
                   help="learning rate of the first-order methods (default: chosen per method and function)")
    p.add_argument("--maxiter", type=_number(int, 0, high=2**62), default=2000,
                   help="iterations per method (default: 2000)")
    p.add_argument("--gtol", type=_number(float, 0.0, False), default=1e-6,
                   help="stop when the largest |gradient| entry is below")
    p.add_argument("--x0", type=_numbers(float), nargs="+", default=None,
                   help="start, e.g. --x0 -1e5 2 or --x0=-1e5,2 (default: the function's own)")
    p.add_argument("--noise", type=_number(float, 0.0, False), default=0.0,
                   help="per-sample gradient noise of the first-order methods (minibatch SGD; default 0)")
    # (the noise model's samples: fastopt.functions.TestFunction.minibatch_gradient's n_samples)
    p.add_argument("--batch-size", type=_number(int, 0, high=NOISE_SAMPLES), default=1,
                   help=f"minibatch size with --noise, at most {NOISE_SAMPLES} (default: 1)")
    p.add_argument("--seed", type=_number(int, 0, False), default=0, help="seeds the minibatch noise (default: 0)")
    p.add_argument("--output", default="landscape.png",
                   help="figure of the trajectories, in the format its suffix names (default: landscape.png; "
                        "'none' for no figure)")
    p.add_argument("--list", action="store_true", help="list the test functions and exit")
    p.set_defaults(func=_landscape, parser=p)


def _discard_stdout() -> None:
    """Point the stdout file descriptor at the null device, so that the interpreter's last flush of what is still
    buffered does not fail again ("Exception ignored ... BrokenPipeError") once the reader has gone."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without one (pytest's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run ``fastopt`` with ``argv`` (default: the process's arguments).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program's name.

    Returns
    -------
    int
        The exit status: the subcommand's, or 1 when the reader of the output went away (``fastopt demo | head``).
        Usage errors, ``--help`` and ``--version`` raise SystemExit as argparse does.
    """
    # A closed pipe is no error of the user's: no traceback, as the Python docs' "Note on SIGPIPE" advises. Stdout
    # is flushed here, inside the try, as what stays buffered would fail at exit, out of reach.
    try:
        try:
            args = build_parser().parse_args(argv)
            status = args.func(args)
        except SystemExit:  # --help and --version print, then exit
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _discard_stdout()
        return 1  # Python's own status on EPIPE, as the docs' recipe has it


if __name__ == "__main__":
    sys.exit(main())
