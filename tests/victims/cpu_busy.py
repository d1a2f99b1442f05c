"""The cpu family's Python victim: the main thread busy in outer() -> inner().

    python3 cpu_busy.py [--wait] [MS]

Calls outer(), which calls inner(), a loop of integer arithmetic of half a
millisecond, until MS ms (default 2000) of wall time have passed, at least once.
Prints "cycles N" (calls of outer) and "busy_seconds S" (the thread's CPU time
over them) when done. With --wait, as the C victims: "ready", a line on stdin,
the cycles, "done", one more line (or end of file), exit.
"""

import sys
import time


def inner(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def outer(n):
    return inner(n) + 1


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
    start = time.thread_time()
    end = time.monotonic() + ms / 1000
    cycles = 0
    while True:
        outer(10000)
        cycles += 1
        if time.monotonic() >= end:
            break
    say(f"cycles {cycles}")
    say(f"busy_seconds {time.thread_time() - start:.6f}")
    if wait:
        say("done")
        sys.stdin.readline()


if __name__ == "__main__":
    main(sys.argv[1:])
