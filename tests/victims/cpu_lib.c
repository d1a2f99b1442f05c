/*
 * One thread's CPU time split 70/30 between a leaf inside a shared library
 * and a leaf of the executable that the library calls back: stacks that cross
 * from the executable into libcpuhot.so (libcpuhot.c) and back, none of them
 * with frame pointers.
 *
 *   cpu_lib [--wait] [MS]
 *
 * Thread "worker" repeats run() (see cpu_common.h) for MS ms (default 2000):
 *
 *   run -> level1 -> level2 -> cpuhot_enter -> cpuhot_middle -> cpuhot_leaf
 *                                                                    7 ms
 *                    level2 -> cpuhot_call_back -> exe_callback      3 ms
 *
 * the cpuhot_* functions in libcpuhot.so (found through the executable's
 * rpath), each leaf spinning that much of the thread's CPU time in its own
 * frame: 70% of the worker's CPU time in cpuhot_leaf, 30% in exe_callback.
 *
 * It prints "worker_tid N" first, and "cycles N", "lib_seconds S" and
 * "callback_seconds S" (the CPU seconds each leaf measured itself spinning)
 * when it is done; --wait as in cpu_common.h.
 */
#include "cpu_common.h"

#define LIB_US 7000
#define CALLBACK_US 3000

/* libcpuhot.so */
long long cpuhot_enter(long us);
void cpuhot_call_back(void (*fn)(long us), long us);

SITE void exe_callback(long us)
{
	cold_ns += spin_here(us);
}

SITE void level2(void)
{
	hot_ns += cpuhot_enter(LIB_US);
	keep_frame();
	cpuhot_call_back(exe_callback, CALLBACK_US);
	keep_frame();
}

int main(int argc, char **argv)
{
	static const struct cpu_victim v = {"lib", "callback", NULL, NULL};
	return cpu_main(argc, argv, &v);
}
