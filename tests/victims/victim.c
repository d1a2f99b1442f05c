/*
 * The C victim of the integration tests: one scenario per run, chosen by the
 * arguments, each making an exact, known number of calls to the functions the
 * tests trace.
 *
 *   victim [--wait] SCENARIO [ARGS...]
 *
 * With --wait the victim prints "ready", waits for a byte on stdin, runs the
 * scenario, prints "done", then waits for one more byte (or end of file) before
 * it exits: a profiler attached between "ready" and the first byte sees every
 * call of the scenario and no other.
 *
 * Scenarios:
 *   calls N          leaf() N times
 *   nested N         outer() N times; each outer() calls inner() twice
 *   recurse K D      recurse(D) K times: K * (D + 1) entries of recurse()
 *   threads T N      T threads, each calling leaf() N times
 *   exit CODE N      leaf() N times, then exit with CODE
 *   segv N           leaf() N times, then a write through a null pointer
 *   longjmp N        N calls of through() -> jumper(); the even ones leave by
 *                    longjmp, the odd ones return; landed() after each
 *   block N          leaf() N times, then blocked() until a byte on stdin
 *   spin N           spin() N times: each spins 1 ms of its thread's CPU time
 *   locked N         N calls each of lock_passable(), lock_unprobeable(),
 *                    pthread_spin_lock() and pthread_spin_unlock(), and leaf()
 *
 * Every traced function is noinline and noipa (no clones, no constant
 * propagation into it), so each call in the source is one call at run time.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef GO_BUILDINFO
/*
 * The section the Go linker writes into every Go binary (its build information):
 * built with -DGO_BUILDINFO, this victim stands for Go code, where the profiler
 * must place no return probe.
 */
__attribute__((used, section(".go.buildinfo"))) static const char go_buildinfo[32] =
	"\xff Go buildinf:";
#endif

#define TRACED __attribute__((noinline, noipa))

volatile long sink;

TRACED long leaf(long x)
{
	sink = sink + x;
	return sink;
}

TRACED long inner(long x)
{
	long acc = 0;
	for (long i = 0; i < 20; i++)
		acc += leaf(x + i);
	return acc;
}

/* Keeps values in callee-saved registers across calls: starts with a push. */
TRACED long outer(long x)
{
	long a = inner(x);
	long b = inner(x + 1);
	return a * 3 + b;
}

/* Not a tail call: the volatile store after the call keeps the recursion. */
TRACED long recurse(long depth)
{
	if (depth <= 0)
		return leaf(1);
	long r = recurse(depth - 1);
	sink = r;
	return r + 1;
}

static jmp_buf jump_back;

TRACED void jumper(long i)
{
	leaf(i);
	if (i % 2 == 0)
		longjmp(jump_back, 1);
	sink = i;
}

TRACED void through(long i)
{
	jumper(i);
	sink = i + 1;
}

TRACED void landed(long i)
{
	sink = i;
}

/* Blocks until a byte (or end of file) arrives on stdin. */
TRACED void blocked(void)
{
	char c;
	puts("blocked");
	fflush(stdout);
	if (read(0, &c, 1) < 0)
		perror("read");
	sink = c;
}

/*
 * Two functions whose first instruction carries a lock prefix, which the
 * kernel refuses to probe: lock_passable() goes on to a probeable `ret`;
 * lock_unprobeable() loops back to the instruction after the lock, so a probe
 * moved there would count the loop's turns. Written in assembly: the compiler
 * would start them with endbr64.
 */
void lock_passable(int *counter);
void lock_unprobeable(int *counter);
__asm__(".text\n"
	".globl lock_passable\n"
	".type lock_passable, @function\n"
	"lock_passable:\n"
	"	lock incl (%rdi)\n"
	"	ret\n"
	".size lock_passable, .-lock_passable\n"
	".globl lock_unprobeable\n"
	".type lock_unprobeable, @function\n"
	"lock_unprobeable:\n"
	"	lock decl (%rdi)\n"
	"1:	cmpl $0, (%rdi)\n"
	"	jg 1b\n"
	"	ret\n"
	".size lock_unprobeable, .-lock_unprobeable\n");

static void run_locked(long n)
{
	pthread_spinlock_t spin;
	int counter = 0;

	pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
	for (long k = 0; k < n; k++) {
		lock_passable(&counter);
		lock_unprobeable(&counter);
		pthread_spin_lock(&spin);
		pthread_spin_unlock(&spin);
		leaf(k);
	}
	pthread_spin_destroy(&spin);
	sink = counter;
}

struct thread_arg {
	pthread_barrier_t *barrier;
	long calls;
};

static void *thread_main(void *p)
{
	struct thread_arg *arg = p;
	/* All threads exist at once, so each has its own tid. */
	pthread_barrier_wait(arg->barrier);
	for (long i = 0; i < arg->calls; i++)
		leaf(i);
	pthread_barrier_wait(arg->barrier);
	return NULL;
}

static long arg(int argc, char **argv, int i)
{
	if (i >= argc) {
		fprintf(stderr, "victim: missing argument %d\n", i);
		exit(2);
	}
	return strtol(argv[i], NULL, 10);
}

static void wait_byte(void)
{
	char c;
	if (read(0, &c, 1) < 0)
		perror("read");
}

static void run_threads(long threads, long calls)
{
	pthread_t tids[64];
	pthread_barrier_t barrier;
	struct thread_arg targ = {&barrier, calls};

	if (threads < 1 || threads > 64)
		exit(2);
	pthread_barrier_init(&barrier, NULL, (unsigned)threads);
	for (long t = 0; t < threads; t++)
		if (pthread_create(&tids[t], NULL, thread_main, &targ) != 0)
			exit(2);
	for (long t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	pthread_barrier_destroy(&barrier);
}

static void run_longjmp(long n)
{
	for (volatile long i = 0; i < n; i++) {
		if (setjmp(jump_back) == 0)
			through(i);
		landed(i);
	}
}
/* Busy for 1 ms of the thread's CPU time, calling no traced function. */
TRACED void spin(void)
{
	struct timespec start, now;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
	do
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
	while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
	       1000000L);
}

static void crash(void)
{
	/* No core file: the signal is what the test looks at. */
	struct rlimit none = {0, 0};
	setrlimit(RLIMIT_CORE, &none);
	*(volatile int *)0 = 1;
}

int main(int argc, char **argv)
{
	int i = 1;
	int wait = 0;

	if (i < argc && strcmp(argv[i], "--wait") == 0) {
		wait = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: victim [--wait] SCENARIO [ARGS...]\n");
		return 2;
	}
	const char *scenario = argv[i++];
	if (wait) {
		puts("ready");
		fflush(stdout);
		wait_byte();
	}

	if (strcmp(scenario, "calls") == 0) {
		long n = arg(argc, argv, i);
		for (long k = 0; k < n; k++)
			leaf(k);
	} else if (strcmp(scenario, "nested") == 0) {
		long n = arg(argc, argv, i);
		for (long k = 0; k < n; k++)
			outer(k);
	} else if (strcmp(scenario, "recurse") == 0) {
		long k = arg(argc, argv, i), depth = arg(argc, argv, i + 1);
		for (long j = 0; j < k; j++)
			recurse(depth);
	} else if (strcmp(scenario, "threads") == 0) {
		run_threads(arg(argc, argv, i), arg(argc, argv, i + 1));
	} else if (strcmp(scenario, "exit") == 0) {
		long code = arg(argc, argv, i), n = arg(argc, argv, i + 1);
		for (long k = 0; k < n; k++)
			leaf(k);
		exit((int)code);
	} else if (strcmp(scenario, "segv") == 0) {
		long n = arg(argc, argv, i);
		for (long k = 0; k < n; k++)
			leaf(k);
		crash();
	} else if (strcmp(scenario, "longjmp") == 0) {
		run_longjmp(arg(argc, argv, i));
	} else if (strcmp(scenario, "spin") == 0) {
		long n = arg(argc, argv, i);
		for (long k = 0; k < n; k++)
			spin();
	} else if (strcmp(scenario, "locked") == 0) {
		run_locked(arg(argc, argv, i));
	} else if (strcmp(scenario, "block") == 0) {
		long n = arg(argc, argv, i);
		for (long k = 0; k < n; k++)
			leaf(k);
		blocked();
	} else {
		fprintf(stderr, "victim: unknown scenario %s\n", scenario);
		return 2;
	}

	if (wait) {
		puts("done");
		fflush(stdout);
		wait_byte();
	}
	return 0;
}
