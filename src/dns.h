/*
 * dns: the c-ares channel with its libevent glue.  No SMTP knowledge.
 *
 * Lookups never block the loop.  dns_rdns() gives a client's verified
 * name: the PTR name whose forward lookup includes the address, as Postfix
 * does; anything else is "unknown" (NULL).  A query can be cancelled when
 * its owner goes away; the callback then never runs.
 *
 * It owns the channel and its socket events; the caller owns each query's
 * argument.  It decides nothing with an answer (screen weighs DNSBL
 * replies, drain connects to the primary, smtp_server logs the name).
 */
#ifndef HOLDFAST_DNS_H
#define HOLDFAST_DNS_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct dns_query;

/* server: the one resolver to ask (its port included, the config's
 * [screen] dns_server parsed at load), or NULL for the system's.  NULL on
 * error (logged). */
struct dns *dns_new(struct event_base *base, const struct sockaddr *server);
/* Pending queries are cancelled; their callbacks do not run. */
void dns_free(struct dns *dns);

/*
 * Look up the verified name of sa.  cb(arg, name) runs later on the loop
 * with the name, or NULL if there is none or the lookup failed; name is
 * borrowed for the call.  Returns a handle valid until cb runs or
 * dns_cancel() is called.
 */
struct dns_query *dns_rdns(struct dns *dns, const struct sockaddr *sa,
    void (*cb)(void *arg, const char *name), void *arg);
/*
 * Resolve host (a name or a literal) to its first address of family
 * (AF_UNSPEC: any) with port set; cb(arg, sa, salen) with sa NULL on
 * failure.  Same lifetime rules.
 */
struct dns_query *dns_resolve(struct dns *dns, const char *host,
    unsigned port, int family,
    void (*cb)(void *arg, const struct sockaddr *sa, socklen_t salen),
    void *arg);
/* The IPv4 addresses of name (a DNSBL lookup): cb(arg, a, n) with n
 * (at most DNS_A_MAX) addresses of 4 bytes each in a, borrowed for the
 * call; a NULL and n 0 when there is none.  Same lifetime rules. */
#define DNS_A_MAX	8
struct dns_query *dns_query_a(struct dns *dns, const char *name,
    void (*cb)(void *arg, const unsigned char *a, size_t n), void *arg);
void dns_cancel(struct dns_query *query);

#endif
