"""Ray, for work past one machine: ``prepare --engine ray`` and ``batch --engine ray``.

Local by default (a Ray runtime on this machine's cores, started and stopped with the command);
``--address`` joins a running cluster (``ray start --head`` on one node, ``ray start --address
HEAD:6379`` on the others), where every node needs this package installed and the input files
at the same paths. Results come back to the driver, which alone writes the outputs.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from .errors import InputError

IN_FLIGHT_PER_WORKER = 4      # tasks queued per worker: enough to keep each busy, few results held at once


@contextmanager
def connect(address: str | None = None, workers: int | None = None) -> Iterator:
    """The ``ray`` module, connected: to ``address`` (a running cluster, or "auto"), else to a new local
    runtime of ``workers`` CPUs (default all), which is shut down on exit."""
    try:
        import ray
    except ImportError:
        raise InputError("the Ray engine needs Ray: pip install 'ventriloquist[cluster]' (or ray==2.60.0)") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")          # no network calls home
    started = False
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot join the Ray cluster at {address} ({' '.join(str(exc).split())[:200]}); "
                                 "start it with `ray start --head` or check the address") from None
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def workers_of(ray) -> int:
    """CPUs the connected cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def as_completed(ray, submit: Callable, items: Iterable, limit: int) -> Iterator[tuple[object, object, BaseException | None]]:
    """(item, result, error) for each item as its task finishes, at most ``limit`` tasks in flight;
    ``submit(item)`` returns an object ref. A task that failed (its worker died, its code raised)
    gives its error, never stops the others."""
    pending: dict = {}
    it = iter(items)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < limit:
            try:
                item = next(it)
            except StopIteration:
                exhausted = True
                break
            pending[submit(item)] = item
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            item = pending.pop(ref)
            try:
                yield item, ray.get(ref), None
            except Exception as exc:          # RayTaskError, WorkerCrashedError, ...
                yield item, None, exc
