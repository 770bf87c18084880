"""Fit a dataset several times larger than a Dask worker's memory limit, through a local cluster.

Run from anywhere with fastopt and its ``dask`` extra installed::

    python bench/dask_scaling.py                    # 8 GB of float64 through 2 workers of 1 GiB each
    python bench/dask_scaling.py --solver adam      # also one epoch of Adam, cluster and in memory
    python bench/dask_scaling.py --rows 1000000     # a quicker look

``X`` (``rows x features`` float64) is never materialised: each block is drawn from its own seeded random
stream on the worker that needs it, ``y = X @ beta + noise`` is computed from the same block, and the
closed form reduces each block to its sufficient statistics there. A sampler polls every worker's
resident memory (RSS) throughout. The limit row generates and reads every block without fitting. For
comparison, the script fits in memory, on the client, a subset that comfortably fits (``--subset-rows``)
and, when ``--solver`` names an iterative solver, runs one epoch of it both ways (on the cluster each block's
pass runs on the worker holding the block; the model and optimizer state travel between workers).

Prints one table: wall time, throughput (rows/s), peak worker and client memory, the bytes the client
received from the cluster (bytes read from its connections to the scheduler, which relays every result
the client gathers) and the coefficient error against the ``beta`` that generated the data; then the
ratios the iterative path is held to.
"""
from __future__ import annotations

import argparse
import logging
import threading
import time

import dask
import dask.array as da
import numpy as np
import psutil
from distributed import Client, LocalCluster

from fastopt import LinearRegressor

MiB = 2**20


def make_data(rows: int, features: int, chunk_rows: int, seed: int = 0):
    """Lazy ``X`` and ``y`` whose blocks are generated where they are used, and the true coefficients."""
    beta = np.random.default_rng(seed).normal(size=features)
    # Uniform draws: several times cheaper to generate than normal ones, so generation does not hide the fit.
    X = da.random.default_rng(seed + 1).uniform(-1.0, 1.0, size=(rows, features), chunks=(chunk_rows, features))

    def targets(block, block_info=None):
        # Noise seeded by the block's position, so y is a pure function of the block.
        noise = np.random.default_rng([seed + 2, block_info[0]["chunk-location"][0]]).normal(size=len(block))
        return (block @ beta + 0.5 + 0.01 * noise)[:, None]

    # A (n, 1) map then a column view: map_blocks with drop_axis would copy every block of X (concatenate).
    y = X.map_blocks(targets, chunks=(X.chunks[0], (1,)), dtype=np.float64)[:, 0]
    return X, y, beta


class PeakMemory:
    """Polls the RSS of every worker (and of this client process) in a background thread."""

    def __init__(self, client: Client, interval: float = 0.1):
        self.client, self.interval = client, interval
        self.workers: dict[str, int] = {}
        self.client_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for worker, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                self.workers[worker] = max(self.workers.get(worker, 0), rss)
            self.client_rss = max(self.client_rss, me.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class ClientBytes:
    """Counts the bytes this process reads from the scheduler: what the client receives, including every
    result it gathers (the scheduler relays them from the workers; LocalCluster's in-process nannies add a
    few heartbeats).

    Distributed has no per-connection byte counter, so this wraps the function its TCP comms read every
    message body with (``distributed.comm.tcp.read_bytes_rw``); the 8-byte length headers are not counted.
    """

    def __init__(self, scheduler_address: str):
        import distributed.comm.tcp as tcp

        self.port = int(scheduler_address.rsplit(":", 1)[1])
        self.total = 0
        self._tcp, self._original = tcp, tcp.read_bytes_rw

        async def counting(stream, n):
            try:
                if stream.socket.getpeername()[1] == self.port:
                    self.total += n
            except (OSError, AttributeError):  # a closed socket
                pass
            return await self._original(stream, n)

        tcp.read_bytes_rw = counting

    def take(self) -> int:
        """Bytes read since the last call."""
        total, self.total = self.total, 0
        return total

    def close(self) -> None:
        self._tcp.read_bytes_rw = self._original


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--subset-rows", type=int, default=500_000, help="rows fitted in memory for comparison")
    parser.add_argument("--solver", default=None, help="also time one epoch of this iterative solver")
    args = parser.parse_args(argv)

    X, y, beta = make_data(args.rows, args.features, args.chunk_rows)
    configs = [("closed form", {})]
    if args.solver:
        configs.append((f"{args.solver}, 1 epoch", {"solver": args.solver, "max_epochs": 1, "random_state": 0}))
    print(
        f"X: {args.rows:,} x {args.features} float64 = {X.nbytes / 2**30:.2f} GiB in {X.numblocks[0]} blocks of "
        f"{args.chunk_rows * args.features * 8 / MiB:.0f} MiB; {args.workers} workers x {args.memory_limit}, "
        "1 thread each"
    )
    rows = []
    with LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, memory_limit=args.memory_limit,
        dashboard_address=None, silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as client:
        # Warm up: every worker imports fastopt and runs the kernels once before any clock starts.
        LinearRegressor().fit(X[: args.chunk_rows * args.workers], y[: args.chunk_rows * args.workers])
        idle = max(client.run(lambda: psutil.Process().memory_info().rss).values())
        print(f"worker RSS after warm-up, between fits: {idle / MiB:.0f} MiB")

        received = ClientBytes(cluster.scheduler_address)

        # The limit: generating every block and reading it once (column sums), with no fit at all.
        with PeakMemory(client) as mem:
            _, seconds = timed(lambda: dask.compute(X.sum(axis=0), y.sum()))
        rows.append(("generate + read (limit)", args.rows, seconds, max(mem.workers.values()), mem.client_rss,
                     received.take(), None))
        for label, params in configs:
            with PeakMemory(client) as mem:
                est, seconds = timed(lambda params=params: LinearRegressor(**params).fit(X, y))
            rows.append((f"{label}, cluster", args.rows, seconds, max(mem.workers.values()), mem.client_rss,
                         received.take(), est))

    # The in-memory comparison: a subset that fits, generated in this process, fitted on plain NumPy arrays.
    Xs, ys = dask.compute(X[: args.subset_rows], y[: args.subset_rows], scheduler="sync")
    for label, params in configs:
        est, seconds = timed(lambda params=params: LinearRegressor(**params).fit(Xs, ys))
        rows.append((f"{label}, in memory", args.subset_rows, seconds, 0, psutil.Process().memory_info().rss,
                     None, est))

    print(f"{'fit':<28} {'rows':>11} {'time [s]':>9} {'rows/s':>12} {'peak worker RSS':>16} {'client RSS':>11} "
          f"{'client received':>16} {'max |coef - beta|':>18}")
    for label, n, seconds, worker, client_rss, received, est in rows:
        worker_text = f"{worker / MiB:,.0f} MiB" if worker else "-"
        received_text = "-" if received is None else f"{received / MiB:,.2f} MiB"
        error = "-" if est is None else f"{np.max(np.abs(est.coef_ - beta)):.2e}"
        print(f"{label:<28} {n:>11,} {seconds:>9.2f} {n / seconds:>12,.0f} {worker_text:>16} "
              f"{client_rss / MiB:>7,.0f} MiB {received_text:>16} {error:>18}")
    if args.solver:
        limit, closed, epoch = rows[0], rows[1], rows[2]
        print(f"\n{args.solver} epoch / generate + read: {epoch[2] / limit[2]:.2f} (target <= 2.5); "
              f"client received / X: {epoch[5] / X.nbytes:.3%} (target < 1%); "
              f"client RSS / closed form's: {epoch[4] / closed[4]:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
