"""Benchmarks: scripts that print their figures (``python -m benchmarks.NAME``)."""


def rss_gb(key: str = "VmRSS:") -> float:
    """This process's resident memory (or ``VmHWM:``, its peak) in GiB, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024**2
    return float("nan")
