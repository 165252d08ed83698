/*
 * The rDNS answer cache (dns_cache_*) with a fake clock: hits within the
 * TTL, expiry after it, "unknown" cached as NULL, IPv4 and IPv6 keys kept
 * apart, replacement of an address's answer, and the entry bound with
 * least-recently-used eviction under a flood of distinct addresses.
 */
#include "dns.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "t.h"

static const unsigned char v4a[4] = { 192, 0, 2, 7 };
static const unsigned char v4b[4] = { 192, 0, 2, 8 };
/* the same first 4 bytes as v4a: family is part of the key */
static const unsigned char v6a[16] = { 192, 0, 2, 7, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 1 };

static void
test_hit_and_expiry(void)
{
	struct dns_cache *c = dns_cache_new(16, 60);
	const char *name = "x";

	T_CHECK(!dns_cache_get(c, AF_INET, v4a, 1000, &name));
	dns_cache_put(c, AF_INET, v4a, "mta.example.net", 1000);
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 1000, &name));
	T_STREQ(name, "mta.example.net");
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 1059, &name));
	T_STREQ(name, "mta.example.net");
	/* expired at put + ttl, and dropped */
	T_CHECK(!dns_cache_get(c, AF_INET, v4a, 1060, &name));
	T_CHECK(dns_cache_count(c) == 0);
	dns_cache_free(c);
}

static void
test_unknown_cached(void)
{
	struct dns_cache *c = dns_cache_new(16, 60);
	const char *name = "x";

	dns_cache_put(c, AF_INET, v4b, NULL, 5);
	T_CHECK(dns_cache_get(c, AF_INET, v4b, 6, &name));
	T_CHECK(name == NULL);
	T_CHECK(!dns_cache_get(c, AF_INET, v4a, 6, &name));
	dns_cache_free(c);
}

static void
test_families_apart(void)
{
	struct dns_cache *c = dns_cache_new(16, 60);
	const char *name = NULL;

	dns_cache_put(c, AF_INET, v4a, "four.example", 0);
	T_CHECK(!dns_cache_get(c, AF_INET6, v6a, 1, &name));
	dns_cache_put(c, AF_INET6, v6a, "six.example", 0);
	T_CHECK(dns_cache_get(c, AF_INET6, v6a, 1, &name));
	T_STREQ(name, "six.example");
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 1, &name));
	T_STREQ(name, "four.example");
	T_CHECK(dns_cache_count(c) == 2);
	dns_cache_free(c);
}

static void
test_replace(void)
{
	struct dns_cache *c = dns_cache_new(16, 60);
	const char *name = NULL;

	dns_cache_put(c, AF_INET, v4a, "old.example", 0);
	dns_cache_put(c, AF_INET, v4a, "new.example", 50);
	T_CHECK(dns_cache_count(c) == 1);
	/* the new answer, with its own lifetime */
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 100, &name));
	T_STREQ(name, "new.example");
	dns_cache_put(c, AF_INET, v4a, NULL, 100);
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 101, &name));
	T_CHECK(name == NULL);
	dns_cache_free(c);
}

static void
addr_of(uint32_t i, unsigned char a[4])
{
	a[0] = 10;
	a[1] = (unsigned char)(i >> 16);
	a[2] = (unsigned char)(i >> 8);
	a[3] = (unsigned char)i;
}

/* 100 000 distinct addresses through a cache of 64: never more than 64
 * entries; the recently used survive, the oldest go. */
static void
test_bounded_lru(void)
{
	struct dns_cache *c = dns_cache_new(64, 60);
	unsigned char a[4];
	const char *name = NULL;
	uint32_t i;

	dns_cache_put(c, AF_INET, v4a, "kept.example", 0);
	for (i = 0; i < 100000; i++) {
		addr_of(i, a);
		dns_cache_put(c, AF_INET, a, NULL, 0);
		/* v4a is in use all along: never the least recent */
		if (i % 32 == 0)
			T_CHECK(dns_cache_get(c, AF_INET, v4a, 0, &name));
		T_CHECK(dns_cache_count(c) <= 64);
	}
	T_CHECK(dns_cache_count(c) == 64);
	T_CHECK(dns_cache_get(c, AF_INET, v4a, 1, &name));
	T_STREQ(name, "kept.example");
	addr_of(99999, a);
	T_CHECK(dns_cache_get(c, AF_INET, a, 1, &name));
	addr_of(0, a);
	T_CHECK(!dns_cache_get(c, AF_INET, a, 1, &name));
	addr_of(99999 - 70, a);
	T_CHECK(!dns_cache_get(c, AF_INET, a, 1, &name));
	dns_cache_free(c);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "hit_and_expiry", test_hit_and_expiry },
		{ "unknown_cached", test_unknown_cached },
		{ "families_apart", test_families_apart },
		{ "replace", test_replace },
		{ "bounded_lru", test_bounded_lru },
	};

	return T_RUN(cases);
}
