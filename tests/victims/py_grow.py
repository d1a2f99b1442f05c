"""The python family's allocation victim: a list that grows at one line.

    python3 py_grow.py N

Appends N pairs (i, 200 bytes) to a list at the line marked GROWS (the tuple,
the int and the bytes are pymalloc blocks made at that line, about 300 bytes an
item), then makes and drops N small lists at the line marked CHURN, then prints
"kept N" and exits.
"""

import sys


def grow(n):
    items = []
    for i in range(n):
        items.append((i, bytes(200)))  # GROWS
    return items


def churn(n):
    for i in range(n):
        t = [i, i]  # CHURN
        del t


kept = grow(int(sys.argv[1]))
churn(int(sys.argv[1]))
print(f"kept {len(kept)}", flush=True)
