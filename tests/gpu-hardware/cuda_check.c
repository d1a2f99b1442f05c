/*
 * The gpu family's check on a machine with an NVIDIA GPU (no CUDA toolkit
 * needed): calls the driver API of the installed libcuda.so.1, loaded with
 * dlopen(3), with known counts, and holds its memory while nvidia-smi and the
 * profiler look.
 *
 *   cuda_check HOLD_MS
 *
 * cuInit, the first device's primary context, then in keep(): 8 x
 * cuMemAlloc_v2(64 MiB) kept; in churn(): 16 x cuMemAlloc_v2(1 MiB) and
 * cuMemFree_v2 of each; in copy(): 4 x cuMemcpyHtoD_v2(16 MiB); in
 * too_big(): cuMemAlloc_v2(1 PiB), which fails (prints "oom CODE");
 * cuCtxSynchronize; prints "holding" and sleeps HOLD_MS ms; frees and exits.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*fn_init)(unsigned);
typedef int (*fn_dev)(int *, int);
typedef int (*fn_retain)(void **, int);
typedef int (*fn_set)(void *);
typedef int (*fn_alloc)(unsigned long long *, size_t);
typedef int (*fn_free)(unsigned long long);
typedef int (*fn_htod)(unsigned long long, const void *, size_t);
typedef int (*fn_sync)(void);

static fn_alloc alloc_;
static fn_free free_;
static fn_htod htod;
static unsigned long long kept[8];

static void *need(void *lib, const char *name)
{
	void *f = dlsym(lib, name);
	if (!f) {
		fprintf(stderr, "%s: %s\n", name, dlerror());
		exit(1);
	}
	return f;
}

static void check(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "%s failed: %d\n", what, rc);
		exit(1);
	}
}

__attribute__((noinline)) void keep(void)
{
	for (int i = 0; i < 8; i++)
		check(alloc_(&kept[i], 64 << 20), "cuMemAlloc_v2 keep");
}

__attribute__((noinline)) void churn(void)
{
	for (int i = 0; i < 16; i++) {
		unsigned long long p;
		check(alloc_(&p, 1 << 20), "cuMemAlloc_v2 churn");
		check(free_(p), "cuMemFree_v2");
	}
}

__attribute__((noinline)) void copy(void)
{
	void *host = calloc(1, 16 << 20);
	for (int i = 0; i < 4; i++)
		check(htod(kept[0], host, 16 << 20), "cuMemcpyHtoD_v2");
	free(host);
}

__attribute__((noinline)) void too_big(void)
{
	unsigned long long p;
	printf("oom %d\n", alloc_(&p, 1ULL << 50));
}

int main(int argc, char **argv)
{
	long hold = argc > 1 ? atol(argv[1]) : 3000;
	void *lib = dlopen("libcuda.so.1", RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "dlopen libcuda.so.1: %s\n", dlerror());
		return 1;
	}
	alloc_ = (fn_alloc)need(lib, "cuMemAlloc_v2");
	free_ = (fn_free)need(lib, "cuMemFree_v2");
	htod = (fn_htod)need(lib, "cuMemcpyHtoD_v2");
	int dev;
	void *ctx;
	check(((fn_init)need(lib, "cuInit"))(0), "cuInit");
	check(((fn_dev)need(lib, "cuDeviceGet"))(&dev, 0), "cuDeviceGet");
	check(((fn_retain)need(lib, "cuDevicePrimaryCtxRetain"))(&ctx, dev), "retain");
	check(((fn_set)need(lib, "cuCtxSetCurrent"))(ctx), "cuCtxSetCurrent");
	keep();
	churn();
	copy();
	too_big();
	check(((fn_sync)need(lib, "cuCtxSynchronize"))(), "cuCtxSynchronize");
	printf("holding\n");
	fflush(stdout);
	usleep(hold * 1000);
	for (int i = 0; i < 8; i++)
		free_(kept[i]);
	return 0;
}
