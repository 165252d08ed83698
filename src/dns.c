#include "dns.h"

#include <ares.h>
#include <ares_nameser.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "log.h"
#include "xmalloc.h"

#define DNS_MAX_SOCKS		16
#define DNS_TIMEOUT_MS		2000
#define DNS_TRIES		2

/*
 * The verified names of recent clients.  During a flood most connections
 * come from a few addresses (a sending MTA reconnects for every message),
 * and each lookup costs a PTR and a forward query (or two reads of
 * /etc/hosts) plus ~13 syscalls.  Entries live DNS_CACHE_TTL seconds: short
 * enough that a PTR or address change shows within a minute, far below
 * the hours DNS itself usually lets resolvers cache, and long enough to
 * cover a flood's reconnects.  The records' own TTLs are not used: the
 * parsed PTR answer and the hosts file do not carry one.  Lookups of one
 * address that overlap are not merged: each asks, the last to finish
 * stays.  A negative result
 * ("unknown": no PTR, or a forward lookup without the address) is cached
 * alike; a failed lookup (timeout, SERVFAIL, REFUSED, ...) never is.  At
 * most DNS_CACHE_MAX entries: a flood of distinct addresses evicts the
 * least recently used, memory stays bounded.
 */
#define DNS_CACHE_MAX		1024
#define DNS_CACHE_TTL		60
#define DNS_CACHE_BUCKETS	256	/* power of two */

struct dns_cache_ent {
	int				 family;
	unsigned char			 addr[16];
	char				*name;		/* NULL: unknown */
	long long			 expires;	/* monotonic s */
	LIST_ENTRY(dns_cache_ent)	 bucket;
	TAILQ_ENTRY(dns_cache_ent)	 lru;		/* head: newest use */
};

struct dns_cache {
	size_t				 max, n;
	long long			 ttl;
	LIST_HEAD(, dns_cache_ent)	 buckets[DNS_CACHE_BUCKETS];
	TAILQ_HEAD(dns_cache_lru, dns_cache_ent) lru;
};

struct dns_sock {
	ares_socket_t	 fd;
	struct event	*ev;
};

struct dns_query {
	struct dns		*dns;
	int			 family;
	unsigned char		 addr[16];
	char			*name;		/* PTR answer */
	bool			 done, verified;
	void			(*cb)(void *, const char *);
	/* dns_query_a() */
	void			(*a_cb)(void *, const unsigned char *,
				    size_t);
	unsigned char		 a[DNS_A_MAX * 4];
	size_t			 na;
	/* dns_resolve() */
	void			(*addr_cb)(void *, const struct sockaddr *,
				    socklen_t);
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	unsigned		 port;
	void			*arg;
	bool			 cancelled;
	TAILQ_ENTRY(dns_query)	 entry;
};

struct dns {
	struct event_base	*base;
	ares_channel		 channel;
	ares_channel		 hosts;		/* the hosts file only */
	struct event		*timer;
	struct event		*deliver;	/* runs finished callbacks */
	struct dns_sock		 socks[DNS_MAX_SOCKS];
	TAILQ_HEAD(, dns_query)	 queries;
	struct dns_cache	*cache;		/* dns_rdns() answers */
	bool			 destroying;
};

static void dns_timer_arm(struct dns *dns);
static void dns_query_free(struct dns_query *q);
static void dns_deliver_cb(evutil_socket_t fd, short what, void *arg);

static void
dns_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	ares_process_fd(dns->channel,
	    (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_timer_arm(dns);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;

	(void)fd;
	(void)what;
	ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_arm(dns);
}

static void
dns_timer_arm(struct dns *dns)
{
	struct timeval max = { 1, 0 }, tv, *t;

	if (dns->timer == NULL)
		return;
	t = ares_timeout(dns->channel, &max, &tv);
	evtimer_add(dns->timer, t);
}

/* c-ares tells us which sockets to watch for what. */
static void
dns_sock_state_cb(void *arg, ares_socket_t fd, int readable, int writable)
{
	struct dns *dns = arg;
	struct dns_sock *slot = NULL, *empty = NULL;
	size_t i;

	for (i = 0; i < DNS_MAX_SOCKS; i++) {
		if (dns->socks[i].ev != NULL && dns->socks[i].fd == fd)
			slot = &dns->socks[i];
		else if (dns->socks[i].ev == NULL && empty == NULL)
			empty = &dns->socks[i];
	}
	if (slot != NULL) {
		event_free(slot->ev);
		slot->ev = NULL;
	}
	if (!readable && !writable)
		return;
	if (slot == NULL)
		slot = empty;
	if (slot == NULL) {
		log_warnx("dns: too many sockets");
		return;
	}
	slot->fd = fd;
	slot->ev = event_new(dns->base, fd, EV_PERSIST |
	    (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0), dns_io_cb,
	    dns);
	if (slot->ev == NULL || event_add(slot->ev, NULL) == -1)
		fatalx("dns event");
}

/* The c-ares form of a resolver's address. */
static int
dns_server_node(const struct sockaddr *sa, struct ares_addr_port_node *n)
{
	memset(n, 0, sizeof(*n));
	n->family = sa->sa_family;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		n->addr.addr4 = sin->sin_addr;
		n->udp_port = n->tcp_port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		memcpy(&n->addr.addr6, &sin6->sin6_addr,
		    sizeof(n->addr.addr6));
		n->udp_port = n->tcp_port = ntohs(sin6->sin6_port);
	} else
		return ARES_EBADFAMILY;
	return ARES_SUCCESS;
}

struct dns *
dns_new(struct event_base *base, const struct sockaddr *server)
{
	struct dns *dns = xcalloc(1, sizeof(*dns));
	struct ares_options opts, hopts;
	struct ares_addr_port_node node;
	char files[] = "f";
	int rc, mask;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
		fatalx("ares_library_init: %s", ares_strerror(rc));
	dns->base = base;
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = dns_sock_state_cb;
	opts.sock_state_cb_data = dns;
	opts.timeout = DNS_TIMEOUT_MS;
	opts.tries = DNS_TRIES;
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	if ((rc = ares_init_options(&dns->channel, &opts, mask)) !=
	    ARES_SUCCESS) {
		log_warnx("dns init: %s", ares_strerror(rc));
		free(dns);
		return NULL;
	}
	if (server != NULL && (rc = dns_server_node(server, &node)) ==
	    ARES_SUCCESS)
		rc = ares_set_servers_ports(dns->channel, &node);
	if (server != NULL && rc != ARES_SUCCESS) {
		log_warnx("dns server: %s", ares_strerror(rc));
		ares_destroy(dns->channel);
		free(dns);
		return NULL;
	}
	memset(&hopts, 0, sizeof(hopts));
	hopts.lookups = files;
	if ((rc = ares_init_options(&dns->hosts, &hopts, ARES_OPT_LOOKUPS)) !=
	    ARES_SUCCESS) {
		log_warnx("dns init: %s", ares_strerror(rc));
		ares_destroy(dns->channel);
		free(dns);
		return NULL;
	}
	TAILQ_INIT(&dns->queries);
	dns->cache = dns_cache_new(DNS_CACHE_MAX, DNS_CACHE_TTL);
	dns->timer = evtimer_new(base, dns_timer_cb, dns);
	dns->deliver = event_new(base, -1, 0, dns_deliver_cb, dns);
	if (dns->timer == NULL || dns->deliver == NULL)
		fatalx("dns events");
	return dns;
}

void
dns_free(struct dns *dns)
{
	size_t i;

	if (dns == NULL)
		return;
	dns->destroying = true;
	ares_destroy(dns->hosts);	/* answers inside the call: idle */
	ares_destroy(dns->channel);	/* ends every lookup */
	while (!TAILQ_EMPTY(&dns->queries))
		dns_query_free(TAILQ_FIRST(&dns->queries));
	for (i = 0; i < DNS_MAX_SOCKS; i++)
		if (dns->socks[i].ev != NULL)
			event_free(dns->socks[i].ev);
	event_free(dns->timer);
	event_free(dns->deliver);
	dns_cache_free(dns->cache);
	free(dns);
	ares_library_cleanup();
}

/*
 * c-ares may answer from inside the call that asked (hosts file), so
 * results are delivered from a separate event, never re-entrantly.
 */
static void
dns_query_finish(struct dns_query *q, bool verified)
{
	q->done = true;
	q->verified = verified;
	if (!q->dns->destroying)
		event_active(q->dns->deliver, EV_TIMEOUT, 0);
}

static void
dns_query_free(struct dns_query *q)
{
	TAILQ_REMOVE(&q->dns->queries, q, entry);
	free(q->name);
	free(q);
}

static void
dns_deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *dns = arg;
	struct dns_query *q, *next;

	(void)fd;
	(void)what;
	for (q = TAILQ_FIRST(&dns->queries); q != NULL; q = next) {
		next = TAILQ_NEXT(q, entry);
		if (!q->done)
			continue;
		if (!q->cancelled && q->a_cb != NULL)
			q->a_cb(q->arg, q->verified ? q->a : NULL,
			    q->verified ? q->na : 0);
		else if (!q->cancelled && q->addr_cb != NULL)
			q->addr_cb(q->arg, q->verified ?
			    (struct sockaddr *)&q->ss : NULL, q->sslen);
		else if (!q->cancelled)
			q->cb(q->arg, q->verified ? q->name : NULL);
		dns_query_free(q);
	}
}

static size_t
dns_cache_hash(int family, const unsigned char *addr)
{
	size_t alen = family == AF_INET ? 4 : 16, i;
	uint32_t h = 2166136261u;	/* FNV-1a */

	h = (h ^ (uint32_t)family) * 16777619u;
	for (i = 0; i < alen; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h & (DNS_CACHE_BUCKETS - 1);
}

struct dns_cache *
dns_cache_new(size_t max, long long ttl)
{
	struct dns_cache *c = xcalloc(1, sizeof(*c));
	size_t i;

	c->max = max > 0 ? max : 1;
	c->ttl = ttl;
	for (i = 0; i < DNS_CACHE_BUCKETS; i++)
		LIST_INIT(&c->buckets[i]);
	TAILQ_INIT(&c->lru);
	return c;
}

static void
dns_cache_del(struct dns_cache *c, struct dns_cache_ent *e)
{
	LIST_REMOVE(e, bucket);
	TAILQ_REMOVE(&c->lru, e, lru);
	c->n--;
	free(e->name);
	free(e);
}

void
dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	while (!TAILQ_EMPTY(&c->lru))
		dns_cache_del(c, TAILQ_FIRST(&c->lru));
	free(c);
}

static struct dns_cache_ent *
dns_cache_find(struct dns_cache *c, int family, const unsigned char *addr)
{
	size_t alen = family == AF_INET ? 4 : 16;
	struct dns_cache_ent *e;

	LIST_FOREACH(e, &c->buckets[dns_cache_hash(family, addr)], bucket)
		if (e->family == family && memcmp(e->addr, addr, alen) == 0)
			return e;
	return NULL;
}

bool
dns_cache_get(struct dns_cache *c, int family, const unsigned char *addr,
    long long now, const char **name)
{
	struct dns_cache_ent *e = dns_cache_find(c, family, addr);

	if (e == NULL)
		return false;
	if (now >= e->expires) {
		dns_cache_del(c, e);
		return false;
	}
	TAILQ_REMOVE(&c->lru, e, lru);
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	*name = e->name;
	return true;
}

void
dns_cache_put(struct dns_cache *c, int family, const unsigned char *addr,
    const char *name, long long now)
{
	struct dns_cache_ent *e = dns_cache_find(c, family, addr);

	if (family != AF_INET && family != AF_INET6)
		return;
	if (e != NULL)
		dns_cache_del(c, e);
	if (c->n >= c->max)
		dns_cache_del(c, TAILQ_LAST(&c->lru, dns_cache_lru));
	e = xcalloc(1, sizeof(*e));
	e->family = family;
	memcpy(e->addr, addr, family == AF_INET ? 4 : 16);
	e->name = name != NULL ? xstrdup(name) : NULL;
	e->expires = now + c->ttl;
	LIST_INSERT_HEAD(&c->buckets[dns_cache_hash(family, addr)], e,
	    bucket);
	TAILQ_INSERT_HEAD(&c->lru, e, lru);
	c->n++;
}

size_t
dns_cache_count(const struct dns_cache *c)
{
	return c->n;
}

static long long
dns_now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		fatal("clock_gettime");
	return (long long)ts.tv_sec;
}

/* A definite answer: no such name or no such record, not a failure. */
static bool
dns_is_negative(int status)
{
	return status == ARES_ENOTFOUND || status == ARES_ENODATA;
}

/* The end of a dns_rdns() lookup; a definite answer is remembered. */
static void
dns_rdns_finish(struct dns_query *q, bool verified, bool definite)
{
	/* a session that left meanwhile still leaves a valid answer */
	if (definite && !q->dns->destroying)
		dns_cache_put(q->dns->cache, q->family, q->addr,
		    verified ? q->name : NULL, dns_now());
	dns_query_finish(q, verified);
}

/*
 * Forward lookup of the PTR name: does it include the address?  Asked
 * with ARES_AI_NOSORT: ares_gethostbyname() sorts the answer by RFC 6724,
 * a UDP socket, connect and getsockname per address, and the order does
 * not matter to a membership test.
 */
static void
dns_forward_cb(void *arg, int status, int timeouts,
    struct ares_addrinfo *res)
{
	struct dns_query *q = arg;
	const struct ares_addrinfo_node *n;
	const unsigned char *a;
	bool found = false;

	(void)timeouts;
	if (status == ARES_SUCCESS && res != NULL)
		for (n = res->nodes; n != NULL && !found; n = n->ai_next) {
			if (n->ai_family != q->family)
				continue;
			if (n->ai_family == AF_INET &&
			    (size_t)n->ai_addrlen >= sizeof(struct sockaddr_in))
				a = (const unsigned char *)&((const struct
				    sockaddr_in *)(const void *)n->ai_addr)->
				    sin_addr;
			else if (n->ai_family == AF_INET6 &&
			    (size_t)n->ai_addrlen >=
			    sizeof(struct sockaddr_in6))
				a = (const unsigned char *)&((const struct
				    sockaddr_in6 *)(const void *)n->ai_addr)->
				    sin6_addr;
			else
				continue;
			found = memcmp(a, q->addr,
			    q->family == AF_INET ? 4 : 16) == 0;
		}
	if (res != NULL)
		ares_freeaddrinfo(res);
	dns_rdns_finish(q, found, status == ARES_SUCCESS ||
	    dns_is_negative(status));
}

/* The name was found (hosts file or PTR): confirm it forward. */
static void
dns_ptr_found(struct dns_query *q, const char *name)
{
	struct ares_addrinfo_hints hints;

	q->name = xstrdup(name);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = q->family;
	hints.ai_flags = ARES_AI_NOSORT;
	ares_getaddrinfo(q->dns->channel, q->name, NULL, &hints,
	    dns_forward_cb, q);
	dns_timer_arm(q->dns);
}

static void
dns_ptr_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_query *q = arg;
	struct hostent *he = NULL;

	(void)timeouts;
	if (q->cancelled || q->dns->destroying) {
		dns_rdns_finish(q, false, false);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ares_parse_ptr_reply(abuf, alen, q->addr,
		    q->family == AF_INET ? 4 : 16, q->family, &he);
	if (status == ARES_SUCCESS && he != NULL && he->h_name != NULL)
		dns_ptr_found(q, he->h_name);
	else
		dns_rdns_finish(q, false, dns_is_negative(status));
	if (he != NULL)
		ares_free_hostent(he);
}

/* "4.3.2.1.in-addr.arpa", or the ip6.arpa nibbles of addr. */
static void
dns_ptr_qname(const struct dns_query *q, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (q->family == AF_INET) {
		snprintf(buf, len, "%u.%u.%u.%u.in-addr.arpa", q->addr[3],
		    q->addr[2], q->addr[1], q->addr[0]);
		return;
	}
	for (i = 16; i-- > 0 && o + 4 < len; ) {
		buf[o++] = hex[q->addr[i] & 0xf];
		buf[o++] = '.';
		buf[o++] = hex[q->addr[i] >> 4];
		buf[o++] = '.';
	}
	snprintf(buf + o, len - o, "ip6.arpa");
}

/*
 * The hosts file first, then DNS, as c-ares's gethostbyaddr does; done in
 * two steps because gethostbyaddr turns a failed DNS query (SERVFAIL,
 * REFUSED, a timeout) into "not found", which must not be cached.  The
 * hosts channel answers from inside the call.
 */
static void
dns_hosts_cb(void *arg, int status, int timeouts, struct hostent *he)
{
	struct dns_query *q = arg;
	char qname[80];

	(void)timeouts;
	if (q->dns->destroying) {
		dns_rdns_finish(q, false, false);
		return;
	}
	if (status == ARES_SUCCESS && he != NULL && he->h_name != NULL) {
		dns_ptr_found(q, he->h_name);
		return;
	}
	dns_ptr_qname(q, qname, sizeof(qname));
	ares_query(q->dns->channel, qname, C_IN, T_PTR, dns_ptr_cb, q);
	dns_timer_arm(q->dns);
}

struct dns_query *
dns_rdns(struct dns *dns, const struct sockaddr *sa,
    void (*cb)(void *arg, const char *name), void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	const char *name;

	q->dns = dns;
	q->cb = cb;
	q->arg = arg;
	q->family = sa->sa_family;
	if (sa->sa_family == AF_INET)
		memcpy(q->addr, &((const struct sockaddr_in *)(const void *)
		    sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			q->family = AF_INET;
			memcpy(q->addr, &a6->s6_addr[12], 4);
		} else
			memcpy(q->addr, a6, 16);
	}
	TAILQ_INSERT_TAIL(&dns->queries, q, entry);
	if (q->family != AF_INET && q->family != AF_INET6) {
		dns_query_finish(q, false);
		return q;
	}
	/* A hit is delivered like an answer: later, from the loop. */
	if (dns_cache_get(dns->cache, q->family, q->addr, dns_now(), &name)) {
		if (name != NULL)
			q->name = xstrdup(name);
		dns_query_finish(q, name != NULL);
		return q;
	}
	ares_gethostbyaddr(dns->hosts, q->addr,
	    q->family == AF_INET ? 4 : 16, q->family, dns_hosts_cb, q);
	dns_timer_arm(dns);
	return q;
}

static void
dns_addrinfo_cb(void *arg, int status, int timeouts,
    struct ares_addrinfo *res)
{
	struct dns_query *q = arg;
	struct ares_addrinfo_node *n;

	(void)timeouts;
	if (status == ARES_SUCCESS && res != NULL && !q->dns->destroying)
		for (n = res->nodes; n != NULL; n = n->ai_next) {
			if ((n->ai_family != AF_INET &&
			    n->ai_family != AF_INET6) ||
			    (size_t)n->ai_addrlen > sizeof(q->ss))
				continue;
			memcpy(&q->ss, n->ai_addr, (size_t)n->ai_addrlen);
			q->sslen = (socklen_t)n->ai_addrlen;
			if (n->ai_family == AF_INET)
				((struct sockaddr_in *)&q->ss)->sin_port =
				    htons((uint16_t)q->port);
			else
				((struct sockaddr_in6 *)&q->ss)->sin6_port =
				    htons((uint16_t)q->port);
			ares_freeaddrinfo(res);
			dns_query_finish(q, true);
			return;
		}
	if (res != NULL)
		ares_freeaddrinfo(res);
	dns_query_finish(q, false);
}

struct dns_query *
dns_resolve(struct dns *dns, const char *host, unsigned port, int family,
    void (*cb)(void *arg, const struct sockaddr *sa, socklen_t salen),
    void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	struct ares_addrinfo_hints hints;

	q->dns = dns;
	q->addr_cb = cb;
	q->arg = arg;
	q->port = port;
	TAILQ_INSERT_TAIL(&dns->queries, q, entry);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(dns->channel, host, NULL, &hints, dns_addrinfo_cb,
	    q);
	dns_timer_arm(dns);
	return q;
}

static void
dns_a_cb(void *arg, int status, int timeouts, struct hostent *he)
{
	struct dns_query *q = arg;
	size_t i;

	(void)timeouts;
	if (status == ARES_SUCCESS && he != NULL && he->h_length == 4 &&
	    he->h_addr_list[0] != NULL && !q->dns->destroying) {
		/* The first DNS_A_MAX: a DNSBL answers with a few codes. */
		for (i = 0; i < DNS_A_MAX && he->h_addr_list[i] != NULL; i++)
			memcpy(q->a + 4 * i, he->h_addr_list[i], 4);
		q->na = i;
		dns_query_finish(q, true);
		return;
	}
	dns_query_finish(q, false);
}

struct dns_query *
dns_query_a(struct dns *dns, const char *name,
    void (*cb)(void *arg, const unsigned char *a, size_t n), void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));

	q->dns = dns;
	q->a_cb = cb;
	q->arg = arg;
	TAILQ_INSERT_TAIL(&dns->queries, q, entry);
	ares_gethostbyname(dns->channel, name, AF_INET, dns_a_cb, q);
	dns_timer_arm(dns);
	return q;
}

void
dns_cancel(struct dns_query *q)
{
	if (q != NULL)
		q->cancelled = true;
}
