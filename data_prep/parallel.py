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


@contextlib.contextmanager
def worker_pool(workers: int):
    """``workers`` spawned processes (stopped on exit, also on errors and Ctrl-C; they exit by
    themselves when this process is killed)."""
    if workers <= 1:
        yield InlinePool()
        return
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=exit_with_parent, initargs=(os.getpid(),))
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
