/*
 * Benchmark workload for the cpu family's memory: a program that maps many objects, as large
 * programs do (a Python with its extension modules, a browser, an LLVM tool), each of which
 * needs an unwind table in the profiler.
 *
 * Usage: dlopen DIR OBJECTS UNITS
 *   Loads DIR/libobj0.so .. DIR/libobj<OBJECTS-1>.so (RTLD_NOW), each defining obj_spin(x), a
 *   short loop the bench generates with other constants in every file (so every object is
 *   another build), then makes UNITS units of work, a unit being one call of every object's
 *   obj_spin in turn: the samples land in all of them.
 *
 * Protocol of the bench's workloads: it loads the objects, prints "ready objects=N", waits for
 * one byte on stdin (the harness attaches the profiler first), works, and prints
 *   calls=<units> ns_per_call=X cpu_ns_per_call=Y
 * over the span of the units (timing.h).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "timing.h"

typedef uint64_t (*spin_fn)(uint64_t);

static volatile uint64_t sink;

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR OBJECTS UNITS\n", argv[0]);
        return 2;
    }
    int objects = atoi(argv[2]);
    long units = atol(argv[3]);
    if (objects <= 0 || objects > 10000 || units <= 0)
        return 2;
    spin_fn *spins = calloc((size_t)objects, sizeof *spins);
    char path[4096];
    for (int i = 0; i < objects; i++) {
        snprintf(path, sizeof path, "%s/libobj%d.so", argv[1], i);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
            return 3;
        }
        spins[i] = (spin_fn)dlsym(h, "obj_spin");
        if (!spins[i]) {
            fprintf(stderr, "no obj_spin in %s\n", path);
            return 3;
        }
    }
    printf("ready objects=%d\n", objects);
    await_go();

    struct span span;
    span_start(&span);
    uint64_t x = 1;
    for (long u = 0; u < units; u++)
        for (int i = 0; i < objects; i++)
            x = spins[i](x);
    sink = x;
    span_print(&span, units);
    return 0;
}
