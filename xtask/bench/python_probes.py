"""The python benchmark's probe workload: one operation the python family probes, per unit.

    python3 python_probes.py MODE UNITS

MODE raise: each unit raises a KeyError and catches it (one `_PyErr_SetObject`).
MODE alloc: each unit makes an object and drops it (one `PyObject_Malloc`, one
`PyObject_Free`). The harness's protocol: prints "ready addr=0x0", waits for a
byte on stdin, runs the units, prints "calls=UNITS ns_per_call=X
cpu_ns_per_call=Y".
"""

import os
import resource
import sys
import time


def raising(units):
    table = {}
    for _ in range(units):
        try:
            table["missing"]
        except KeyError:
            pass


def allocating(units):
    for _ in range(units):
        object()


def cpu_ns():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1e9


def main(mode, units):
    work = raising if mode == "raise" else allocating
    print("ready addr=0x0", flush=True)
    os.read(0, 1)
    wall, cpu = time.perf_counter_ns(), cpu_ns()
    work(units)
    wall, cpu = time.perf_counter_ns() - wall, cpu_ns() - cpu
    print(
        f"calls={units} ns_per_call={wall / units:.3f} cpu_ns_per_call={cpu / units:.3f}",
        flush=True,
    )


main(sys.argv[1], int(sys.argv[2]))
