/*
 * Lock contention in known amounts: THREADS threads take one mutex ITERS times
 * each and hold it HOLD_US microseconds every time.
 *
 *   threads_contend [--wait] [--heap] [THREADS [ITERS [HOLD_US [GAP_US]]]]
 *
 * Defaults: 4 threads, 25 iterations, 2000 us held, 200 us between two
 * acquisitions of one thread. Thread "contend-N" (N from 0) runs contender(),
 * which calls hold_the_lock() ITERS times: pthread_mutex_lock(&contended_lock),
 * a spin of HOLD_US us of wall time, unlock; then a spin of GAP_US us outside
 * the lock. Everything starts at once (a barrier), so the others wait while one
 * holds it. Only these calls take contended_lock: its acquisitions are exactly
 * THREADS * ITERS.
 *
 * Before the threads start it prints "acquisitions N" (THREADS * ITERS) and
 * "hold_us N" (the total time meant to be held, THREADS * ITERS * HOLD_US); after
 * they end, "held_ns N": the time held as the threads measured it, from the
 * lock's return to the unlock's call (more than hold_us when a holder was
 * preempted while it held the lock, as happens with more threads than cores).
 *
 * With --wait: "ready", a byte on stdin, the threads, "done", one more byte.
 * With --heap: the mutex is allocated by make_lock() (malloc) instead of being the static
 * contended_lock, so that a profiler can only name it by where it was allocated.
 */
#include "threads_common.h"

static pthread_mutex_t contended_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t *the_lock = &contended_lock;
static pthread_barrier_t start_line;
static long iters = 25, hold_us = 2000, gap_us = 200;
static volatile long shared;
static long long held_ns;

SITE void hold_the_lock(void)
{
	pthread_mutex_lock(the_lock);
	long long taken = now_ns(CLOCK_MONOTONIC);
	spin_us(CLOCK_MONOTONIC, hold_us);
	shared++;
	held_ns += now_ns(CLOCK_MONOTONIC) - taken; /* under the lock */
	pthread_mutex_unlock(the_lock);
}

SITE void *contender(void *arg)
{
	char name[16];
	snprintf(name, sizeof(name), "contend-%ld", (long)arg);
	name_thread(name);
	pthread_barrier_wait(&start_line);
	for (long i = 0; i < iters; i++) {
		hold_the_lock();
		spin_us(CLOCK_MONOTONIC, gap_us);
	}
	return NULL;
}

SITE pthread_mutex_t *make_lock(void)
{
	pthread_mutex_t *lock = malloc(sizeof(*lock));
	if (!lock)
		abort();
	pthread_mutex_init(lock, NULL);
	return lock;
}

int main(int argc, char **argv)
{
	int wait = take_wait(&argc, &argv);
	if (argc > 1 && strcmp(argv[1], "--heap") == 0) {
		the_lock = make_lock();
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	long threads = arg_or(argc, argv, 1, 4);
	iters = arg_or(argc, argv, 2, iters);
	hold_us = arg_or(argc, argv, 3, hold_us);
	gap_us = arg_or(argc, argv, 4, gap_us);
	pthread_t t[threads];

	say("acquisitions %ld", threads * iters);
	say("hold_us %ld", threads * iters * hold_us);
	handshake_start(wait);
	pthread_barrier_init(&start_line, NULL, (unsigned)threads);
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, contender, (void *)i);
	for (long i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	say("held_ns %lld", held_ns);
	handshake_end(wait);
	return 0;
}
