"""Ordered, memory-bounded parallel map over worker processes.

Workers are started with ``spawn``: the parent has TensorFlow loaded (with its threads), which
must not be forked. ``concurrent.futures`` is used rather than ``multiprocessing.Pool`` because a
worker that dies (killed for memory, say) breaks the pool with an error instead of hanging it. At
most ``window`` batches are in flight, so memory does not grow with the dataset however slow the
consumer is; results come back in input order.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import threading
import time
from typing import Callable, Iterable, Iterator, List, TypeVar

Item = TypeVar("Item")
Output = TypeVar("Output")


class InlinePool:
    """A pool of one that runs tasks in the calling process (``--workers 1``: no start-up cost)."""

    def submit(self, function, *args):
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(function(*args))
        return future


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Worker initializer: leave as soon as the parent process is gone.

    A parent killed with SIGKILL cannot stop its pool; orphaned workers (and the resource tracker
    they keep open) would otherwise wait on their queue for minutes.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


_SCOPES: List[dict] = []  # the open pool_scope blocks, innermost last: {"workers": n, "pool": pool or None}


def start_worker(parent: int) -> None:
    """Worker initializer: leave with the parent (:func:`exit_with_parent`), and keep NumPy's BLAS to
    one thread — the workers already share the cores (measured: two workers each with two BLAS
    threads verified near-duplicates slower than one process; with one thread each, 1.7× faster)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    exit_with_parent(parent)


def _start_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=start_worker, initargs=(os.getpid(),))


@contextlib.contextmanager
def pool_scope(workers: int):
    """Within this block every ``worker_pool(workers)`` is the same pool, started on first use and
    stopped when the block ends: a build's stages (hashing, writing shards, verifying near-duplicates)
    pay for starting workers once (a spawned worker imports the main module again: about a second)."""
    scope = {"workers": workers, "pool": None}
    _SCOPES.append(scope)
    try:
        yield
    finally:
        _SCOPES.remove(scope)
        if scope["pool"] is not None:
            scope["pool"].shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def worker_pool(workers: int):
    """``workers`` spawned processes (stopped on exit, also on errors and Ctrl-C; they exit by
    themselves when this process is killed) — or, inside a :func:`pool_scope` of as many workers,
    that scope's pool (stopped with the scope)."""
    if workers <= 1:
        yield InlinePool()
        return
    if _SCOPES and _SCOPES[-1]["workers"] == workers:
        scope = _SCOPES[-1]
        if scope["pool"] is None:
            scope["pool"] = _start_pool(workers)
        try:
            yield scope["pool"]
        except BaseException:  # a broken or interrupted pool is not handed to the next stage
            scope["pool"], broken = None, scope["pool"]
            broken.shutdown(wait=True, cancel_futures=True)
            raise
        return
    pool = _start_pool(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def batched(items: Iterable[Item], size: int) -> Iterator[List[Item]]:
    batch: List[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ordered_map(pool, batch_function: Callable[[List[Item]], List[Output]], items: Iterable[Item],
                batch_size: int = 16, window: int = 8) -> Iterator[Output]:
    """Yield ``batch_function`` applied to ``items`` (in batches), one result per item, in order."""
    pending: collections.deque = collections.deque()
    for batch in batched(items, batch_size):
        pending.append(pool.submit(batch_function, batch))
        if len(pending) >= window:
            yield from pending.popleft().result()
    while pending:
        yield from pending.popleft().result()


def bind(function: Callable, *args) -> Callable:
    """A picklable ``function`` with leading arguments fixed (for ``ordered_map``)."""
    return functools.partial(function, *args)
