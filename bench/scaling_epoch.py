"""Epoch time of the fused kernel over a grid of sizes, printed as a table.

    python bench/scaling_epoch.py [--rule adam] [--dtype float64] [--threads 1] [--max-elements 1e8] [--repeat 3]

Rows are n (10^3 .. 10^6), columns d (10 .. 1000); each cell is the best of ``--repeat`` epochs in ms, with the
time per matrix element (ns) and the ratio to one ``X @ w`` pass in brackets. ``--threads 2`` runs the two-thread
epoch; ``--threads auto`` lets the estimator's rule (``fastopt._iterative.epoch_threads``) choose per cell.
Cells whose X would exceed ``--max-elements`` entries are skipped (shown as ``-``): 10^6 x 1000 doubles is 8 GB.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fastopt import _kernels, optim
from fastopt._iterative import EpochCtl, epoch_threads

NS = (1_000, 10_000, 100_000, 1_000_000)
_BLAS_SETTLE_S = 0.3
DS = (10, 30, 100, 300, 1000)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def epoch_time(rule: str, n: int, d: int, dtype, batch: int, repeat: int, rng,
               threads: int = 1) -> tuple[float, float]:
    X = rng.normal(size=(n, d)).astype(dtype)
    Y = (X @ rng.normal(size=(d, 1))).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    spec = optim.make(rule)
    train = EpochCtl(batch_size=batch, loss=optim.Loss.SQUARED_ERROR, epsilon=1.35, clip_norm=None, loss_limit=np.inf)
    params, work = np.zeros(d + 1, dtype), np.empty(6 * (d + 1) + 2, dtype)
    state = spec.init_state(d + 1, dtype)
    w = np.ones(d, dtype)

    def run():
        _kernels.epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, work, 0, 1e-4, threads)

    limit = best_of(lambda: X @ w, repeat)
    # A multi-threaded BLAS call leaves its workers spinning for a while (OpenBLAS: about 0.1 s); a two-thread
    # epoch started meanwhile competes with them for the cores. Let them settle first.
    time.sleep(_BLAS_SETTLE_S)
    run()  # warm-up: the first epochs after an idle spell run slower (up to 2x measured with two threads)
    return best_of(run, repeat), limit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", default="adam", choices=sorted(optim.OPTIMIZERS))
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-elements", type=float, default=1e8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1", choices=["1", "2", "auto"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{args.rule} epoch, {args.dtype}, batch {args.batch}, threads {args.threads}: "
          "ms [ns per element, x limit]")
    print(f"{'n / d':>9}" + "".join(f"{d:>24}" for d in DS))
    for n in NS:
        cells = []
        for d in DS:
            if n * d > args.max_elements:
                cells.append(f"{'-':>24}")
                continue
            dtype = np.dtype(args.dtype)
            threads = (epoch_threads(2, n, args.batch, d, 1, dtype.itemsize) if args.threads == "auto"
                       else int(args.threads))
            t, limit = epoch_time(args.rule, n, d, dtype, args.batch, args.repeat, rng, threads)
            cells.append(f"{1e3 * t:>10.2f} [{1e9 * t / (n * d):5.2f} ns, {t / limit:4.1f}x]")
        print(f"{n:>9}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
