/*
 * One thread's CPU time split 70/30 between two leaves at different depths of
 * one call chain: what the cpu family's samples, unwound from .eh_frame, must
 * find.
 *
 *   cpu_split [--wait] [MS]
 *
 * Thread "worker" repeats run() (see cpu_common.h) for MS ms (default 2000):
 *
 *   run -> level1 -> level2 -> hot_shallow                          3 ms
 *                    level2 -> level3 -> level4 -> level5 -> hot_deep  7 ms
 *
 * each leaf spinning that much of the thread's CPU time in its own frame, so
 * hot_deep (depth 6, counting level1 as 1) has 70% of the worker's CPU time and
 * hot_shallow (depth 3) 30%; run and the levels next to nothing.
 *
 * It prints "worker_tid N" first, and "cycles N", "deep_seconds S" and
 * "shallow_seconds S" (the CPU seconds each leaf measured itself spinning)
 * when it is done; --wait as in cpu_common.h.
 *
 * build.rs builds it four ways, all -O2 -g: without frame pointers
 * (VICTIM_CPU_SPLIT), the same with -fcf-protection=full (VICTIM_CPU_SPLIT_CET:
 * endbr64 first in every function), the same as a position-dependent
 * executable (VICTIM_CPU_SPLIT_NOPIE: loaded at its link address), and with
 * frame pointers (VICTIM_CPU_SPLIT_FP). objdump -d of the builds without them
 * shows run and each level as "sub $0x8,%rsp; call; add $0x8,%rsp; ret": %rbp
 * is neither saved nor set, and the canonical frame address moves with %rsp,
 * so only .eh_frame says where the return address is (the cpu tests check that
 * no level sets %rbp). GCC 12 even uses %rbp in hot_deep as a plain register
 * holding a stack address (its timespec's), which a frame-pointer walk would
 * take for a frame.
 */
#include "cpu_common.h"

#define DEEP_US 7000
#define SHALLOW_US 3000

SITE void hot_deep(void)
{
	hot_ns += spin_here(DEEP_US);
}

SITE void hot_shallow(void)
{
	cold_ns += spin_here(SHALLOW_US);
}

SITE void level5(void)
{
	hot_deep();
	keep_frame();
}

SITE void level4(void)
{
	level5();
	keep_frame();
}

SITE void level3(void)
{
	level4();
	keep_frame();
}

SITE void level2(void)
{
	hot_shallow();
	keep_frame();
	level3();
	keep_frame();
}

int main(int argc, char **argv)
{
	static const struct cpu_victim v = {"deep", "shallow", NULL, NULL};
	return cpu_main(argc, argv, &v);
}
