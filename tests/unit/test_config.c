#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "t.h"

static char tmpdir[] = "/tmp/holdfast-test-config.XXXXXX";

static struct config *
load(const char *text, char *err, size_t errlen)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
	fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
	err[0] = '\0';
	return config_load(path, err, errlen);
}

#define MINIMAL                                                              \
	"[server]\nhostname = mx2.example.test\nlisten = 127.0.0.1:2525\n"   \
	"domains = Example.TEST., example.org\n[spool]\ndir = /tmp/x\n"      \
	"[primary]\nhost = 127.0.0.1\n"

static void
test_minimal(void)
{
	char err[256];
	struct config *cf = load(MINIMAL "port = 2526 # comment\n", err,
	    sizeof(err));

	T_CHECK(cf != NULL);
	if (cf == NULL)
		return;
	T_STREQ(cf->hostname, "mx2.example.test");
	T_CHECK(cf->domains.n == 2);
	T_STREQ(cf->domains.v[0], "example.test");
	T_CHECK(cf->primary_port == 2526);
	T_CHECK(cf->max_message_size == 50 * 1024 * 1024);
	T_CHECK(cf->queue_lifetime == 30 * 86400);
	T_STREQ(cf->helo_name, "mx2.example.test");
	T_CHECK(config_is_our_domain(cf, "EXAMPLE.test."));
	T_CHECK(config_is_our_domain(cf, "example.org"));
	T_CHECK(!config_is_our_domain(cf, "sub.example.org"));
	T_CHECK(!config_is_our_domain(cf, "example.or"));
	T_STREQ(cf->primary_source, "");
	config_free(cf);
	cf = load(MINIMAL "source = 127.0.0.2\n", err, sizeof(err));
	T_CHECK(cf != NULL && strcmp(cf->primary_source, "127.0.0.2") == 0);
	config_free(cf);
	cf = load(MINIMAL "source = 2001:db8::25\n", err, sizeof(err));
	T_CHECK(cf != NULL && strcmp(cf->primary_source, "2001:db8::25") == 0);
	config_free(cf);
}

static void
test_errors(void)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ MINIMAL "bogus = 1\n", "c.conf:9: unknown key [primary] bogus" },
		{ MINIMAL "port = 99999\n", "c.conf:9: [primary] port: out of range" },
		{ MINIMAL "probe_interval = 5x\n", "c.conf:9: [primary] probe_interval: not a duration" },
		{ MINIMAL "[spool]\nqueue_lifetime = 1d\nqueue_lifetime = 2d\n", "c.conf:11: [spool] queue_lifetime given twice" },
		{ "[server]\nhostname = a.b\nlisten = 127.0.0.1:1\n", "missing required key [server] domains" },
		{ "[server\n", "c.conf:1: bad section line" },
		{ "[server]\nhostname\n", "c.conf:2: expected key = value" },
		{ MINIMAL "[server]\ndomains = not a domain\n", "c.conf:10: [server] domains: not a domain name" },
		{ MINIMAL "[server]\ndomains = example.net..\n", "c.conf:10: [server] domains: not a domain name" },
		{ MINIMAL "[server]\ndomains = a..example\n", "c.conf:10: [server] domains: not a domain name" },
		{ MINIMAL "[server]\ndomains = .\n", "c.conf:10: [server] domains: not a domain name" },
		{ MINIMAL "source = mail.example.org\n", "c.conf:9: [primary] source: not an IPv4 or IPv6 address" },
		{ MINIMAL "source = 127.0.0.2/32\n", "c.conf:9: [primary] source: not an IPv4 or IPv6 address" },
		{ MINIMAL "source = [::1]\n", "c.conf:9: [primary] source: not an IPv4 or IPv6 address" },
		{ MINIMAL "source = 127.0.0.2:25\n", "c.conf:9: [primary] source: not an IPv4 or IPv6 address" },
	};
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cf = load(cases[i].text, err, sizeof(err));

		T_CHECK(cf == NULL);
		config_free(cf);
		if (strstr(err, cases[i].want) == NULL) {
			fprintf(stderr, "  case %zu: got \"%s\" want \"%s\"\n",
			    i, err, cases[i].want);
			T_CHECK(!"error text");
		}
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "config_minimal", test_minimal },
		{ "config_errors", test_errors },
	};
	char path[256];
	int rc;

	if (mkdtemp(tmpdir) == NULL)
		return 2;
	rc = T_RUN(cases);
	snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return rc;
}
