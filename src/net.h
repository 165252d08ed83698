/*
 * net: socket plumbing with no SMTP knowledge: parsing "addr:port" and
 * bare addresses, formatting addresses, CIDR blocks (parsed once at config
 * load, matched per connection) and the accept() backoff of a listener
 * that ran out of descriptors.
 *
 * It owns only the net_backoff it creates (and its timer); the listeners,
 * sockets and address buffers belong to the callers.  It keeps no global
 * state, opens no socket and knows no config.
 */
#ifndef HOLDFAST_NET_H
#define HOLDFAST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define NET_ADDR_MAX 64		/* text form of an address */

/* Parse "1.2.3.4:25" or "[::1]:25" (numeric only).  0 or -1. */
int net_parse_hostport(const char *s, struct sockaddr_storage *ss,
    socklen_t *sslen);
/* host as an address literal (no name lookup) with port; 0, or -1 if
 * host is not a literal. */
int net_literal(const char *host, unsigned port, struct sockaddr_storage *ss,
    socklen_t *sslen);
/* A bare address literal (IPv4 or IPv6, no brackets, no port) as a
 * sockaddr with port 0, e.g. to bind to.  0, or -1 if addr is not one. */
int net_addr_parse(const char *addr, struct sockaddr_storage *ss,
    socklen_t *sslen);
/* An address block: "192.0.2.0/24", "2001:db8::/32", or a bare address
 * (a /32 or /128). */
struct net_cidr {
	int		family;
	unsigned char	addr[16];
	unsigned	bits;
};

/* Parse s into cidr (may be NULL to only validate).  0 or -1. */
int net_cidr_parse(const char *s, struct net_cidr *cidr);
/* Is sa inside any of the n blocks (parsed once by net_cidr_parse)?  A
 * v4-mapped IPv6 address matches IPv4 blocks. */
bool net_cidrs_match(const struct net_cidr *cidrs, size_t n,
    const struct sockaddr *sa);

/* Text address and port of sa. */
void net_addr_fmt(const struct sockaddr *sa, char *addr, size_t addrlen,
    unsigned *port);

/*
 * What a listener does when accept() fails: out of descriptors (EMFILE,
 * ENFILE) or memory the pending connection stays in the kernel's queue and
 * the listener would wake up again at once, so it stops accepting for
 * NET_BACKOFF_MS and then resumes.  The line is rate-limited.  The backoff
 * borrows the listener, which must outlive it.
 */
#define NET_BACKOFF_MS 250

struct evconnlistener;
struct event_base;
struct net_backoff;

/* A backoff for listener lev; name ("smtp", "metrics") goes in the log. */
struct net_backoff *net_backoff_new(struct event_base *base,
    struct evconnlistener *lev, const char *name);
/* Call from the listener's error callback with the accept() errno. */
void net_backoff_start(struct net_backoff *b, int err);
void net_backoff_free(struct net_backoff *b);

#endif
