"""``quantrac forward``: send stored readings upstream as Circular 10/2021 files."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantrac.app import run_until_signalled
from quantrac.core.catalog import load_catalog
from quantrac.core.db import connect
from quantrac.core.registry import load_registry
from quantrac.core.settings import Settings
from quantrac.forward import service
from quantrac.forward.config import ForwardTarget, forward_path, load_forward_config
from quantrac.forward.files import ForwardError
from quantrac.forward.service import ForwardResult, forward_once, forwarded_stations
from quantrac.ingest.service import upgrade_database


def _print(result: ForwardResult) -> None:
    resent = f" ({result.resent} sent again with more readings)" if result.resent else ""
    if result.ok:
        print(f"{result.target}: {result.sent} file(s) sent{resent}")
    else:
        print(
            f"{result.target}: {result.sent} file(s) sent{resent}, then stopped: {result.error}; "
            "the next run resumes there",
            file=sys.stderr,
        )


async def cmd_forward(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(settings.stations_path, catalog)
    path = Path(args.targets) if args.targets else forward_path(settings.config_dir)
    try:
        targets = load_forward_config(path, set(registry.stations))
        if args.target:
            targets = [t for t in targets if t.name == args.target]
            if not targets:
                raise ForwardError(f"{path}: no target named {args.target!r}")
        for target in targets:
            forwarded_stations(target, registry)
    except ForwardError as exc:
        print(f"quantrac forward: {exc}", file=sys.stderr)
        return 2
    await upgrade_database(settings)
    async with await connect(settings) as conn:
        await service.upgrade(conn)
        await conn.commit()
        if args.status:
            for name, run_at, ok_at, error, sent in await service.target_states(conn):
                state = "ok" if error is None else f"failing: {error}"
                print(
                    f"{name}: {sent} file(s) sent; last run {run_at.isoformat()}, last success "
                    f"{ok_at.isoformat() if ok_at else 'never'}; {state}"
                )
            return 0
        if not targets:
            print(f"quantrac forward: no targets in {path}", file=sys.stderr)
            return 0

        async def round_of(chosen: list[ForwardTarget]) -> bool:
            ok = True
            for target in chosen:
                try:
                    result = await forward_once(
                        conn,
                        target,
                        registry,
                        datetime.now(UTC),
                        environ=os.environ,
                        max_files=args.max_files,
                    )
                except ForwardError as exc:  # e.g. a password variable that is not set
                    print(f"quantrac forward: {target.name}: {exc}", file=sys.stderr)
                    ok = False
                    continue
                if result.sent or not result.ok or not args.watch:
                    _print(result)
                ok = ok and result.ok
            return ok

        if not args.watch:
            return 0 if await round_of(targets) else 1
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []

        async def loop() -> None:
            poll = min(t.poll_s for t in targets)
            while not stop.is_set():
                await round_of(targets)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)

        async def begin() -> None:
            tasks.append(asyncio.create_task(loop()))

        async def finish() -> None:
            stop.set()
            await asyncio.gather(*tasks)

        await run_until_signalled(begin, finish, args.duration)
        return 0


def register(sub: Any) -> None:
    forward = sub.add_parser(
        "forward",
        help="send stored readings upstream as Circular 10/2021 files (FTP, FTPS or a folder)",
    )
    forward.add_argument("--targets", help="targets file (default: config/forward.yaml)")
    forward.add_argument("--target", help="only this target")
    forward.add_argument("--watch", action="store_true", help="keep forwarding (every poll_s)")
    forward.add_argument("--duration", type=float, help="with --watch: stop after S seconds")
    forward.add_argument(
        "--max-files", type=int, default=10_000, help="at most this many files per target per run"
    )
    forward.add_argument("--status", action="store_true", help="each target's last outcome")
    forward.set_defaults(handler=cmd_forward)
