/*
 * Calls lib_function() from libvictim.so exactly N times.
 *
 *   victim_lib [--wait] N
 *
 * --wait works as in victim.c: "ready", a byte on stdin, the calls, "done",
 * one more byte, exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long lib_function(long x);

static void wait_byte(void)
{
	char c;
	if (read(0, &c, 1) < 0)
		perror("read");
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
		fprintf(stderr, "usage: victim_lib [--wait] N\n");
		return 2;
	}
	long n = strtol(argv[i], NULL, 10);
	if (wait) {
		puts("ready");
		fflush(stdout);
		wait_byte();
	}
	for (long k = 0; k < n; k++)
		lib_function(k);
	if (wait) {
		puts("done");
		fflush(stdout);
		wait_byte();
	}
	return 0;
}
