/*
 * Benchmark workload: calls bench_traced() N times in a timed loop.
 *
 * Usage: calls N
 * Prints "ready addr=<address of bench_traced>", waits for one byte on stdin (the harness
 * attaches a tracer first), runs the loop, and prints "calls=N ns_per_call=X" where X is the
 * loop's own time (CLOCK_MONOTONIC around the loop only) over N.
 *
 * Variants, chosen at build time:
 *   (default)  non-leaf: bench_traced calls bench_helper, so it saves a register first
 *              (-fcf-protection=full: endbr64; push rbx / none: push rbx);
 *   -DLEAF     leaf: endbr64; lea ... (nothing the kernel emulates after endbr64).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile long bench_sink;

__attribute__((noipa)) long bench_helper(long x) { return x ^ (x >> 3); }

#ifdef LEAF
__attribute__((noipa)) long bench_traced(long x) { return x * 3 + 1; }
#else
__attribute__((noipa)) long bench_traced(long x) { return bench_helper(x) + x; }
#endif

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CALLS\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    printf("ready addr=%p\n", (void *)bench_traced);
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1)
        return 3;

    struct timespec t0, t1;
    long acc = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        acc += bench_traced(i);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    bench_sink = acc;

    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("calls=%ld ns_per_call=%.3f\n", n, ns / (double)n);
    fflush(stdout);
    return 0;
}
