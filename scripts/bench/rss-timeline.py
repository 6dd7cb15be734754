#!/usr/bin/env python3
"""A command's resident memory over time: VmRSS every 0.1 s until it exits.

    scripts/bench/rss-timeline.py COMMAND [ARGS...]

Prints `seconds:MiB` samples on one line, then the peak. The command's output goes to
/dev/null. Linux only (reads /proc/PID/status).
"""
import subprocess
import sys
import time

if len(sys.argv) < 2:
    sys.exit(__doc__)
start = time.time()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
samples = []
while child.poll() is None:
    try:
        with open(f"/proc/{child.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS"):
                    samples.append((time.time() - start, int(line.split()[1]) // 1024))
    except OSError:
        break
    time.sleep(0.1)
print(" ".join(f"{t:.1f}:{mib}" for t, mib in samples))
print(f"peak {max((mib for _, mib in samples), default=0)} MiB, exit {child.wait()}")
