"""How many CPU threads each run gets when several share one allocation: one rule for the launch layer's tasks
and for the bench's packed processes, which time runs packed as a task packs them."""
from __future__ import annotations

import os
from collections.abc import Mapping


def threads_per_run(runs: int, environ: Mapping[str, str]) -> int:
    """CPU threads for each of `runs` runs sharing this allocation ($SLURM_CPUS_PER_TASK, else every core)."""
    cpus = int(environ.get("SLURM_CPUS_PER_TASK") or os.cpu_count() or 1)
    return max(1, cpus // runs)
