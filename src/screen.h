/*
 * screen: the spam defenses, which only ever defer.
 *
 * Per-client-address limits (open sessions, new connections and messages
 * per minute), the DNSBL lookups (c-ares, weighted zones, a threshold) and
 * the allow list that skips every screen.  It returns SCREEN_PASS or
 * SCREEN_DEFER with a reason and never writes to a client: smtp_server
 * turns a deferral into 421/450/451.  The limits count an IPv4 address or
 * an IPv6 /64; the table is bounded, and when it is full of busy entries
 * the least recently seen one is evicted (a new client is still limited).
 * The pregreet test lives in smtp_server (it is about the session's bytes).
 */
#ifndef HOLDFAST_SCREEN_H
#define HOLDFAST_SCREEN_H

#include <stdbool.h>
#include <sys/socket.h>

struct config;
struct config_dnsbl;
struct event_base;
struct screen;
struct screen_query;

enum screen_verdict {
	SCREEN_PASS,
	SCREEN_DEFER,
};

/* NULL (logged) if [screen] dns_server is unusable. */
struct screen *screen_new(struct event_base *base, const struct config *cf);
void screen_free(struct screen *sc);

/* In [screen] allow: no screen applies. */
bool screen_is_allowed(struct screen *sc, const struct sockaddr *sa);
/* A new session from sa: counts it unless deferred (then *why says
 * which limit).  Call screen_disconnect() for every PASS. */
enum screen_verdict screen_connect(struct screen *sc,
    const struct sockaddr *sa, const char **why);
void screen_disconnect(struct screen *sc, const struct sockaddr *sa);
/* A new message (MAIL) from sa: the per-minute message limit. */
enum screen_verdict screen_message(struct screen *sc,
    const struct sockaddr *sa, const char **why);

/*
 * Look sa up in every [screen] dnsbl zone; cb(arg, weight, zone) runs
 * later with the summed weight of the rows that list it, 0 if that is not
 * positive (zone: a listing one, or NULL).  NULL when no zone is configured or sa is not IPv4/IPv6
 * (cb never runs then).  screen_cancel() stops cb from running.
 */
struct screen_query *screen_dnsbl(struct screen *sc,
    const struct sockaddr *sa,
    void (*cb)(void *arg, unsigned weight, const char *zone), void *arg);
void screen_cancel(struct screen_query *query);

/* An answer in 127.255.255.0/24 (a: 4 bytes): the list reports an error
 * (e.g. Spamhaus refusing a public resolver), never a listing. */
bool screen_dnsbl_is_error(const unsigned char *a);
/* Does answer a (4 bytes) count as a listing for site?  Its filter, or
 * without one 127.0.0.0/24 but 127.0.0.1; error codes never do. */
bool screen_dnsbl_match(const struct config_dnsbl *site,
    const unsigned char *a);

#endif
