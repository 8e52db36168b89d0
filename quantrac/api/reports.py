"""Report routes: exceedance history and completeness (JSON or files), provincial indicators.

Reading a report as JSON needs the ``read`` permission (every role); downloading a file (CSV,
XLSX, PDF) is an export: the ``export`` permission (inspector, admin), recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import Response

from quantrac.alerts.choices import design_choices
from quantrac.api.deps import ApiError, Conn, Ctx, CurrentUser, Reader, parse_when, registry_for
from quantrac.api.users import User, audit
from quantrac.core.config_files import ConfigError
from quantrac.core.time import VIETNAM
from quantrac.evidence.seal import period_closed, readings_digest, record_seal, seal_for
from quantrac.reports.completeness import completeness_report
from quantrac.reports.exceedances import ReportError, exceedance_report, stations_for
from quantrac.reports.indicators import (
    compute_indicators,
    indicators_json,
    indicators_path,
    load_indicator_config,
)
from quantrac.reports.writers import (
    CSV_SECTIONS,
    MEDIA_TYPES,
    ReportFontError,
    completeness_csv,
    completeness_json,
    exceedance_csv,
    exceedance_json,
    exceedance_pdf,
    exceedance_xlsx,
    indicators_csv,
)

router = APIRouter(prefix="/api/v1")

MAX_PERIOD = timedelta(days=400)


def _period(start: str, end: str) -> tuple[datetime, datetime]:
    t0, t1 = parse_when(start, "from"), parse_when(end, "to")
    assert t0 is not None and t1 is not None
    if t1 <= t0:
        raise ApiError(422, "invalid_parameter", "api.msg.period_order")
    if t1 - t0 > MAX_PERIOD:
        raise ApiError(422, "too_long", "api.msg.report_too_long", days=MAX_PERIOD.days)
    return t0, t1


def _may_export(user: User, fmt: str) -> None:
    if fmt != "json" and not user.may("export"):
        raise ApiError(403, "forbidden", "api.msg.role_may_not_export", role=user.role_name)


def _download(body: bytes, fmt: str, name: str, headers: dict[str, str] | None = None) -> Response:
    filename = f"{name}.{fmt}"
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": disposition, **(headers or {})},
    )


def local_date(at: datetime) -> str:
    """A period's first Vietnamese day, for file names."""
    return at.astimezone(VIETNAM).date().isoformat()


def last_local_date(end: datetime) -> str:
    """A period's last Vietnamese day (the end is exclusive: up to 01/01 00:00 ends on 31/12)."""
    return (end - timedelta(seconds=1)).astimezone(VIETNAM).date().isoformat()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "report"


@router.get(
    "/reports/exceedances",
    tags=["reports"],
    summary="Exceedance history of a station or facility (JSON; CSV, XLSX, PDF for inspectors)",
)
async def exceedances(
    ctx: Ctx,
    conn: Conn,
    user: CurrentUser,
    start: str = Query(..., alias="from", description="ISO-8601 with offset"),
    end: str = Query(..., alias="to"),
    station: str | None = None,
    facility: str | None = None,
    fmt: str = Query("json", alias="format", pattern="^(json|csv|xlsx|pdf)$"),
    lang: str = Query("vi", pattern="^(vi|en)$"),
    section: str = Query("episodes", description="CSV only: " + ", ".join(CSV_SECTIONS)),
) -> Any:
    if not user.may("read"):
        raise ApiError(403, "forbidden", "api.msg.role_may_not_reports", role=user.role_name)
    _may_export(user, fmt)
    if fmt == "csv" and section not in CSV_SECTIONS:
        raise ApiError(
            422, "invalid_parameter", "api.msg.csv_section", sections=", ".join(CSV_SECTIONS)
        )
    t0, t1 = _period(start, end)
    # A closed period is sealed: the report and the digest of its readings read one snapshot.
    sealed = period_closed(t1, ctx.clock())
    digest = None
    async with contextlib.AsyncExitStack() as snapshot:
        if sealed:
            await snapshot.enter_async_context(conn.transaction())
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        try:
            registry = registry_for(ctx, user)
            chosen = stations_for(registry, station, facility)
            report = await exceedance_report(
                conn,
                registry,
                ctx.regulations,
                [s.id for s in chosen],
                t0,
                t1,
                now=ctx.clock(),
                facility=facility,
                engine_config=ctx.engine_config,
                holdoff=timedelta(minutes=ctx.settings.alerts_holdoff_minutes),
                exported_by=(
                    f"{user.display_name} ({user.username})"
                    if user.display_name and user.display_name != user.username
                    else user.username
                ),
            )
        except ReportError as exc:
            status = 404 if exc.key in ("error.report.station", "error.report.facility") else 422
            raise ApiError(
                status, "not_found" if status == 404 else "invalid_parameter", exc
            ) from None
        if sealed:
            digest = await readings_digest(conn, [s.id for s in chosen], t0, t1)
            report.readings_sha256, report.readings_count = digest.sha256, digest.count
    if fmt == "json":
        return exceedance_json(report)
    try:
        if fmt == "csv":
            body = exceedance_csv(report, lang, section)
        elif fmt == "xlsx":
            body = await asyncio.to_thread(exceedance_xlsx, report, lang)
        else:
            body = await asyncio.to_thread(exceedance_pdf, report, lang)
    except ReportFontError as exc:
        raise ApiError(500, "font_missing", "api.msg.font_missing", reason=exc) from None
    target = f"facility:{facility}" if facility else f"station:{station}"
    await audit(
        conn,
        user.username,
        "report.export",
        target,
        {
            "report": "exceedances",
            "format": fmt,
            "lang": lang,
            "from": t0.isoformat(),
            "to": t1.isoformat(),
            "episodes": len(report.episodes),
            "bytes": len(body),
        },
    )
    name = f"exceedances-{_slug(facility or station or '')}-{local_date(t0)}-{last_local_date(t1)}"
    headers = {}
    if digest is not None:
        seal = seal_for(
            body,
            f"{name}.{fmt}",
            kind="report exceedances",
            request={"format": fmt, "lang": lang, "section": section, "facility": facility},
            stations=[s.id for s in chosen],
            start=t0,
            end=t1,
            readings=digest,
            now=ctx.clock(),
            actor=user.username,
        )
        await record_seal(conn, seal)
        headers = {
            "X-Quantrac-File-SHA256": seal.file_sha256,
            "X-Quantrac-Readings-SHA256": digest.sha256,
        }
    return _download(body, fmt, name, headers)


@router.get(
    "/reports/completeness",
    tags=["reports"],
    summary="Valid readings against expected, per station, parameter and Vietnamese day",
)
async def completeness(
    ctx: Ctx,
    conn: Conn,
    user: CurrentUser,
    start: str = Query(..., alias="from"),
    end: str = Query(..., alias="to"),
    station: str | None = None,
    facility: str | None = None,
    fmt: str = Query("json", alias="format", pattern="^(json|csv)$"),
    lang: str = Query("vi", pattern="^(vi|en)$"),
) -> Any:
    if not user.may("read"):
        raise ApiError(403, "forbidden", "api.msg.role_may_not_reports", role=user.role_name)
    _may_export(user, fmt)
    t0, t1 = _period(start, end)
    try:
        chosen = stations_for(registry_for(ctx, user), station, facility)
    except ReportError as exc:
        raise ApiError(404, "not_found", exc) from None
    report = await completeness_report(conn, chosen, t0, t1, now=ctx.clock())
    if fmt == "json":
        return completeness_json(report, design_choices(ctx.engine_config, ctx.regulations))
    body = completeness_csv(report, lang)
    target = f"facility:{facility}" if facility else f"station:{station}"
    await audit(
        conn,
        user.username,
        "report.export",
        target,
        {"report": "completeness", "format": fmt, "from": t0.isoformat(), "to": t1.isoformat()},
    )
    name = f"completeness-{_slug(facility or station or '')}-{local_date(t0)}-{last_local_date(t1)}"
    return _download(body, fmt, name)


@router.get(
    "/indicators",
    tags=["reports"],
    summary="Provincial indicators No. 23 (facilities transmitting) and No. 22 (air stations "
    "per urban population)",
)
async def indicators(
    ctx: Ctx,
    conn: Conn,
    user: Reader,
    start: str = Query(..., alias="from"),
    end: str = Query(..., alias="to"),
    fmt: str = Query("json", alias="format", pattern="^(json|csv)$"),
    lang: str = Query("vi", pattern="^(vi|en)$"),
) -> Any:
    _may_export(user, fmt)
    t0, t1 = _period(start, end)
    try:
        config = load_indicator_config(indicators_path(ctx.settings.config_dir))
    except ConfigError as exc:
        raise ApiError(
            500, "invalid_configuration", "api.msg.invalid_configuration", reason=exc
        ) from None
    # A scoped user's indicators cover the stations of its scope only.
    registry = registry_for(ctx, user)
    result = await compute_indicators(conn, registry, config, t0, t1, now=ctx.clock())
    doc = indicators_json(result)
    if fmt == "json":
        return doc
    body = indicators_csv(doc, lang)
    await audit(
        conn,
        user.username,
        "report.export",
        "indicators",
        {"report": "indicators", "format": fmt, "from": t0.isoformat(), "to": t1.isoformat()},
    )
    return _download(body, fmt, f"indicators-{local_date(t0)}-{last_local_date(t1)}")
