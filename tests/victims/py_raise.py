"""The python family's exception victim.

    python3 py_raise.py [--wait] [--uncaught] [N]

Raises KeyError("missing") N times (default 10000) at one line, the line marked
RAISES below, and catches each. With --uncaught it then raises
ValueError("bad value 42") at the line marked UNCAUGHT and lets it end the
program (exit status 1). Prints "raised N" when the loop is done. With --wait,
as the C victims: "ready", a line on stdin, the raises, "done", one more line,
exit.
"""

import sys


def lookup(table, key):
    return table[key]  # RAISES


def fail():
    raise ValueError("bad value 42")  # UNCAUGHT


def say(line):
    print(line, flush=True)


def main(args):
    wait = "--wait" in args
    uncaught = "--uncaught" in args
    rest = [a for a in args if not a.startswith("--")]
    n = int(rest[0]) if rest else 10000
    if wait:
        say("ready")
        sys.stdin.readline()
    table = {"present": 1}
    raised = 0
    for _ in range(n):
        try:
            lookup(table, "missing")
        except KeyError:
            raised += 1
    say(f"raised {raised}")
    if wait:
        say("done")
        sys.stdin.readline()
    if uncaught:
        fail()


main(sys.argv[1:])
