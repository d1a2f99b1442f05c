/*
 * One thread's CPU time split 70/30 between a signal handler and the code the
 * signal interrupted: stacks that cross the kernel's signal frame, from the
 * handler through __restore_rt (the C library's return trampoline) into the
 * interrupted function, stopped one instruction past a system call, not at a
 * call.
 *
 *   cpu_signal [--wait] [MS]
 *
 * Thread "worker" repeats run() (see cpu_common.h) for MS ms (default 2000):
 *
 *   run -> level1 -> level2 -> outside_leaf                            3 ms
 *                    level2 -> send_signal, which sends itself SIGUSR1
 *                              with its own tgkill system call, then
 *     [signal frame] -> __restore_rt -> on_signal -> handler_level
 *                                            -> handler_leaf           7 ms
 *
 * each leaf spinning that much of the thread's CPU time in its own frame: 70%
 * of the worker's CPU time in handler_leaf, 30% in outside_leaf. The signal is
 * delivered on the way out of tgkill, so every cycle runs the handler once.
 *
 * It prints "worker_tid N" first, and "cycles N", "handler_seconds S",
 * "outside_seconds S" (the CPU seconds each leaf measured itself spinning) and
 * "signals N" (handlers run) when it is done; --wait as in cpu_common.h.
 */
#include "cpu_common.h"

#include <signal.h>
#include <sys/syscall.h>

#define HANDLER_US 7000
#define OUTSIDE_US 3000

/* Counted by the handler, on the thread it interrupted. */
static volatile long signals;

SITE void handler_leaf(void)
{
	hot_ns += spin_here(HANDLER_US);
}

SITE void handler_level(void)
{
	handler_leaf();
	keep_frame();
}

SITE void on_signal(int sig)
{
	(void)sig;
	handler_level();
	keep_frame();
	signals++;
}

static void install(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

/*
 * tgkill(2) to the calling thread, made here rather than in the C library, so
 * that the frame the signal interrupts is this function's.
 */
SITE void send_signal(void)
{
	long pid = getpid(), tid = gettid();
#ifdef __x86_64__
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"((long)SYS_tgkill), "D"(pid), "S"(tid),
			   "d"((long)SIGUSR1)
			 : "rcx", "r11", "memory");
	(void)ret;
#else
	syscall(SYS_tgkill, pid, tid, SIGUSR1);
#endif
	keep_frame();
}

SITE void outside_leaf(void)
{
	cold_ns += spin_here(OUTSIDE_US);
}

SITE void level2(void)
{
	outside_leaf();
	keep_frame();
	send_signal();
	keep_frame();
}

static void report(void)
{
	say("signals %ld", signals);
}

int main(int argc, char **argv)
{
	static const struct cpu_victim v = {"handler", "outside", install,
					    report};
	return cpu_main(argc, argv, &v);
}
