"""Numbers as people read them, the same in status, tables, facts and captions."""
from __future__ import annotations

import math


def format_ppl(value: float | None) -> str:
    """Readable perplexities, diverged ones included (1e8, inf, nan)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "diverged" if math.isnan(value) else "inf"
    return f"{value:.3g}" if value >= 1e5 else f"{value:.2f}"


def format_seconds(seconds: float | None) -> str:
    """h:mm:ss; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
