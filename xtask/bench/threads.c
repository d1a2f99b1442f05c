/*
 * Benchmark workload for the threads family: pairs of threads handing a turn back and forth,
 * so that nearly all of the program's time is context switches (and, in `cond` mode, pthread
 * lock calls): what a tracer's per-switch work costs shows at full strength.
 *
 * Usage: threads MODE ROUND_TRIPS PAIRS
 *   MODE cond: the pair shares a mutex and a condition variable and a turn flag; each side
 *              locks, waits for its turn, passes it, signals and unlocks (pthread_mutex_lock,
 *              pthread_cond_wait/signal, pthread_mutex_unlock: futex waits and wakes).
 *   MODE pipe: a byte goes round through two pipes (blocking read(2) and write(2)): switches
 *              with no lock calls and no futexes.
 * Each of the PAIRS pairs makes ROUND_TRIPS round trips (two handoffs each: on one CPU, two
 * switches at least).
 *
 * Protocol of the bench's workloads: the threads are created first and wait at a barrier; it
 * prints "ready addr=<address of pass_turn>", waits for one byte on stdin (the harness attaches
 * the tracer first), releases the threads, joins them, and prints
 *   calls=<round trips> ns_per_call=X cpu_ns_per_call=Y switches=S voluntary=V involuntary=I
 * X is the wall time (CLOCK_MONOTONIC) from the release to the last join, Y the process's CPU
 * time (user + system, all threads) over the same span, both over the round trips; S = V + I
 * are the context switches of all its threads over the span (getrusage RUSAGE_SELF, which
 * keeps the counts of threads that have exited).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

static long round_trips;
static int use_pipes;
static pthread_barrier_t start;

struct pair {
    pthread_mutex_t lock;
    pthread_cond_t turned;
    int turn;
    int to_b[2], to_a[2];
};

struct side {
    struct pair *pair;
    int me;
};

/* Waits for this side's turn, then gives the turn to the other side. */
NOIPA void pass_turn(struct pair *p, int me)
{
    if (use_pipes) {
        char c = 0;
        int in = me == 0 ? p->to_a[0] : p->to_b[0];
        int out = me == 0 ? p->to_b[1] : p->to_a[1];
        /* Side 0 starts: it writes first and reads the answer. */
        if (me == 0 && write(out, &c, 1) != 1)
            abort();
        if (read(in, &c, 1) != 1)
            abort();
        if (me == 1 && write(out, &c, 1) != 1)
            abort();
        return;
    }
    pthread_mutex_lock(&p->lock);
    while (p->turn != me)
        pthread_cond_wait(&p->turned, &p->lock);
    p->turn = !me;
    pthread_cond_signal(&p->turned);
    pthread_mutex_unlock(&p->lock);
}

static void *run(void *arg)
{
    struct side *s = arg;
    pthread_barrier_wait(&start);
    for (long i = 0; i < round_trips; i++)
        pass_turn(s->pair, s->me);
    return NULL;
}

static double ns_between(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_usec - a->tv_usec) * 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[1], "cond") != 0 && strcmp(argv[1], "pipe") != 0)) {
        fprintf(stderr, "usage: %s cond|pipe ROUND_TRIPS PAIRS\n", argv[0]);
        return 2;
    }
    use_pipes = strcmp(argv[1], "pipe") == 0;
    round_trips = atol(argv[2]);
    int pairs = atoi(argv[3]);
    if (round_trips <= 0 || pairs <= 0 || pairs > 32)
        return 2;
    struct pair *ps = calloc((size_t)pairs, sizeof *ps);
    struct side *sides = calloc((size_t)pairs * 2, sizeof *sides);
    pthread_t *ids = calloc((size_t)pairs * 2, sizeof *ids);
    if (pthread_barrier_init(&start, NULL, (unsigned)pairs * 2 + 1) != 0)
        return 3;
    for (int p = 0; p < pairs; p++) {
        pthread_mutex_init(&ps[p].lock, NULL);
        pthread_cond_init(&ps[p].turned, NULL);
        if (pipe(ps[p].to_a) != 0 || pipe(ps[p].to_b) != 0)
            return 3;
        for (int me = 0; me < 2; me++) {
            sides[2 * p + me] = (struct side){&ps[p], me};
            if (pthread_create(&ids[2 * p + me], NULL, run, &sides[2 * p + me]) != 0)
                return 3;
        }
    }
    printf("ready addr=%p\n", (void *)pass_turn);
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1)
        return 3;

    struct timespec t0, t1;
    struct rusage u0, u1;
    getrusage(RUSAGE_SELF, &u0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_wait(&start);
    for (int t = 0; t < pairs * 2; t++)
        pthread_join(ids[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &u1);

    long total = round_trips * pairs;
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = ns_between(&u0.ru_utime, &u1.ru_utime) + ns_between(&u0.ru_stime, &u1.ru_stime);
    long vol = u1.ru_nvcsw - u0.ru_nvcsw, invol = u1.ru_nivcsw - u0.ru_nivcsw;
    printf("calls=%ld ns_per_call=%.3f cpu_ns_per_call=%.3f switches=%ld voluntary=%ld "
           "involuntary=%ld\n",
           total, ns / (double)total, cpu / (double)total, vol + invol, vol, invol);
    fflush(stdout);
    return 0;
}
