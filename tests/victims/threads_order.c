/*
 * A potential deadlock that never happens: two threads take the same two
 * mutexes in opposite orders, one after the other, so each run is safe and
 * the lock order still has a cycle (lock_a -> lock_b, lock_b -> lock_a).
 *
 *   threads_order [--wait] [ROUNDS [GAP_MS [MORE]]]
 *
 * Each of ROUNDS rounds (default 5) starts thread "order-ab", which runs
 * take_a_then_b() (lock_a, then lock_b while holding lock_a), and joins it;
 * then thread "order-ba", which runs take_b_then_a(), and joins it; then
 * sleeps GAP_MS ms (default 10). The two threads never overlap, so neither
 * ever waits. Prints "rounds N" at the end.
 *
 * With --wait: "ready", a byte on stdin, the rounds, "done", one more byte
 * (or end of file); then MORE rounds (default 0) before the exit, the live
 * view's test having read the first ones' counts meanwhile.
 */
#include "threads_common.h"

/* Statics with symbols, so that the report names them (`lock_a`, `lock_b`). */
static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static volatile long shared;

SITE void take_a_then_b(void)
{
	pthread_mutex_lock(&lock_a);
	shared++;
	pthread_mutex_lock(&lock_b);
	shared++;
	pthread_mutex_unlock(&lock_b);
	pthread_mutex_unlock(&lock_a);
}

SITE void take_b_then_a(void)
{
	pthread_mutex_lock(&lock_b);
	shared++;
	pthread_mutex_lock(&lock_a);
	shared++;
	pthread_mutex_unlock(&lock_a);
	pthread_mutex_unlock(&lock_b);
}

static void *run_ab(void *arg)
{
	(void)arg;
	name_thread("order-ab");
	take_a_then_b();
	return NULL;
}

static void *run_ba(void *arg)
{
	(void)arg;
	name_thread("order-ba");
	take_b_then_a();
	return NULL;
}

/* Runs `fn` on a thread of its own and waits for it to end. */
static void run_alone(void *(*fn)(void *))
{
	pthread_t t;
	pthread_create(&t, NULL, fn, NULL);
	pthread_join(t, NULL);
}

/* `rounds` rounds of both orders, `gap_ms` ms apart. */
static void run_rounds(long rounds, long gap_ms)
{
	for (long i = 0; i < rounds; i++) {
		run_alone(run_ab);
		run_alone(run_ba);
		sleep_ms(gap_ms);
	}
}

int main(int argc, char **argv)
{
	int wait = take_wait(&argc, &argv);
	long rounds = arg_or(argc, argv, 1, 5);
	long gap_ms = arg_or(argc, argv, 2, 10);
	long more = arg_or(argc, argv, 3, 0);

	handshake_start(wait);
	run_rounds(rounds, gap_ms);
	say("rounds %ld", rounds);
	handshake_end(wait);
	run_rounds(more, gap_ms);
	return 0;
}
