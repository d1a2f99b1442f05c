/*
 * Waiting that is not contention: two threads hand a turn back and forth over
 * condition variables, ROUNDS round trips.
 *
 *   threads_condvar [--wait] [ROUNDS]
 *
 * Thread "ping" runs ping(): ROUNDS times it waits on cv_ping until the turn
 * is 0, sets it to 1 and signals cv_pong. Thread "pong" runs pong(), the mirror
 * image (waits on cv_pong for 1, sets 0, signals cv_ping). Both hold cv_lock
 * only to read and set the turn, and signal after unlocking it, so the mutex
 * is almost never contended: nearly all their waiting is in
 * pthread_cond_wait(), about one wait per hand-off (2 * ROUNDS in all).
 * ROUNDS defaults to 2000. Prints "round_trips N" at the end.
 *
 * With --wait: "ready", a byte on stdin, the round trips, "done", one more
 * byte.
 */
#include "threads_common.h"

static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_ping = PTHREAD_COND_INITIALIZER;
static pthread_cond_t cv_pong = PTHREAD_COND_INITIALIZER;
static int turn;
static long rounds = 2000;

/* Waits on `cv` until the turn is `mine`, then passes it on and signals `next`. */
SITE void hand_off(pthread_cond_t *cv, pthread_cond_t *next, int mine)
{
	pthread_mutex_lock(&cv_lock);
	while (turn != mine)
		pthread_cond_wait(cv, &cv_lock);
	turn = !mine;
	pthread_mutex_unlock(&cv_lock);
	pthread_cond_signal(next);
}

SITE void *ping(void *arg)
{
	(void)arg;
	name_thread("ping");
	for (long i = 0; i < rounds; i++)
		hand_off(&cv_ping, &cv_pong, 0);
	return NULL;
}

SITE void *pong(void *arg)
{
	(void)arg;
	name_thread("pong");
	for (long i = 0; i < rounds; i++)
		hand_off(&cv_pong, &cv_ping, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	int wait = take_wait(&argc, &argv);
	rounds = arg_or(argc, argv, 1, rounds);
	pthread_t a, b;

	handshake_start(wait);
	pthread_create(&a, NULL, ping, NULL);
	pthread_create(&b, NULL, pong, NULL);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	say("round_trips %ld", rounds);
	handshake_end(wait);
	return 0;
}
