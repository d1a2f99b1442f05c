/*
 * Benchmark workload for the memory family: allocator calls in a timed loop.
 *
 * Usage: malloc churn N | malloc hold N
 * Prints "ready addr=<address of malloc>", waits for one byte on stdin (the harness attaches a
 * tracer first), then:
 *   churn N  N iterations, each freeing the block allocated 64 iterations before (none in the
 *            first 64) and allocating one of 16..255 bytes with alloc_block(); then frees the
 *            last 64. Prints "calls=N ns_per_call=X": X is the loop's own time over N, so one
 *            malloc and one free per "call".
 *   hold N   allocates N blocks of 32 bytes with hold_block() and keeps them; prints "held N",
 *            waits for one more byte, exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *volatile bench_sink;

__attribute__((noinline, noipa)) void *alloc_block(size_t size)
{
	void *p = malloc(size);
	bench_sink = p;
	return p;
}

__attribute__((noinline, noipa)) void *hold_block(void)
{
	void *p = malloc(32);
	bench_sink = p;
	return p;
}

static int wait_byte(void)
{
	char go;
	return read(0, &go, 1) == 1 ? 0 : 3;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "churn") != 0 && strcmp(argv[1], "hold") != 0)) {
		fprintf(stderr, "usage: %s churn|hold N\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	printf("ready addr=%p\n", (void *)malloc);
	fflush(stdout);
	if (wait_byte())
		return 3;

	if (strcmp(argv[1], "hold") == 0) {
		void **held = calloc((size_t)n, sizeof(void *));
		for (long i = 0; i < n; i++)
			held[i] = hold_block();
		printf("held %ld\n", n);
		fflush(stdout);
		bench_sink = held;
		return wait_byte();
	}

	void *window[64] = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		long k = i & 63;
		free(window[k]);
		window[k] = alloc_block(16 + (size_t)(i % 240));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int k = 0; k < 64; k++)
		free(window[k]);

	double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
	printf("calls=%ld ns_per_call=%.3f\n", n, ns / (double)n);
	fflush(stdout);
	return 0;
}
