/*
 * Benchmark workload for the cpu family: CPU-bound threads whose time is split between
 * functions at different depths in a proportion fixed by the code, so that a sampler's shares
 * can be checked against it, and which times its own work, so that the sampler's cost shows as
 * a slowdown. Built -O2 -fomit-frame-pointer -g: a frame-pointer walk cannot cross its frames,
 * an unwinder reading the DWARF call frame information can.
 *
 * Usage: cpu UNITS THREADS
 *   THREADS threads (the main thread and THREADS - 1 created ones) each do UNITS units of work.
 *   A unit is one call of unit(): SPLIT_* below give the iterations of the same mixing loop
 *   each function runs itself, so their shares of the CPU time are those of the iterations:
 *
 *     worker                                  (loop only)
 *       unit                        self 10%  total 100%
 *         leaf_shallow              self 30%  total 30%
 *         outer                     self 10%  total 60%
 *           middle                  self 10%  total 50%
 *             descend x DESCEND     self ~0   total 40%  (recursion: a deeper stack)
 *               leaf_deep           self 40%  total 40%
 *
 *   The deepest stack is, outermost first, _start, __libc_start_main..., main, worker, unit,
 *   outer, middle, 8 x descend, leaf_deep in the main thread, and clone3, start_thread,
 *   thread_main, worker, ... in the others.
 *
 * Protocol of the bench's workloads: the threads are created first and wait at a barrier; it
 * prints "ready threads=N", waits for one byte on stdin (the harness attaches the sampler
 * first), releases the threads, works in the main thread too, joins the others, and prints
 *   calls=<units> ns_per_call=X cpu_ns_per_call=Y
 * over the span from the release to the last join (timing.h), all threads' units.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "timing.h"

#define NOIPA __attribute__((noipa))

/* Iterations of the mixing loop per unit, by function: the split in the comment above. */
#define SPLIT_UNIT 2000
#define SPLIT_SHALLOW 6000
#define SPLIT_OUTER 2000
#define SPLIT_MIDDLE 2000
#define SPLIT_DEEP 8000
#define DESCEND 8

static long units;
static pthread_barrier_t start;
static volatile uint64_t sink;

/* A dependent chain of a multiply, an add and a shift per iteration, expanded in each function
 * (a macro, not an inline function, so that no inlined frame stands between a sample and the
 * function it is in): the same code, so the same time per iteration, everywhere. */
#define MIX(x, n)                                                                          \
    do {                                                                                   \
        for (long i_ = 0; i_ < (n); i_++) {                                                \
            (x) = (x) * 6364136223846793005ULL + 1442695040888963407ULL;                   \
            (x) ^= (x) >> 29;                                                              \
            __asm__ volatile("" : "+r"(x));                                                \
        }                                                                                  \
    } while (0)

NOIPA uint64_t leaf_shallow(uint64_t x)
{
    MIX(x, SPLIT_SHALLOW);
    return x;
}

NOIPA uint64_t leaf_deep(uint64_t x)
{
    MIX(x, SPLIT_DEEP);
    return x;
}

/* Recurses `depth` times before the deep leaf; the work after each call keeps it from being a
 * tail call. */
NOIPA uint64_t descend(uint64_t x, int depth)
{
    uint64_t r = depth > 0 ? descend(x + 1, depth - 1) : leaf_deep(x);
    return r ^ (uint64_t)depth;
}

NOIPA uint64_t middle(uint64_t x)
{
    MIX(x, SPLIT_MIDDLE);
    return descend(x, DESCEND - 1) + 1;
}

NOIPA uint64_t outer(uint64_t x)
{
    MIX(x, SPLIT_OUTER);
    return middle(x) + 1;
}

NOIPA uint64_t unit(uint64_t x)
{
    MIX(x, SPLIT_UNIT);
    x += leaf_shallow(x);
    return outer(x) + 1;
}

NOIPA void worker(uint64_t seed)
{
    uint64_t x = seed;
    for (long i = 0; i < units; i++)
        x = unit(x);
    sink = x;
}

static void *thread_main(void *arg)
{
    pthread_barrier_wait(&start);
    worker((uint64_t)(uintptr_t)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s UNITS THREADS\n", argv[0]);
        return 2;
    }
    units = atol(argv[1]);
    int threads = atoi(argv[2]);
    if (units <= 0 || threads <= 0 || threads > 64)
        return 2;
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (pthread_barrier_init(&start, NULL, (unsigned)threads) != 0)
        return 3;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&ids[t], NULL, thread_main, (void *)(uintptr_t)(t + 1)) != 0)
            return 3;
    printf("ready threads=%d\n", threads);
    await_go();

    struct span span;
    span_start(&span);
    pthread_barrier_wait(&start);
    worker(1);
    for (int t = 1; t < threads; t++)
        pthread_join(ids[t], NULL);
    span_print(&span, units * threads);
    return 0;
}
