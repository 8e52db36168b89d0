"""The conformance report as a terminal table, JSON, or a self-contained HTML page. Pure.

Every word a vendor reads comes from the translation table (``check.*`` keys).
"""

from __future__ import annotations

import html
import json
import textwrap
from datetime import datetime
from typing import Any

from quantrac.conformance.checks import NOT_APPLICABLE, Example, Finding, Report, Text
from quantrac.core.i18n import format_number, format_time, translate

FORMATS = ("table", "json", "html")


def _t(text: Text, lang: str) -> str:
    # Numbers as the reader writes them: 12,5 giây in Vietnamese, 12.5 s in English.
    params = {
        name: format_number(value, lang) if _is_number(value) else value
        for name, value in text.params.items()
    }
    return translate(text.key, lang, **params)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: int, lang: str) -> str:
    return format_number(value, lang, 0)


def _verdict_word(verdict: str, lang: str) -> str:
    return translate(f"check.verdict.{'na' if verdict == NOT_APPLICABLE else verdict}", lang)


def _local(moment: datetime | None) -> str:
    """Vietnam time to the second, as the rest of quantrac writes it: 03/12/2026 08:05:00
    (UTC+7). Each time names its zone: a vendor compares it with a logger's clock."""
    if moment is None:
        return "–"
    return f"{format_time(moment, seconds=True)} (UTC+7)"


def _period(report: Report, lang: str) -> str:
    return f"{_local(report.first_received)} → {_local(report.last_received)}"


def _header(report: Report, lang: str) -> list[tuple[str, str]]:
    rows = [
        (
            translate("check.report.station", lang),
            f"{report.station_id} – {report.station_name}",
        ),
        (translate("check.report.kind", lang), translate(f"kind.{report.kind}", lang)),
        (
            translate("check.report.source", lang),
            f"{translate(f'check.report.source.{report.mode}', lang)} — "
            + translate(f"check.report.origin.{report.origin}", lang, path=report.origin_path),
        ),
        (translate("check.report.period", lang), _period(report, lang)),
        (translate("check.report.messages", lang), _count(report.messages, lang)),
        (translate("check.report.readings", lang), _count(report.readings, lang)),
    ]
    if report.ignored:
        rows.append((translate("check.report.ignored", lang), _count(report.ignored, lang)))
    return rows


# --- Terminal -------------------------------------------------------------------------------------


def render_table(report: Report, lang: str = "vi", *, color: bool = False) -> str:
    def paint(verdict: str, text: str) -> str:
        if not color:
            return text
        code = {"pass": "32", "warn": "33", "fail": "31"}.get(verdict, "90")
        return f"\x1b[{code}m{text}\x1b[0m"

    lines = [translate("check.report.title", lang), ""]
    width = max(len(label) for label, _ in _header(report, lang))
    lines += [f"  {label:<{width}}  {value}" for label, value in _header(report, lang)]
    lines.append("")
    names = [translate(f"check.criterion.{c.id}", lang) for c in report.criteria]
    words = [_verdict_word(c.verdict, lang) for c in report.criteria]
    name_width = max(len(n) for n in names)
    word_width = max(len(w) for w in words)
    for criterion, name, word in zip(report.criteria, names, words, strict=True):
        summary = _t(criterion.summary, lang)
        shown = paint(criterion.verdict, f"{word:<{word_width}}")
        lines.append(f"  {name:<{name_width}}  {shown}  {summary}")
    failing = [c for c in report.criteria if c.findings]
    if failing:
        lines += ["", translate("check.report.findings", lang)]
    for criterion in failing:
        lines.append(f"\n  ■ {translate(f'check.criterion.{criterion.id}', lang)}")
        for finding in criterion.findings:
            lines += _finding_lines(finding, lang, paint)
    lines += ["", paint(report.verdict, translate(f"check.overall.{report.verdict}", lang))]
    return "\n".join(lines) + "\n"


def _finding_lines(finding: Finding, lang: str, paint: Any) -> list[str]:
    word = _verdict_word(finding.severity, lang)
    count = f"{translate('check.report.count', lang)}: {_count(finding.count, lang)}"
    out = [f"    {paint(finding.severity, word)}  {_t(finding.what, lang)}  ({count})"]
    if finding.fix is not None:
        out.append(f"      → {translate('check.report.fix', lang)}: {_t(finding.fix, lang)}")
    for example in finding.examples[:1]:
        out.append(
            f"      {translate('check.report.example', lang)}: {example.source} "
            f"({translate('check.report.received_at', lang)} {_local(example.received_at)})"
        )
        shown = example.payload if len(example.payload) <= 300 else example.payload[:300] + "…"
        out += textwrap.indent(shown.rstrip(), "        | ").splitlines()
    return out


# --- JSON -----------------------------------------------------------------------------------------


def _example_json(example: Example) -> dict[str, Any]:
    return {
        "source": example.source,
        "received_at": example.received_at.isoformat() if example.received_at else None,
        "payload": example.payload,
    }


def _text_json(text: Text | None, lang: str) -> dict[str, Any] | None:
    if text is None:
        return None
    return {"key": text.key, "params": text.params, "text": _t(text, lang)}


def report_json(report: Report, lang: str = "vi") -> dict[str, Any]:
    return {
        "station": report.station_id,
        "station_name": report.station_name,
        "kind": report.kind,
        "source": report.mode,
        "origin": report.origin,
        "origin_path": report.origin_path,
        "verdict": report.verdict,
        "passed": report.passed,
        "messages": report.messages,
        "readings": report.readings,
        "ignored": report.ignored,
        "first_received": report.first_received.isoformat() if report.first_received else None,
        "last_received": report.last_received.isoformat() if report.last_received else None,
        "criteria": [
            {
                "id": c.id,
                "name": translate(f"check.criterion.{c.id}", lang),
                "verdict": c.verdict,
                "summary": _text_json(c.summary, lang),
                "findings": [
                    {
                        "severity": f.severity,
                        "what": _text_json(f.what, lang),
                        "fix": _text_json(f.fix, lang),
                        "count": f.count,
                        "examples": [_example_json(e) for e in f.examples],
                    }
                    for f in c.findings
                ],
            }
            for c in report.criteria
        ],
    }


def render_json(report: Report, lang: str = "vi") -> str:
    return json.dumps(report_json(report, lang), ensure_ascii=False, indent=2) + "\n"


# --- HTML -----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:2rem auto;
max-width:60rem;color:#1b1f24;line-height:1.45;padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.meta th{width:14rem}
.v{font-weight:700;white-space:nowrap}.pass{color:#1a7f37}.warn{color:#9a6700}
.fail{color:#cf222e}.na{color:#6e7781}
.overall{font-size:1.1rem;padding:.7rem 1rem;border-radius:6px;margin:1rem 0}
.overall.pass{background:#dafbe1}.overall.warn{background:#fff8c5}.overall.fail{background:#ffebe9}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;
font-size:.8rem;margin:.3rem 0}
.finding{border-left:4px solid #d0d7de;padding:.2rem .8rem;margin:.8rem 0}
.finding.fail{border-color:#cf222e;color:inherit}.finding.warn{border-color:#bf8700;color:inherit}
.fix{margin:.3rem 0}.small{color:#57606a;font-size:.85rem}
@media print{body{margin:0}pre{white-space:pre-wrap}}
"""


def render_html(report: Report, lang: str = "vi", *, generated_at: datetime | None = None) -> str:
    e = html.escape

    def verdict_cell(verdict: str) -> str:
        css = "na" if verdict == NOT_APPLICABLE else verdict
        return f'<td class="v {css}">{e(_verdict_word(verdict, lang))}</td>'

    meta = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _header(report, lang))
    rows = "".join(
        f"<tr><td>{e(translate(f'check.criterion.{c.id}', lang))}</td>{verdict_cell(c.verdict)}"
        f"<td>{e(_t(c.summary, lang))}</td></tr>"
        for c in report.criteria
    )
    sections = []
    for criterion in report.criteria:
        if not criterion.findings:
            continue
        parts = [f"<h3>{e(translate(f'check.criterion.{criterion.id}', lang))}</h3>"]
        for finding in criterion.findings:
            parts.append(f'<div class="finding {finding.severity}">')
            parts.append(
                f'<p><span class="v {finding.severity}">'
                f"{e(_verdict_word(finding.severity, lang))}</span> {e(_t(finding.what, lang))} "
                f'<span class="small">({e(translate("check.report.count", lang))}: '
                f"{_count(finding.count, lang)})</span></p>"
            )
            if finding.fix is not None:
                parts.append(
                    f'<p class="fix"><b>{e(translate("check.report.fix", lang))}:</b> '
                    f"{e(_t(finding.fix, lang))}</p>"
                )
            for example in finding.examples:
                parts.append(
                    f'<p class="small">{e(translate("check.report.example", lang))}: '
                    f"<code>{e(example.source)}</code>, "
                    f"{e(translate('check.report.received_at', lang))} "
                    f"{e(_local(example.received_at))}</p><pre>{e(example.payload)}</pre>"
                )
            parts.append("</div>")
        sections.append("".join(parts))
    findings = (
        f"<h2>{e(translate('check.report.findings', lang))}</h2>{''.join(sections)}"
        if sections
        else f"<p>{e(translate('check.report.no_findings', lang))}</p>"
    )
    generated = translate(
        "check.report.generated", lang, time=_local(generated_at) if generated_at else "–"
    )
    title = translate("check.report.title", lang)
    return (
        f'<!DOCTYPE html>\n<html lang="{e(lang)}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} – {e(report.station_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(title)}</h1>"
        f'<p class="small">{e(generated)}</p>'
        f'<table class="meta">{meta}</table>'
        f'<div class="overall {report.verdict}">'
        f"<b>{e(translate('check.report.verdict', lang))}:</b> "
        f"{e(translate(f'check.overall.{report.verdict}', lang))}</div>"
        f"<table><tr><th>{e(translate('check.report.criterion', lang))}</th>"
        f"<th>{e(translate('check.report.result', lang))}</th>"
        f"<th>{e(translate('check.report.summary', lang))}</th></tr>{rows}</table>"
        f"{findings}"
        f'<p class="small">{e(translate("check.report.contract", lang))}</p>'
        "</body></html>\n"
    )


def render(report: Report, fmt: str, lang: str, *, color: bool = False, now: datetime) -> str:
    if fmt == "json":
        return render_json(report, lang)
    if fmt == "html":
        return render_html(report, lang, generated_at=now)
    if fmt == "table":
        return render_table(report, lang, color=color)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
