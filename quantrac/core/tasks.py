"""Small asyncio and process helpers every long-running command uses."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any


async def cancel_and_wait(tasks: list[asyncio.Task[Any]]) -> None:
    """Stop background tasks and wait until they are gone; their errors no longer matter."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector run less often.

    Ingest allocates several small objects per reading and keeps a batch of them alive until the
    commit; with CPython's default threshold (700) the collector walks that batch again and again,
    which measured as about half of the parse and validation time (bench/ingest.py). Our objects
    form no reference cycles, so collecting rarely costs no memory to speak of.
    """
    gc.freeze()  # what start-up loaded (registry, catalog, modules) is never garbage
    gc.set_threshold(50_000, 20, 50)
