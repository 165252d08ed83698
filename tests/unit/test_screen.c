#include "screen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "t.h"

static char tmpdir[] = "/tmp/holdfast-test-screen.XXXXXX";

/* A config with no allow list, one session per address and no DNSBL. */
static struct config *
load(void)
{
	char path[256], err[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
	fp = fopen(path, "w");
	fputs("[server]\nhostname = mx2.example.test\n"
	    "listen = 127.0.0.1:2525\ndomains = example.test\n"
	    "[spool]\ndir = /tmp/x\n[primary]\nhost = 127.0.0.1\n"
	    "[screen]\nallow = 192.0.2.250/32\nmax_sessions_per_ip = 1\n"
	    "conn_rate = 1000\nmsg_rate = 1000\n", fp);
	fclose(fp);
	return config_load(path, err, sizeof(err));
}

static struct sockaddr_storage
addr(const char *s)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(s, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		T_CHECK(inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		T_CHECK(inet_pton(AF_INET, s, &sin->sin_addr) == 1);
	}
	return ss;
}

static enum screen_verdict
connect_from(struct screen *sc, const char *s)
{
	struct sockaddr_storage ss = addr(s);
	const char *why;

	return screen_connect(sc, (struct sockaddr *)&ss, &why);
}

static void
disconnect_from(struct screen *sc, const char *s)
{
	struct sockaddr_storage ss = addr(s);

	screen_disconnect(sc, (struct sockaddr *)&ss);
}

/*
 * IPv6 limits count the /64: a second session from another address of
 * the same /64 is over max_sessions_per_ip = 1, one from the next /64 is
 * not.  IPv4 still counts each address.
 */
static void
test_v6_prefix(void)
{
	static const struct {
		const char		*addr;
		enum screen_verdict	 want;
	} cases[] = {
		{ "2001:db8:1:2::1", SCREEN_PASS },
		{ "2001:db8:1:2::2", SCREEN_DEFER },		/* same /64 */
		{ "2001:db8:1:2:ffff:ffff:ffff:ffff", SCREEN_DEFER },
		{ "2001:db8:1:3::1", SCREEN_PASS },		/* next /64 */
		{ "2001:db8:1:2::1", SCREEN_DEFER },
		{ "::ffff:192.0.2.1", SCREEN_PASS },		/* v4-mapped */
		{ "192.0.2.1", SCREEN_DEFER },			/* same one */
		{ "192.0.2.2", SCREEN_PASS },			/* v4: /32 */
		{ "192.0.2.250", SCREEN_PASS },			/* allowed */
		{ "192.0.2.250", SCREEN_PASS },
	};
	struct config *cf = load();
	struct event_base *base = event_base_new();
	struct screen *sc;
	size_t i;

	T_CHECK(cf != NULL && base != NULL);
	if (cf == NULL || base == NULL)
		return;
	sc = screen_new(base, cf);
	T_CHECK(sc != NULL);
	for (i = 0; sc != NULL && i < sizeof(cases) / sizeof(cases[0]); i++)
		if (connect_from(sc, cases[i].addr) != cases[i].want) {
			fprintf(stderr, "  case %zu %s: want %s\n", i,
			    cases[i].addr, cases[i].want == SCREEN_PASS ?
			    "pass" : "defer");
			T_CHECK(!"verdict");
		}
	/* The /64's one session ends (from another address of it): free. */
	disconnect_from(sc, "2001:db8:1:2::99");
	T_CHECK(connect_from(sc, "2001:db8:1:2::3") == SCREEN_PASS);
	screen_free(sc);
	event_base_free(base);
	config_free(cf);
}

/*
 * A table full of busy addresses (each with its one session open) evicts
 * the least recently seen one for a new client, which is then limited
 * like any other: its second session is deferred.  (Before, a full table
 * stopped limiting new addresses altogether.)
 */
static void
test_full_table(void)
{
	struct config *cf = load();
	struct event_base *base = event_base_new();
	struct screen *sc;
	char a[64];
	unsigned i, n = 65536, passed = 0;

	T_CHECK(cf != NULL && base != NULL);
	if (cf == NULL || base == NULL)
		return;
	sc = screen_new(base, cf);
	T_CHECK(sc != NULL);
	if (sc == NULL)
		return;
	for (i = 0; i < n; i++) {
		snprintf(a, sizeof(a), "10.%u.%u.%u", (i >> 16) & 255,
		    (i >> 8) & 255, i & 255);
		if (connect_from(sc, a) == SCREEN_PASS)
			passed++;
	}
	T_CHECK(passed == n);
	/* 10.0.0.1 is seen again: 10.0.0.0 is now the least recent. */
	T_CHECK(connect_from(sc, "10.0.0.1") == SCREEN_DEFER);
	T_CHECK(connect_from(sc, "172.16.0.1") == SCREEN_PASS);
	T_CHECK(connect_from(sc, "172.16.0.1") == SCREEN_DEFER);
	T_CHECK(connect_from(sc, "2001:db8:9::1") == SCREEN_PASS);
	T_CHECK(connect_from(sc, "2001:db8:9::2") == SCREEN_DEFER);
	/* the recently seen ones are still counted */
	T_CHECK(connect_from(sc, "10.0.0.1") == SCREEN_DEFER);
	T_CHECK(connect_from(sc, "10.0.255.255") == SCREEN_DEFER);
	/* the evicted ones (the least recently seen) start afresh */
	T_CHECK(connect_from(sc, "10.0.0.0") == SCREEN_PASS);
	screen_free(sc);
	event_base_free(base);
	config_free(cf);
}

/*
 * Which DNSBL answers count as listings: a table of {site, answer, want}.
 * Error codes (127.255.255.0/24) never do, whatever the filter says.
 */
static void
test_dnsbl_match(void)
{
	static const struct {
		const char	*site;
		unsigned char	 a[4];
		bool		 listed, error;
	} cases[] = {
		/* no filter: 127.0.0.0/24 except 127.0.0.1 */
		{ "zen.test", { 127, 0, 0, 2 }, true, false },
		{ "zen.test", { 127, 0, 0, 11 }, true, false },
		{ "zen.test", { 127, 0, 0, 255 }, true, false },
		{ "zen.test", { 127, 0, 0, 0 }, true, false },
		{ "zen.test", { 127, 0, 0, 1 }, false, false },
		{ "zen.test", { 127, 0, 1, 2 }, false, false },
		{ "zen.test", { 127, 1, 0, 2 }, false, false },
		{ "zen.test", { 10, 0, 0, 2 }, false, false },
		{ "zen.test", { 127, 255, 255, 254 }, false, true },
		{ "zen.test", { 127, 255, 255, 252 }, false, true },
		{ "zen.test", { 127, 255, 255, 255 }, false, true },
		{ "zen.test", { 127, 255, 254, 1 }, false, false },
		/* ranges */
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 2 }, true, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 11 }, true, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 12 }, false, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 1 }, false, false },
		/* lists */
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 4 }, true, false },
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 3 }, false, false },
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 10 }, false, false },
		/* a filter can admit 127.0.0.1, never an error code */
		{ "b.test=127.0.0.1", { 127, 0, 0, 1 }, true, false },
		{ "b.test=127.255.255.[0..255]", { 127, 255, 255, 254 }, false,
		  true },
		{ "b.test=127.[0..255].[0..255].[0..255]", { 127, 0, 1, 2 },
		  true, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_dnsbl d;
		char err[256];
		bool listed, error;

		T_CHECK(config_dnsbl_parse(cases[i].site, &d, err,
		    sizeof(err)) == 0);
		listed = screen_dnsbl_match(&d, cases[i].a);
		error = screen_dnsbl_is_error(cases[i].a);
		if (listed != cases[i].listed || error != cases[i].error)
			fprintf(stderr, "  case %zu %s %u.%u.%u.%u: listed %d "
			    "error %d\n", i, cases[i].site, cases[i].a[0],
			    cases[i].a[1], cases[i].a[2], cases[i].a[3],
			    listed, error);
		T_CHECK(listed == cases[i].listed);
		T_CHECK(error == cases[i].error);
		free(d.zone);
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "screen_v6_prefix", test_v6_prefix },
		{ "screen_full_table", test_full_table },
		{ "screen_dnsbl_match", test_dnsbl_match },
	};
	int rc;

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	rc = t_main(cases, sizeof(cases) / sizeof(cases[0]));
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
		unlink(path);
		rmdir(tmpdir);
	}
	return rc;
}
