#include "net.h"

#include <netinet/in.h>

#include "t.h"

static void
test_cidr_parse(void)
{
	static const struct {
		const char	*in;
		int		 want;		/* 0 or -1 */
		int		 family;
		unsigned	 bits;
	} cases[] = {
		{ "192.0.2.0/24", 0, AF_INET, 24 },
		{ "192.0.2.7", 0, AF_INET, 32 },	/* bare: /32 */
		{ "192.0.2.7/32", 0, AF_INET, 32 },
		{ "0.0.0.0/0", 0, AF_INET, 0 },
		/* host bits are ignored */
		{ "192.0.2.7/24", 0, AF_INET, 24 },
		{ "10.0.0.0/8", 0, AF_INET, 8 },
		{ "2001:db8::/32", 0, AF_INET6, 32 },
		{ "::1", 0, AF_INET6, 128 },
		{ "::1/128", 0, AF_INET6, 128 },
		{ "::/0", 0, AF_INET6, 0 },
		{ "::ffff:192.0.2.0/120", 0, AF_INET6, 120 },
		{ "", -1, 0, 0 },
		{ "/24", -1, 0, 0 },
		{ "192.0.2.0/", -1, 0, 0 },
		{ "192.0.2.0/33", -1, 0, 0 },
		{ "192.0.2.0/-1", -1, 0, 0 },
		{ "192.0.2.0/+8", -1, 0, 0 },
		{ "192.0.2.0/8x", -1, 0, 0 },
		{ "192.0.2.0/ 8", -1, 0, 0 },
		{ "192.0.2.0/24/8", -1, 0, 0 },
		{ "192.0.2.0/99999999999999999999999", -1, 0, 0 },
		{ "::/129", -1, 0, 0 },
		{ "256.0.0.0/8", -1, 0, 0 },
		{ "192.0.2/24", -1, 0, 0 },
		{ " 192.0.2.0/24", -1, 0, 0 },
		{ "192.0.2.0 /24", -1, 0, 0 },
		{ "[::1]/128", -1, 0, 0 },
		{ "2001:db8:::/32", -1, 0, 0 },
		{ "localhost", -1, 0, 0 },
		{ "example.org/24", -1, 0, 0 },
		{ "192.0.2.0/24,10.0.0.0/8", -1, 0, 0 },
		/* longer than any address text */
		{ "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc"
		  ":dddd/64", -1, 0, 0 },
	};
	struct net_cidr c;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got;

		memset(&c, 0xa5, sizeof(c));
		got = net_cidr_parse(cases[i].in, &c);
		if (got != cases[i].want) {
			fprintf(stderr, "  \"%s\": got %d want %d\n",
			    cases[i].in, got, cases[i].want);
			T_CHECK(!"cidr_parse result");
			continue;
		}
		/* NULL only validates, with the same answer. */
		T_CHECK(net_cidr_parse(cases[i].in, NULL) == got);
		if (got == 0 && (c.family != cases[i].family ||
		    c.bits != cases[i].bits)) {
			fprintf(stderr, "  \"%s\": family %d bits %u\n",
			    cases[i].in, c.family, c.bits);
			T_CHECK(!"cidr_parse fields");
		}
	}
}

/* The strings parsed once (net_cidr_parse), then matched as the daemon
 * does (net_cidrs_match). */
static bool
cidr_strs_match(char *const *strs, size_t n, const struct sockaddr *sa)
{
	struct net_cidr c[4];
	size_t i;

	T_CHECK(n <= sizeof(c) / sizeof(c[0]));
	for (i = 0; i < n; i++)
		T_CHECK(net_cidr_parse(strs[i], &c[i]) == 0);
	return net_cidrs_match(c, n, sa);
}

static void
test_cidr_list_match(void)
{
	static char *local[] = { "127.0.0.0/8", "::1/128" };
	static char *net24[] = { "192.0.2.0/24" };
	static char *host32[] = { "192.0.2.7/32" };
	static char *bare[] = { "192.0.2.7" };
	static char *any4[] = { "0.0.0.0/0" };
	static char *any6[] = { "::/0" };
	static char *odd[] = { "192.0.2.128/25" };	/* partial byte */
	static char *v6[] = { "2001:db8::/32" };
	static char *v6odd[] = { "2001:db8:8000::/33" };
	static char *two[] = { "10.0.0.0/8", "2001:db8::/32" };
	static const struct {
		char *const	*list;
		size_t		 n;
		const char	*addr;	/* for net_parse_hostport */
		bool		 want;
	} cases[] = {
		{ local, 2, "127.0.0.1:1", true },
		{ local, 2, "127.255.0.9:1", true },
		{ local, 2, "128.0.0.1:1", false },
		{ local, 2, "[::1]:1", true },
		{ local, 2, "[::2]:1", false },
		/* v4-mapped */
		{ local, 2, "[::ffff:127.0.0.1]:1", true },
		{ net24, 1, "192.0.2.0:1", true },
		{ net24, 1, "192.0.2.255:1", true },
		{ net24, 1, "192.0.3.0:1", false },
		{ net24, 1, "192.0.1.255:1", false },
		{ net24, 1, "[::ffff:192.0.2.9]:1", true },
		{ net24, 1, "[::ffff:192.0.3.9]:1", false },
		/* v4-compatible is not v4-mapped */
		{ net24, 1, "[::192.0.2.9]:1", false },
		{ net24, 1, "[2001:db8::c000:209]:1", false },
		{ host32, 1, "192.0.2.7:1", true },
		{ host32, 1, "192.0.2.6:1", false },
		{ host32, 1, "192.0.2.8:1", false },
		{ host32, 1, "[::ffff:192.0.2.7]:1", true },
		{ bare, 1, "192.0.2.7:1", true },
		{ bare, 1, "192.0.2.70:1", false },
		{ any4, 1, "198.51.100.1:1", true },
		{ any4, 1, "0.0.0.0:1", true },
		{ any4, 1, "[::ffff:198.51.100.1]:1", true },
		{ any4, 1, "[2001:db8::1]:1", false },
		{ any6, 1, "[2001:db8::1]:1", true },
		{ any6, 1, "[::1]:1", true },
		{ any6, 1, "198.51.100.1:1", false },
		{ odd, 1, "192.0.2.128:1", true },
		{ odd, 1, "192.0.2.255:1", true },
		{ odd, 1, "192.0.2.127:1", false },
		{ v6, 1, "[2001:db8::1]:1", true },
		{ v6, 1, "[2001:db8:ffff:ffff::1]:1", true },
		{ v6, 1, "[2001:db9::1]:1", false },
		{ v6, 1, "192.0.2.1:1", false },
		{ v6odd, 1, "[2001:db8:8000::1]:1", true },
		{ v6odd, 1, "[2001:db8:ffff::1]:1", true },
		{ v6odd, 1, "[2001:db8:7fff::1]:1", false },
		{ two, 2, "10.1.2.3:1", true },
		{ two, 2, "[2001:db8::5]:1", true },
		{ two, 2, "11.0.0.1:1", false },
		{ local, 0, "127.0.0.1:1", false },	/* empty list */
	};
	struct sockaddr_storage ss;
	socklen_t sslen;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got;

		if (net_parse_hostport(cases[i].addr, &ss, &sslen) == -1) {
			fprintf(stderr, "  bad test address %s\n",
			    cases[i].addr);
			T_CHECK(!"test address");
			continue;
		}
		got = cidr_strs_match(cases[i].list, cases[i].n,
		    (struct sockaddr *)&ss);
		if (got != cases[i].want) {
			fprintf(stderr, "  case %zu %s in %s: got %d\n", i,
			    cases[i].addr, cases[i].list[0], got);
			T_CHECK(!"cidr_list_match");
		}
	}
}

static void
test_cidr_list_match_family(void)
{
	static char *all[] = { "0.0.0.0/0", "::/0" };
	struct sockaddr sa;

	/* Neither v4 nor v6: never matches, even against everything. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	T_CHECK(!cidr_strs_match(all, 2, &sa));
}

/* [primary] source: a bare address, port 0, to bind to. */
static void
test_addr_parse(void)
{
	static const struct {
		const char	*in;
		int		 want, family;
	} cases[] = {
		{ "127.0.0.2", 0, AF_INET }, { "192.0.2.25", 0, AF_INET },
		{ "::1", 0, AF_INET6 }, { "2001:db8::25", 0, AF_INET6 },
		{ "::ffff:192.0.2.25", 0, AF_INET6 },
		{ "", -1, 0 }, { "localhost", -1, 0 }, { "127.0.0.2/32", -1, 0 },
		{ "127.0.0.2:25", -1, 0 }, { "[::1]", -1, 0 },
		{ " 127.0.0.2", -1, 0 }, { "256.0.0.1", -1, 0 },
		{ "1.2.3", -1, 0 },
	};
	struct sockaddr_storage ss;
	socklen_t len;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = net_addr_parse(cases[i].in, &ss, &len);

		if (got != cases[i].want || (got == 0 &&
		    (ss.ss_family != cases[i].family ||
		    len != (cases[i].family == AF_INET ?
		    sizeof(struct sockaddr_in) :
		    sizeof(struct sockaddr_in6)) ||
		    (cases[i].family == AF_INET ?
		    ((struct sockaddr_in *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)&ss)->sin6_port) != 0))) {
			fprintf(stderr, "  case %s\n", cases[i].in);
			T_CHECK(!"addr_parse");
		}
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "net_cidr_parse", test_cidr_parse },
		{ "net_addr_parse", test_addr_parse },
		{ "net_cidrs_match", test_cidr_list_match },
		{ "net_cidrs_match_family", test_cidr_list_match_family },
	};

	return T_RUN(cases);
}
