/*
 * The errors family's C victim: fails in exactly known ways and says how many
 * times on stdout, so that a test can compare the report's counts with its own.
 *
 *   err_victim SCENARIO [ARGS...]
 *
 * Scenarios:
 *   steady R S     open("/nonexistent/models/model.pt") R times a second for S
 *                  seconds, paced by the monotonic clock (the k-th call at
 *                  k/R s); prints "failed N": the calls that failed with ENOENT
 *   eagain N       N reads of an empty non-blocking pipe; prints "eagain N":
 *                  the reads that failed with EAGAIN
 *   eintr N        blocking reads of an empty pipe, each interrupted by a
 *                  SIGUSR1 whose handler has no SA_RESTART (a second thread
 *                  sends one every millisecond), until N of them failed with
 *                  EINTR; prints "eintr N"
 *   pause N M      prints "ready" and waits for a line on stdin; opens
 *                  "/nonexistent/models/model.pt" N times and prints "failed
 *                  F" (the calls that failed with ENOENT); waits for another
 *                  line (or end of file); opens it M more times and prints
 *                  "failed F" again, F counting all of them (the live view's
 *                  test reads the counts while it waits)
 *
 * It exits 0, and prints nothing else: the report has no other error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int steady(long rate, long seconds) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long failed = 0;
  for (long k = 0; k < rate * seconds; k++) {
    long long ns = start.tv_nsec + k * (1000000000LL / rate);
    struct timespec at = {start.tv_sec + ns / 1000000000LL, ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR) {
    }
    int fd = open("/nonexistent/models/model.pt", O_RDONLY);
    if (fd < 0 && errno == ENOENT)
      failed++;
    else if (fd >= 0)
      close(fd);
  }
  printf("failed %ld\n", failed);
  return 0;
}

/* Opens the missing model file `n` times; returns how many failed with ENOENT. */
static long open_missing(long n) {
  long failed = 0;
  for (long k = 0; k < n; k++) {
    int fd = open("/nonexistent/models/model.pt", O_RDONLY);
    if (fd < 0 && errno == ENOENT)
      failed++;
    else if (fd >= 0)
      close(fd);
  }
  return failed;
}

/* Waits for a line on stdin (end of file releases it too). */
static void wait_line(void) {
  char c;
  while (read(0, &c, 1) == 1 && c != '\n') {
  }
}

static int pause_between(long n, long m) {
  printf("ready\n");
  fflush(stdout);
  wait_line();
  long failed = open_missing(n);
  printf("failed %ld\n", failed);
  fflush(stdout);
  wait_line();
  failed += open_missing(m);
  printf("failed %ld\n", failed);
  fflush(stdout);
  return 0;
}

static int eagain(long n) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK) != 0)
    return 2;
  long failed = 0;
  char c;
  for (long i = 0; i < n; i++)
    if (read(fds[0], &c, 1) < 0 && errno == EAGAIN)
      failed++;
  printf("eagain %ld\n", failed);
  return 0;
}

static volatile int done;
static pthread_t reader;

static void on_usr1(int signo) { (void)signo; }

static void *kick(void *arg) {
  (void)arg;
  struct timespec ms = {0, 1000000};
  while (!done) {
    pthread_kill(reader, SIGUSR1);
    nanosleep(&ms, NULL);
  }
  return NULL;
}

static int eintr(long n) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART: an interrupted read fails with EINTR */
  if (sigaction(SIGUSR1, &sa, NULL) != 0)
    return 2;
  int fds[2];
  if (pipe(fds) != 0)
    return 2;
  reader = pthread_self();
  pthread_t kicker;
  if (pthread_create(&kicker, NULL, kick, NULL) != 0)
    return 2;
  long interrupted = 0;
  char c;
  while (interrupted < n)
    if (read(fds[0], &c, 1) < 0 && errno == EINTR)
      interrupted++;
  /* No further EINTR: a signal sent while the thread waits to be joined would interrupt the
   * join's futex wait. */
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL);
  done = 1;
  pthread_join(kicker, NULL);
  printf("eintr %ld\n", interrupted);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "steady") == 0)
    return steady(atol(argv[2]), atol(argv[3]));
  if (argc == 3 && strcmp(argv[1], "eagain") == 0)
    return eagain(atol(argv[2]));
  if (argc == 3 && strcmp(argv[1], "eintr") == 0)
    return eintr(atol(argv[2]));
  if (argc == 4 && strcmp(argv[1], "pause") == 0)
    return pause_between(atol(argv[2]), atol(argv[3]));
  fprintf(stderr, "usage: err_victim steady R S | eagain N | eintr N | pause N M\n");
  return 2;
}
