/*
 * fuzz_config: config_load() on arbitrary file contents.  config_load()
 * takes a path, so each input is written to one file per process (under
 * /dev/shm when it exists, so the disk is not worn) and loaded from there;
 * the file is removed at exit.  Asserts a load either fails with
 * "path:..." in err or returns a config whose required parts are there,
 * and that nothing leaks either way.
 */
#include "fuzz.h"
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX	(64 * 1024)

static char fuzz_path[128];

static void
fuzz_cleanup(void)
{
	if (fuzz_path[0] != '\0')
		unlink(fuzz_path);
}

static void
fuzz_init(void)
{
	struct stat st;
	const char *dir = "/tmp";

	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK) == 0)
		dir = "/dev/shm";
	snprintf(fuzz_path, sizeof(fuzz_path), "%s/holdfast-fuzz-config.%ld",
	    dir, (long)getpid());
	atexit(fuzz_cleanup);
}

static void
fuzz_check(const struct config *cf)
{
	size_t i, k;

	FUZZ_ASSERT(cf->hostname != NULL && cf->spool_dir != NULL &&
	    cf->primary_host != NULL && cf->helo_name != NULL &&
	    cf->primary_tls != NULL && cf->primary_tls_ca != NULL &&
	    cf->primary_tls_name != NULL && cf->tls_cert != NULL &&
	    cf->tls_key != NULL && cf->control_socket != NULL &&
	    cf->control_group != NULL && cf->metrics_listen != NULL);
	FUZZ_ASSERT(cf->listen.n > 0 && cf->domains.n > 0);
	FUZZ_ASSERT(cf->retry_min <= cf->retry_max);
	FUZZ_ASSERT(cf->primary_port >= 1 && cf->primary_port <= 65535);
	FUZZ_ASSERT(cf->control_socket[0] != '\0');
	FUZZ_ASSERT((cf->tls_cert[0] == '\0') == (cf->tls_key[0] == '\0'));
	for (i = 0; i < cf->listen.n; i++) {
		char addr[512];
		bool proxy;

		/* What the load accepted, the listener code can split. */
		FUZZ_ASSERT(cf->listen.v[i] != NULL);
		FUZZ_ASSERT(config_listen_split(cf->listen.v[i], addr,
		    sizeof(addr), &proxy) == 0 && addr[0] != '\0');
	}
	for (i = 0; i < cf->domains.n; i++) {
		FUZZ_ASSERT(cf->domains.v[i] != NULL);
		for (k = 0; cf->domains.v[i][k] != '\0'; k++)
			FUZZ_ASSERT(cf->domains.v[i][k] < 'A' ||
			    cf->domains.v[i][k] > 'Z');
		FUZZ_ASSERT(config_is_our_domain(cf, cf->domains.v[i]));
	}
	/* Every value is parsed once at load: the typed twins match. */
	FUZZ_ASSERT(cf->listen_addrs.n == cf->listen.n);
	for (i = 0; i < cf->listen_addrs.n; i++)
		FUZZ_ASSERT(cf->listen_addrs.v[i].sslen > 0 &&
		    cf->listen_addrs.v[i].text != NULL);
	FUZZ_ASSERT(cf->proxy_from_nets.n == cf->proxy_from.n &&
	    cf->screen_allow_nets.n == cf->screen_allow.n &&
	    cf->etrn_from_nets.n == cf->etrn_from.n &&
	    cf->metrics_allow_nets.n == cf->metrics_allow.n);
	FUZZ_ASSERT((cf->metrics_addr.sslen == 0) ==
	    (cf->metrics_listen[0] == '\0'));
	FUZZ_ASSERT(cf->primary_tls_policy <= CONFIG_TLS_VERIFY);
	for (i = 0; i < cf->etrn_from.n; i++)
		FUZZ_ASSERT(cf->etrn_from.v[i] != NULL);
	for (i = 0; i < cf->metrics_allow.n; i++)
		FUZZ_ASSERT(cf->metrics_allow.v[i] != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cf;
	char err[512];
	FILE *fp;

	if (size > FUZZ_MAX)
		return 0;
	if (fuzz_path[0] == '\0')
		fuzz_init();
	if ((fp = fopen(fuzz_path, "w")) == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, fp) != size)
		abort();
	if (fclose(fp) != 0)
		abort();

	err[0] = '\0';
	cf = config_load(fuzz_path, err, sizeof(err));
	if (cf == NULL) {
		/* "path:line: why" or "path: why" */
		FUZZ_ASSERT(strncmp(err, fuzz_path, strlen(fuzz_path)) == 0 &&
		    err[strlen(fuzz_path)] == ':');
		return 0;
	}
	fuzz_check(cf);
	config_free(cf);
	return 0;
}
