"""Print the benchmark report: per group, each row's median time as a ratio to the limit row and to fastopt.

Usage::

    python bench/report.py --run            # run every benchmark in bench/ (one JSON), then report
    python bench/report.py RESULTS.json     # report on an existing pytest-benchmark JSON

Generic over groups: in each group, the row whose name contains "limit" is the limit (the cost of the one
unavoidable BLAS pass), rows whose name contains "fastopt" are fastopt's, and those that also match ``--vs``
(default: the Adam and estimator rows) get a column of ratios; ``extra_info`` is printed as is.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
from collections import defaultdict

BENCH = pathlib.Path(__file__).resolve().parent
DEFAULT_JSON = BENCH / "results" / "latest.json"
# fastopt rows with a ratio column: the closed form, the Adam epochs and the estimator epoch.
VS = r"adam|estimator|fastopt(\[|$)"


def run(path: pathlib.Path) -> None:
    """Run ``pytest bench`` once, writing pytest-benchmark's JSON to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", str(BENCH), "-q", "-p", "no:randomly", f"--benchmark-json={path}"]
    # From bench/, not the checkout's root: `python -m` puts the working directory first on sys.path, and the
    # root's fastopt/ is the unbuilt source, which would shadow the installed package.
    subprocess.run(cmd, check=True, cwd=BENCH)


def _row_name(bench: dict) -> str:
    return bench["name"].removeprefix("test_")


def report(results: dict, vs: str = VS) -> str:
    """The report text for one pytest-benchmark JSON document; ratio columns for fastopt rows matching ``vs``."""
    groups = defaultdict(list)
    for bench in results["benchmarks"]:
        groups[bench["group"] or "(no group)"].append(bench)
    machine = results.get("machine_info", {})
    lines = [f"machine: {machine.get('cpu', {}).get('brand_raw', '?')}, {machine.get('cpu', {}).get('count', '?')} "
             f"CPUs, python {machine.get('python_version', '?')}"]
    for group, rows in groups.items():
        rows.sort(key=lambda b: b["stats"]["median"])
        limit = next((b for b in rows if "limit" in b["name"]), None)
        ours = [b for b in rows if "fastopt" in b["name"] and re.search(vs, b["name"])]
        header = f"{'row':34s} {'median s':>10s} {'x limit':>8s}"
        header += "".join(f" {'x ' + _row_name(b):>16s}" for b in ours)
        lines += ["", f"group {group!r}", header]
        for b in rows:
            median = b["stats"]["median"]
            line = f"{_row_name(b):34s} {median:10.4f} "
            line += f"{median / limit['stats']['median']:8.2f}" if limit else f"{'-':>8s}"
            line += "".join(f" {median / o['stats']['median']:16.2f}" for o in ours)
            extra = ", ".join(f"{k}={v}" for k, v in b.get("extra_info", {}).items())
            lines.append(line + (f"   [{extra}]" if extra else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", type=pathlib.Path, default=DEFAULT_JSON)
    parser.add_argument("--run", action="store_true", help="run the benchmarks first (pytest bench)")
    parser.add_argument("--vs", default=VS, help="regex: fastopt rows that get a ratio column (default %(default)s)")
    args = parser.parse_args(argv)
    args.json = args.json.absolute()  # (run() writes it from bench/: a relative name is the caller's)
    try:
        re.compile(args.vs)
    except re.error as e:
        parser.error(f"--vs: not a regular expression ({e})")
    if args.run:
        run(args.json)
    try:
        results = json.loads(args.json.read_text())
    except OSError as e:
        parser.error(f"{args.json}: {e.strerror or e}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        parser.error(f"{args.json}: not a pytest-benchmark JSON file ({e})")
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), list):
        parser.error(f"{args.json}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    print(report(results, args.vs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
