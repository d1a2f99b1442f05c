/*
 * The bench's lock- and switch-heavy load: tens of thousands of context
 * switches a second on two cores, nearly all of them through futex(2).
 *
 *   threads_switch [--wait] [PAIRS [MS]]
 *
 * PAIRS pairs of threads (default 2), "switch-Na" and "switch-Nb", pass a
 * token back and forth for MS ms (default 3000): each hand-off takes the
 * pair's mutex, waits on a condition variable until the token is its own,
 * passes it and signals the other; and every hand-off also takes and releases
 * hot_lock, one mutex all the threads share, so it is contended too. Every
 * hand-off blocks one thread and wakes the other: two context switches.
 *
 * At the end it prints "handoffs N" (all pairs together), "switches N"
 * (voluntary plus involuntary, getrusage(RUSAGE_SELF)) and
 * "switches_per_second N".
 *
 * With --wait: "ready", a byte on stdin, the load, "done", one more byte.
 */
#include "threads_common.h"

#include <stdatomic.h>
#include <sys/resource.h>

struct pair {
	pthread_mutex_t lock;
	pthread_cond_t turned;
	int turn;
	long handoffs;
	long index;
};

static pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static volatile long hot;

SITE void touch_hot_lock(void)
{
	pthread_mutex_lock(&hot_lock);
	hot++;
	pthread_mutex_unlock(&hot_lock);
}

/* Waits until the pair's token is `mine` (or the time is up), then passes it. */
SITE void pass_token(struct pair *p, int mine)
{
	pthread_mutex_lock(&p->lock);
	while (p->turn != mine && !atomic_load(&stop))
		pthread_cond_wait(&p->turned, &p->lock);
	p->turn = !mine;
	p->handoffs++;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_signal(&p->turned);
	touch_hot_lock();
}

static void run_side(struct pair *p, int mine)
{
	char name[16];
	snprintf(name, sizeof(name), "switch-%ld%c", p->index, mine ? 'b' : 'a');
	name_thread(name);
	while (!atomic_load(&stop))
		pass_token(p, mine);
}

SITE void *side_a(void *arg)
{
	run_side(arg, 0);
	return NULL;
}

SITE void *side_b(void *arg)
{
	run_side(arg, 1);
	return NULL;
}

static long switches(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

int main(int argc, char **argv)
{
	int wait = take_wait(&argc, &argv);
	long pairs = arg_or(argc, argv, 1, 2);
	long ms = arg_or(argc, argv, 2, 3000);
	struct pair *p = calloc((size_t)pairs, sizeof(*p));
	pthread_t t[2 * pairs];

	handshake_start(wait);
	long before = switches();
	long long start = now_ns(CLOCK_MONOTONIC);
	for (long i = 0; i < pairs; i++) {
		pthread_mutex_init(&p[i].lock, NULL);
		pthread_cond_init(&p[i].turned, NULL);
		p[i].index = i;
		pthread_create(&t[2 * i], NULL, side_a, &p[i]);
		pthread_create(&t[2 * i + 1], NULL, side_b, &p[i]);
	}
	sleep_ms(ms);
	atomic_store(&stop, 1);
	for (long i = 0; i < pairs; i++) {
		/* Wake a side that waits for a token that will never come. */
		pthread_mutex_lock(&p[i].lock);
		pthread_cond_broadcast(&p[i].turned);
		pthread_mutex_unlock(&p[i].lock);
	}
	for (long i = 0; i < 2 * pairs; i++)
		pthread_join(t[i], NULL);
	double seconds = (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9;
	long handoffs = 0;
	for (long i = 0; i < pairs; i++)
		handoffs += p[i].handoffs;
	long n = switches() - before;
	say("handoffs %ld", handoffs);
	say("switches %ld", n);
	say("switches_per_second %.0f", (double)n / seconds);
	handshake_end(wait);
	free(p);
	return 0;
}
