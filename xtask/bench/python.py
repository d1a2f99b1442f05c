"""The python benchmark's workload: a CPython program whose time splits between two Python
functions at different depths in a known proportion.

    python3 python.py UNITS

Each unit calls outer(), which calls middle() -> hot() (7 parts of a loop of integer
arithmetic) and then cold() (3 parts): hot has 70% of the loop, cold 30%. The harness's
protocol: prints "ready addr=0x0", waits for a byte on stdin, runs the units, prints
"calls=UNITS ns_per_call=X cpu_ns_per_call=Y" (wall and CPU time of the span per unit).
"""

import os
import resource
import sys
import time

PART = 300


def spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def hot():
    return spin(7 * PART)


def middle():
    return hot() + 1


def cold():
    return spin(3 * PART)


def outer():
    return middle() + cold()


def cpu_ns():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e9


def main(units):
    print("ready addr=0x0", flush=True)
    os.read(0, 1)
    wall, cpu = time.perf_counter_ns(), cpu_ns()
    for _ in range(units):
        outer()
    wall, cpu = time.perf_counter_ns() - wall, cpu_ns() - cpu
    print(
        f"calls={units} ns_per_call={wall / units:.3f} cpu_ns_per_call={cpu / units:.3f}",
        flush=True,
    )


main(int(sys.argv[1]))
