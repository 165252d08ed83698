/*
 * dns: the c-ares channel with its libevent glue.  No SMTP knowledge.
 *
 * Lookups never block the loop.  dns_rdns() gives a client's verified
 * name: the PTR name whose forward lookup includes the address, as Postfix
 * does; anything else is "unknown" (NULL).  Its answers, "unknown"
 * included but never a failed lookup, are cached per address for a
 * minute.  A query can be cancelled when its owner goes away; the
 * callback then never runs.
 *
 * It owns the channel and its socket events; the caller owns each query's
 * argument.  It decides nothing with an answer (screen weighs DNSBL
 * replies, drain connects to the primary, smtp_server logs the name).
 */
#ifndef HOLDFAST_DNS_H
#define HOLDFAST_DNS_H

#include <stdbool.h>
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

/*
 * The cache behind dns_rdns(), public for its unit test: at most max
 * entries (the least recently used goes first), each valid for ttl
 * seconds; family AF_INET (addr 4 bytes) or AF_INET6 (16); now in
 * monotonic seconds.  name NULL means "unknown".
 */
struct dns_cache;
struct dns_cache *dns_cache_new(size_t max, long long ttl);
void dns_cache_free(struct dns_cache *cache);
/* On a hit, true with *name the cached name (borrowed until the next
 * call) or NULL for "unknown"; false when absent or expired. */
bool dns_cache_get(struct dns_cache *cache, int family,
    const unsigned char *addr, long long now, const char **name);
/* Remember addr's answer (name copied) until now + ttl. */
void dns_cache_put(struct dns_cache *cache, int family,
    const unsigned char *addr, const char *name, long long now);
size_t dns_cache_count(const struct dns_cache *cache);

#endif
