"""Waiting for a helper thread, and finishing clean-up, in a way that Ctrl-C cannot break.

Python raises ``KeyboardInterrupt`` on the main thread between any two bytecodes. Two patterns keep the package's
threads and state sound when it does, at any instant and when it comes again while the first is handled:

* :func:`wait_get` waits for a helper thread's result on a ``queue.SimpleQueue`` (C code) in bounded waits.
  ``Thread.join()`` interrupted by Ctrl-C marks a running thread stopped in Python 3.11 (bpo-45274's handling),
  an ``Event`` wait interrupted at some points leaves its lock released ("release unlocked lock"), and a SIGINT
  that lands just before an unbounded wait begins is handled only when the wait returns.
* :func:`uninterrupted` runs a clean-up step (restoring an estimator, stopping a helper) again until it completes:
  a second Ctrl-C inside it had left an estimator without its attributes, a reader thread waiting for ever, and
  a closed-form pass running beside its caller.
"""
from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Seconds a wait blocks before it is repeated (wait_get).
WAIT_POLL = 0.05


def wait_get(results: queue.SimpleQueue):
    """The next item of ``results``, waited for in waits of ``WAIT_POLL`` seconds (Ctrl-C is seen between them)."""
    while True:
        try:
            return results.get(timeout=WAIT_POLL)
        except queue.Empty:
            continue


def uninterrupted(step: Callable[[], T]) -> T:
    """``step()``, called again after each ``KeyboardInterrupt`` until it returns: ``step`` must be safe to repeat
    from its start. A further Ctrl-C is ignored meanwhile; the caller raises the first one once it is done."""
    while True:
        try:
            return step()
        except KeyboardInterrupt:
            continue
