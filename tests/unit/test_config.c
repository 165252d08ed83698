#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

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
	T_CHECK(cf->primary_source_addr.sslen == 0);
	config_free(cf);
	cf = load(MINIMAL "source = 127.0.0.2\n", err, sizeof(err));
	T_CHECK(cf != NULL && strcmp(cf->primary_source, "127.0.0.2") == 0);
	T_CHECK(cf != NULL && cf->primary_source_addr.sslen ==
	    sizeof(struct sockaddr_in));
	config_free(cf);
	cf = load(MINIMAL "source = 2001:db8::25\n", err, sizeof(err));
	T_CHECK(cf != NULL && strcmp(cf->primary_source, "2001:db8::25") == 0);
	config_free(cf);
}

/* Values parsed once at load: addresses, CIDRs, the TLS word. */
static void
test_typed(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char err[256];
	struct config *cf = load(MINIMAL "tls = verify\netrn_from = 192.0.2.0/24\n"
	    "[server]\nlisten = [::1]:2526 proxy, 127.0.0.2:25\n"
	    "proxy_from = 10.0.0.0/8\n[metrics]\nlisten = 127.0.0.1:9100\n",
	    err, sizeof(err));

	T_CHECK(cf != NULL);
	if (cf == NULL) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	T_CHECK(cf->primary_tls_policy == CONFIG_TLS_VERIFY);
	T_CHECK(cf->listen_addrs.n == 3 && cf->listen.n == 3);
	T_CHECK(!cf->listen_addrs.v[0].proxy);
	T_CHECK(cf->listen_addrs.v[1].proxy &&
	    cf->listen_addrs.v[1].ss.ss_family == AF_INET6);
	T_STREQ(cf->listen_addrs.v[1].text, "[::1]:2526");
	T_CHECK(!cf->listen_addrs.v[2].proxy);
	T_CHECK(cf->metrics_addr.sslen == sizeof(struct sockaddr_in));
	T_CHECK(cf->proxy_from_nets.n == 1 && cf->etrn_from_nets.n == 1);
	T_CHECK(cf->screen_allow_nets.n == 0);
	T_CHECK(cf->metrics_allow_nets.n == 2);	/* the default */
	sin.sin_addr.s_addr = htonl(0xc0000207);	/* 192.0.2.7 */
	T_CHECK(net_cidrs_match(cf->etrn_from_nets.v, cf->etrn_from_nets.n,
	    (struct sockaddr *)&sin));
	T_CHECK(!net_cidrs_match(cf->proxy_from_nets.v,
	    cf->proxy_from_nets.n, (struct sockaddr *)&sin));
	config_free(cf);
	cf = load(MINIMAL, err, sizeof(err));
	T_CHECK(cf != NULL && cf->primary_tls_policy == CONFIG_TLS_MAY &&
	    cf->metrics_addr.sslen == 0 && cf->screen_dns_addr.sslen == 0);
	config_free(cf);
}

/* [screen] dns_server: ip[:port], the port 53 when not given. */
static void
test_dns_server(void)
{
	static const struct {
		const char	*val;
		int		 family;
		unsigned	 port;
	} cases[] = {
		{ "127.0.0.1", AF_INET, 53 },
		{ "127.0.0.1:5353", AF_INET, 5353 },
		{ "2001:db8::53", AF_INET6, 53 },
		{ "[::1]:5353", AF_INET6, 5353 },
	};
	char text[256], err[256], addr[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cf;
		unsigned port = 0;

		snprintf(text, sizeof(text), MINIMAL "[screen]\n"
		    "dns_server = %s\n", cases[i].val);
		cf = load(text, err, sizeof(err));
		T_CHECK(cf != NULL);
		if (cf == NULL) {
			fprintf(stderr, "  %s: %s\n", cases[i].val, err);
			continue;
		}
		T_CHECK(cf->screen_dns_addr.ss.ss_family == cases[i].family);
		net_addr_fmt((struct sockaddr *)&cf->screen_dns_addr.ss, addr,
		    sizeof(addr), &port);
		T_CHECK(port == cases[i].port);
		T_STREQ(cf->screen_dns_server, cases[i].val);
		config_free(cf);
	}
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
		{ MINIMAL "[notify]\nprimary_down_after = 0\n", "c.conf:10: [notify] primary_down_after: out of range" },
		{ MINIMAL "[notify]\ntimeout = 2h\n", "c.conf:10: [notify] timeout: out of range" },
		{ MINIMAL "[notify]\nexec = notify-me now\n", "[notify] exec: not an absolute path" },
		{ MINIMAL "[control]\nsocket = control.sock\n", "[control] socket: not an absolute path" },
		{ MINIMAL "[control]\nsocket =\n", "[control] socket: not an absolute path" },
		/* typed at the line: file:line and the key */
		{ MINIMAL "[server]\nproxy_from = 10.0.0.0/33\n", "c.conf:10: [server] proxy_from: not an address or CIDR" },
		{ MINIMAL "[screen]\nallow = 127.0.0.1, nonsense\n", "c.conf:10: [screen] allow: not an address or CIDR" },
		{ MINIMAL "etrn_from = ::1/129\n", "c.conf:9: [primary] etrn_from: not an address or CIDR" },
		{ MINIMAL "[metrics]\nallow = 1.2.3\n", "c.conf:10: [metrics] allow: not an address or CIDR" },
		{ MINIMAL "[server]\nlisten = 127.0.0.1\n[spool]\n", "c.conf:10: [server] listen: not address:port" },
		{ MINIMAL "[server]\nlisten = 127.0.0.1:25 proxyy\n[spool]\n", "c.conf:10: [server] listen: not address:port" },
		{ MINIMAL "[metrics]\nlisten = localhost:9100\n[spool]\n", "c.conf:10: [metrics] listen: not address:port" },
		{ MINIMAL "[metrics]\nlisten = 127.0.0.1:9100 proxy\n", "c.conf:10: [metrics] listen: not address:port" },
		{ MINIMAL "[screen]\ndns_server = garbage!!\n", "c.conf:10: [screen] dns_server: not ip[:port]" },
		{ MINIMAL "[screen]\ndns_server = localhost:53\n", "c.conf:10: [screen] dns_server: not ip[:port]" },
		{ MINIMAL "[screen]\ndns_server = 127.0.0.1:0\n", "c.conf:10: [screen] dns_server: not ip[:port]" },
		{ MINIMAL "[screen]\ndns_server = 127.0.0.1,127.0.0.2\n", "c.conf:10: [screen] dns_server: not ip[:port]" },
		{ MINIMAL "tls = maybe\n[spool]\n", "c.conf:9: [primary] tls: not one of none|may|encrypt|verify" },
		/* across keys: the keys, not the last line read */
		{ MINIMAL "retry_min = 2h\nretry_max = 1h\n# end\n", "c.conf: [primary] retry_max is below [primary] retry_min" },
		{ MINIMAL "[server]\nlisten = 127.0.0.1:2525 proxy\n", "c.conf: [server] listen 127.0.0.1:2525 is marked proxy but [server] proxy_from is empty" },
		{ MINIMAL "[server]\nlisten = 127.0.0.1:2525, 127.0.0.1:2525 proxy\nproxy_from = 10.0.0.0/8\n", "c.conf: [server] listen names 127.0.0.1:2525 twice" },
		{ MINIMAL "[server]\nlisten = [::1]:25, [0:0::1]:25\n", "c.conf: [server] listen names [0:0::1]:25 twice" },
		{ MINIMAL "[metrics]\nlisten = 127.0.0.1:2525\n", "c.conf: [metrics] listen 127.0.0.1:2525 is also in [server] listen" },
		{ MINIMAL "[tls]\ncert = /etc/c.pem\n", "c.conf: [tls] cert and [tls] key go together (key is not set)" },
		{ "[server]\nhostname = a.b\nlisten = 127.0.0.1:1\ndomains =\n[spool]\ndir = /x\n[primary]\nhost = h\n", "c.conf: [server] domains needs at least one domain" },
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

/* [screen] dnsbl entries in Postfix's zone[=filter][*weight] form. */
static void
test_dnsbl_parse(void)
{
	static const struct {
		const char	*in;
		int		 rc;
		const char	*zone;
		int		 weight;
		const char	*allowed;	/* "o.o.o.o" samples, ',' */
		const char	*denied;
	} cases[] = {
		{ "zen.spamhaus.org", 0, "zen.spamhaus.org", 1, NULL, NULL },
		{ "Zen.Spamhaus.ORG.*3", 0, "zen.spamhaus.org", 3, NULL,
		  NULL },
		{ "b.barracudacentral.org=127.0.0.[2..11]*2", 0,
		  "b.barracudacentral.org", 2, "127.0.0.2,127.0.0.11",
		  "127.0.0.1,127.0.0.12,127.0.1.2" },
		{ "bl.test=127.0.0.[2;4;9]", 0, "bl.test", 1,
		  "127.0.0.2,127.0.0.4,127.0.0.9", "127.0.0.3,127.0.0.10" },
		{ "list.dnswl.org=127.0.[2..15].[2..3]*-4", 0,
		  "list.dnswl.org", -4, "127.0.2.2,127.0.15.3",
		  "127.0.1.2,127.0.2.1,127.0.16.3" },
		{ "bl.test=127.0.0.2", 0, "bl.test", 1, "127.0.0.2",
		  "127.0.0.3" },
		{ "bl.test=127.0.0.[0..255]*1000", 0, "bl.test", 1000,
		  "127.0.0.0,127.0.0.255", "127.0.1.0" },
		{ "bl.test=[1;3..4;200].0.0.[2]", 0, "bl.test", 1,
		  "1.0.0.2,3.0.0.2,4.0.0.2,200.0.0.2", "2.0.0.2,5.0.0.2" },
		/* errors */
		{ "bl.test*0", -1, NULL, 0, NULL, NULL },
		{ "bl.test*1001", -1, NULL, 0, NULL, NULL },
		{ "bl.test*", -1, NULL, 0, NULL, NULL },
		{ "bl.test*x", -1, NULL, 0, NULL, NULL },
		{ "bl.test=", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.2.1", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.256", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.[11..2]", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.[2..]", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.[2;]", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.[2", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.[2]x", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.2..3", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.-1", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.+2", -1, NULL, 0, NULL, NULL },
		{ "bl.test=127.0.0.99999999999999999999", -1, NULL, 0, NULL,
		  NULL },
		{ "=127.0.0.2", -1, NULL, 0, NULL, NULL },
		{ "bl_test.org", -1, NULL, 0, NULL, NULL },
		{ "localhost", -1, NULL, 0, NULL, NULL },
		{ "a..b.test", -1, NULL, 0, NULL, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_dnsbl d;
		char err[256] = "";
		const char *lists[2] = { cases[i].allowed, cases[i].denied };
		int rc = config_dnsbl_parse(cases[i].in, &d, err, sizeof(err)),
		    k;

		if (rc != cases[i].rc)
			fprintf(stderr, "  case %s: rc %d\n", cases[i].in, rc);
		T_CHECK(rc == cases[i].rc);
		if (rc == -1) {
			T_CHECK(strstr(err, cases[i].in) != NULL);
			T_CHECK(d.zone == NULL);
			continue;
		}
		if (rc != 0)
			continue;
		T_STREQ(d.zone, cases[i].zone);
		T_CHECK(d.weight == cases[i].weight);
		T_CHECK(d.has_filter == (strchr(cases[i].in, '=') != NULL));
		for (k = 0; k < 2; k++) {
			char buf[256], *p = buf, *item;

			if (lists[k] == NULL)
				continue;
			snprintf(buf, sizeof(buf), "%s", lists[k]);
			while ((item = strsep(&p, ",")) != NULL) {
				unsigned o[4];
				int j;
				bool all = true;

				T_CHECK(sscanf(item, "%u.%u.%u.%u", &o[0],
				    &o[1], &o[2], &o[3]) == 4);
				for (j = 0; j < 4; j++)
					all = all && (d.filter[j][o[j] / 8] &
					    (1u << (o[j] % 8)));
				if (all != (k == 0))
					fprintf(stderr, "  case %s: %s\n",
					    cases[i].in, item);
				T_CHECK(all == (k == 0));
			}
		}
		free(d.zone);
	}
}

/* A whole config: entries split on commas and blanks, errors named. */
static void
test_dnsbl_load(void)
{
	char err[256];
	struct config *cf = load(MINIMAL "[screen]\ndnsbl = zen.spamhaus.org"
	    "*3 bl.test=127.0.0.[2..11]*2, wl.test=127.0.0.2*-1\n"
	    "dnsbl = more.test\n", err, sizeof(err));

	T_CHECK(cf != NULL);
	if (cf != NULL) {
		T_CHECK(cf->ndnsbl_sites == 4);
		if (cf->ndnsbl_sites == 4) {
			T_STREQ(cf->dnsbl_sites[0].zone, "zen.spamhaus.org");
			T_CHECK(cf->dnsbl_sites[0].weight == 3);
			T_STREQ(cf->dnsbl_sites[1].zone, "bl.test");
			T_CHECK(cf->dnsbl_sites[1].has_filter);
			T_CHECK(cf->dnsbl_sites[2].weight == -1);
			T_STREQ(cf->dnsbl_sites[3].zone, "more.test");
		}
		config_free(cf);
	}
	cf = load(MINIMAL "[screen]\ndnsbl = bl.test=127.0.0.[2..]\n"
	    "greet_wait = 1s\n", err, sizeof(err));
	T_CHECK(cf == NULL);
	/* the line of the entry, not the end of the file */
	T_CHECK(strstr(err, "c.conf:10: [screen] dnsbl: not zone[=filter]"
	    "[*weight]") != NULL);
	if (strstr(err, "c.conf:10:") == NULL)
		fprintf(stderr, "  got: %s\n", err);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "config_minimal", test_minimal },
		{ "config_errors", test_errors },
		{ "config_typed", test_typed },
		{ "config_dns_server", test_dns_server },
		{ "config_dnsbl_parse", test_dnsbl_parse },
		{ "config_dnsbl_load", test_dnsbl_load },
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
