"""A one-page HTML report of a bake-off run for readers who do not open the warehouse.

Self-contained: inline CSS and inline SVG charts, no scripts, no external fonts or images, so it can be mailed,
attached to a ticket or opened from S3. The page is the Jinja2 template ``templates/report.html.j2`` (autoescaped:
approach names, errors, notes and every other value are HTML-escaped); the SVG charts are built here, their text
escaped with :func:`html.escape`, and passed to the template as :class:`markupsafe.Markup`. Jinja2 is imported
when a report is rendered, not at DAG parse time. Renders with any subset of the approaches and without judge
scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailor.cost import APPROACHES
from tailor.metrics.agreement import reading
from tailor.summary import DISPLAY_NAMES, TABLE_HEADER, ApproachSummary, fmt, fmt_ci, fmt_usd, table_cells

if TYPE_CHECKING:
    from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"
COLORS = {"rag": "#1f77b4", "finetune": "#d95f02", "hybrid": "#1b9e77"}
OTHER_COLOR = "#666666"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _name(summary: ApproachSummary) -> str:
    return DISPLAY_NAMES.get(summary.approach, summary.approach)


def _color(approach: str) -> str:
    return COLORS.get(approach, OTHER_COLOR)


def _num(value: float) -> str:
    """An SVG coordinate: short, no exponent."""
    return f"{value:.1f}"


# --- headline --------------------------------------------------------------------------------------------------


def headline(summaries: Sequence[ApproachSummary]) -> str:
    """The plain-text lead sentence(s): best approach by BERTScore and the cheapest per month."""
    if not summaries:
        return "No approach was evaluated in this run."
    parts = []
    ranked = sorted((s for s in summaries if s.bertscore_f1.mean is not None),
                    key=lambda s: s.bertscore_f1.mean or 0.0, reverse=True)  # fmt: skip
    if ranked:
        best = ranked[0]
        sentence = f"{_name(best)} has the best answer quality by BERTScore ({fmt_ci(best.bertscore_f1)})"
        if len(ranked) > 1:
            runner = ranked[1]
            b, r = best.bertscore_f1, runner.bertscore_f1
            if b.ci_low is not None and r.ci_high is not None and b.ci_low <= r.ci_high:
                sentence += (f", but its 95% interval overlaps {_name(runner)}'s ({fmt(r.mean)}), "
                             "so the lead is not conclusive")  # fmt: skip
            elif b.ci_low is None or r.ci_high is None:
                sentence += f", ahead of {_name(runner)} ({fmt(r.mean)}; too few scores for an interval)"
            else:
                sentence += f", clearly ahead of {_name(runner)} ({fmt(r.mean)})"
        parts.append(sentence + ".")
    else:
        parts.append("No approach produced a BERTScore in this run.")
    priced = [s for s in summaries if s.monthly_cost_usd is not None]
    if priced:
        cheapest = min(priced, key=lambda s: s.monthly_cost_usd)
        if ranked and cheapest.approach == ranked[0].approach:
            parts.append(f"It is also the cheapest, at about {fmt_usd(cheapest.monthly_cost_usd)} per month.")
        else:
            cost = fmt_usd(cheapest.monthly_cost_usd)
            parts.append(f"{_name(cheapest)} is the cheapest, at about {cost} per month.")
    cut = [f"{_name(s)} {s.n_truncated} of {s.n_truncation_known}" for s in summaries if s.n_truncated]
    if cut:
        parts.append(f"Answers cut at the token budget: {', '.join(cut)}.")
    failed = [_name(s) for s in summaries if s.status == "failed"]
    if failed:
        parts.append(f"Failed completely: {', '.join(failed)}.")
    missing = [DISPLAY_NAMES[a] for a in APPROACHES if a not in {s.approach for s in summaries}]
    if missing:
        parts.append(f"Not evaluated in this run: {', '.join(missing)}.")
    return " ".join(parts)


# --- SVG charts ------------------------------------------------------------------------------------------------


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover


def _linear_ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = _nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                ticks.append(value)
    return ticks


def _usd_tick(value: float) -> str:
    if value >= 1000:
        return f"${value / 1000:g}k"
    return f"${value:g}"


def scatter_svg(summaries: Sequence[ApproachSummary]) -> tuple[str, list[str]]:
    """Monthly cost (x, log) vs BERTScore (y) with 95% CI error bars; bubble area ~ median latency.

    Returns the SVG and the names of approaches that could not be plotted (no BERTScore or no positive cost).
    """
    plotted = [s for s in summaries if s.bertscore_f1.mean is not None and (s.monthly_cost_usd or 0) > 0]
    skipped = [_name(s) for s in summaries if all(s is not p for p in plotted)]
    width, height = 640, 360
    left, right, top, bottom = 64, 110, 20, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    title = "Answer quality (BERTScore) against monthly cost; bubble area shows median latency"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
           f"<title>{_e(title)}</title>"]  # fmt: skip
    if not plotted:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
                   "No approach has both a BERTScore and a monthly cost to plot.</text></svg>")  # fmt: skip
        return "\n".join(out), skipped

    costs = [s.monthly_cost_usd for s in plotted]
    x_low = 10 ** math.floor(math.log10(min(costs)))
    x_high = 10 ** math.ceil(math.log10(max(costs)))
    if x_high <= x_low * 1.0001:
        x_high = x_low * 10
    y_values: list[float] = []
    for s in plotted:
        b = s.bertscore_f1
        y_values += [v for v in (b.mean, b.ci_low, b.ci_high) if v is not None]
    y_low, y_high = min(y_values), max(y_values)
    pad = max((y_high - y_low) * 0.15, 0.02)
    y_low, y_high = y_low - pad, y_high + pad

    def x_of(cost: float) -> float:
        return left + (math.log10(cost) - math.log10(x_low)) / (math.log10(x_high) - math.log10(x_low)) * plot_w

    def y_of(score: float) -> float:
        return top + (y_high - score) / (y_high - y_low) * plot_h

    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fcfcfc" stroke="#ccc"/>')
    for tick in _log_ticks(x_low, x_high):
        tick_x = _num(x_of(tick))
        out.append(f'<line x1="{tick_x}" y1="{top}" x2="{tick_x}" y2="{top + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{tick_x}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" fill="#555">'
                   f"{_e(_usd_tick(tick))}</text>")  # fmt: skip
    for tick in _linear_ticks(y_low, y_high):
        tick_y = _num(y_of(tick))
        out.append(f'<line x1="{left}" y1="{tick_y}" x2="{left + plot_w}" y2="{tick_y}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{tick_y}" dy="4" text-anchor="end" font-size="11" fill="#555">'
                   f"{tick:.2f}</text>")  # fmt: skip
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle" font-size="12" fill="#333">'
               "Monthly cost, USD (log scale)</text>")  # fmt: skip
    out.append(f'<text x="14" y="{top + plot_h / 2}" text-anchor="middle" font-size="12" fill="#333" '
               f'transform="rotate(-90 14 {top + plot_h / 2})">BERTScore F1 (95% CI)</text>')  # fmt: skip

    p50s = [s.latency_p50_ms for s in plotted if s.latency_p50_ms is not None]
    max_p50 = max(p50s) if p50s else None
    for s in plotted:
        b, color = s.bertscore_f1, _color(s.approach)
        x, y = x_of(s.monthly_cost_usd), y_of(b.mean if b.mean is not None else y_low)
        radius = 6.0
        if s.latency_p50_ms is not None and max_p50:
            radius = 6 + 16 * math.sqrt(s.latency_p50_ms / max_p50)
        if b.ci_low is not None and b.ci_high is not None:
            y1, y2 = _num(y_of(b.ci_low)), _num(y_of(b.ci_high))
            out.append(f'<line x1="{_num(x)}" y1="{y1}" x2="{_num(x)}" y2="{y2}" stroke="{color}" stroke-width="2"/>')
            for cap in (y1, y2):
                out.append(f'<line x1="{_num(x - 6)}" y1="{cap}" x2="{_num(x + 6)}" y2="{cap}" '
                           f'stroke="{color}" stroke-width="2"/>')  # fmt: skip
        latency = "n/a" if s.latency_p50_ms is None else f"{s.latency_p50_ms / 1000:.2f} s"
        tip = (f"{_name(s)}: BERTScore {fmt_ci(b)}, {fmt_usd(s.monthly_cost_usd)}/month, "
               f"median latency {latency}")  # fmt: skip
        out.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(radius)}" fill="{color}" fill-opacity="0.35" '
                   f'stroke="{color}" stroke-width="1.5"><title>{_e(tip)}</title></circle>')  # fmt: skip
        out.append(f'<text x="{_num(x + radius + 4)}" y="{_num(y)}" dy="4" font-size="12" fill="{color}" '
                   f'font-weight="600">{_e(_name(s))}</text>')  # fmt: skip
        out.append(f'<text x="{_num(x + radius + 4)}" y="{_num(y + 14)}" font-size="10" fill="#555">'
                   f"p50 {_e(latency)}</text>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out), skipped


def bar_svg(title: str, summaries: Sequence[ApproachSummary], value: Callable[[ApproachSummary], float | None],
            label: Callable[[float], str], fixed_max: float | None = None) -> str:
    """A small horizontal bar chart, one bar per approach; 'n/a' where the value is missing."""
    width, bar_h, gap, top, name_w, value_w = 300, 18, 8, 26, 86, 64
    height = top + len(summaries) * (bar_h + gap) + 4
    track = width - name_w - value_w
    values = [value(s) for s in summaries]
    present = [v for v in values if v is not None]
    scale = fixed_max if fixed_max is not None else max([abs(v) for v in present] or [0.0])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
           f"<title>{_e(title)}</title>",
           f'<text x="0" y="14" font-size="12" font-weight="600" fill="#333">{_e(title)}</text>']  # fmt: skip
    for i, (s, v) in enumerate(zip(summaries, values, strict=True)):
        y = top + i * (bar_h + gap)
        out.append(f'<text x="{name_w - 6}" y="{y + bar_h - 5}" text-anchor="end" font-size="11" fill="#333">'
                   f"{_e(_name(s))}</text>")  # fmt: skip
        out.append(f'<rect x="{name_w}" y="{y}" width="{track}" height="{bar_h}" fill="#f1f1f1"/>')
        if v is None:
            text = "n/a"
        else:
            length = 0.0 if scale <= 0 else min(max(v, 0.0) / scale, 1.0) * track
            out.append(f'<rect x="{name_w}" y="{y}" width="{_num(length)}" height="{bar_h}" '
                       f'fill="{_color(s.approach)}"/>')  # fmt: skip
            text = label(v)
        out.append(f'<text x="{name_w + track + 6}" y="{y + bar_h - 5}" font-size="11" fill="#333">'
                   f"{_e(text)}</text>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)


def bar_charts(summaries: Sequence[ApproachSummary]) -> list[str]:
    """The small multiples: quality scores on a fixed 0-1 axis, latency and cost on their own axes."""
    charts = [bar_svg("BERTScore F1", summaries, lambda s: s.bertscore_f1.mean, lambda v: f"{v:.3f}", 1.0)]
    if any(s.judge_score.mean is not None for s in summaries):
        charts.append(bar_svg("LLM-judge score", summaries, lambda s: s.judge_score.mean, lambda v: f"{v:.3f}", 1.0))
    charts.append(bar_svg("Key-fact match", summaries, lambda s: s.key_fact_match.mean, lambda v: f"{v:.3f}", 1.0))
    if any(s.retrieval_hit_rate is not None for s in summaries):
        charts.append(bar_svg("Retrieval hit rate", summaries, lambda s: s.retrieval_hit_rate,
                              lambda v: f"{v:.0%}", 1.0))  # fmt: skip
    charts.append(bar_svg("Median latency (s)", summaries,
                          lambda s: None if s.latency_p50_ms is None else s.latency_p50_ms / 1000,
                          lambda v: f"{v:.2f} s"))  # fmt: skip
    charts.append(bar_svg("Monthly cost (USD)", summaries, lambda s: s.monthly_cost_usd, fmt_usd))
    return charts


# --- the page --------------------------------------------------------------------------------------------------


def _rows(summaries: Sequence[ApproachSummary]) -> list[dict[str, Any]]:
    """The summary table's rows: swatch colour, name, the middle cells (as text) and the status."""
    rows = []
    for s in summaries:
        cells = table_cells(s)
        rows.append({"color": _color(s.approach), "name": cells[0], "status": s.status, "status_text": cells[-1],
                     "cells": [*cells[1:-1], s.n, fmt_usd(s.run_cost_usd)]})
    return rows


def _markup(svg: str) -> Markup:
    """An SVG chart built above (its text already escaped) as safe markup for the autoescaping template."""
    from markupsafe import Markup

    return Markup(svg)  # every value in the SVG went through _e


def render_report(
    summaries: Sequence[ApproachSummary],
    *,
    run_id: str,
    dataset_version: str | None,
    generated_at: datetime | str,
    notes: Sequence[str],
    paired: Sequence[Mapping[str, Any]] = (),
    agreement: Mapping[str, float | None] | None = None,
    calibration: Mapping[str, Any] | None = None,
    records: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The whole HTML page (a string); write it with ``encoding="utf-8"``.

    ``paired``: :class:`tailor.metrics.paired.PairedComparison` rows (the verdict between approaches, question by
    question); ``agreement``: Krippendorff's alpha across the judges per criterion and ``overall``; ``calibration``:
    each judge against the golden set's human scores (:func:`tailor.golden.calibration`); ``records``: the judged
    per-sample records, shown question by question (:func:`drilldown`)."""
    import jinja2
    from markupsafe import Markup


    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        # the same entities as html.escape(quote=True) (markupsafe writes &#39; for a quote, html.escape &#x27;)
        finalize=lambda value: value if isinstance(value, Markup) else Markup(escape(str(value), quote=True)),
    )
    when = generated_at.isoformat(timespec="seconds") if isinstance(generated_at, datetime) else str(generated_at)
    scatter, skipped = scatter_svg(summaries)
    return environment.get_template("report.html.j2").render(
        run_id=run_id,
        dataset_version=dataset_version,
        generated_at=when,
        headline=headline(summaries),
        header=[*TABLE_HEADER[:-1], "n", "run $", TABLE_HEADER[-1]],
        rows=_rows(summaries),
        windowed=[f"{_name(s)} {s.n_bertscore_windowed} of {s.n_scored}" for s in summaries if s.n_bertscore_windowed],
        scatter=_markup(scatter),
        skipped=skipped,
        judged=any(s.judge_score.mean is not None for s in summaries),
        charts=[_markup(chart) for chart in bar_charts(summaries)],
        problems=[{"name": _name(s), "n_errors": s.n_errors, "n": s.n, "status": s.status,
                   "first_error": s.first_error} for s in summaries if s.first_error],
        notes=list(notes),
        paired=[{"metric": c["metric"], "pair": f"{c['approach_a']} vs {c['approach_b']}", "n": c["n"],
                 "diff": _diff(c), "p": "n/a" if c["p_holm"] is None else f"{c['p_holm']:.3g}",
                 "significant": c["significant"], "verdict": c["verdict"]} for c in paired],
        agreement=[{"criterion": name, "alpha": "n/a" if alpha is None else f"{alpha:.3f}", "reading": reading(alpha)}
                   for name, alpha in (agreement or {}).items()],
        calibration=_calibration_rows(calibration),
        golden_items=(calibration or {}).get("golden_items"),
        drilldown=drilldown(records),
        drilldown_total=len({str(r["sample_id"]) for r in records}),
        disagreement=DISAGREEMENT,
    )


DISAGREEMENT = 0.25  # judges whose scores of one answer spread more than this are flagged
DRILLDOWN_LIMIT = 500  # questions shown per report (a bigger run links its judged.jsonl instead)


def drilldown(records: Sequence[Mapping[str, Any]], limit: int = DRILLDOWN_LIMIT) -> list[dict[str, Any]]:
    """One row per question (first ``limit``, in sample order): each approach's answer with its retrieved chunks,
    key facts found and missing, each judge's score and rationale, and the flags worth a look (error, truncated,
    judges disagreeing by more than :data:`DISAGREEMENT`)."""
    from tailor.metrics.facts import fact_coverage

    by_sample: dict[str, dict[str, Any]] = {}
    for record in records:
        row = by_sample.setdefault(str(record["sample_id"]), {
            "sample_id": str(record["sample_id"]), "question": record["question"], "reference": record["reference"],
            "product": record.get("product_name") or "", "answers": []})
        judgements = record.get("judgements") or []
        scores = [_mean_score(j) for j in judgements]
        present = [s for s in scores if s is not None]
        spread = max(present) - min(present) if len(present) >= 2 else None
        found, missing = fact_coverage(record.get("answer") or "", record["reference"])
        flags = (["error"] if record.get("error") else []) + (["truncated"] if record.get("truncated") else []) + (
            ["judges disagree"] if spread is not None and spread > DISAGREEMENT else [])
        row["answers"].append({
            "approach": _name_of(str(record["approach"])), "answer": record.get("answer") or "",
            "error": record.get("error"), "judge": record.get("judge_score"), "bert": record.get("bertscore_f1"),
            "found": found, "missing": missing, "flags": flags, "spread": spread,
            "retrieved": [{"product": c.get("product_name") or "?", "text": (c.get("text") or "")[:300]}
                          for c in record.get("retrieved") or []],
            "judges": [{"model": _judgement(j)["judge_model"], "score": s, "rationale": _judgement(j)["rationale"],
                        "error": _judgement(j)["error"]} for j, s in zip(judgements, scores, strict=True)]})
    rows = list(by_sample.values())[:limit]
    for row in rows:
        judged = [a["judge"] for a in row["answers"] if a["judge"] is not None]
        row["lowest"] = min(judged) if judged else None
        row["spread"] = max((a["spread"] or 0.0 for a in row["answers"]), default=0.0)
        row["flags"] = sorted({f for a in row["answers"] for f in a["flags"]})
    return rows


def _judgement(judgement: Any) -> Mapping[str, Any]:
    return judgement if isinstance(judgement, Mapping) else judgement.to_json()


def _mean_score(judgement: Any) -> float | None:
    present = [v for v in _judgement(judgement)["scores"].values() if v is not None]
    return math.fsum(present) / len(present) if present else None


def _name_of(approach: str) -> str:
    return DISPLAY_NAMES.get(approach, approach)


def _calibration_rows(calibration: Mapping[str, Any] | None) -> list[dict[str, str]]:
    rows = []
    for judge, found in sorted(((calibration or {}).get("judges") or {}).items()):
        overall = found["overall"]
        cells = {c: "n/a" if a["alpha"] is None else f"{a['alpha']:.2f}" for c, a in found["criteria"].items()}
        rows.append({"judge": judge, "alpha": "n/a" if overall["alpha"] is None else f"{overall['alpha']:.3f}",
                     "mae": "n/a" if overall["mae"] is None else f"{overall['mae']:.3f}", "n": str(overall["n"]),
                     "criteria": ", ".join(f"{c} {v}" for c, v in cells.items()),
                     "reading": reading(overall["alpha"])})
    return rows


def _diff(c: Mapping[str, Any]) -> str:
    if c["mean_diff"] is None:
        return "n/a"
    if c["ci95_low"] is None:
        return f"{c['mean_diff']:+.3f}"
    return f"{c['mean_diff']:+.3f} [{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}]"
