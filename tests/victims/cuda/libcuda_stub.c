/*
 * A stand-in for NVIDIA's CUDA driver library, libcuda.so.1, for the gpu
 * family's tests on machines without a GPU: the functions the profiler puts
 * uprobes on, with the real library's names (the _v2 ones cuda.h maps its
 * names to, and the legacy 32-bit cuMemAlloc and cuMemFree it still exports),
 * x86-64 argument order and CUresult codes, and no GPU behind them.
 *
 * Built by build.rs as $OUT_DIR/cuda/libcuda.so.1 (soname libcuda.so.1;
 * -O2 -fcf-protection=full -fno-omit-frame-pointer -shared -fPIC).
 *
 * Device memory (cuMemAlloc_v2, cuMemAllocManaged) comes from a fake device
 * heap: addresses from a bump pointer that starts at 0x710000000000 and is
 * never reused, each block aligned to 256 bytes, never readable (just
 * numbers). The legacy cuMemAlloc takes its blocks from the same heap but from
 * a bump pointer of its own below 4 GiB (at 0x40000000), since it hands out
 * 32-bit addresses. At most 1 GiB may be outstanding, counting the physical
 * allocations of cuMemCreate: a request beyond it fails with
 * CUDA_ERROR_OUT_OF_MEMORY (2) and writes 0 to *dptr. The outstanding blocks
 * are kept in a table, so that freeing an address the heap never handed out
 * (or already took back) fails with CUDA_ERROR_INVALID_VALUE (1); freeing 0
 * succeeds. Pinned host memory (cuMemAllocHost_v2) is real host memory from
 * aligned_alloc(3), which cuMemFreeHost frees.
 *
 * The virtual memory management calls: cuMemCreate hands out handles 0x1000 +
 * 16 * n (n = 0, 1, ...), whose sizes count against the 1 GiB, and
 * cuMemRelease of a handle it never handed out (or already took back) fails
 * with CUDA_ERROR_INVALID_VALUE; cuMemAddressReserve hands out ranges from a
 * bump region of its own at 0x720000000000 (aligned to `alignment`, or 2 MiB
 * when 0), which cuMemAddressFree takes back; cuMemMap checks that the range
 * lies in a reservation and the handle is outstanding, cuMemUnmap that the
 * range lies in a reservation.
 *
 * The copies copy nothing. cuModuleLoadData returns a module for any image;
 * cuModuleGetFunction one distinct handle per name in a module (the same one
 * for the same name), CUDA_ERROR_INVALID_HANDLE (400) for a NULL module.
 * cuLaunchKernel runs nothing (a NULL function: CUDA_ERROR_INVALID_HANDLE).
 * cuCtxSynchronize sleeps 10 ms, cuStreamSynchronize 5 ms. Unlike the real
 * library, no call fails for want of cuInit.
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

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned int CUdeviceptr_v1;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_INVALID_VALUE = 1,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_INVALID_IMAGE = 200,
	CUDA_ERROR_INVALID_HANDLE = 400,
	CUDA_ERROR_NOT_FOUND = 500,
	CUDA_ERROR_UNKNOWN = 999,
};

#define HEAP_BASE 0x710000000000ULL
#define LEGACY_BASE 0x40000000ULL
#define RESERVE_BASE 0x720000000000ULL
#define HEAP_ALIGN 256ULL
#define GRANULARITY (2ULL << 20)
#define HEAP_CAPACITY (1ULL << 30)
#define SLOTS 4096

/* One outstanding block, physical allocation or reservation (size 0: free). */
struct block {
	CUdeviceptr addr;
	size_t size;
};

/* A table of outstanding blocks: slots [0, high) have been used. */
struct table {
	size_t high;
	struct block blocks[SLOTS];
};

static struct {
	pthread_mutex_t lock;
	int initialized;
	CUdeviceptr next, next_legacy, next_reserve;
	unsigned long long handles_made;
	size_t outstanding;
	struct table memory, handles, reserved;
	/* What the calls did, as a real driver's counters would. */
	unsigned long long allocs, frees, copies[3], copied[3], launches, maps, unmaps;
	unsigned long long threads_launched, stream_ops;
} dev = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.next = HEAP_BASE,
	.next_legacy = LEGACY_BASE,
	.next_reserve = RESERVE_BASE,
};

/* Puts a block in a table: 0, or CUDA_ERROR_OUT_OF_MEMORY when it is full. */
static CUresult table_put(struct table *t, CUdeviceptr addr, size_t size)
{
	size_t slot = 0;
	while (slot < t->high && t->blocks[slot].size != 0)
		slot++;
	if (slot == SLOTS)
		return CUDA_ERROR_OUT_OF_MEMORY;
	if (slot == t->high)
		t->high++;
	t->blocks[slot] = (struct block){addr, size};
	return CUDA_SUCCESS;
}

/* The outstanding block at `addr`, or NULL. */
static struct block *table_find(struct table *t, CUdeviceptr addr)
{
	for (size_t slot = 0; slot < t->high; slot++)
		if (t->blocks[slot].size != 0 && t->blocks[slot].addr == addr)
			return &t->blocks[slot];
	return NULL;
}

/* The outstanding block that holds [addr, addr + size), or NULL. */
static struct block *table_covering(struct table *t, CUdeviceptr addr, size_t size)
{
	for (size_t slot = 0; slot < t->high; slot++) {
		struct block *b = &t->blocks[slot];
		if (b->size != 0 && addr >= b->addr && size <= b->size &&
		    addr - b->addr <= b->size - size)
			return b;
	}
	return NULL;
}

/* Takes a block out of its table; returns its size. */
static size_t table_drop(struct table *t, struct block *b)
{
	size_t size = b->size;
	*b = (struct block){0, 0};
	while (t->high > 0 && t->blocks[t->high - 1].size == 0)
		t->high--;
	return size;
}

/*
 * Takes `size` bytes from the device heap at the bump pointer `*next`, below
 * `limit`: 0, or the error. Under the lock.
 */
static CUresult heap_take(size_t size, CUdeviceptr *next, CUdeviceptr limit, CUdeviceptr *addr)
{
	*addr = 0;
	if (size > HEAP_CAPACITY || dev.outstanding + size > HEAP_CAPACITY)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUdeviceptr at = (*next + HEAP_ALIGN - 1) & ~(CUdeviceptr)(HEAP_ALIGN - 1);
	if (at + size > limit)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult err = table_put(&dev.memory, at, size);
	if (err != CUDA_SUCCESS)
		return err;
	*next = at + size;
	dev.outstanding += size;
	dev.allocs++;
	*addr = at;
	return CUDA_SUCCESS;
}

/* Gives the block at `addr` back to the device heap: 0, or the error. Under the lock. */
static CUresult heap_give(CUdeviceptr addr)
{
	struct block *b = table_find(&dev.memory, addr);
	if (b == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	dev.outstanding -= table_drop(&dev.memory, b);
	dev.frees++;
	return CUDA_SUCCESS;
}

/* Counts one copy of `n` bytes, of kind 0 (HtoD), 1 (DtoH) or 2 (DtoD). */
static CUresult copy(int kind, int dst_null, int src_null, size_t n, int async)
{
	if (n != 0 && (dst_null || src_null))
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	dev.copies[kind]++;
	dev.copied[kind] += n;
	dev.stream_ops += async;
	pthread_mutex_unlock(&dev.lock);
	return CUDA_SUCCESS;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

EXPORT CUresult cuInit(unsigned flags)
{
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	dev.initialized = 1;
	pthread_mutex_unlock(&dev.lock);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	if (dptr == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (bytesize == 0) {
		*dptr = 0;
		return CUDA_ERROR_INVALID_VALUE;
	}
	CUdeviceptr addr;
	pthread_mutex_lock(&dev.lock);
	CUresult err = heap_take(bytesize, &dev.next, RESERVE_BASE, &addr);
	pthread_mutex_unlock(&dev.lock);
	*dptr = addr;
	return err;
}

/* The legacy entry point, with 32-bit device addresses: code of its own. */
EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned bytesize)
{
	if (dptr == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	if (bytesize == 0) {
		*dptr = 0;
		return CUDA_ERROR_INVALID_VALUE;
	}
	CUdeviceptr addr;
	pthread_mutex_lock(&dev.lock);
	CUresult err = heap_take(bytesize, &dev.next_legacy, 1ULL << 32, &addr);
	pthread_mutex_unlock(&dev.lock);
	*dptr = (CUdeviceptr_v1)addr;
	return err;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
	if (dptr == 0)
		return CUDA_SUCCESS;
	pthread_mutex_lock(&dev.lock);
	CUresult err = heap_give(dptr);
	pthread_mutex_unlock(&dev.lock);
	return err;
}

/* The legacy entry point, with a 32-bit device address: code of its own. */
EXPORT CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
	if (dptr == 0)
		return CUDA_SUCCESS;
	pthread_mutex_lock(&dev.lock);
	CUresult err = dptr >= LEGACY_BASE ? heap_give(dptr) : CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
	if (pp == NULL || bytesize == 0)
		return CUDA_ERROR_INVALID_VALUE;
	/* Page-locked memory: whole pages. */
	size_t rounded = (bytesize + 4095) & ~(size_t)4095;
	void *p = aligned_alloc(4096, rounded);
	*pp = p;
	return p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

EXPORT CUresult cuMemFreeHost(void *p)
{
	if (p == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	free(p);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned flags)
{
	/* CU_MEM_ATTACH_GLOBAL (1) or CU_MEM_ATTACH_HOST (2). */
	if (dptr == NULL || bytesize == 0 || (flags != 1 && flags != 2))
		return CUDA_ERROR_INVALID_VALUE;
	CUdeviceptr addr;
	pthread_mutex_lock(&dev.lock);
	CUresult err = heap_take(bytesize, &dev.next, RESERVE_BASE, &addr);
	pthread_mutex_unlock(&dev.lock);
	*dptr = addr;
	return err;
}

EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const void *prop,
			    unsigned long long flags)
{
	if (handle == NULL || prop == NULL || size == 0 || flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	*handle = 0;
	CUresult err = CUDA_ERROR_OUT_OF_MEMORY;
	pthread_mutex_lock(&dev.lock);
	if (size <= HEAP_CAPACITY && dev.outstanding + size <= HEAP_CAPACITY) {
		CUmemGenericAllocationHandle h = 0x1000 + 16 * dev.handles_made;
		err = table_put(&dev.handles, h, size);
		if (err == CUDA_SUCCESS) {
			dev.handles_made++;
			dev.outstanding += size;
			*handle = h;
		}
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	CUresult err = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	struct block *b = table_find(&dev.handles, handle);
	if (b != NULL) {
		dev.outstanding -= table_drop(&dev.handles, b);
		err = CUDA_SUCCESS;
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
				    CUdeviceptr addr, unsigned long long flags)
{
	if (ptr == NULL || size == 0 || flags != 0 || (alignment & (alignment - 1)) != 0)
		return CUDA_ERROR_INVALID_VALUE;
	/* The hint `addr` is only a hint: the range comes from the bump region. */
	(void)addr;
	CUdeviceptr align = alignment ? alignment : GRANULARITY;
	*ptr = 0;
	pthread_mutex_lock(&dev.lock);
	CUdeviceptr at = (dev.next_reserve + align - 1) & ~(align - 1);
	CUresult err = table_put(&dev.reserved, at, size);
	if (err == CUDA_SUCCESS) {
		dev.next_reserve = at + size;
		*ptr = at;
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	CUresult err = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	struct block *b = table_find(&dev.reserved, ptr);
	if (b != NULL && b->size == size) {
		table_drop(&dev.reserved, b);
		err = CUDA_SUCCESS;
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
			 CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	if (size == 0 || flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult err = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	struct block *h = table_find(&dev.handles, handle);
	if (h == NULL)
		err = CUDA_ERROR_INVALID_HANDLE;
	else if (offset <= h->size && size <= h->size - offset &&
		 table_covering(&dev.reserved, ptr, size) != NULL) {
		dev.maps++;
		err = CUDA_SUCCESS;
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	if (size == 0)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult err = CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&dev.lock);
	if (table_covering(&dev.reserved, ptr, size) != NULL) {
		dev.unmaps++;
		err = CUDA_SUCCESS;
	}
	pthread_mutex_unlock(&dev.lock);
	return err;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
	return copy(0, dst == 0, src == NULL, n, 0);
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
	return copy(1, dst == NULL, src == 0, n, 0);
}

EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	return copy(2, dst == 0, src == 0, n, 0);
}

/* Whether `addr` is in one of the device heap's or the reservations' regions. */
static int on_device(CUdeviceptr addr)
{
	return (addr >= LEGACY_BASE && addr < (1ULL << 32)) ||
	       (addr >= HEAP_BASE && addr < RESERVE_BASE + (1ULL << 40));
}

EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
	/* Unified addressing: the direction is found from the addresses. */
	int dst_dev = on_device(dst), src_dev = on_device(src);
	int kind = src_dev && dst_dev ? 2 : src_dev ? 1 : 0;
	return copy(kind, dst == 0, src == 0, n, 0);
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	(void)s;
	return copy(0, dst == 0, src == NULL, n, 1);
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	(void)s;
	return copy(1, dst == NULL, src == 0, n, 1);
}

#define MODULE_MAGIC 0x4d4f44554c45ULL
#define FUNCTION_MAGIC 0x46554e4354ULL

struct CUfunc_st {
	unsigned long long magic;
	struct CUmod_st *module;
	struct CUfunc_st *next;
	char name[];
};

struct CUmod_st {
	unsigned long long magic;
	const void *image;
	struct CUfunc_st *functions;
};

EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
	if (module == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*module = NULL;
	if (image == NULL)
		return CUDA_ERROR_INVALID_IMAGE;
	struct CUmod_st *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*m = (struct CUmod_st){MODULE_MAGIC, image, NULL};
	*module = m;
	return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
	if (hfunc == NULL || name == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	*hfunc = NULL;
	if (hmod == NULL || hmod->magic != MODULE_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	CUresult err = CUDA_SUCCESS;
	pthread_mutex_lock(&dev.lock);
	struct CUfunc_st *f = hmod->functions;
	while (f != NULL && strcmp(f->name, name) != 0)
		f = f->next;
	if (f == NULL) {
		size_t len = strlen(name);
		f = malloc(sizeof(*f) + len + 1);
		if (f == NULL) {
			err = CUDA_ERROR_OUT_OF_MEMORY;
		} else {
			f->magic = FUNCTION_MAGIC;
			f->module = hmod;
			f->next = hmod->functions;
			memcpy(f->name, name, len + 1);
			hmod->functions = f;
		}
	}
	pthread_mutex_unlock(&dev.lock);
	*hfunc = f;
	return err;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gridDimX, unsigned gridDimY,
			       unsigned gridDimZ, unsigned blockDimX, unsigned blockDimY,
			       unsigned blockDimZ, unsigned sharedMemBytes, CUstream hStream,
			       void **kernelParams, void **extra)
{
	if (f == NULL || f->magic != FUNCTION_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	unsigned long long blocks = (unsigned long long)gridDimX * gridDimY * gridDimZ;
	unsigned long long threads = (unsigned long long)blockDimX * blockDimY * blockDimZ;
	if (blocks == 0 || threads == 0 || threads > 1024 || sharedMemBytes > 228 * 1024)
		return CUDA_ERROR_INVALID_VALUE;
	(void)kernelParams;
	(void)extra;
	pthread_mutex_lock(&dev.lock);
	dev.launches++;
	dev.threads_launched += blocks * threads;
	dev.stream_ops += hStream != NULL;
	pthread_mutex_unlock(&dev.lock);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void)
{
	sleep_ms(10);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream hStream)
{
	(void)hStream;
	sleep_ms(5);
	return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char **pStr)
{
	if (pStr == NULL)
		return CUDA_ERROR_INVALID_VALUE;
	switch (error) {
	case CUDA_SUCCESS:
		*pStr = "CUDA_SUCCESS";
		break;
	case CUDA_ERROR_INVALID_VALUE:
		*pStr = "CUDA_ERROR_INVALID_VALUE";
		break;
	case CUDA_ERROR_OUT_OF_MEMORY:
		*pStr = "CUDA_ERROR_OUT_OF_MEMORY";
		break;
	case CUDA_ERROR_NOT_INITIALIZED:
		*pStr = "CUDA_ERROR_NOT_INITIALIZED";
		break;
	case CUDA_ERROR_INVALID_IMAGE:
		*pStr = "CUDA_ERROR_INVALID_IMAGE";
		break;
	case CUDA_ERROR_INVALID_HANDLE:
		*pStr = "CUDA_ERROR_INVALID_HANDLE";
		break;
	case CUDA_ERROR_NOT_FOUND:
		*pStr = "CUDA_ERROR_NOT_FOUND";
		break;
	case CUDA_ERROR_UNKNOWN:
		*pStr = "CUDA_ERROR_UNKNOWN";
		break;
	default:
		*pStr = NULL;
		return CUDA_ERROR_INVALID_VALUE;
	}
	return CUDA_SUCCESS;
}
