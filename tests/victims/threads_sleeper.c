/*
 * One thread half on the CPU, half asleep: the on-CPU/off-CPU split and the
 * "sleep" reason with its stack.
 *
 *   threads_sleeper [--wait] [MS [SPIN_MS [SLEEP_MS]]]
 *
 * Thread "sleeper" repeats, until MS ms (default 2000) have passed since it
 * began: sleeper_spins(), SPIN_MS ms (default 10) of its own CPU time (the
 * thread's CPU clock: exact whatever the scheduler does), then sleeper_sleeps(),
 * nanosleep(2) for SLEEP_MS ms (default 10). So it is on the CPU about
 * SPIN_MS / (SPIN_MS + SLEEP_MS) of its time, and blocked only in nanosleep.
 *
 * It prints "sleeper_tid N" before the thread runs, and "cycles N" (spin-sleep
 * cycles) and "slept N" when it is done. "slept" counts the voluntary context
 * switches inside its nanosleep calls (the thread's ru_nvcsw across each call),
 * that is the sleeps that really blocked: on a loaded machine a thread can be
 * preempted between arming its timer and blocking, and if the timer expires
 * before it runs again, that nanosleep returns without ever blocking.
 *
 * With --wait the thread is created first and waits (blocked in sem_wait,
 * using no CPU) until a byte comes on stdin, after "ready"; after its cycles it
 * waits the same way again, alive, while main prints "done" and waits for one
 * more byte: its CPU time in /proc/PID/task/TID/schedstat holds still before
 * the byte and after "done", so a test can compare a profiler window that
 * spans the cycles with the CPU time the kernel counted.
 */
#include "threads_common.h"

#include <semaphore.h>
#include <sys/resource.h>

static long run_ms = 2000, spin_ms = 10, sleep_ms_each = 10;
static sem_t go, finished, leave;
static int waiting;
static long cycles, slept;
static volatile int sleeper_tid;

SITE void sleeper_spins(long ms)
{
	spin_us(CLOCK_THREAD_CPUTIME_ID, ms * 1000);
}

/* The calling thread's voluntary context switches so far. */
static long voluntary_switches(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw;
}

SITE void sleeper_sleeps(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	long before = voluntary_switches();
	nanosleep(&ts, NULL);
	slept += voluntary_switches() - before;
	__asm__ volatile("" ::: "memory"); /* not a tail call: this frame stays */
}

SITE void *sleeper(void *arg)
{
	(void)arg;
	name_thread("sleeper");
	sleeper_tid = gettid();
	if (waiting)
		sem_wait(&go);
	long long end = now_ns(CLOCK_MONOTONIC) + run_ms * 1000000LL;
	while (now_ns(CLOCK_MONOTONIC) < end) {
		sleeper_spins(spin_ms);
		sleeper_sleeps(sleep_ms_each);
		cycles++;
	}
	sem_post(&finished);
	if (waiting)
		sem_wait(&leave);
	return NULL;
}

int main(int argc, char **argv)
{
	waiting = take_wait(&argc, &argv);
	run_ms = arg_or(argc, argv, 1, run_ms);
	spin_ms = arg_or(argc, argv, 2, spin_ms);
	sleep_ms_each = arg_or(argc, argv, 3, sleep_ms_each);
	pthread_t t;

	sem_init(&go, 0, 0);
	sem_init(&finished, 0, 0);
	sem_init(&leave, 0, 0);
	pthread_create(&t, NULL, sleeper, NULL);
	while (sleeper_tid == 0)
		sleep_ms(1);
	say("sleeper_tid %d", sleeper_tid);
	handshake_start(waiting);
	sem_post(&go);
	sem_wait(&finished);
	say("cycles %ld", cycles);
	say("slept %ld", slept);
	handshake_end(waiting);
	sem_post(&leave);
	pthread_join(t, NULL);
	return 0;
}
