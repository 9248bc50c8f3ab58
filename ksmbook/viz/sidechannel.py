"""Chapter 10's figures: probe latencies, the attacker's classifier, the signal per era.

``latency_figure(exp, threshold)`` is a histogram (log-spaced bins on a log axis) of
the attacker's readings for right guesses and wrong guesses, with the threshold as a
vertical line; ``roc_figure({label: exp})`` is the classifier's ROC curve per
defence; ``signal_figure(signals)`` the noise-free cost gap per kernel and probe.
Each has a text twin and a fixed list of traces (in-place updates).
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from .style import OKABE_ITO, base_layout

LO_NS, HI_NS = 5.0, 200_000.0     # the histogram's x range
BINS_PER_DECADE = 12
POS_STYLE = dict(color=OKABE_ITO["vermillion"], dash="solid", name="right guess (victim has it)")
NEG_STYLE = dict(color=OKABE_ITO["blue"], dash="dash", name="wrong guess (one byte off)")
DECADES = ((0, 100), (100, 1_000), (1_000, 10_000), (10_000, math.inf))
DEFENCE_TITLES = {"none": "no defence", "ksm_off": "KSM off", "zero_only": "zero pages only",
                  "vusion": "VUsion-like same behaviour"}


def bin_edges() -> list[float]:
    n = round(math.log10(HI_NS / LO_NS) * BINS_PER_DECADE)
    return [LO_NS * 10 ** (i / BINS_PER_DECADE) for i in range(n + 1)]


def counts(values, edges) -> list[int]:
    """How many values fall in each [edges[i], edges[i+1]); outside values are clamped."""
    out = [0] * (len(edges) - 1)
    for v in values:
        i = int(math.log10(max(v, LO_NS) / LO_NS) * BINS_PER_DECADE)
        out[min(max(i, 0), len(out) - 1)] += 1
    return out


def _steps(values, edges) -> tuple[list, list]:
    """x, y of a step outline of the histogram (for a filled, log-x step line)."""
    c = counts(values, edges)
    xs, ys = [edges[0]], [0]
    for i, n in enumerate(c):
        xs += [edges[i], edges[i + 1]]
        ys += [n, n]
    xs.append(edges[-1])
    ys.append(0)
    return xs, ys


def fmt_ns(ns: float) -> str:
    if ns >= 1000:
        return f"{ns / 1000:.3g} µs"
    return f"{ns:.3g} ns"


def latency_figure(exp, threshold: float, *, title: str | None = None,
                   width: int = 1000, height: int = 460) -> go.Figure:
    """Histogram of the attacker's readings, right vs wrong guesses, and the threshold."""
    edges = bin_edges()
    traces = []
    for positive, st, fill in ((False, NEG_STYLE, "rgba(0,114,178,0.18)"),
                               (True, POS_STYLE, "rgba(213,94,0,0.22)")):
        xs, ys = _steps(exp.measured(positive), edges)
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=st["name"], fill="tozeroy",
                                 fillcolor=fill, line=dict(color=st["color"], dash=st["dash"],
                                                          width=2.5, shape="linear"),
                                 hoverinfo="skip"))
    r = exp.rates(threshold)
    top = max([max(counts(exp.measured(p), edges) or [0]) for p in (True, False)] + [1])
    traces.append(go.Scatter(x=[threshold, threshold], y=[0, top * 1.12], mode="lines",
                             name="threshold", line=dict(color=OKABE_ITO["black"], width=2,
                                                         dash="dot"), hoverinfo="skip"))
    layout = base_layout(title or f"Attacker's {exp.probe} timings · Linux {exp.kernel} · "
                                  f"{DEFENCE_TITLES.get(exp.defence, exp.defence)}", width, height,
                         margin=dict(l=70, r=20, t=100, b=60))
    layout["legend"].update(y=1.02, x=0.0, xanchor="left")
    ticks = [10, 100, 1_000, 10_000, 100_000]
    layout["xaxis"] = dict(type="log", range=[math.log10(LO_NS), math.log10(HI_NS)],
                           tickvals=ticks, ticktext=[fmt_ns(t) for t in ticks],
                           title="measured latency of one probe (simulated ns, log scale)",
                           showgrid=True, gridcolor="#EEEEEE", fixedrange=True)
    layout["yaxis"] = dict(title="candidate pages", range=[0, top * 1.15], showgrid=True,
                           gridcolor="#EEEEEE", fixedrange=True, zeroline=False)
    layout["annotations"] = [dict(
        x=math.log10(threshold), y=top * 1.12, xref="x", yref="y", xanchor="left",
        yanchor="top", showarrow=False, align="left", bgcolor="rgba(255,255,255,0.85)",
        text=f"  ≥ {fmt_ns(threshold)}: called merged<br>  TPR {r.tpr:.1%} · FPR {r.fpr:.1%}",
        font=dict(size=13))]
    return go.Figure(data=traces, layout=layout)


def latency_text(exp, threshold: float) -> str:
    """The text twin: counts per decade for both classes, then the rates."""
    lines = [f"{exp.probe} probes · Linux {exp.kernel} · "
             f"{DEFENCE_TITLES.get(exp.defence, exp.defence)} · "
             f"{len(exp.probes)} candidates · {exp.repeats} round{'s' if exp.repeats > 1 else ''}"]
    lines.append(f"{'reading':<18}{'right guesses':>15}{'wrong guesses':>15}")
    for lo, hi in DECADES:
        name = f"{fmt_ns(lo)} – {fmt_ns(hi)}" if hi != math.inf else f"≥ {fmt_ns(lo)}"
        pos = sum(1 for v in exp.measured(True) if lo <= v < hi)
        neg = sum(1 for v in exp.measured(False) if lo <= v < hi)
        lines.append(f"{name:<18}{pos:>15}{neg:>15}")
    lines.append(str(exp.rates(threshold)))
    return "\n".join(lines)


ROC_STYLE = (
    (OKABE_ITO["vermillion"], "solid", "circle"),
    (OKABE_ITO["blue"], "dash", "square"),
    (OKABE_ITO["green"], "dot", "diamond"),
    (OKABE_ITO["purple"], "dashdot", "triangle-up"),
    (OKABE_ITO["orange"], "longdash", "x"),
)


def roc_points(exp) -> tuple[list[float], list[float]]:
    pts = sorted({(r.fpr, r.tpr) for r in exp.roc()})
    return [p[0] for p in pts], [p[1] for p in pts]


def roc_figure(experiments: dict, *, title: str | None = None, width: int = 640,
               height: int = 560) -> go.Figure:
    """ROC curve (TPR against FPR over all thresholds) of each labelled experiment."""
    traces = [go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="a coin (no signal)",
                         line=dict(color=OKABE_ITO["grey"], dash="dot", width=1.5),
                         hoverinfo="skip")]
    for i, (label, exp) in enumerate(experiments.items()):
        colour, dash, symbol = ROC_STYLE[i % len(ROC_STYLE)]
        xs, ys = roc_points(exp)
        traces.append(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"{label} (AUC {exp.auc():.2f})",
            line=dict(color=colour, dash=dash, width=3, shape="hv"),
            marker=dict(symbol=symbol, size=7, color=colour, maxdisplayed=12),
            hovertemplate="FPR %{x:.1%} · TPR %{y:.1%}<extra>" + label + "</extra>"))
    layout = base_layout(title or "The attacker's classifier, every threshold", width, height,
                         margin=dict(l=70, r=20, t=60, b=60))
    layout["legend"].update(orientation="v", y=0.03, yanchor="bottom", x=0.98, xanchor="right",
                            bgcolor="rgba(255,255,255,0.9)", bordercolor="#CCCCCC", borderwidth=1)
    layout["xaxis"] = dict(title="false positive rate (wrong guess called merged)",
                           range=[-0.02, 1.02], tickformat=".0%", showgrid=True,
                           gridcolor="#EEEEEE", fixedrange=True, zeroline=False,
                           constrain="domain")
    # square, by shrinking the wider side's domain: with the range free to grow (the
    # default), the x axis ran to ~115% on a plot area wider than tall
    layout["yaxis"] = dict(title="true positive rate (right guess found)", range=[-0.02, 1.02],
                           tickformat=".0%", showgrid=True, gridcolor="#EEEEEE",
                           fixedrange=True, zeroline=False, scaleanchor="x", scaleratio=1,
                           constrain="domain")
    return go.Figure(data=traces, layout=layout)


def roc_text(experiments: dict) -> str:
    """The text twin: per experiment, the AUC and the best threshold's rates."""
    # at most 76 characters a line (an 800 px window): the best threshold's rates go
    # on a second line, under their column, when they do not fit
    w = max([len(label) for label in experiments] + [len("setting")])
    lines = [f"{'setting':<{w}} {'AUC':>5}  best threshold (largest TPR - FPR)"]
    for label, exp in experiments.items():
        best = str(exp.best())
        first, _, rest = best.partition(", ")
        if w + 8 + len(best) <= 76 or not rest:
            lines.append(f"{label:<{w}} {exp.auc():>5.2f}  {best}")
        else:
            lines += [f"{label:<{w}} {exp.auc():>5.2f}  {first},", f"{'':<{w + 8}}{rest}"]
    return "\n".join(lines)


def _bar_label(s) -> str:
    """Two short lines, no wider than a bar at an 800 px window (one line ran into
    the neighbouring group's label)."""
    exits = s.merged_exits
    return f"{s.gap_ns:,} ns<br>{exits} exit{'s' if exits != 1 else ''}"


def signal_figure(signals, *, title: str | None = None, width: int = 820,
                  height: int = 420) -> go.Figure:
    """Bars: merged minus unmerged cost of a probe, per kernel, for writes and reads."""
    kernels = list(dict.fromkeys(s.kernel for s in signals))
    traces = []
    for probe, colour, pattern in (("write", OKABE_ITO["vermillion"], ""),
                                   ("read", OKABE_ITO["blue"], "/")):
        by_k = {s.kernel: s for s in signals if s.probe == probe}
        ys = [by_k[k].gap_ns if k in by_k else None for k in kernels]
        traces.append(go.Bar(
            x=[f"Linux {k}" for k in kernels], y=ys, name=f"{probe} probe",
            marker=dict(color=colour, pattern=dict(shape=pattern, fillmode="overlay",
                                                   fgcolor="#FFFFFF", fgopacity=0.6)),
            text=[_bar_label(by_k[k]) if k in by_k else "" for k in kernels],
            textposition="outside", cliponaxis=False, textangle=0, constraintext="none",
            textfont=dict(size=13),
            hovertemplate="%{x}: %{y} ns more when merged<extra>" + probe + "</extra>"))
    top = max([s.gap_ns for s in signals] + [1])
    layout = base_layout(title or "The signal: extra cost of probing a merged page (no noise)",
                         width, height, margin=dict(l=80, r=20, t=90, b=50), barmode="group")
    layout["legend"].update(y=1.02, x=0.0, xanchor="left")
    layout["yaxis"] = dict(title="merged − unmerged (simulated ns)", range=[0, top * 1.3],
                           showgrid=True, gridcolor="#EEEEEE", fixedrange=True)
    layout["xaxis"] = dict(fixedrange=True)
    return go.Figure(data=traces, layout=layout)


def signal_text(signals) -> str:
    lines = [f"{'kernel':<8}{'probe':<7}{'merged':>10}{'unmerged':>10}{'gap':>9}{'exits':>7}"]
    for s in signals:
        lines.append(f"{s.kernel:<8}{s.probe:<7}{s.merged_ns:>8} ns{s.unmerged_ns:>7} ns"
                     f"{s.gap_ns:>6} ns{s.merged_exits:>4} vs {s.unmerged_exits}")
    return "\n".join(lines)
