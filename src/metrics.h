/*
 * metrics: the registry of Prometheus metrics and the /metrics, /healthz
 * HTTP listener ([metrics] listen, off by default; [metrics] allow CIDRs,
 * others are closed at accept).
 *
 * Values live here; modules only call metrics_inc/add/set with an ID from
 * the enum below and never see how they are stored.  One row per series in
 * metrics.c's table {id, name, labels, type, help}; label values come from
 * small fixed sets, never an address, ID or hostname.  Gauges that are
 * cheaper to compute than to track are filled by collectors, which run
 * right before each scrape; the queue's come from its struct queue_stats,
 * rendered here (metrics_add_queue), so the queue knows no metric.  Loop
 * thread only.
 */
#ifndef HOLDFAST_METRICS_H
#define HOLDFAST_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct queue;

enum metrics_id {
	M_BUILD_INFO,			/* gauge 1, label version */
	M_START_TIME,			/* gauge, unix seconds */
	/* queue, by state: filled by the queue's collector */
	M_QUEUE_MSGS_QUEUED,
	M_QUEUE_MSGS_DEFERRED,
	M_QUEUE_MSGS_HELD,
	M_QUEUE_MSGS_DEAD,
	M_QUEUE_BYTES_QUEUED,
	M_QUEUE_BYTES_DEFERRED,
	M_QUEUE_BYTES_HELD,
	M_QUEUE_BYTES_DEAD,
	M_QUEUE_OLDEST_AGE,		/* seconds, queued+deferred */
	M_HOLD_MODE,			/* 0/1 */
	M_SPOOL_FREE_BYTES,
	M_SPOOL_SUSPECT,		/* 0/1: an fsync failed with EIO */
	M_SPOOL_LOW,			/* 0/1: below [spool] min_free */
	/* screening deferrals, by reason */
	M_SCREEN_PREGREET,
	M_SCREEN_DNSBL,
	M_SCREEN_LIMIT,
	/* message flow, counters */
	M_MSGS_ACCEPTED,
	M_DELIVERIES_DELIVERED,		/* per recipient */
	M_DELIVERIES_DEFERRED,		/* per message attempt */
	M_DELIVERIES_DEAD,		/* per recipient, refused */
	M_DELIVERIES_EXPIRED,		/* per message */
	/* inbound SMTP */
	M_SMTP_REPLIES_2XX,
	M_SMTP_REPLIES_3XX,
	M_SMTP_REPLIES_4XX,
	M_SMTP_REPLIES_5XX,
	M_SMTP_CONNECTIONS_OPEN,	/* gauge */
	M_SMTP_CONNECTIONS,		/* counter */
	/* the primary */
	M_PRIMARY_UP,			/* gauge 0/1 */
	M_PRIMARY_REFUSING,		/* gauge 0/1, circuit breaker */
	M_PRIMARY_CHANGE_TIME,		/* gauge, unix seconds */
	M_PRIMARY_STATE_SECONDS,	/* gauge, since the last change */
	M_LAST_DELIVERY_TIME,		/* gauge, unix seconds, 0 = never */
	/* TLS, by result */
	M_TLS_HANDSHAKES_OK,
	M_TLS_HANDSHAKES_FAILED,
	M_LOG_SUPPRESSED,		/* counter, log.c's hook */
	/* size limits */
	M_PRIMARY_SIZE,			/* gauge, the primary's SIZE, 0 = none */
	M_SIZE_LIMIT,			/* gauge, the limit in force */
	/* the STARTTLS certificate */
	M_TLS_READY,			/* gauge 0/1: STARTTLS offered */
	M_TLS_CERT_EXPIRY,		/* gauge, unix seconds, 0 = none */
	/* [notify] exec runs, by result */
	M_NOTIFY_OK,
	M_NOTIFY_FAILED,
	M_NOTIFY_TIMEOUT,
	M_NOTIFY_DROPPED,		/* queue of waiting events full */
	M_NOTIFY_SUPPRESSED,		/* a repeat within repeat_interval */
	/* families whose series are added at startup (metrics_series_add) */
	M_DNSBL_ERRORS,			/* counter, label zone */
	M_QUEUE_AGE,			/* gauge, label bucket (select.c) */
	M_SMTP_PAUSED,			/* gauge 0/1: pause-smtp */
	M_COUNT
};

void metrics_inc(enum metrics_id id);
void metrics_add(enum metrics_id id, uint64_t n);
void metrics_set(enum metrics_id id, double value);
double metrics_get(enum metrics_id id);

/*
 * Add a series "label=value" to family (a row without fixed labels, e.g.
 * M_DNSBL_ERRORS) and return its handle, or -1 (logged) if the value is not
 * [A-Za-z0-9._-] or all METRICS_SERIES_MAX are used.  For values from the
 * config only, so the set stays bounded; adding one twice returns the same
 * handle.
 */
#define METRICS_SERIES_MAX	64
int metrics_series_add(enum metrics_id family, const char *label,
    const char *value);
/* Count one on a handle from metrics_series_add(); -1 is ignored. */
void metrics_series_inc(int series);
/* Set a gauge series' value (handle -1 is ignored). */
void metrics_series_set(int series, double value);
double metrics_series_get(int series);

/*
 * Register fn(arg) to refresh gauges right before each scrape or render
 * (at most 8 collectors).
 */
void metrics_add_collector(void (*fn)(void *arg), void *arg);
/* Render the queue's state (queue_stats_get(), borrowing q until exit)
 * into the queue, primary and spool gauges before each scrape. */
void metrics_add_queue(struct queue *q);
/* Register the health check behind /healthz: healthy(arg) true -> 200. */
void metrics_set_health(bool (*healthy)(void *arg), void *arg);

/* Render the whole registry in the Prometheus text format (version 0.0.4)
 * into a new buffer (caller frees); *len gets its length. */
char *metrics_render(size_t *len);

/*
 * The HTTP request path, pure: the length of the request head (request
 * line and headers up to and with the empty line) at the start of buf, or
 * 0 if it is not complete; and the whole reply to that head, status line
 * to body, in a new buffer (caller frees), *outlen its length.  The peer
 * has passed [metrics] allow before.
 */
size_t metrics_http_head_len(const char *buf, size_t len);
char *metrics_http_respond(const char *head, size_t len, size_t *outlen);

/* Start the HTTP listener if [metrics] listen is set: 0, or -1 (logged)
 * if it cannot bind.  metrics_stop() closes it. */
int metrics_start(struct event_base *base, const struct config *cf);
void metrics_stop(void);

#endif
