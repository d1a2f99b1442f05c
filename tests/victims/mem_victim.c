/*
 * The memory family's C victim: one scenario per run, each allocating and
 * releasing exactly known blocks from known functions.
 *
 *   mem_victim [--wait] SCENARIO [ARGS...]
 *
 * With --wait the victim runs the scenario's set-up, prints "ready", waits for
 * a byte on stdin, runs the scenario, prints "done", then waits for one more
 * byte (or end of file) before it exits.
 *
 * Scenarios:
 *   leak K S N R    K rounds, R ms apart: leak_blocks() leaks one S-byte block,
 *                   tidy() allocates N 64-byte blocks that free_all() releases
 *   calloc          calloc_keep() keeps calloc(10, 100); calloc_free() frees
 *                   calloc(7, 13)
 *   realloc         realloc_chain(): malloc 100, grow to 1000, shrink to 50,
 *                   move to 100000, to 1 MiB (mmapped inside realloc), and
 *                   realloc(NULL, 300) then realloc(q, 0); keeps the 1 MiB
 *   aligned         aligned_keep() keeps posix_memalign(64, 1000),
 *                   aligned_alloc(256, 512), memalign(128, 300), valloc(100),
 *                   and gets EINVAL from posix_memalign(3, 100);
 *                   aligned_free() frees posix_memalign(64, 2000)
 *   threads T N S   T threads each produce() N S-byte blocks and keep one with
 *                   produce_keep(); the main thread frees the N * T in
 *                   consume() after joining them
 *   hold H K S      before "ready": hold() allocates H 32-byte blocks; then
 *                   release_held() frees them and leak_blocks() leaks K
 *                   S-byte blocks
 *   growth MS       cache_fill() keeps 100 blocks of 1000 bytes at once, then
 *                   for MS ms leak_grow() leaks 512 bytes every 20 ms while
 *                   tidy() churns
 *   mmap            map_keep() keeps an anonymous 3-page mapping; map_drop()
 *                   maps and unmaps 2 pages; map_trim() maps 4 pages and
 *                   unmaps the first one
 *   reach           drop_blocks() allocates 100 blocks of 48 bytes and keeps
 *                   no pointer to them; keep_blocks() keeps 200 blocks of 64
 *                   bytes in a global array; build_list() builds a list of 50
 *                   32-byte nodes and drops its head
 *   drop K S R I    K rounds, R ms apart: drop_blocks() drops one S-byte
 *                   block; then I ms of nothing before the end
 *   lru MS          before "ready": lru_fill() fills a 256-slot cache of
 *                   100-byte blocks; then for MS ms lru_replace() evicts
 *                   (frees) the oldest entry and puts a new one in its slot,
 *                   one every 10 ms
 *   fn N            N times: mem_fn_outer() calls mem_fn_inner(), which
 *                   mallocs 3 blocks of 1000 bytes, frees the first, keeps the
 *                   third and returns the second, which mem_fn_outer() frees;
 *                   and mem_fn_grow() mallocs 100 bytes, reallocs them to 5000
 *                   and frees them. Then mem_fn_drop() frees each kept block,
 *                   one per call (N calls)
 *   report K        K rounds, 10 ms apart: drop_blocks() drops one 100-byte
 *                   block and tidy() churns 8; burn() spins 200 ms of CPU
 *                   time (for the cpu family's samples); then load_model() fails to
 *                   open /nonexistent/models/model.pt, prints why on stderr,
 *                   and the victim exits 1 (the HTML report's test: a run
 *                   with functions, a leak and an error)
 *   pause K1 K2 S N K1 rounds: drop_blocks() drops one S-byte block, tidy()
 *                   churns N; prints "half" and waits for a byte on stdin
 *                   (or end of file); then K2 more rounds (the live view's
 *                   test reads the outstanding bytes while it waits)
 *
 * Without --wait the victim lingers 200 ms before it exits.
 *
 * Built with frame pointers so that allocation stacks walk; every function
 * named above is noinline and noipa and does something after its allocator
 * call, so that call is never a tail call and its site is in the function.
 *
 * Blocks meant to be lost are handed to look(), which reads them and keeps
 * no pointer, and the stack below main's frame is scrubbed after a scenario,
 * so that no stale copy of their addresses is left where a scan of the
 * process would take it for a pointer.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SITE __attribute__((noinline, noipa))

static void *volatile sink;
/* Global (not static), so that the compiler cannot drop the stores to an
 * array nothing reads: the pointers must really be in the process's memory. */
void *kept[100000];
long nkept;

static void keep(void *p)
{
	if (nkept < (long)(sizeof(kept) / sizeof(kept[0])))
		kept[nkept++] = p;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

SITE void leak_blocks(long k, long size)
{
	for (long i = 0; i < k; i++) {
		void *p = malloc((size_t)size);
		memset(p, 1, (size_t)size);
		keep(p);
	}
}

SITE void free_all(void **blocks, long n)
{
	for (long i = 0; i < n; i++)
		free(blocks[i]);
	sink = blocks;
}

SITE void tidy(long n)
{
	void *blocks[256];
	if (n > 256)
		n = 256;
	for (long i = 0; i < n; i++) {
		blocks[i] = malloc(64);
		sink = blocks[i];
	}
	free_all(blocks, n);
}

SITE void calloc_keep(void)
{
	void *p = calloc(10, 100);
	keep(p);
}

SITE void calloc_free(void)
{
	void *p = calloc(7, 13);
	sink = p;
	free(p);
}

SITE void realloc_chain(void)
{
	char *p = malloc(100);
	sink = p;
	p = realloc(p, 1000);
	sink = p;
	p = realloc(p, 50);
	sink = p;
	p = realloc(p, 100000);
	sink = p;
	p = realloc(p, 1 << 20);
	sink = p;
	char *q = realloc(NULL, 300);
	sink = q;
	q = realloc(q, 0);
	sink = q;
	keep(p);
}

SITE void aligned_keep(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, 1000) == 0)
		keep(p);
	keep(aligned_alloc(256, 512));
	keep(memalign(128, 300));
	keep(valloc(100));
	void *bad = NULL;
	if (posix_memalign(&bad, 3, 100) == 0)
		keep(bad);
}

SITE void aligned_free(void)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, 2000) == 0) {
		sink = p;
		free(p);
	}
}

struct producer {
	long n, size;
	void **blocks;
	pthread_barrier_t *barrier;
};

SITE void produce(struct producer *w)
{
	for (long i = 0; i < w->n; i++) {
		w->blocks[i] = malloc((size_t)w->size);
		sink = w->blocks[i];
	}
}

SITE void produce_keep(long size)
{
	void *p = malloc((size_t)size);
	sink = p;
}

static void *producer_main(void *arg)
{
	struct producer *w = arg;
	/* Both allocate at once: each thread's calls are tracked on their own. */
	pthread_barrier_wait(w->barrier);
	produce(w);
	produce_keep(w->size);
	return NULL;
}

SITE void consume(struct producer *w, long threads)
{
	for (long t = 0; t < threads; t++)
		free_all(w[t].blocks, w[t].n);
	sink = w;
}

static void run_threads(long threads, long n, long size)
{
	pthread_t tids[16];
	struct producer w[16];
	pthread_barrier_t barrier;

	if (threads < 1 || threads > 16)
		exit(2);
	pthread_barrier_init(&barrier, NULL, (unsigned)threads);
	for (long t = 0; t < threads; t++) {
		w[t] = (struct producer){n, size, calloc((size_t)n, sizeof(void *)), &barrier};
		if (pthread_create(&tids[t], NULL, producer_main, &w[t]) != 0)
			exit(2);
	}
	for (long t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	consume(w, threads);
}

static void *held[100000];
static long nheld;

SITE void hold(long h)
{
	for (long i = 0; i < h && i < 100000; i++) {
		held[i] = malloc(32);
		nheld++;
	}
	sink = held;
}

SITE void release_held(void)
{
	for (long i = 0; i < nheld; i++)
		free(held[i]);
	nheld = 0;
	sink = held;
}

SITE void cache_fill(void)
{
	for (int i = 0; i < 100; i++)
		keep(malloc(1000));
}

SITE void leak_grow(void)
{
	void *p = malloc(512);
	keep(p);
}

SITE void map_keep(void)
{
	void *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	keep(p);
}

SITE void map_drop(void)
{
	void *p = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sink = p;
	munmap(p, 2 * 4096);
}

SITE void map_trim(void)
{
	char *p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sink = p;
	munmap(p, 4096);
	keep(p + 4096);
}

/* Reads a block and keeps no pointer to it. */
SITE long look(const void *p)
{
	return ((const volatile char *)p)[8];
}

SITE void drop_blocks(long k, long size)
{
	for (long i = 0; i < k; i++) {
		char *p = malloc((size_t)size);
		memset(p, 3, (size_t)size);
		look(p);
	}
}

SITE long burn(long ms)
{
	struct timespec ts;
	long n = 0;
	do {
		for (int i = 0; i < 10000; i++)
			n += i ^ (n >> 3);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	} while (ts.tv_sec * 1000 + ts.tv_nsec / 1000000 < ms);
	sink = (void *)n;
	return n;
}

SITE int load_model(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "error: cannot load model %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

SITE void keep_blocks(long k, long size)
{
	for (long i = 0; i < k; i++) {
		void *p = malloc((size_t)size);
		memset(p, 5, (size_t)size);
		keep(p);
	}
}

struct node {
	struct node *next;
	char payload[24];
};

SITE void build_list(long n)
{
	struct node *head = NULL;
	for (long i = 0; i < n; i++) {
		struct node *node = malloc(sizeof *node);
		node->next = head;
		memset(node->payload, 7, sizeof node->payload);
		head = node;
	}
	look(head);
}

/* Overwrites the stack below the caller's frame, where the frames of the
 * functions it called left the addresses they handled. */
SITE void scrub_stack(void)
{
	volatile char junk[32768];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = 0;
}

#define LRU_SLOTS 256
static void *lru[LRU_SLOTS];

SITE void lru_fill(void)
{
	for (int i = 0; i < LRU_SLOTS; i++)
		lru[i] = malloc(100);
}

SITE void lru_replace(long i)
{
	free(lru[i % LRU_SLOTS]);
	void *p = malloc(100);
	memset(p, 9, 100);
	lru[i % LRU_SLOTS] = p;
}

static void *fn_kept[1000];
static long nfn_kept;

SITE void *mem_fn_inner(void)
{
	char *a = malloc(1000), *b = malloc(1000), *c = malloc(1000);
	sink = a;
	free(a);
	if (nfn_kept < 1000)
		fn_kept[nfn_kept++] = c;
	sink = c;
	return b;
}

SITE void mem_fn_outer(void)
{
	void *b = mem_fn_inner();
	sink = b;
	free(b);
	sink = NULL;
}

SITE void mem_fn_grow(void)
{
	char *p = malloc(100);
	sink = p;
	p = realloc(p, 5000);
	sink = p;
	free(p);
	sink = NULL;
}

SITE void mem_fn_drop(void *p)
{
	free(p);
	sink = NULL;
}

static long arg(int argc, char **argv, int i)
{
	if (i >= argc) {
		fprintf(stderr, "mem_victim: missing argument %d\n", i);
		exit(2);
	}
	return strtol(argv[i], NULL, 10);
}

static void wait_byte(void)
{
	char c;
	if (read(0, &c, 1) < 0)
		perror("read");
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	int i = 1;
	int wait = 0;

	if (i < argc && strcmp(argv[i], "--wait") == 0) {
		wait = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: mem_victim [--wait] SCENARIO [ARGS...]\n");
		return 2;
	}
	const char *scenario = argv[i++];
	if (strcmp(scenario, "hold") == 0)
		hold(arg(argc, argv, i));
	if (strcmp(scenario, "lru") == 0)
		lru_fill();
	if (wait) {
		puts("ready");
		fflush(stdout);
		wait_byte();
	}

	if (strcmp(scenario, "leak") == 0) {
		long k = arg(argc, argv, i), size = arg(argc, argv, i + 1);
		long n = arg(argc, argv, i + 2), ms = arg(argc, argv, i + 3);
		for (long r = 0; r < k; r++) {
			leak_blocks(1, size);
			tidy(n);
			sleep_ms(ms);
		}
	} else if (strcmp(scenario, "calloc") == 0) {
		calloc_keep();
		calloc_free();
	} else if (strcmp(scenario, "realloc") == 0) {
		realloc_chain();
	} else if (strcmp(scenario, "aligned") == 0) {
		aligned_keep();
		aligned_free();
	} else if (strcmp(scenario, "threads") == 0) {
		run_threads(arg(argc, argv, i), arg(argc, argv, i + 1), arg(argc, argv, i + 2));
	} else if (strcmp(scenario, "hold") == 0) {
		release_held();
		leak_blocks(arg(argc, argv, i + 1), arg(argc, argv, i + 2));
	} else if (strcmp(scenario, "growth") == 0) {
		long end = now_ms() + arg(argc, argv, i);
		cache_fill();
		while (now_ms() < end) {
			leak_grow();
			tidy(20);
			sleep_ms(20);
		}
	} else if (strcmp(scenario, "mmap") == 0) {
		map_keep();
		map_drop();
		map_trim();
	} else if (strcmp(scenario, "reach") == 0) {
		drop_blocks(100, 48);
		keep_blocks(200, 64);
		build_list(50);
	} else if (strcmp(scenario, "drop") == 0) {
		long k = arg(argc, argv, i), size = arg(argc, argv, i + 1);
		long ms = arg(argc, argv, i + 2), idle = arg(argc, argv, i + 3);
		for (long r = 0; r < k; r++) {
			drop_blocks(1, size);
			sleep_ms(ms);
		}
		scrub_stack();
		sleep_ms(idle);
	} else if (strcmp(scenario, "lru") == 0) {
		long end = now_ms() + arg(argc, argv, i);
		for (long n = 0; now_ms() < end; n++) {
			lru_replace(n);
			sleep_ms(10);
		}
	} else if (strcmp(scenario, "fn") == 0) {
		long n = arg(argc, argv, i);
		for (long r = 0; r < n; r++) {
			mem_fn_outer();
			mem_fn_grow();
		}
		for (long r = 0; r < nfn_kept; r++)
			mem_fn_drop(fn_kept[r]);
	} else if (strcmp(scenario, "pause") == 0) {
		long k1 = arg(argc, argv, i), k2 = arg(argc, argv, i + 1);
		long size = arg(argc, argv, i + 2), n = arg(argc, argv, i + 3);
		for (long r = 0; r < k1; r++) {
			drop_blocks(1, size);
			tidy(n);
		}
		scrub_stack();
		puts("half");
		fflush(stdout);
		wait_byte();
		for (long r = 0; r < k2; r++) {
			drop_blocks(1, size);
			tidy(n);
		}
	} else if (strcmp(scenario, "report") == 0) {
		long k = arg(argc, argv, i);
		for (long r = 0; r < k; r++) {
			drop_blocks(1, 100);
			tidy(8);
			sleep_ms(10);
		}
		scrub_stack();
		burn(200);
		if (load_model("/nonexistent/models/model.pt") < 0) {
			sleep_ms(200);
			return 1;
		}
	} else {
		fprintf(stderr, "mem_victim: unknown scenario %s\n", scenario);
		return 2;
	}

	scrub_stack();
	if (wait) {
		puts("done");
		fflush(stdout);
		wait_byte();
	} else {
		/* `profiler run` reads the mappings of a new target every 20 ms:
		 * stay long enough for it to see them. */
		sleep_ms(200);
	}
	return 0;
}
