/*
 * The cpu family's victims (cpu_*.c) on one plan, which cpu_main() runs:
 *
 *   cpu_<name> [--wait] [MS [...]]
 *
 * Thread "worker" calls the victim's setup() once, then run() over and over
 * until MS ms (default 2000) of wall time have passed, at least once. Each
 * run() is one cycle, run -> level1 -> level2 and below, the victim's own: 10
 * ms of the thread's CPU time split between two leaves, 70% in the hot one and
 * 30% in the cold one, each of which adds the time it measured itself spinning
 * (see spin_here()) to hot_ns or cold_ns.
 *
 * Main prints "worker_tid N" before the worker runs, and once it is done
 * "cycles N", "<hot>_seconds S" and "<cold>_seconds S" (the leaves' measured
 * CPU time, named by the victim), and the victim's own lines, if any.
 *
 * With --wait the worker waits (blocked in sem_wait, using no CPU) until a byte
 * comes on stdin, after "ready"; after its cycles it waits the same way again,
 * alive, while main prints "done" and waits for one more byte: its CPU time in
 * /proc/PID/task/TID/schedstat holds still before the byte and after "done", so
 * a test can compare it with the seconds the victim printed, and a profiler
 * window that spans the cycles with both.
 */
#ifndef CPU_COMMON_H
#define CPU_COMMON_H

#include "cpu_spin.h"

#include <semaphore.h>

/* A victim's own part, besides level2(). */
struct cpu_victim {
	/* Names of the hot leaf's and the cold leaf's lines. */
	const char *hot, *cold;
	/* Once, on the worker, before the cycles: NULL for nothing. */
	void (*setup)(int argc, char **argv);
	/* Its own lines, after the split: NULL for none. */
	void (*report)(void);
};

/* The rest of a cycle, below run -> level1: each victim's own. */
SITE void level2(void);

/*
 * Nanoseconds the leaves measured: volatile, since a signal handler adds to
 * them in cpu_signal.c.
 */
static volatile long long hot_ns, cold_ns;

static const struct cpu_victim *victim;
static long run_ms = 2000;
static int waiting, worker_argc;
static char **worker_argv;
static sem_t go, finished, leave;
static long cycles;
static volatile int worker_tid;

/* Prints "<leaf>_seconds S": `ns` nanoseconds a leaf measured. */
static void say_seconds(const char *leaf, long long ns)
{
	say("%s_seconds %.6f", leaf, ns / 1e9);
}

SITE void level1(void)
{
	level2();
	keep_frame();
}

/* One cycle. */
SITE void run(void)
{
	level1();
	keep_frame();
}

SITE void *worker(void *arg)
{
	(void)arg;
	name_thread("worker");
	worker_tid = gettid();
	if (waiting)
		sem_wait(&go);
	if (victim->setup)
		victim->setup(worker_argc, worker_argv);
	long long end = now_ns(CLOCK_MONOTONIC) + run_ms * 1000000LL;
	do {
		run();
		cycles++;
	} while (now_ns(CLOCK_MONOTONIC) < end);
	sem_post(&finished);
	if (waiting)
		sem_wait(&leave);
	return NULL;
}

/* The victim's main: runs `v` on the plan above. */
static int cpu_main(int argc, char **argv, const struct cpu_victim *v)
{
	pthread_t t;

	victim = v;
	waiting = take_wait(&argc, &argv);
	run_ms = arg_or(argc, argv, 1, run_ms);
	worker_argc = argc;
	worker_argv = argv;
	sem_init(&go, 0, 0);
	sem_init(&finished, 0, 0);
	sem_init(&leave, 0, 0);
	pthread_create(&t, NULL, worker, NULL);
	while (worker_tid == 0)
		sleep_ms(1);
	say("worker_tid %d", worker_tid);
	handshake_start(waiting);
	sem_post(&go);
	sem_wait(&finished);
	say("cycles %ld", cycles);
	say_seconds(v->hot, hot_ns);
	say_seconds(v->cold, cold_ns);
	if (v->report)
		v->report();
	handshake_end(waiting);
	sem_post(&leave);
	pthread_join(t, NULL);
	return 0;
}

#endif
