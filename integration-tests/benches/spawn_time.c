/*
 * Times one process as the start-up bench needs it (bash's own fork and
 * exec are not in the figures): runs ARGV with stderr on /dev/null and
 * stdout on a pipe it reads, and prints
 *   "WALL_MS OUTPUT_MS CPU_MS STATUS BYTES"
 * WALL_MS is spawn to reaping (the whole process); OUTPUT_MS spawn to the
 * last byte the child wrote on stdout (for a guest that prints, then
 * halts: the guest's end, without the VM's teardown); CPU_MS the child's
 * user + system time (all its threads) from wait4; BYTES what it wrote.
 * integration-tests/scripts/bench-startup.sh compiles it with gcc -O2.
 *
 * Usage: spawn_time PROGRAM [ARG...]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double tv_ms(struct timeval t)
{
	return t.tv_sec * 1e3 + t.tv_usec / 1e3;
}

static double since_ms(struct timespec from, struct timespec to)
{
	return (to.tv_sec - from.tv_sec) * 1e3 + (to.tv_nsec - from.tv_nsec) / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0) {
		perror("pipe2");
		return 1;
	}
	posix_spawn_file_actions_t files;
	posix_spawn_file_actions_init(&files);
	posix_spawn_file_actions_adddup2(&files, out[1], 1);
	posix_spawn_file_actions_addopen(&files, 2, "/dev/null", O_WRONLY, 0);
	struct timespec start, last, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	last = start;
	pid_t pid;
	int err = posix_spawn(&pid, argv[1], &files, NULL, argv + 1, environ);
	if (err) {
		fprintf(stderr, "spawn %s failed: error %d\n", argv[1], err);
		return 1;
	}
	close(out[1]);
	char buf[4096];
	long bytes = 0;
	ssize_t n;
	while ((n = read(out[0], buf, sizeof(buf))) > 0) {
		clock_gettime(CLOCK_MONOTONIC, &last);
		bytes += n;
	}
	int status;
	struct rusage usage;
	if (wait4(pid, &status, 0, &usage) < 0) {
		perror("wait4");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	printf("%.3f %.3f %.3f %d %ld\n", since_ms(start, end), since_ms(start, last),
	       tv_ms(usage.ru_utime) + tv_ms(usage.ru_stime), code, bytes);
	return 0;
}
