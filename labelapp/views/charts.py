"""Small server-rendered SVG line charts for the console: no chart library, no CDN, no script."""

import math

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, PAD = 320, 140, 28


def _ticks(low: float, high: float) -> tuple[float, float]:
    """The axis range: the data's, widened around a constant series."""
    if low == high:
        pad = max(abs(low) * 0.1, 0.05)
        return low - pad, high + pad
    return low, high


def line_chart(title: str, points: list[tuple[float, float]]) -> SafeString:
    """An SVG chart of (x, y) points with its title and the y range; empty under two points."""
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if len(points) < 2:
        return SafeString("")
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = _ticks(min(xs), max(xs))
    y0, y1 = _ticks(min(ys), max(ys))

    def at(x: float, y: float) -> str:
        px = PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD)
        py = HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)
        return f"{px:.1f},{py:.1f}"

    path = " ".join(at(x, y) for x, y in points)
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="2"><title>{}: {}</title></circle>',
        ((*at(x, y).split(","), f"{x:g}", f"{y:.4g}") for x, y in points[-60:]),
    )
    return format_html(
        '<figure class="chart"><svg viewBox="0 0 {w} {h}" role="img" aria-label="{t}">'
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" class="axis"/>'
        '<line x1="{p}" y1="{p}" x2="{p}" y2="{b}" class="axis"/>'
        '<text x="2" y="{p}" class="tick">{ymax}</text>'
        '<text x="2" y="{b}" class="tick">{ymin}</text>'
        '<text x="{r}" y="{h}" class="tick" text-anchor="end">{xmax}</text>'
        '<polyline points="{path}" class="line"/>{dots}</svg>'
        "<figcaption>{t}</figcaption></figure>",
        w=WIDTH,
        h=HEIGHT - 4,
        t=title,
        p=PAD,
        b=HEIGHT - PAD,
        r=WIDTH - PAD,
        ymax=f"{y1:.3g}",
        ymin=f"{y0:.3g}",
        xmax=f"{x1:g}",
        path=path,
        dots=dots,
    )


# Per-step metrics worth a chart, in the order shown; others in a run's steps are ignored.
CHARTED = {
    "loss": "loss",
    "accuracy": "batch accuracy",
    "mean_reward": "mean reward",
    "kl": "KL to the start",
    "entropy": "entropy",
    "policy_loss": "policy loss",
    "value_loss": "value loss",
    "reward": "mean reward",
    "rewards/accuracies": "reward accuracy",
    "rewards/margins": "reward margin",
}


def run_charts(steps: list[dict]) -> list[SafeString]:
    """One chart per charted metric a run's steps carry, against the step number."""
    charts = []
    for key, title in CHARTED.items():
        points = [
            (float(s.get("step", i + 1)), float(s[key]))
            for i, s in enumerate(steps)
            if isinstance(s.get(key), int | float)
        ]
        chart = line_chart(title, points)
        if chart:
            charts.append(chart)
    return charts
