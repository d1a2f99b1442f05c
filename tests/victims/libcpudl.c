/*
 * The library cpu_dlopen.c loads with dlopen(3) once it runs, libcpudl.so
 * (-O2 -fomit-frame-pointer -g): cpudl_enter -> cpudl_leaf spins `us`
 * microseconds of the thread's CPU time and returns the nanoseconds it
 * measured.
 */
#include "cpu_spin.h"

SITE long long cpudl_leaf(long us)
{
	return spin_here(us);
}

SITE long long cpudl_enter(long us)
{
	long long ns = cpudl_leaf(us);
	keep_frame();
	return ns;
}
