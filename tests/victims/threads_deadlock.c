/*
 * A real deadlock: thread "dl-ab" holds lock_a and waits for lock_b, thread
 * "dl-ba" holds lock_b and waits for lock_a, forever.
 *
 *   threads_deadlock [DELAY_MS]
 *
 * Sleeps DELAY_MS ms first (default 0), so that under `profiler run` the probes
 * see the locks taken. take_a_then_b() and take_b_then_a() each take their
 * first lock, meet at a barrier (so both hold one before either tries the
 * other), and block in pthread_mutex_lock() on the second. Once both threads
 * are in futex(2) (syscall 202 in /proc/self/task/TID/syscall; after 200 ms
 * when that file cannot be read) main prints "tids AB BA" (their thread ids,
 * dl-ab's first) and "deadlocked", points its stdout and stderr at /dev/null
 * (so that a hung victim does not hold the harness's pipes open after a
 * `profiler run` ends on --duration), and waits in pthread_join() forever.
 */
#include "threads_common.h"

#include <fcntl.h>
#include <stdatomic.h>

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold;
static atomic_int tids[2];
static atomic_int blocking;

SITE void take_a_then_b(void)
{
	pthread_mutex_lock(&lock_a);
	pthread_barrier_wait(&both_hold);
	atomic_fetch_add(&blocking, 1);
	pthread_mutex_lock(&lock_b);
	/* Never reached. */
	pthread_mutex_unlock(&lock_b);
	pthread_mutex_unlock(&lock_a);
}

SITE void take_b_then_a(void)
{
	pthread_mutex_lock(&lock_b);
	pthread_barrier_wait(&both_hold);
	atomic_fetch_add(&blocking, 1);
	pthread_mutex_lock(&lock_a);
	pthread_mutex_unlock(&lock_a);
	pthread_mutex_unlock(&lock_b);
}

static void *run_ab(void *arg)
{
	(void)arg;
	name_thread("dl-ab");
	atomic_store(&tids[0], gettid());
	take_a_then_b();
	return NULL;
}

static void *run_ba(void *arg)
{
	(void)arg;
	name_thread("dl-ba");
	atomic_store(&tids[1], gettid());
	take_b_then_a();
	return NULL;
}

/* 1 when thread `tid` is in futex(2) now, 0 when not, -1 when it cannot be told. */
static int in_futex(int tid)
{
	char path[64], buf[32] = {0};
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	return strncmp(buf, "202 ", 4) == 0;
}

/* Waits until both threads block on their second lock. */
static void wait_stuck(void)
{
	while (atomic_load(&blocking) < 2)
		sleep_ms(1);
	for (int tries = 0; tries < 200; tries++) {
		int ab = in_futex(tids[0]), ba = in_futex(tids[1]);
		if (ab < 0 || ba < 0)
			break;
		if (ab && ba)
			return;
		sleep_ms(1);
	}
	sleep_ms(200);
}

int main(int argc, char **argv)
{
	long delay_ms = arg_or(argc, argv, 1, 0);
	pthread_t ab, ba;

	sleep_ms(delay_ms);
	pthread_barrier_init(&both_hold, NULL, 2);
	pthread_create(&ab, NULL, run_ab, NULL);
	pthread_create(&ba, NULL, run_ba, NULL);
	wait_stuck();
	say("tids %d %d", atomic_load(&tids[0]), atomic_load(&tids[1]));
	say("deadlocked");

	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	dup2(null, 2);
	close(null);
	pthread_join(ab, NULL);
	return 0;
}
