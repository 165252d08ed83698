/*
 * holdfastctl: the operator's CLI.  For now only "version"; the queue
 * commands talk to the daemon's control socket (see the issue tracker).
 */
#include <stdio.h>
#include <string.h>

static int
holdfastctl_usage(void)
{
	fprintf(stderr, "usage: holdfastctl version\n");
	return 2;
}

int
main(int argc, char **argv)
{
	if (argc != 2)
		return holdfastctl_usage();
	if (strcmp(argv[1], "version") == 0) {
		printf("holdfastctl %s\n", HOLDFAST_VERSION);
		return 0;
	}
	return holdfastctl_usage();
}
