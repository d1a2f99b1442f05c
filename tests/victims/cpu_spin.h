/*
 * What the cpu family's victims and their libraries (cpu_*.c, libcpu*.c)
 * share: the threads family's helpers (threads_common.h), a spin that stays in
 * the frame of the function that calls it, and a barrier that keeps a caller's
 * frame on the stack.
 *
 * The cpu family samples stacks and unwinds them from .eh_frame, so these
 * victims are built without frame pointers but where a build says otherwise
 * (see build.rs), and every function a test names is SITE.
 */
#ifndef CPU_SPIN_H
#define CPU_SPIN_H

#include "threads_common.h"

/*
 * After a call: the call is not a tail call (a jump that would take the
 * caller's frame off the stack), since the barrier must run after it.
 */
#define keep_frame() __asm__ volatile("" ::: "memory")

/*
 * Iterations of the spin's empty inner loop between two reads of the thread's
 * CPU clock: tens of microseconds, so that the clock's system call (CPU clocks
 * have no vDSO fast path) is about a percent of the spin.
 */
#define SPIN_CHUNK 50000

static inline __attribute__((always_inline)) long long thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Spins until `us` microseconds of the thread's CPU time have passed, in the
 * frame of its caller (always inlined: a sample lands in the caller, or in the
 * clock's system call below it). Returns the CPU time it spun, in nanoseconds,
 * as it measured it: from its first read of the clock to its last.
 */
static inline __attribute__((always_inline)) long long spin_here(long us)
{
	long long start = thread_cpu_ns(), now = start;
	while (now - start < us * 1000LL) {
		for (int i = 0; i < SPIN_CHUNK; i++)
			__asm__ volatile("");
		now = thread_cpu_ns();
	}
	return now - start;
}

#endif
