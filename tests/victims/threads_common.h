/*
 * What the threads family's victims (threads_*.c) share: the --wait handshake
 * of the other victims, exact sleeps and spins, thread names, and lines the
 * tests read.
 *
 * Every victim is built with frame pointers and -g (see build.rs), and every
 * function a test names is SITE: noinline and noipa, so it is one frame of its
 * own in every stack the profiler walks.
 */
#ifndef THREADS_COMMON_H
#define THREADS_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline, noipa))

/* A line the harness waits for or parses, flushed at once: stdout is a pipe. */
#define say(...)                                                               \
	do {                                                                   \
		printf(__VA_ARGS__);                                           \
		putchar('\n');                                                 \
		fflush(stdout);                                                \
	} while (0)

static inline long long now_ns(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps `ms` milliseconds, whatever signals interrupt it. */
static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Spins on the CPU until `us` microseconds of `clock` have passed: the thread's
 * CPU clock for an exact on-CPU time whatever the scheduler does, the monotonic
 * clock for an exact wall time (a lock held that long).
 */
static inline void spin_us(clockid_t clock, long us)
{
	long long end = now_ns(clock) + us * 1000LL;
	while (now_ns(clock) < end)
		;
}

/* Names the calling thread (its comm, which the report shows). */
static inline void name_thread(const char *name)
{
	pthread_setname_np(pthread_self(), name);
}

/* Waits for a byte on stdin; end of file releases the victim as well. */
static inline void wait_byte(void)
{
	char c;
	while (read(0, &c, 1) == -1 && errno == EINTR)
		;
}

/*
 * Takes a leading --wait off the arguments: returns whether it was there, and
 * leaves argv[1..] the scenario's own arguments.
 */
static inline int take_wait(int *argc, char ***argv)
{
	if (*argc > 1 && strcmp((*argv)[1], "--wait") == 0) {
		(*argv)[1] = (*argv)[0];
		(*argc)--;
		(*argv)++;
		return 1;
	}
	return 0;
}

/* Argument `i` as a number, or `dflt` when absent. */
static inline long arg_or(int argc, char **argv, int i, long dflt)
{
	return argc > i ? atol(argv[i]) : dflt;
}

/* With --wait: "ready", then a byte on stdin before the scenario runs. */
static inline void handshake_start(int wait)
{
	if (wait) {
		say("ready");
		wait_byte();
	}
}

/* With --wait: "done", then one more byte (or end of file) before the exit. */
static inline void handshake_end(int wait)
{
	if (wait) {
		say("done");
		wait_byte();
	}
}

#endif
