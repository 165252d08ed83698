/*
 * disklimit: the disk's own limit for durable small-file creation.
 *
 *   disklimit DIR WRITERS SECONDS SIZE [dirsync]
 *
 * Each of WRITERS threads loops for SECONDS: create DIR/tmp/<w>.<n>, write
 * SIZE bytes, fsync, close, rename into DIR/new/ (and with "dirsync" also
 * fsync DIR/new/, as an MTA must before it answers 250), then unlinks the
 * file again (not timed separately: keeps the directory small).  Prints
 * "files_per_s=N".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *base;
static double secs;
static size_t size;
static int dirsync;
static long total;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
writer(void *arg)
{
	long w = (long)arg, n = 0;
	char tmp[4096], dst[4096], *buf = calloc(1, size);
	double end = now() + secs;
	int fd, dfd;

	snprintf(dst, sizeof(dst), "%s/new", base);
	dfd = open(dst, O_RDONLY | O_DIRECTORY);
	while (now() < end) {
		snprintf(tmp, sizeof(tmp), "%s/tmp/%ld.%ld", base, w, n);
		snprintf(dst, sizeof(dst), "%s/new/%ld.%ld", base, w, n);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd == -1 || write(fd, buf, size) != (ssize_t)size ||
		    fsync(fd) == -1 || close(fd) == -1 || rename(tmp, dst) == -1)
			perror("disklimit"), exit(1);
		if (dirsync && fsync(dfd) == -1)
			perror("disklimit fsync dir"), exit(1);
		unlink(dst);
		n++;
	}
	__atomic_add_fetch(&total, n, __ATOMIC_SEQ_CST);
	free(buf);
	close(dfd);
	return NULL;
}

int
main(int argc, char **argv)
{
	pthread_t t[256];
	long i, nw;
	char p[4096];

	if (argc < 5)
		return fprintf(stderr, "usage: disklimit DIR WRITERS SECONDS "
		    "SIZE [dirsync]\n"), 2;
	base = argv[1];
	nw = atol(argv[2]);
	secs = atof(argv[3]);
	size = (size_t)atol(argv[4]);
	dirsync = argc > 5 && strcmp(argv[5], "dirsync") == 0;
	if (nw < 1 || nw > 256)
		return 2;
	snprintf(p, sizeof(p), "mkdir -p %s/tmp %s/new", base, base);
	if (system(p) != 0)
		return 1;
	for (i = 0; i < nw; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	for (i = 0; i < nw; i++)
		pthread_join(t[i], NULL);
	printf("files_per_s=%.1f\n", total / secs);
	return 0;
}
