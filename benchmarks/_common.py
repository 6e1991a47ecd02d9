"""What every benchmark script prints the same way."""

import os


def load_note() -> str:
    """The 1-minute load average: well above the core count means a neighbour shared the CPU,
    which shrinks multi-thread and multi-process gains more than single-thread ones."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
