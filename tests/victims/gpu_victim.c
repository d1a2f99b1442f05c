/*
 * The gpu family's C victim: a CUDA program in miniature, on the stub CUDA
 * libraries in victims/cuda/ (no GPU needed), making exactly known calls from
 * known functions. It links the runtime (libcudart.so.12, found through its
 * rpath, $OUT_DIR/cuda) and loads the driver (libcuda.so.1) with dlopen(3)
 * once it runs, as the real runtime does.
 *
 *   gpu_victim [--wait] [LIBCUDA]
 *   gpu_victim [--wait] loop N
 *
 * LIBCUDA: the driver library to load (default: cuda/libcuda.so.1 in the
 * executable's own directory, where build.rs puts it).
 *
 * With --wait the victim prints "ready", waits for a byte on stdin, runs,
 * prints "done", then waits for one more byte (or end of file) before it exits
 * 0. Without it, it lingers 200 ms before it exits. Before "ready" it
 * mallocs a 1 MiB host staging buffer (the host side of the copies), which it
 * keeps.
 *
 * Every function named below is noinline and noipa, and makes its CUDA calls
 * itself (the caller of each cudaMalloc in keep_buffers() is keep_buffers).
 * 1 MiB = 1048576 bytes, 1 KiB = 1024.
 *
 * Phase 1, the runtime (linked):
 *   keep_buffers()     10 x cudaMalloc(1 MiB), kept in a global array
 *   leak_buffers()      5 x cudaMalloc(256 KiB), pointers dropped
 *   scratch_buffers()  20 x cudaMalloc(64 KiB), then 20 x cudaFree of them
 *   pinned_buffers()    3 x cudaMallocHost(4096), kept in a global array, then
 *                       cudaFreeHost of the first
 *   managed_buffers()   2 x cudaMallocManaged(128 KiB, 1), then cudaFree of
 *                       the second
 *   async_buffers()     4 x cudaMallocAsync(32 KiB, NULL), then 4 x
 *                       cudaFreeAsync(p, NULL) of them
 *   copy_in()           8 x cudaMemcpy(dev, host, 1 MiB, 1 H2D) and
 *                      16 x cudaMemcpyAsync(dev, host, 4096, 1 H2D, NULL)
 *   copy_out()          4 x cudaMemcpy(host, dev, 512 KiB, 2 D2H)
 *   copy_device()       2 x cudaMemcpy(dev, dev, 256 KiB, 3 D2D)
 *   launch_kernels()  100 x cudaLaunchKernel(vector_add, {64,1,1},
 *                       {256,1,1}, args, 0, NULL) and 50 x the same with
 *                       reduce_sum (host stubs in this file)
 *   synchronize()       3 x cudaDeviceSynchronize() (20 ms each in the stub),
 *                       2 x cudaStreamSynchronize(NULL) (5 ms each)
 *   too_big()           cudaMalloc(4 GiB), which fails with
 *                       cudaErrorMemoryAllocation: prints "runtime_oom 2"
 *   bad_copy()          cudaMemcpy(..., 4096, kind 7), which fails with
 *                       cudaErrorInvalidMemcpyDirection: prints "bad_copy 21"
 * then prints "runtime_done", loads the driver with dlopen(3) and finds its
 * functions with dlsym(3), prints "dlopened", and sleeps
 * GPU_VICTIM_DLOPEN_PAUSE_MS ms (default 1000), for a profiler to probe the
 * library that appeared.
 *
 * Phase 2, the driver (dlopen'd): cuInit(0), then
 *   driver_keep()       4 x cuMemAlloc_v2(1 MiB), kept in a global array
 *   driver_scratch()    2 x cuMemAlloc_v2(2 MiB), then cuMemFree_v2 of both
 *   driver_too_big()    cuMemAlloc_v2(8 GiB), which fails with
 *                       CUDA_ERROR_OUT_OF_MEMORY: prints "driver_oom 2"
 *   driver_copy()       5 x cuMemcpyHtoD_v2(dev, host, 64 KiB),
 *                       3 x cuMemcpyDtoH_v2(host, dev, 64 KiB)
 *   driver_launch()     cuModuleLoadData, cuModuleGetFunction "matmul_kernel",
 *                      30 x cuLaunchKernel(it, 16,1,1, 128,1,1, 0, NULL,
 *                       params, NULL); cuModuleGetFunction "softmax_kernel",
 *                      10 x cuLaunchKernel(it, the same)
 *   driver_sync()       1 x cuCtxSynchronize() (10 ms in the stub)
 *   driver_vmm()        cuMemAddressReserve(&va, 4 MiB, 0, 0, 0),
 *                       2 x cuMemCreate(&h[i], 2 MiB, &prop, 0),
 *                       2 x cuMemMap(va + i * 2 MiB, 2 MiB, 0, h[i], 0),
 *                       then cuMemRelease(h[1]) only
 * then prints "driver_done" and "done".
 *
 * In all, through the runtime: cudaMalloc 36 calls (35 succeed), cudaFree 21,
 * cudaMallocManaged 2, cudaMallocAsync 4, cudaFreeAsync 4, cudaMallocHost 3,
 * cudaFreeHost 1, cudaMemcpy 15 (14 succeed), cudaMemcpyAsync 16,
 * cudaLaunchKernel 150, cudaDeviceSynchronize 3, cudaStreamSynchronize 2; left
 * outstanding on the device: 10 x 1 MiB (keep_buffers) + 5 x 256 KiB
 * (leak_buffers) + 1 x 128 KiB (managed_buffers) = 11927552 bytes, and
 * pinned on the host 2 x 4096. Copied: H2D 8 x 1 MiB + 16 x 4096 = 8454144
 * bytes, D2H 2097152, D2D 524288. Through the driver: cuMemAlloc_v2 7 calls (6
 * succeed), cuMemFree_v2 2, cuLaunchKernel 40 (30 matmul_kernel, 10
 * softmax_kernel), cuCtxSynchronize 1, cuMemCreate 2, cuMemMap 2, cuMemRelease
 * 1; left outstanding: 4 x 1 MiB (driver_keep) and the 2 MiB of h[0]. Copied:
 * HtoD 327680 bytes, DtoH 196608.
 *
 * loop N: instead of all that, hot_alloc() makes N rounds of cudaMalloc(256)
 * and cudaFree of it, then the victim prints "loop_done" (before "done"): for
 * a benchmark of the cost of a probed call.
 *
 * Any call that should succeed and fails, an expected failure with another
 * code, or a dlopen or dlsym that fails: a message on stderr and exit 1.
 */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline, noipa))

/* The runtime's API, as libcudart.so.12 exports it (no NVIDIA header). */
typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct {
	unsigned x, y, z;
} dim3;

extern cudaError_t cudaMalloc(void **devPtr, size_t size);
extern cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t stream);
extern cudaError_t cudaMallocManaged(void **devPtr, size_t size, unsigned flags);
extern cudaError_t cudaMallocHost(void **ptr, size_t size);
extern cudaError_t cudaFree(void *devPtr);
extern cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t stream);
extern cudaError_t cudaFreeHost(void *ptr);
extern cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, int kind);
extern cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind,
				   cudaStream_t stream);
extern cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
				    size_t sharedMem, cudaStream_t stream);
extern cudaError_t cudaDeviceSynchronize(void);
extern cudaError_t cudaStreamSynchronize(cudaStream_t stream);
extern const char *cudaGetErrorName(cudaError_t error);

/* The driver's API, as libcuda.so.1 exports it, found with dlsym(3). */
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;

static struct {
	CUresult (*cuInit)(unsigned flags);
	CUresult (*cuMemAlloc_v2)(CUdeviceptr *dptr, size_t bytesize);
	CUresult (*cuMemFree_v2)(CUdeviceptr dptr);
	CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr dst, const void *src, size_t n);
	CUresult (*cuMemcpyDtoH_v2)(void *dst, CUdeviceptr src, size_t n);
	CUresult (*cuModuleLoadData)(CUmodule *module, const void *image);
	CUresult (*cuModuleGetFunction)(CUfunction *hfunc, CUmodule hmod, const char *name);
	CUresult (*cuLaunchKernel)(CUfunction f, unsigned gridDimX, unsigned gridDimY,
				   unsigned gridDimZ, unsigned blockDimX, unsigned blockDimY,
				   unsigned blockDimZ, unsigned sharedMemBytes, CUstream hStream,
				   void **kernelParams, void **extra);
	CUresult (*cuCtxSynchronize)(void);
	CUresult (*cuMemAddressReserve)(CUdeviceptr *ptr, size_t size, size_t alignment,
					CUdeviceptr addr, unsigned long long flags);
	CUresult (*cuMemCreate)(CUmemGenericAllocationHandle *handle, size_t size,
				const void *prop, unsigned long long flags);
	CUresult (*cuMemMap)(CUdeviceptr ptr, size_t size, size_t offset,
			     CUmemGenericAllocationHandle handle, unsigned long long flags);
	CUresult (*cuMemRelease)(CUmemGenericAllocationHandle handle);
	CUresult (*cuGetErrorName)(CUresult error, const char **pStr);
} cu;

#define KIB 1024UL
#define MIB (1024UL * 1024UL)

#define H2D 1
#define D2H 2
#define D2D 3

/* Exits the victim when a runtime call that should succeed fails. */
#define RT(call)                                                                       \
	do {                                                                           \
		cudaError_t err_ = (call);                                             \
		if (err_ != 0) {                                                       \
			fprintf(stderr, "gpu_victim: %s: %s (%d)\n", #call,            \
				cudaGetErrorName(err_), err_);                         \
			exit(1);                                                       \
		}                                                                      \
	} while (0)

/* Exits the victim when a driver call that should succeed fails. */
#define DRV(call)                                                                      \
	do {                                                                           \
		CUresult err_ = (call);                                                \
		if (err_ != 0) {                                                       \
			const char *name_ = NULL;                                      \
			cu.cuGetErrorName(err_, &name_);                               \
			fprintf(stderr, "gpu_victim: %s: %s (%d)\n", #call,            \
				name_ ? name_ : "?", err_);                            \
			exit(1);                                                       \
		}                                                                      \
	} while (0)

static void *volatile sink;
/* Global (not static), so that the stores of the pointers kept stay. */
void *gpu_kept[10];
void *pinned[3];
void *managed[2];
CUdeviceptr driver_kept[4];
CUmemGenericAllocationHandle vmm_handles[2];
/* The host side of the copies. */
char *staging;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void say(const char *line)
{
	puts(line);
	fflush(stdout);
}

static void wait_byte(void)
{
	char c;
	if (read(0, &c, 1) < 0)
		perror("read");
}

SITE void host_staging(void)
{
	staging = malloc(MIB);
	if (staging == NULL) {
		perror("malloc");
		exit(1);
	}
	memset(staging, 1, MIB);
}

/* The host stubs of the kernels launched: what the kernels would compute. */
SITE void vector_add(float *a, float *b, float *c, int n)
{
	for (int i = 0; i < n; i++)
		c[i] = a[i] + b[i];
}

SITE void reduce_sum(float *in, float *out, int n)
{
	float sum = 0;
	for (int i = 0; i < n; i++)
		sum += in[i] * in[i];
	*out = sum;
}

SITE void keep_buffers(void)
{
	for (int i = 0; i < 10; i++)
		RT(cudaMalloc(&gpu_kept[i], 1 * MIB));
}

SITE void leak_buffers(void)
{
	for (int i = 0; i < 5; i++) {
		void *p = NULL;
		RT(cudaMalloc(&p, 256 * KIB));
		sink = p;
	}
	sink = NULL;
}

SITE void scratch_buffers(void)
{
	void *p[20];
	for (int i = 0; i < 20; i++)
		RT(cudaMalloc(&p[i], 64 * KIB));
	for (int i = 0; i < 20; i++)
		RT(cudaFree(p[i]));
}

SITE void pinned_buffers(void)
{
	for (int i = 0; i < 3; i++)
		RT(cudaMallocHost(&pinned[i], 4096));
	RT(cudaFreeHost(pinned[0]));
	pinned[0] = NULL;
}

SITE void managed_buffers(void)
{
	for (int i = 0; i < 2; i++)
		RT(cudaMallocManaged(&managed[i], 128 * KIB, 1));
	RT(cudaFree(managed[1]));
	managed[1] = NULL;
}

SITE void async_buffers(void)
{
	void *p[4];
	for (int i = 0; i < 4; i++)
		RT(cudaMallocAsync(&p[i], 32 * KIB, NULL));
	for (int i = 0; i < 4; i++)
		RT(cudaFreeAsync(p[i], NULL));
}

SITE void copy_in(void)
{
	for (int i = 0; i < 8; i++)
		RT(cudaMemcpy(gpu_kept[0], staging, 1 * MIB, H2D));
	for (int i = 0; i < 16; i++)
		RT(cudaMemcpyAsync(gpu_kept[1], staging, 4096, H2D, NULL));
}

SITE void copy_out(void)
{
	for (int i = 0; i < 4; i++)
		RT(cudaMemcpy(staging, gpu_kept[2], 512 * KIB, D2H));
}

SITE void copy_device(void)
{
	for (int i = 0; i < 2; i++)
		RT(cudaMemcpy(gpu_kept[3], gpu_kept[4], 256 * KIB, D2D));
}

SITE void launch_kernels(void)
{
	float *a = gpu_kept[5], *b = gpu_kept[6], *c = gpu_kept[7];
	int n = 64 * 256;
	dim3 grid = {64, 1, 1}, block = {256, 1, 1};
	void *add_args[] = {&a, &b, &c, &n};
	for (int i = 0; i < 100; i++)
		RT(cudaLaunchKernel((const void *)vector_add, grid, block, add_args, 0, NULL));
	void *sum_args[] = {&a, &c, &n};
	for (int i = 0; i < 50; i++)
		RT(cudaLaunchKernel((const void *)reduce_sum, grid, block, sum_args, 0, NULL));
}

SITE void synchronize(void)
{
	for (int i = 0; i < 3; i++)
		RT(cudaDeviceSynchronize());
	for (int i = 0; i < 2; i++)
		RT(cudaStreamSynchronize(NULL));
}

SITE void too_big(void)
{
	void *p = (void *)1;
	cudaError_t err = cudaMalloc(&p, 4UL << 30);
	printf("runtime_oom %d\n", err);
	fflush(stdout);
	if (err != 2 || p != NULL) {
		fprintf(stderr, "gpu_victim: cudaMalloc(4 GiB): %d, %p; want 2, NULL\n", err, p);
		exit(1);
	}
}

SITE void bad_copy(void)
{
	cudaError_t err = cudaMemcpy(staging, gpu_kept[0], 4096, 7);
	printf("bad_copy %d\n", err);
	fflush(stdout);
	if (err != 21) {
		fprintf(stderr, "gpu_victim: cudaMemcpy(kind 7): %d; want 21\n", err);
		exit(1);
	}
}

SITE void hot_alloc(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = NULL;
		RT(cudaMalloc(&p, 256));
		RT(cudaFree(p));
	}
}

/* Loads the driver and finds its functions; exits the victim when it cannot. */
static void load_driver(const char *given)
{
	char path[PATH_MAX];
	if (given != NULL) {
		snprintf(path, sizeof(path), "%s", given);
	} else {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n < 0) {
			perror("readlink /proc/self/exe");
			exit(1);
		}
		exe[n] = '\0';
		snprintf(path, sizeof(path), "%s/cuda/libcuda.so.1", dirname(exe));
	}
	void *lib = dlopen(path, RTLD_NOW);
	if (lib == NULL) {
		fprintf(stderr, "gpu_victim: dlopen %s: %s\n", path, dlerror());
		exit(1);
	}
#define FIND(name)                                                                     \
	do {                                                                           \
		*(void **)&cu.name = dlsym(lib, #name);                                \
		if (cu.name == NULL) {                                                 \
			fprintf(stderr, "gpu_victim: dlsym %s: %s\n", #name, dlerror()); \
			exit(1);                                                       \
		}                                                                      \
	} while (0)
	FIND(cuInit);
	FIND(cuMemAlloc_v2);
	FIND(cuMemFree_v2);
	FIND(cuMemcpyHtoD_v2);
	FIND(cuMemcpyDtoH_v2);
	FIND(cuModuleLoadData);
	FIND(cuModuleGetFunction);
	FIND(cuLaunchKernel);
	FIND(cuCtxSynchronize);
	FIND(cuMemAddressReserve);
	FIND(cuMemCreate);
	FIND(cuMemMap);
	FIND(cuMemRelease);
	FIND(cuGetErrorName);
#undef FIND
}

SITE void driver_keep(void)
{
	for (int i = 0; i < 4; i++)
		DRV(cu.cuMemAlloc_v2(&driver_kept[i], 1 * MIB));
}

SITE void driver_scratch(void)
{
	CUdeviceptr p[2];
	for (int i = 0; i < 2; i++)
		DRV(cu.cuMemAlloc_v2(&p[i], 2 * MIB));
	for (int i = 0; i < 2; i++)
		DRV(cu.cuMemFree_v2(p[i]));
}

SITE void driver_too_big(void)
{
	CUdeviceptr p = 1;
	CUresult err = cu.cuMemAlloc_v2(&p, 8UL << 30);
	printf("driver_oom %d\n", err);
	fflush(stdout);
	if (err != 2 || p != 0) {
		fprintf(stderr, "gpu_victim: cuMemAlloc_v2(8 GiB): %d, %#llx; want 2, 0\n", err, p);
		exit(1);
	}
}

SITE void driver_copy(void)
{
	for (int i = 0; i < 5; i++)
		DRV(cu.cuMemcpyHtoD_v2(driver_kept[0], staging, 64 * KIB));
	for (int i = 0; i < 3; i++)
		DRV(cu.cuMemcpyDtoH_v2(staging, driver_kept[1], 64 * KIB));
}

SITE void driver_launch(void)
{
	static const char image[] = "//\n// stand-in PTX\n//\n.version 8.0\n.target sm_90\n";
	CUmodule mod;
	CUfunction f, g;
	CUdeviceptr a = driver_kept[0], b = driver_kept[1], c = driver_kept[2];
	int n = 16 * 128;
	void *params[] = {&a, &b, &c, &n};

	DRV(cu.cuModuleLoadData(&mod, image));
	DRV(cu.cuModuleGetFunction(&f, mod, "matmul_kernel"));
	for (int i = 0; i < 30; i++)
		DRV(cu.cuLaunchKernel(f, 16, 1, 1, 128, 1, 1, 0, NULL, params, NULL));
	DRV(cu.cuModuleGetFunction(&g, mod, "softmax_kernel"));
	if (g == f) {
		fprintf(stderr, "gpu_victim: matmul_kernel and softmax_kernel share a handle\n");
		exit(1);
	}
	for (int i = 0; i < 10; i++)
		DRV(cu.cuLaunchKernel(g, 16, 1, 1, 128, 1, 1, 0, NULL, params, NULL));
}

SITE void driver_sync(void)
{
	DRV(cu.cuCtxSynchronize());
}

SITE void driver_vmm(void)
{
	/* Stands in for CUmemAllocationProp: pinned, on device 0. */
	struct {
		int type, handle_type, location_type, location_id;
	} prop = {1, 0, 1, 0};
	CUdeviceptr va;

	DRV(cu.cuMemAddressReserve(&va, 4 * MIB, 0, 0, 0));
	for (int i = 0; i < 2; i++)
		DRV(cu.cuMemCreate(&vmm_handles[i], 2 * MIB, &prop, 0));
	for (int i = 0; i < 2; i++)
		DRV(cu.cuMemMap(va + i * 2 * MIB, 2 * MIB, 0, vmm_handles[i], 0));
	DRV(cu.cuMemRelease(vmm_handles[1]));
}

static long pause_ms(void)
{
	const char *ms = getenv("GPU_VICTIM_DLOPEN_PAUSE_MS");
	return ms != NULL && *ms != '\0' ? strtol(ms, NULL, 10) : 1000;
}

int main(int argc, char **argv)
{
	int i = 1;
	int wait = 0;
	long loops = -1;
	const char *libcuda = NULL;

	if (i < argc && strcmp(argv[i], "--wait") == 0) {
		wait = 1;
		i++;
	}
	if (i < argc && strcmp(argv[i], "loop") == 0) {
		if (i + 1 >= argc) {
			fprintf(stderr, "usage: gpu_victim [--wait] loop N\n");
			return 2;
		}
		loops = strtol(argv[i + 1], NULL, 10);
	} else if (i < argc) {
		libcuda = argv[i];
	}

	if (loops < 0)
		host_staging();
	if (wait) {
		say("ready");
		wait_byte();
	}

	if (loops >= 0) {
		hot_alloc(loops);
		say("loop_done");
	} else {
		keep_buffers();
		leak_buffers();
		scratch_buffers();
		pinned_buffers();
		managed_buffers();
		async_buffers();
		copy_in();
		copy_out();
		copy_device();
		launch_kernels();
		synchronize();
		too_big();
		bad_copy();
		say("runtime_done");

		load_driver(libcuda);
		say("dlopened");
		sleep_ms(pause_ms());

		DRV(cu.cuInit(0));
		driver_keep();
		driver_scratch();
		driver_too_big();
		driver_copy();
		driver_launch();
		driver_sync();
		driver_vmm();
		say("driver_done");
	}

	say("done");
	if (wait) {
		wait_byte();
	} else {
		/* `profiler run` reads the mappings of a new target every 20 ms:
		 * stay long enough for it to see them. */
		sleep_ms(200);
	}
	return 0;
}
