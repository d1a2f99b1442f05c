/*
 * The start and timed span of the bench's newer workloads (cpu.c, dlopen.c): its wall time
 * (CLOCK_MONOTONIC) and the process's CPU time (getrusage RUSAGE_SELF: user + system, all
 * threads), and the result line the harness reads:
 *   calls=<units> ns_per_call=X cpu_ns_per_call=Y
 * X and Y are the wall and CPU time of the span over the units.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* After the ready line: waits for the harness's byte on stdin (it attaches its tracer first). */
static inline void await_go(void)
{
    char go;
    fflush(stdout);
    if (read(0, &go, 1) != 1)
        exit(3);
}

struct span {
    struct timespec wall;
    struct rusage usage;
};

static inline void span_start(struct span *s)
{
    getrusage(RUSAGE_SELF, &s->usage);
    clock_gettime(CLOCK_MONOTONIC, &s->wall);
}

static inline double span_tv_ns(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_usec - a->tv_usec) * 1e3;
}

/* Ends the span begun by span_start and prints the result line for `units` units. */
static inline void span_print(const struct span *s, long units)
{
    struct span e;
    clock_gettime(CLOCK_MONOTONIC, &e.wall);
    getrusage(RUSAGE_SELF, &e.usage);
    double ns = (double)(e.wall.tv_sec - s->wall.tv_sec) * 1e9 +
                (double)(e.wall.tv_nsec - s->wall.tv_nsec);
    double cpu = span_tv_ns(&s->usage.ru_utime, &e.usage.ru_utime) +
                 span_tv_ns(&s->usage.ru_stime, &e.usage.ru_stime);
    printf("calls=%ld ns_per_call=%.3f cpu_ns_per_call=%.3f\n", units, ns / (double)units,
           cpu / (double)units);
    fflush(stdout);
}
