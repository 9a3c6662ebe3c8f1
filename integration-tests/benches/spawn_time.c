/*
 * Times one process from spawn to reaping, as the start-up bench needs it
 * (bash's own fork and exec are not in the figure): runs ARGV with stdout
 * and stderr on /dev/null and prints "WALL_MS CPU_MS STATUS", CPU being
 * the child's user + system time (all its threads) from wait4.
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

extern char **environ;

static double ms(struct timeval t)
{
	return t.tv_sec * 1e3 + t.tv_usec / 1e3;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	posix_spawn_file_actions_t files;
	posix_spawn_file_actions_init(&files);
	posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&files, 2, "/dev/null", O_WRONLY, 0);
	struct timespec start, end;
	clock_gettime(CLOCK_MONOTONIC, &start);
	pid_t pid;
	int err = posix_spawn(&pid, argv[1], &files, NULL, argv + 1, environ);
	if (err) {
		fprintf(stderr, "spawn %s failed: error %d\n", argv[1], err);
		return 1;
	}
	int status;
	struct rusage usage;
	if (wait4(pid, &status, 0, &usage) < 0) {
		perror("wait4");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	double wall = (end.tv_sec - start.tv_sec) * 1e3 + (end.tv_nsec - start.tv_nsec) / 1e6;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	printf("%.3f %.3f %d\n", wall, ms(usage.ru_utime) + ms(usage.ru_stime), code);
	return 0;
}
