"""The python family's CPU victim: two Python functions at different depths.

    python3 py_split.py [--wait] [MS]

Each cycle calls outer(), which calls middle() -> hot() (a loop of 7 units of
integer arithmetic), then cold() (3 units), until MS ms (default 2000) of wall
time have passed, at least once. Prints "hot_seconds S" and "cold_seconds S":
the thread's CPU time spent in each. With --wait, as the C victims: "ready", a
line on stdin, the work, "done", one more line (or end of file), exit.
"""

import sys
import time

UNIT = 400


def spin(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def hot():
    return spin(7 * UNIT)


def middle():
    return hot() + 1


def cold():
    return spin(3 * UNIT)


def outer(spent):
    t0 = time.thread_time()
    middle()
    t1 = time.thread_time()
    cold()
    t2 = time.thread_time()
    spent[0] += t1 - t0
    spent[1] += t2 - t1


def say(line):
    print(line, flush=True)


def main(args):
    wait = bool(args) and args[0] == "--wait"
    if wait:
        args = args[1:]
    ms = int(args[0]) if args else 2000
    if wait:
        say("ready")
        sys.stdin.readline()
    spent = [0.0, 0.0]
    end = time.monotonic() + ms / 1000
    while True:
        outer(spent)
        if time.monotonic() >= end:
            break
    say(f"hot_seconds {spent[0]:.6f}")
    say(f"cold_seconds {spent[1]:.6f}")
    if wait:
        say("done")
        sys.stdin.readline()


main(sys.argv[1:])
