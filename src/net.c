#include "net.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "xmalloc.h"

struct net_backoff {
	struct evconnlistener	*lev;		/* borrowed */
	struct event		*timer;
	const char		*name;
	struct log_limit	 ll;
};

int
net_parse_hostport(const char *s, struct sockaddr_storage *ss,
    socklen_t *sslen)
{
	char host[NET_ADDR_MAX];
	const char *colon;
	uint64_t port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return -1;
		hl = (size_t)(end - s - 1);
		s++;
		colon = end + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (util_parse_u64(colon + 1, &port) == -1 || port == 0 ||
	    port > 65535)
		return -1;
	if (strchr(host, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
	}
	return 0;
}

int
net_literal(const char *host, unsigned port, struct sockaddr_storage *ss,
    socklen_t *sslen)
{
	char buf[NET_ADDR_MAX + 16];

	snprintf(buf, sizeof(buf), strchr(host, ':') != NULL ? "[%s]:%u" :
	    "%s:%u", host, port);
	return net_parse_hostport(buf, ss, sslen);
}

int
net_addr_parse(const char *addr, struct sockaddr_storage *ss,
    socklen_t *sslen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*sslen = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
net_cidr_parse(const char *s, struct net_cidr *cidr)
{
	struct net_cidr c;
	char buf[NET_ADDR_MAX];
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	uint64_t bits;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(&c, 0, sizeof(c));
	if (inet_pton(AF_INET, buf, c.addr) == 1) {
		c.family = AF_INET;
		c.bits = 32;
	} else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
		c.family = AF_INET6;
		c.bits = 128;
	} else
		return -1;
	if (slash != NULL) {
		if (util_parse_u64(slash + 1, &bits) == -1 || bits > c.bits)
			return -1;
		c.bits = (unsigned)bits;
	}
	if (cidr != NULL)
		*cidr = c;
	return 0;
}

static bool
net_cidr_match(const struct net_cidr *c, int family,
    const unsigned char *addr)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (c->family != family)
		return false;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

/* sa's address as family and bytes; a v4-mapped IPv6 address as IPv4.
 * false if sa is neither IPv4 nor IPv6. */
static bool
net_cidr_key(const struct sockaddr *sa, int *family, unsigned char addr[16])
{
	*family = sa->sa_family;
	if (*family == AF_INET)
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr, 4);
	else if (*family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			*family = AF_INET;
			memcpy(addr, &a6->s6_addr[12], 4);
		} else
			memcpy(addr, a6, 16);
	} else
		return false;
	return true;
}

bool
net_cidrs_match(const struct net_cidr *cidrs, size_t n,
    const struct sockaddr *sa)
{
	unsigned char addr[16];
	int family;
	size_t i;

	if (!net_cidr_key(sa, &family, addr))
		return false;
	for (i = 0; i < n; i++)
		if (net_cidr_match(&cidrs[i], family, addr))
			return true;
	return false;
}

void
net_addr_fmt(const struct sockaddr *sa, char *addr, size_t addrlen,
    unsigned *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, addr, (socklen_t)addrlen);
		*port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, addr,
		    (socklen_t)addrlen);
		*port = ntohs(sin6->sin6_port);
		/* Show v4-mapped clients as plain IPv4. */
		if (strncmp(addr, "::ffff:", 7) == 0 &&
		    strchr(addr + 7, '.') != NULL)
			memmove(addr, addr + 7, strlen(addr + 7) + 1);
	} else {
		util_copy(addr, addrlen, "unknown");
		*port = 0;
	}
}

static void
net_backoff_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net_backoff *b = arg;

	(void)fd;
	(void)what;
	if (evconnlistener_enable(b->lev) == -1)
		log_warnx("%s listener cannot resume accepting", b->name);
}

struct net_backoff *
net_backoff_new(struct event_base *base, struct evconnlistener *lev,
    const char *name)
{
	struct net_backoff *b = xcalloc(1, sizeof(*b));

	b->lev = lev;
	b->name = name;
	b->ll.site = name;
	if ((b->timer = evtimer_new(base, net_backoff_timer_cb, b)) == NULL)
		fatalx("%s: evtimer_new failed", __func__);
	return b;
}

void
net_backoff_start(struct net_backoff *b, int err)
{
	struct timeval tv = { 0, NET_BACKOFF_MS * 1000 };

	/*
	 * Whatever the error, pausing is safe: the connection waits in the
	 * backlog.  Not pausing is not: libevent would call accept() again
	 * at once and spin at 100% CPU while descriptors are short.
	 */
	if (log_limit_ok(&b->ll))
		log_warnx("%s accept failed: %s; pausing %dms", b->name,
		    strerror(err), NET_BACKOFF_MS);
	if (evtimer_pending(b->timer, NULL))
		return;
	evconnlistener_disable(b->lev);
	evtimer_add(b->timer, &tv);
}

void
net_backoff_free(struct net_backoff *b)
{
	if (b == NULL)
		return;
	event_free(b->timer);
	free(b);
}
