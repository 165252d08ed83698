/*
 * net: socket plumbing with no SMTP knowledge: parsing "addr:port",
 * formatting addresses, and resolving the primary's fixed address.
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
/* Is sa inside any of the n CIDR strings (already validated)?  A
 * v4-mapped IPv6 address matches IPv4 blocks. */
bool net_cidr_list_match(char *const *cidrs, size_t n,
    const struct sockaddr *sa);

/* Text address and port of sa. */
void net_addr_fmt(const struct sockaddr *sa, char *addr, size_t addrlen,
    unsigned *port);

#endif
