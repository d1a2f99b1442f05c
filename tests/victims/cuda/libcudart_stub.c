/*
 * A stand-in for NVIDIA's CUDA runtime, libcudart.so.12, for the gpu family's
 * tests on machines without a GPU: the functions the profiler puts uprobes on,
 * with the real library's names, x86-64 argument order and cudaError_t codes,
 * and no GPU behind them.
 *
 * Built by build.rs as $OUT_DIR/cuda/libcudart.so.12 (soname libcudart.so.12;
 * -O2 -fcf-protection=full -fno-omit-frame-pointer -shared -fPIC).
 *
 * Device and managed memory come from a fake device heap: addresses from a
 * bump pointer that starts at 0x700000000000 and is never reused, each block
 * aligned to 256 bytes, never readable (just numbers). At most 1 GiB may be
 * outstanding: a request beyond it fails with cudaErrorMemoryAllocation (2)
 * and sets *devPtr to NULL. The outstanding blocks are kept in a table, so
 * that cudaFree of an address the heap never handed out (or already took
 * back) fails with cudaErrorInvalidValue (1); cudaFree(NULL) succeeds.
 * cudaFreeAsync is the same with a stream. Pinned host memory
 * (cudaMallocHost, cudaHostAlloc) is real host memory from aligned_alloc(3),
 * which cudaFreeHost frees.
 *
 * cudaMemcpy and cudaMemcpyAsync copy nothing: a kind past cudaMemcpyDefault
 * (4) fails with cudaErrorInvalidMemcpyDirection (21), any other succeeds.
 * cudaLaunchKernel runs nothing (a NULL function: cudaErrorInvalidDeviceFunction,
 * 98). cudaDeviceSynchronize sleeps 20 ms, cudaStreamSynchronize 5 ms.
 *
 * No NVIDIA header: the types are declared here, as the real ones are laid out.
 * Every entry point has its own body (calling only static helpers, never
 * another export), so a probe on one never fires for another.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct {
	unsigned x, y, z;
} dim3;

enum {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInvalidMemcpyDirection = 21,
	cudaErrorInvalidDeviceFunction = 98,
	cudaErrorUnknown = 999,
};

enum {
	cudaMemcpyHostToHost = 0,
	cudaMemcpyHostToDevice = 1,
	cudaMemcpyDeviceToHost = 2,
	cudaMemcpyDeviceToDevice = 3,
	cudaMemcpyDefault = 4,
};

#define HEAP_BASE 0x700000000000ULL
#define HEAP_ALIGN 256ULL
#define HEAP_CAPACITY (1ULL << 30)
#define HEAP_SLOTS 4096

/* What the heap handed out: one slot per outstanding block (size 0: free). */
struct block {
	uintptr_t addr;
	size_t size;
	int managed;
};

static struct {
	pthread_mutex_t lock;
	uintptr_t next;
	size_t outstanding;
	/* Slots [0, high) have been used; a free one below it is reused first. */
	size_t high;
	struct block blocks[HEAP_SLOTS];
	/* What the calls did, as a real runtime's counters would. */
	unsigned long long allocs, frees, copies[5], copied[5], launches;
	unsigned long long threads_launched, stream_ops;
} heap = {.lock = PTHREAD_MUTEX_INITIALIZER, .next = HEAP_BASE};

/* Takes `size` bytes from the device heap: 0, or the error. Under the lock. */
static cudaError_t heap_take(size_t size, int managed, uintptr_t *addr)
{
	*addr = 0;
	if (size > HEAP_CAPACITY || heap.outstanding + size > HEAP_CAPACITY)
		return cudaErrorMemoryAllocation;
	size_t slot = 0;
	while (slot < heap.high && heap.blocks[slot].size != 0)
		slot++;
	if (slot == HEAP_SLOTS)
		return cudaErrorMemoryAllocation;
	if (slot == heap.high)
		heap.high++;
	uintptr_t at = (heap.next + HEAP_ALIGN - 1) & ~(uintptr_t)(HEAP_ALIGN - 1);
	heap.next = at + size;
	heap.blocks[slot] = (struct block){at, size, managed};
	heap.outstanding += size;
	heap.allocs++;
	*addr = at;
	return cudaSuccess;
}

/* Gives a block back to the device heap: 0, or the error. Under the lock. */
static cudaError_t heap_give(uintptr_t addr)
{
	for (size_t slot = 0; slot < heap.high; slot++) {
		struct block *b = &heap.blocks[slot];
		if (b->size != 0 && b->addr == addr) {
			heap.outstanding -= b->size;
			*b = (struct block){0, 0, 0};
			while (heap.high > 0 && heap.blocks[heap.high - 1].size == 0)
				heap.high--;
			heap.frees++;
			return cudaSuccess;
		}
	}
	return cudaErrorInvalidValue;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

EXPORT cudaError_t cudaMalloc(void **devPtr, size_t size)
{
	if (devPtr == NULL)
		return cudaErrorInvalidValue;
	if (size == 0) {
		*devPtr = NULL;
		return cudaSuccess;
	}
	uintptr_t addr;
	pthread_mutex_lock(&heap.lock);
	cudaError_t err = heap_take(size, 0, &addr);
	pthread_mutex_unlock(&heap.lock);
	*devPtr = (void *)addr;
	return err;
}

EXPORT cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t stream)
{
	if (devPtr == NULL)
		return cudaErrorInvalidValue;
	if (size == 0) {
		*devPtr = NULL;
		return cudaSuccess;
	}
	uintptr_t addr;
	pthread_mutex_lock(&heap.lock);
	/* Ordered on `stream`; with no GPU, done at once. */
	cudaError_t err = heap_take(size, 0, &addr);
	if (err == cudaSuccess)
		heap.stream_ops += stream != NULL;
	pthread_mutex_unlock(&heap.lock);
	*devPtr = (void *)addr;
	return err;
}

EXPORT cudaError_t cudaMallocManaged(void **devPtr, size_t size, unsigned flags)
{
	/* cudaMemAttachGlobal (1) or cudaMemAttachHost (2). */
	if (devPtr == NULL || (flags != 1 && flags != 2))
		return cudaErrorInvalidValue;
	if (size == 0) {
		*devPtr = NULL;
		return cudaSuccess;
	}
	uintptr_t addr;
	pthread_mutex_lock(&heap.lock);
	cudaError_t err = heap_take(size, (int)flags, &addr);
	pthread_mutex_unlock(&heap.lock);
	*devPtr = (void *)addr;
	return err;
}

EXPORT cudaError_t cudaMallocHost(void **ptr, size_t size)
{
	if (ptr == NULL)
		return cudaErrorInvalidValue;
	/* Page-locked memory: whole pages. */
	size_t rounded = (size + 4095) & ~(size_t)4095;
	void *p = aligned_alloc(4096, rounded ? rounded : 4096);
	*ptr = p;
	return p ? cudaSuccess : cudaErrorMemoryAllocation;
}

EXPORT cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned flags)
{
	/* cudaHostAllocPortable | Mapped | WriteCombined: 1 | 2 | 4. */
	if (pHost == NULL || (flags & ~7u) != 0)
		return cudaErrorInvalidValue;
	size_t rounded = (size + 4095) & ~(size_t)4095;
	void *p = aligned_alloc(4096, rounded ? rounded : 4096);
	if (p != NULL && (flags & 4) != 0)
		memset(p, 0, rounded ? rounded : 4096);
	*pHost = p;
	return p ? cudaSuccess : cudaErrorMemoryAllocation;
}

EXPORT cudaError_t cudaFree(void *devPtr)
{
	if (devPtr == NULL)
		return cudaSuccess;
	pthread_mutex_lock(&heap.lock);
	cudaError_t err = heap_give((uintptr_t)devPtr);
	pthread_mutex_unlock(&heap.lock);
	return err;
}

EXPORT cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t stream)
{
	if (devPtr == NULL)
		return cudaSuccess;
	pthread_mutex_lock(&heap.lock);
	/* Ordered on `stream`; with no GPU, done at once. */
	cudaError_t err = heap_give((uintptr_t)devPtr);
	if (err == cudaSuccess)
		heap.stream_ops += stream != NULL;
	pthread_mutex_unlock(&heap.lock);
	return err;
}

EXPORT cudaError_t cudaFreeHost(void *ptr)
{
	free(ptr);
	return cudaSuccess;
}

/* Counts one copy of `count` bytes of `kind` (on a stream: `async`): 0, or the error. */
static cudaError_t copy(const void *dst, const void *src, size_t count, int kind, int async)
{
	if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
		return cudaErrorInvalidMemcpyDirection;
	if (count != 0 && (dst == NULL || src == NULL))
		return cudaErrorInvalidValue;
	pthread_mutex_lock(&heap.lock);
	heap.copies[kind]++;
	heap.copied[kind] += count;
	heap.stream_ops += async;
	pthread_mutex_unlock(&heap.lock);
	return cudaSuccess;
}

EXPORT cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, int kind)
{
	/* A synchronous copy waits for the device: nothing to wait for here. */
	return copy(dst, src, count, kind, 0);
}

EXPORT cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, int kind,
				   cudaStream_t stream)
{
	(void)stream;
	return copy(dst, src, count, kind, 1);
}

EXPORT cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
				    size_t sharedMem, cudaStream_t stream)
{
	if (func == NULL)
		return cudaErrorInvalidDeviceFunction;
	unsigned long long blocks = (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
	unsigned long long threads = (unsigned long long)blockDim.x * blockDim.y * blockDim.z;
	if (blocks == 0 || threads == 0 || threads > 1024 || sharedMem > 228 * 1024)
		return cudaErrorInvalidConfiguration;
	pthread_mutex_lock(&heap.lock);
	heap.launches++;
	heap.threads_launched += blocks * threads;
	pthread_mutex_unlock(&heap.lock);
	(void)args;
	(void)stream;
	return cudaSuccess;
}

EXPORT cudaError_t cudaDeviceSynchronize(void)
{
	sleep_ms(20);
	return cudaSuccess;
}

EXPORT cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
	(void)stream;
	sleep_ms(5);
	return cudaSuccess;
}

EXPORT const char *cudaGetErrorName(cudaError_t error)
{
	switch (error) {
	case cudaSuccess:
		return "cudaSuccess";
	case cudaErrorInvalidValue:
		return "cudaErrorInvalidValue";
	case cudaErrorMemoryAllocation:
		return "cudaErrorMemoryAllocation";
	case cudaErrorInvalidConfiguration:
		return "cudaErrorInvalidConfiguration";
	case cudaErrorInvalidMemcpyDirection:
		return "cudaErrorInvalidMemcpyDirection";
	case cudaErrorInvalidDeviceFunction:
		return "cudaErrorInvalidDeviceFunction";
	case cudaErrorUnknown:
		return "cudaErrorUnknown";
	default:
		return "unrecognized error code";
	}
}
