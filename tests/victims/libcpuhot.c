/*
 * cpu_lib.c's shared library, libcpuhot.so (-O2 -fomit-frame-pointer -g): a
 * hot leaf three frames deep inside it, and a call back into the executable.
 *
 * cpuhot_enter -> cpuhot_middle -> cpuhot_leaf spins `us` microseconds of the
 * thread's CPU time and returns the nanoseconds it measured;
 * cpuhot_call_back(fn, us) calls fn(us), the executable's own leaf.
 */
#include "cpu_spin.h"

SITE long long cpuhot_leaf(long us)
{
	return spin_here(us);
}

SITE long long cpuhot_middle(long us)
{
	long long ns = cpuhot_leaf(us);
	keep_frame();
	return ns;
}

SITE long long cpuhot_enter(long us)
{
	long long ns = cpuhot_middle(us);
	keep_frame();
	return ns;
}

SITE void cpuhot_call_back(void (*fn)(long us), long us)
{
	fn(us);
	keep_frame();
}
