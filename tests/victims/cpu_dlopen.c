/*
 * One thread's CPU time split 70/30 between a library it loads with dlopen(3)
 * only once it runs, and itself: a mapping that appears after the profiler
 * attached, whose unwind tables and symbols it must pick up then.
 *
 *   cpu_dlopen [--wait] [MS [LIB]]
 *
 * Thread "worker", after the --wait handshake (see cpu_common.h), loads LIB
 * (default: libcpudl.so in the executable's own directory, where build.rs puts
 * it; libcpudl.c), prints "dlopened", finds cpudl_enter with dlsym(3), then
 * repeats run() for MS ms (default 2000):
 *
 *   run -> level1 -> level2 -> cpudl_enter -> cpudl_leaf    7 ms
 *                    level2 -> exe_leaf                     3 ms
 *
 * each leaf spinning that much of the thread's CPU time in its own frame: 70%
 * of the worker's CPU time in cpudl_leaf, 30% in exe_leaf. The library stays
 * loaded until the exit.
 *
 * It prints "worker_tid N", "dlopened" once the library is loaded (after
 * "ready" with --wait; without it, maybe before "worker_tid"), and "cycles N",
 * "dl_seconds S" and "exe_seconds S" (the CPU seconds each leaf measured itself
 * spinning) when it is done. It exits 1, saying why on stderr, when it cannot
 * load the library or find cpudl_enter in it.
 */
#include "cpu_common.h"

#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>

#define DL_US 7000
#define EXE_US 3000

static long long (*cpudl_enter)(long us);

/* Loads the library and finds its entry; exits the victim when it cannot. */
static void load(int argc, char **argv)
{
	char path[PATH_MAX];
	if (argc > 2) {
		snprintf(path, sizeof(path), "%s", argv[2]);
	} else {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0) {
			perror("readlink /proc/self/exe");
			exit(1);
		}
		exe[n] = '\0';
		snprintf(path, sizeof(path), "%s/libcpudl.so", dirname(exe));
	}
	void *lib = dlopen(path, RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		exit(1);
	}
	say("dlopened");
	cpudl_enter = (long long (*)(long))dlsym(lib, "cpudl_enter");
	if (!cpudl_enter) {
		fprintf(stderr, "dlsym cpudl_enter: %s\n", dlerror());
		exit(1);
	}
}

SITE void exe_leaf(void)
{
	cold_ns += spin_here(EXE_US);
}

SITE void level2(void)
{
	hot_ns += cpudl_enter(DL_US);
	keep_frame();
	exe_leaf();
	keep_frame();
}

int main(int argc, char **argv)
{
	static const struct cpu_victim v = {"dl", "exe", load, NULL};
	return cpu_main(argc, argv, &v);
}
