"""`peak_rss_bytes` measures the calling process image alone, not the parent that started it."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.process_memory import peak_rss_bytes

CHILD = (
    "import sys\n"
    "from benchmarks.process_memory import peak_rss_bytes\n"
    "block = bytearray(int(sys.argv[1]) * 2**20)  # zero-filled: every page touched\n"
    "print(peak_rss_bytes())\n"
)


def child_peak_mib(alloc_mib: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(alloc_mib)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 2**20


def test_child_peak_is_its_own_not_the_parents():
    parent_block = bytearray(800 * 2**20)  # the parent now holds 800 MiB more
    assert peak_rss_bytes() >= 800 * 2**20
    small, large = child_peak_mib(8), child_peak_mib(300)
    assert small < 400, f"a child holding 8 MiB reported {small:.0f} MiB: the parent's peak leaked in"
    assert large >= 300 and large - small >= 250, (small, large)
    del parent_block
