"""Each table has one owner module that reads and writes it (issue 10, item 4).

A static scan of the string literals in quantrac/: a module other than the owner that names a
table after FROM, JOIN, INTO or UPDATE fails this test, unless the pair is in ALLOWED (a short,
justified exception) or in PENDING (raw SQL still to be moved into the owner; the list only
shrinks: an entry that is no longer needed fails too). docs/architecture.md has the inventory.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "quantrac"

OWNERS = {
    "alerts": "alerts/store.py",
    "alert_events": "alerts/store.py",
    "exceedance_episodes": "alerts/store.py",
    "aqi_hourly": "alerts/store.py",
    "station_log": "alerts/station_log.py",
    "users": "api/users.py",
    "api_tokens": "api/users.py",
    "audit_log": "api/users.py",
    "readings": "ingest/writer.py",
    "ingested_files": "ingest/writer.py",
    "instrument_status": "ingest/writer.py",
    "rejections": "ingest/schema.py",
    "stations": "ingest/schema.py",
    "quantrac_meta": "ingest/schema.py",
    "readings_hourly": "ingest/rollup.py",
    "rollup_dirty": "ingest/rollup.py",
    "committed_batches": "ingest/stream.py",
    "stream_cursors": "ingest/stream.py",
    "stream_workers": "ingest/stream.py",
    "schema_migrations": "core/migrations.py",
    "locked_periods": "evidence/locks.py",
    "held_readings": "evidence/locks.py",
    "reading_corrections": "evidence/locks.py",
    "sealed_files": "evidence/seal.py",
    "forward_state": "forward/service.py",
    "forward_log": "forward/service.py",
    "report_deliveries": "reports/delivery.py",
}

# A package's schema module creates and migrates the tables of that package's owners.
SCHEMA_MODULES = {"ingest/schema.py", "api/schema.py", "evidence/schema.py"}

# Decided: the reports are the owner of their own read-only views over readings, the hourly
# aggregate and the episodes (big report queries); they never write another owner's table.
REPORT_READS = {"readings", "readings_hourly", "exceedance_episodes"}

ALLOWED = {
    # The core's schema records its version in the shared migration table. Within ingest: the
    # rollup reads what the writer stored; the writer marks hours to roll up in its own
    # transaction; export streams readings out with COPY.
    ("ingest/schema.py", "schema_migrations"),
    ("ingest/rollup.py", "readings"),
    ("ingest/writer.py", "rollup_dirty"),
    ("ingest/export.py", "readings"),
    # A correction replaces readings and marks the hour in the same transaction as its audit
    # row and its lock check; the seal digests the readings of a sealed period.
    ("evidence/locks.py", "readings"),
    ("evidence/locks.py", "rollup_dirty"),
    ("evidence/seal.py", "readings"),
    ("evidence/seal.py", "reading_corrections"),
    # Lower or sibling layers that may not import evidence read its tables, read-only: retention
    # keeps a month or chunk a lock overlaps; forwarding re-sends a file corrected after it went.
    ("ingest/schema.py", "locked_periods"),
    ("forward/service.py", "reading_corrections"),
    # The alert service's durable cursor is the stream's consumer side (one transaction with
    # the alerts it derives).
    ("alerts/service.py", "stream_cursors"),
}

# Raw SQL still to be moved into the owner (debt; remove the line when it is moved). Empty since
# issue 10 item 4: a new pair here needs a reason in the review.
PENDING: set[tuple[str, str]] = set()

_NAMES = "|".join(sorted(OWNERS, key=len, reverse=True))
_USE = re.compile(rf"\b(FROM|JOIN|INTO|UPDATE)\s+(?:ONLY\s+)?({_NAMES})\b")
_CREATE = re.compile(r"CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_]+)\b")


def _literals(path: Path) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _uses() -> set[tuple[str, str, str]]:
    found = set()
    for path in ROOT.rglob("*.py"):
        module = path.relative_to(ROOT).as_posix()
        for text in _literals(path):
            for match in _USE.finditer(text):
                found.add((module, match.group(2), match.group(1)))
    return found


def _exempt(module: str, table: str, verb: str) -> bool:
    if OWNERS[table] == module or (module, table) in ALLOWED or (module, table) in PENDING:
        return True
    if module in SCHEMA_MODULES and OWNERS[table].split("/")[0] == module.split("/")[0]:
        return True
    return module.startswith("reports/") and table in REPORT_READS and verb in {"FROM", "JOIN"}


def test_only_the_owner_names_a_table_in_sql() -> None:
    strays = sorted(u for u in _uses() if not _exempt(*u))
    assert strays == [], "move this SQL into the table's owner (see OWNERS):\n" + "\n".join(
        f"{module}: {verb} {table} (owner {OWNERS[table]})" for module, table, verb in strays
    )


def test_exceptions_are_still_needed() -> None:
    used = {(module, table) for module, table, _ in _uses()}
    stale = sorted((ALLOWED | PENDING) - used)
    assert stale == [], f"no longer needed, remove from ALLOWED/PENDING: {stale}"


def test_every_created_table_has_an_owner() -> None:
    created = {
        name
        for path in ROOT.rglob("*.py")
        for text in _literals(path)
        for name in _CREATE.findall(text)
    }
    assert created - set(OWNERS) == set()
