/*
 * net: socket plumbing with no SMTP knowledge: parsing "addr:port",
 * formatting addresses, and resolving the primary's fixed address.
 */
#ifndef HOLDFAST_NET_H
#define HOLDFAST_NET_H

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
/* Text address and port of sa. */
void net_addr_fmt(const struct sockaddr *sa, char *addr, size_t addrlen,
    unsigned *port);

#endif
