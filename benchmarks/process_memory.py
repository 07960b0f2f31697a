"""Peak resident memory of this process image, for benchmarks and memory tests.

`getrusage().ru_maxrss` is kept across `execve`, so a child started by `subprocess` from a large parent (a test
session, a benchmark driver) reports at least the parent's peak. Linux's `VmHWM` in /proc/self/status belongs to
the address space, which `execve` replaces, so it measures the child alone.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since its last exec (VmHWM); ru_maxrss where /proc is missing."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
