#include "screen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "config.h"
#include "dns.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "util.h"
#include "xmalloc.h"

#define SCREEN_BUCKETS		4096
#define SCREEN_MAX_ADDRS	65536	/* table bound; idle ones go first */
#define SCREEN_WINDOW_SEC	60
#define SCREEN_V6_PREFIX	8	/* bytes: IPv6 limits apply per /64 */

/*
 * One client "address" for the limits: an IPv4 address, or an IPv6 /64
 * (one customer's subnet: counting each /128 would let one host spread
 * over 2^64 addresses).  When the table is full, entries with nothing
 * running go first; if all are busy, the least recently seen one is
 * evicted, so a new address is always limited.
 */
struct screen_addr {
	int			 family;
	unsigned char		 addr[16];
	unsigned		 sessions;
	time_t			 conn_window, msg_window;
	unsigned		 conns, msgs;
	struct screen_addr	*next;		/* bucket chain */
	TAILQ_ENTRY(screen_addr) lru;		/* least recently seen first */
};

#define SCREEN_DNSBL_LOG_SEC	60	/* one error line per zone per minute */

/* One DNSBL zone looked up (several [screen] dnsbl rows may share it). */
struct screen_zone {
	const char	*zone;		/* borrowed from the config */
	int		 errors;	/* metrics series, or -1 */
	time_t		 log_window;
	unsigned long	 suppressed;	/* error lines not logged */
};

struct screen {
	const struct config	*cf;
	struct dns		*dns;
	struct screen_addr	*buckets[SCREEN_BUCKETS];
	size_t			 naddrs;
	TAILQ_HEAD(, screen_addr) lru;
	time_t			 purged_at;	/* last purge of a full table */
	struct screen_zone	*zones;
	size_t			 nzones;
	size_t			*site_zone;	/* per config row: its zone */
	TAILQ_HEAD(, screen_query) queries;	/* DNSBL lookups running */
};

struct screen_thunk {
	struct screen_query	*sq;
	size_t			 zone;
};

struct screen_query {
	struct screen		*sc;
	void			(*cb)(void *, unsigned, const char *);
	void			*arg;
	size_t			 pending;
	long			 weight;	/* negative rows allow */
	const char		*zone;
	char			 addr[NET_ADDR_MAX];	/* for the log */
	bool			 cancelled;
	TAILQ_ENTRY(screen_query) entry;
	struct screen_thunk	 th[];	/* one per zone */
};

/* Address bytes of sa (v4-mapped v6 as v4); family 0 if neither. */
static int
screen_key(const struct sockaddr *sa, unsigned char *addr)
{
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			memcpy(addr, &a6->s6_addr[12], 4);
			return AF_INET;
		}
		memcpy(addr, a6, 16);
		return AF_INET6;
	}
	return 0;
}

static size_t
screen_hash(int family, const unsigned char *addr)
{
	size_t i, n = family == AF_INET ? 4 : 16;
	uint32_t h = 2166136261u;

	for (i = 0; i < n; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h % SCREEN_BUCKETS;
}

/* Drop entries with no session and no live window. */
static void
screen_purge(struct screen *sc, time_t now)
{
	size_t b;

	for (b = 0; b < SCREEN_BUCKETS; b++) {
		struct screen_addr **pp = &sc->buckets[b], *a;

		while ((a = *pp) != NULL) {
			if (a->sessions == 0 &&
			    now - a->conn_window >= SCREEN_WINDOW_SEC &&
			    now - a->msg_window >= SCREEN_WINDOW_SEC) {
				*pp = a->next;
				TAILQ_REMOVE(&sc->lru, a, lru);
				free(a);
				sc->naddrs--;
			} else
				pp = &a->next;
		}
	}
}

/* The least recently seen entry goes, busy or not. */
static void
screen_evict(struct screen *sc)
{
	static struct log_limit ll = LOG_LIMIT_INIT("screen table full");
	struct screen_addr *a = TAILQ_FIRST(&sc->lru), **pp;

	if (a == NULL)
		return;
	for (pp = &sc->buckets[screen_hash(a->family, a->addr)]; *pp != a;
	    pp = &(*pp)->next)
		;
	*pp = a->next;
	TAILQ_REMOVE(&sc->lru, a, lru);
	free(a);
	sc->naddrs--;
	if (log_limit_ok(&ll))
		log_warnx("screen address table full (%d busy addresses); "
		    "the least recently seen one is forgotten",
		    SCREEN_MAX_ADDRS);
}

static struct screen_addr *
screen_lookup(struct screen *sc, const struct sockaddr *sa, bool create)
{
	unsigned char addr[16] = { 0 };
	int family = screen_key(sa, addr);
	size_t b;
	struct screen_addr *a;
	time_t now;

	if (family == 0)
		return NULL;
	if (family == AF_INET6)
		memset(addr + SCREEN_V6_PREFIX, 0, 16 - SCREEN_V6_PREFIX);
	b = screen_hash(family, addr);
	for (a = sc->buckets[b]; a != NULL; a = a->next)
		if (a->family == family && memcmp(a->addr, addr,
		    family == AF_INET ? 4 : 16) == 0) {
			TAILQ_REMOVE(&sc->lru, a, lru);
			TAILQ_INSERT_TAIL(&sc->lru, a, lru);
			return a;
		}
	if (!create)
		return NULL;
	if (sc->naddrs >= SCREEN_MAX_ADDRS) {
		/* a full scan at most once a second */
		now = time(NULL);
		if (now != sc->purged_at) {
			sc->purged_at = now;
			screen_purge(sc, now);
		}
		if (sc->naddrs >= SCREEN_MAX_ADDRS)
			screen_evict(sc);
	}
	a = xcalloc(1, sizeof(*a));
	a->family = family;
	memcpy(a->addr, addr, 16);
	a->next = sc->buckets[b];
	sc->buckets[b] = a;
	TAILQ_INSERT_TAIL(&sc->lru, a, lru);
	sc->naddrs++;
	return a;
}

/* Count one event in a fixed one-minute window; false over limit. */
static bool
screen_window(time_t now, time_t *start, unsigned *count, uint64_t limit)
{
	if (now - *start >= SCREEN_WINDOW_SEC) {
		*start = now;
		*count = 0;
	}
	if (*count >= limit)
		return false;
	(*count)++;
	return true;
}

bool
screen_is_allowed(struct screen *sc, const struct sockaddr *sa)
{
	return net_cidrs_match(sc->cf->screen_allow_nets.v,
	    sc->cf->screen_allow_nets.n, sa);
}

enum screen_verdict
screen_connect(struct screen *sc, const struct sockaddr *sa, const char **why)
{
	struct screen_addr *a;
	time_t now = time(NULL);

	if (screen_is_allowed(sc, sa) ||
	    (a = screen_lookup(sc, sa, true)) == NULL) {
		*why = NULL;
		return SCREEN_PASS;
	}
	if (a->sessions >= sc->cf->max_sessions_per_ip) {
		*why = "too many sessions from this address";
		return SCREEN_DEFER;
	}
	if (!screen_window(now, &a->conn_window, &a->conns,
	    sc->cf->conn_rate)) {
		*why = "too many connections per minute from this address";
		return SCREEN_DEFER;
	}
	a->sessions++;
	return SCREEN_PASS;
}

void
screen_disconnect(struct screen *sc, const struct sockaddr *sa)
{
	struct screen_addr *a;

	if (screen_is_allowed(sc, sa) ||
	    (a = screen_lookup(sc, sa, false)) == NULL)
		return;
	if (a->sessions > 0)
		a->sessions--;
}

enum screen_verdict
screen_message(struct screen *sc, const struct sockaddr *sa, const char **why)
{
	struct screen_addr *a;

	*why = NULL;
	if (screen_is_allowed(sc, sa) ||
	    (a = screen_lookup(sc, sa, true)) == NULL)
		return SCREEN_PASS;
	if (!screen_window(time(NULL), &a->msg_window, &a->msgs,
	    sc->cf->msg_rate)) {
		*why = "too many messages per minute from this address";
		return SCREEN_DEFER;
	}
	return SCREEN_PASS;
}

/* ---- DNSBL ---- */

static void
screen_query_done(struct screen_query *sq)
{
	TAILQ_REMOVE(&sq->sc->queries, sq, entry);
	if (!sq->cancelled)
		sq->cb(sq->arg, sq->weight > 0 ? (unsigned)sq->weight : 0,
		    sq->weight > 0 ? sq->zone : NULL);
	free(sq);
}

bool
screen_dnsbl_is_error(const unsigned char *a)
{
	return a[0] == 127 && a[1] == 255 && a[2] == 255;
}

bool
screen_dnsbl_match(const struct config_dnsbl *site, const unsigned char *a)
{
	int i;

	if (screen_dnsbl_is_error(a))
		return false;
	if (!site->has_filter)
		return a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] != 1;
	for (i = 0; i < 4; i++)
		if (!(site->filter[i][a[i] / 8] & (1u << (a[i] % 8))))
			return false;
	return true;
}

/* An error answer: counted always, logged once a minute per zone. */
static void
screen_dnsbl_error(struct screen_zone *z, const char *addr,
    const unsigned char *a)
{
	time_t now = time(NULL);

	metrics_series_inc(z->errors);
	if (now - z->log_window < SCREEN_DNSBL_LOG_SEC) {
		z->suppressed++;
		return;
	}
	z->log_window = now;
	log_warnx("dnsbl error zone=%s addr=%s answer=%u.%u.%u.%u "
	    "suppressed=%lu reason=\"an error code, not a listing (the "
	    "list may refuse this resolver)\"", z->zone, addr, a[0], a[1],
	    a[2], a[3], z->suppressed);
	z->suppressed = 0;
}

static void
screen_thunk_cb(void *arg, const unsigned char *a, size_t n)
{
	struct screen_thunk *t = arg;
	struct screen_query *sq = t->sq;
	struct screen *sc = sq->sc;
	const struct config *cf = sc->cf;
	size_t i, r;

	/* Any error code makes the whole answer unusable for this zone. */
	for (i = 0; i < n; i++)
		if (screen_dnsbl_is_error(a + 4 * i)) {
			screen_dnsbl_error(&sc->zones[t->zone], sq->addr,
			    a + 4 * i);
			n = 0;
			break;
		}
	/* Each row of this zone adds its weight once if any code matches. */
	for (r = 0; r < cf->ndnsbl_sites && n > 0; r++) {
		if (sc->site_zone[r] != t->zone)
			continue;
		for (i = 0; i < n; i++)
			if (screen_dnsbl_match(&cf->dnsbl_sites[r],
			    a + 4 * i)) {
				sq->weight += cf->dnsbl_sites[r].weight;
				if (cf->dnsbl_sites[r].weight > 0)
					sq->zone = sc->zones[t->zone].zone;
				break;
			}
	}
	if (--sq->pending == 0)
		screen_query_done(sq);
}

struct screen_query *
screen_dnsbl(struct screen *sc, const struct sockaddr *sa,
    void (*cb)(void *arg, unsigned weight, const char *zone), void *arg)
{
	struct screen_query *sq;
	unsigned char addr[16];
	unsigned port;
	int family;
	size_t i;

	if (sc->nzones == 0 || sc->dns == NULL ||
	    (family = screen_key(sa, addr)) == 0)
		return NULL;
	sq = xcalloc(1, sizeof(*sq) + sc->nzones * sizeof(sq->th[0]));
	sq->sc = sc;
	sq->cb = cb;
	sq->arg = arg;
	sq->pending = sc->nzones;
	net_addr_fmt(sa, sq->addr, sizeof(sq->addr), &port);
	TAILQ_INSERT_TAIL(&sc->queries, sq, entry);
	for (i = 0; i < sc->nzones; i++) {
		struct screen_thunk *t = &sq->th[i];
		char name[300];
		size_t k, used = 0;

		/* Reversed address: nibbles for IPv6 (RFC 5782). */
		if (family == AF_INET)
			used = (size_t)snprintf(name, sizeof(name),
			    "%u.%u.%u.%u.", addr[3], addr[2], addr[1],
			    addr[0]);
		else
			for (k = 16; k-- > 0;)
				used += (size_t)snprintf(name + used,
				    sizeof(name) - used, "%x.%x.",
				    addr[k] & 15, addr[k] >> 4);
		snprintf(name + used, sizeof(name) - used, "%s",
		    sc->zones[i].zone);
		t->sq = sq;
		t->zone = i;
		dns_query_a(sc->dns, name, screen_thunk_cb, t);
	}
	return sq;
}

void
screen_cancel(struct screen_query *sq)
{
	if (sq != NULL)
		sq->cancelled = true;
}

/* ---- lifecycle ---- */

struct screen *
screen_new(struct event_base *base, const struct config *cf)
{
	struct screen *sc = xcalloc(1, sizeof(*sc));
	size_t i;

	sc->cf = cf;
	TAILQ_INIT(&sc->queries);
	TAILQ_INIT(&sc->lru);
	/* One lookup per distinct zone, however many rows name it. */
	sc->site_zone = xcalloc(cf->ndnsbl_sites + 1, sizeof(*sc->site_zone));
	for (i = 0; i < cf->ndnsbl_sites; i++) {
		const char *zone = cf->dnsbl_sites[i].zone;
		size_t j;

		for (j = 0; j < sc->nzones; j++)
			if (strcmp(sc->zones[j].zone, zone) == 0)
				break;
		if (j == sc->nzones) {
			sc->zones = xreallocarray(sc->zones, sc->nzones + 1,
			    sizeof(*sc->zones));
			memset(&sc->zones[j], 0, sizeof(sc->zones[j]));
			sc->zones[j].zone = zone;
			sc->zones[j].errors = metrics_series_add(
			    M_DNSBL_ERRORS, "zone", zone);
			sc->zones[j].log_window = time(NULL) -
			    SCREEN_DNSBL_LOG_SEC;
			sc->nzones++;
		}
		sc->site_zone[i] = j;
	}
	if (sc->nzones > 0) {
		sc->dns = dns_new(base, cf->screen_dns_addr.sslen != 0 ?
		    (const struct sockaddr *)&cf->screen_dns_addr.ss : NULL);
		if (sc->dns == NULL) {
			screen_free(sc);
			return NULL;
		}
	}
	return sc;
}

void
screen_free(struct screen *sc)
{
	size_t i;

	if (sc == NULL)
		return;
	/* Lookups still running end with the channel, without callbacks. */
	dns_free(sc->dns);
	while (!TAILQ_EMPTY(&sc->queries)) {
		struct screen_query *sq = TAILQ_FIRST(&sc->queries);

		TAILQ_REMOVE(&sc->queries, sq, entry);
		free(sq);
	}
	for (i = 0; i < SCREEN_BUCKETS; i++)
		while (sc->buckets[i] != NULL) {
			struct screen_addr *a = sc->buckets[i];

			sc->buckets[i] = a->next;
			free(a);
		}
	free(sc->site_zone);
	free(sc->zones);
	free(sc);
}
