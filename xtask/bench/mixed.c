/*
 * Benchmark workload for the level table: a small request-processing program that does a bit of
 * everything a real one does, so that every probe family has its usual share of work.
 *
 * Usage: mixed REQUESTS THREADS
 * Prints "ready addr=<address of handle_request>", waits for one byte on stdin (the harness
 * attaches the profiler first), then THREADS threads each handle REQUESTS requests, and prints
 * "calls=<requests handled> ns_per_call=X cpu_ns_per_call=Y" where X is the wall time from the
 * start of the first thread to the end of the last (CLOCK_MONOTONIC) and Y the process's CPU
 * time (user + system, all threads: probe handling included) over the same span, both over the
 * requests handled.
 *
 * One request (about 40 us on a 2-core VM):
 *   parse_request   compute over the request's bytes;
 *   4 allocations   of 48 to 6000 bytes, filled, freed at the end of the request;
 *   checksum        compute over the response;
 *   a pipe round    write(2) the response summary into the thread's pipe, read(2) it back;
 *   flush_log       every 8th request: write(2) a log line to the thread's temporary file.
 * handle_request and flush_log are noipa, so each call in the source is a call at run time.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

static long requests;
volatile uint64_t mixed_sink;

struct worker {
    int pipe_fds[2];
    FILE *log;
    uint64_t state;
    unsigned char buf[2048];
};

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

NOIPA uint64_t parse_request(struct worker *w)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int round = 0; round < 5; round++)
        for (size_t i = 0; i < sizeof w->buf; i++) {
            w->buf[i] = (unsigned char)next(&w->state);
            h = (h ^ w->buf[i]) * 0x100000001b3ull;
        }
    return h;
}

NOIPA uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return (b << 16) | a;
}

NOIPA void flush_log(struct worker *w, long request, uint64_t sum)
{
    char line[256];
    int n = snprintf(line, sizeof line, "request %ld checksum %016llx\n", request,
                     (unsigned long long)sum);
    if (write(fileno(w->log), line, (size_t)n) != n)
        abort();
}

NOIPA uint64_t handle_request(struct worker *w, long request)
{
    static const size_t sizes[4] = {48, 256, 1500, 6000};
    void *blocks[4];
    uint64_t h = parse_request(w);
    for (int i = 0; i < 4; i++) {
        size_t size = sizes[i] + (next(&w->state) & 63);
        blocks[i] = malloc(size);
        if (!blocks[i])
            abort();
        memset(blocks[i], (int)h, size);
    }
    uint64_t sum = checksum(w->buf, sizeof w->buf) ^ h;
    if (write(w->pipe_fds[1], &sum, sizeof sum) != sizeof sum)
        abort();
    uint64_t back;
    if (read(w->pipe_fds[0], &back, sizeof back) != sizeof back || back != sum)
        abort();
    if (request % 8 == 7)
        flush_log(w, request, sum);
    for (int i = 0; i < 4; i++)
        free(blocks[i]);
    return sum;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t acc = 0;
    for (long r = 0; r < requests; r++)
        acc += handle_request(w, r);
    mixed_sink += acc;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s REQUESTS THREADS\n", argv[0]);
        return 2;
    }
    requests = atol(argv[1]);
    int threads = atoi(argv[2]);
    if (requests <= 0 || threads <= 0 || threads > 64)
        return 2;
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    for (int t = 0; t < threads; t++) {
        if (pipe(workers[t].pipe_fds) != 0 || !(workers[t].log = tmpfile()))
            return 3;
        workers[t].state = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
    }
    printf("ready addr=%p\n", (void *)handle_request);
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1)
        return 3;

    struct timespec t0, t1;
    struct rusage u0, u1;
    getrusage(RUSAGE_SELF, &u0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int t = 0; t < threads; t++)
        if (pthread_create(&ids[t], NULL, run, &workers[t]) != 0)
            return 3;
    for (int t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &u1);

    long total = requests * threads;
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = 0;
    const struct timeval *pairs[2][2] = {{&u0.ru_utime, &u1.ru_utime}, {&u0.ru_stime, &u1.ru_stime}};
    for (int k = 0; k < 2; k++)
        cpu += (double)(pairs[k][1]->tv_sec - pairs[k][0]->tv_sec) * 1e9 +
               (double)(pairs[k][1]->tv_usec - pairs[k][0]->tv_usec) * 1e3;
    printf("calls=%ld ns_per_call=%.3f cpu_ns_per_call=%.3f\n", total, ns / (double)total,
           cpu / (double)total);
    fflush(stdout);
    return 0;
}
