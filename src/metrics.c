#include "metrics.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "net.h"
#include "queue.h"
#include "util.h"
#include "xmalloc.h"

#ifndef HOLDFAST_VERSION
#error "HOLDFAST_VERSION must be defined (the Makefile passes -D)"
#endif

#define METRICS_COLLECTORS_MAX	8
#define METRICS_HEADERS_MAX	8192	/* request line and headers */
#define METRICS_DEADLINE_SEC	5	/* whole request and reply */
#define METRICS_CONN_MAX	8	/* connections open at once */

enum metrics_type {
	METRICS_T_COUNTER,
	METRICS_T_GAUGE,
};

static const char *const metrics_type_names[] = {
	[METRICS_T_COUNTER] = "counter",
	[METRICS_T_GAUGE] = "gauge",
};

/*
 * One row per series.  Rows sharing a name form one family: its HELP and
 * TYPE are taken from the family's first row and printed once.  labels is
 * the text between the braces, or "" for none; values are fixed here, so
 * nothing from a peer can reach the output.  labels NULL marks a family
 * whose series come from metrics_series_add() (values from the config).
 */
struct metrics_def {
	enum metrics_id		 id;
	const char		*name;
	const char		*labels;
	enum metrics_type	 type;
	const char		*help;
};

#define Q_MSGS_HELP	"Messages in the spool, by state."
#define SCREEN_HELP "Clients deferred (never refused) by the screens, by reason."
#define Q_BYTES_HELP	"Bytes of message bodies in the spool, by state."
#define DELIV_HELP	"Delivery outcomes: delivered and dead count " \
			"recipients, deferred counts message attempts, " \
			"expired counts messages."
#define REPLY_HELP	"SMTP replies sent to clients, by class."
#define TLS_HELP	"Inbound TLS handshakes, by result."
#define NOTIFY_HELP	"Events for the [notify] exec program, by result: " \
			"ok, failed, timeout (killed), dropped (too many " \
			"waiting), suppressed (a repeat)."

static const struct metrics_def metrics_table[M_COUNT] = {
	[M_BUILD_INFO] = { M_BUILD_INFO, "holdfast_build_info",
	    "version=\"" HOLDFAST_VERSION "\"", METRICS_T_GAUGE,
	    "Always 1; the version label names the running build." },
	[M_START_TIME] = { M_START_TIME, "holdfast_start_time_seconds", "",
	    METRICS_T_GAUGE, "Unix time the daemon started." },

	[M_QUEUE_MSGS_QUEUED] = { M_QUEUE_MSGS_QUEUED,
	    "holdfast_queue_messages", "state=\"queued\"", METRICS_T_GAUGE,
	    Q_MSGS_HELP },
	[M_QUEUE_MSGS_DEFERRED] = { M_QUEUE_MSGS_DEFERRED,
	    "holdfast_queue_messages", "state=\"deferred\"", METRICS_T_GAUGE,
	    Q_MSGS_HELP },
	[M_QUEUE_MSGS_HELD] = { M_QUEUE_MSGS_HELD,
	    "holdfast_queue_messages", "state=\"held\"", METRICS_T_GAUGE,
	    Q_MSGS_HELP },
	[M_QUEUE_MSGS_DEAD] = { M_QUEUE_MSGS_DEAD,
	    "holdfast_queue_messages", "state=\"dead\"", METRICS_T_GAUGE,
	    Q_MSGS_HELP },
	[M_QUEUE_BYTES_QUEUED] = { M_QUEUE_BYTES_QUEUED,
	    "holdfast_queue_bytes", "state=\"queued\"", METRICS_T_GAUGE,
	    Q_BYTES_HELP },
	[M_QUEUE_BYTES_DEFERRED] = { M_QUEUE_BYTES_DEFERRED,
	    "holdfast_queue_bytes", "state=\"deferred\"", METRICS_T_GAUGE,
	    Q_BYTES_HELP },
	[M_QUEUE_BYTES_HELD] = { M_QUEUE_BYTES_HELD,
	    "holdfast_queue_bytes", "state=\"held\"", METRICS_T_GAUGE,
	    Q_BYTES_HELP },
	[M_QUEUE_BYTES_DEAD] = { M_QUEUE_BYTES_DEAD,
	    "holdfast_queue_bytes", "state=\"dead\"", METRICS_T_GAUGE,
	    Q_BYTES_HELP },
	[M_QUEUE_OLDEST_AGE] = { M_QUEUE_OLDEST_AGE,
	    "holdfast_queue_oldest_message_age_seconds", "", METRICS_T_GAUGE,
	    "Age of the oldest queued or deferred message (0 when empty)." },
	[M_HOLD_MODE] = { M_HOLD_MODE, "holdfast_hold_mode", "",
	    METRICS_T_GAUGE,
	    "1 while hold mode keeps new mail from draining." },
	[M_SPOOL_FREE_BYTES] = { M_SPOOL_FREE_BYTES,
	    "holdfast_spool_free_bytes", "", METRICS_T_GAUGE,
	    "Bytes available to the daemon on the spool filesystem." },
	[M_SPOOL_LOW] = { M_SPOOL_LOW, "holdfast_spool_low", "",
	    METRICS_T_GAUGE,
	    "1 while free space is below [spool] min_free: new mail gets 452." },
	[M_SCREEN_PREGREET] = { M_SCREEN_PREGREET,
	    "holdfast_screen_deferrals_total", "reason=\"pregreet\"",
	    METRICS_T_COUNTER, SCREEN_HELP },
	[M_SCREEN_DNSBL] = { M_SCREEN_DNSBL,
	    "holdfast_screen_deferrals_total", "reason=\"dnsbl\"",
	    METRICS_T_COUNTER, SCREEN_HELP },
	[M_SCREEN_LIMIT] = { M_SCREEN_LIMIT,
	    "holdfast_screen_deferrals_total", "reason=\"limit\"",
	    METRICS_T_COUNTER, SCREEN_HELP },
	[M_SPOOL_SUSPECT] = { M_SPOOL_SUSPECT, "holdfast_spool_suspect", "",
	    METRICS_T_GAUGE,
	    "1 after an fsync failed with EIO: new mail gets 451 until a "
	    "restart." },

	[M_MSGS_ACCEPTED] = { M_MSGS_ACCEPTED,
	    "holdfast_messages_accepted_total", "", METRICS_T_COUNTER,
	    "Messages committed to the spool and answered 250." },
	[M_DELIVERIES_DELIVERED] = { M_DELIVERIES_DELIVERED,
	    "holdfast_deliveries_total", "result=\"delivered\"",
	    METRICS_T_COUNTER, DELIV_HELP },
	[M_DELIVERIES_DEFERRED] = { M_DELIVERIES_DEFERRED,
	    "holdfast_deliveries_total", "result=\"deferred\"",
	    METRICS_T_COUNTER, DELIV_HELP },
	[M_DELIVERIES_DEAD] = { M_DELIVERIES_DEAD,
	    "holdfast_deliveries_total", "result=\"dead\"",
	    METRICS_T_COUNTER, DELIV_HELP },
	[M_DELIVERIES_EXPIRED] = { M_DELIVERIES_EXPIRED,
	    "holdfast_deliveries_total", "result=\"expired\"",
	    METRICS_T_COUNTER, DELIV_HELP },

	[M_SMTP_REPLIES_2XX] = { M_SMTP_REPLIES_2XX,
	    "holdfast_smtp_replies_total", "class=\"2xx\"", METRICS_T_COUNTER,
	    REPLY_HELP },
	[M_SMTP_REPLIES_3XX] = { M_SMTP_REPLIES_3XX,
	    "holdfast_smtp_replies_total", "class=\"3xx\"", METRICS_T_COUNTER,
	    REPLY_HELP },
	[M_SMTP_REPLIES_4XX] = { M_SMTP_REPLIES_4XX,
	    "holdfast_smtp_replies_total", "class=\"4xx\"", METRICS_T_COUNTER,
	    REPLY_HELP },
	[M_SMTP_REPLIES_5XX] = { M_SMTP_REPLIES_5XX,
	    "holdfast_smtp_replies_total", "class=\"5xx\"", METRICS_T_COUNTER,
	    REPLY_HELP },
	[M_SMTP_CONNECTIONS_OPEN] = { M_SMTP_CONNECTIONS_OPEN,
	    "holdfast_smtp_connections_open", "", METRICS_T_GAUGE,
	    "Inbound SMTP sessions open now." },
	[M_SMTP_CONNECTIONS] = { M_SMTP_CONNECTIONS,
	    "holdfast_smtp_connections_total", "", METRICS_T_COUNTER,
	    "Inbound SMTP connections accepted." },

	[M_PRIMARY_UP] = { M_PRIMARY_UP, "holdfast_primary_up", "",
	    METRICS_T_GAUGE, "1 while the primary MX accepts connections." },
	[M_PRIMARY_REFUSING] = { M_PRIMARY_REFUSING,
	    "holdfast_primary_refusing", "", METRICS_T_GAUGE,
	    "1 while draining is paused because the primary refuses (5xx) "
	    "everything." },
	[M_PRIMARY_CHANGE_TIME] = { M_PRIMARY_CHANGE_TIME,
	    "holdfast_primary_last_change_timestamp_seconds", "",
	    METRICS_T_GAUGE, "Unix time the primary last went up or down." },
	[M_PRIMARY_STATE_SECONDS] = { M_PRIMARY_STATE_SECONDS,
	    "holdfast_primary_state_seconds", "", METRICS_T_GAUGE,
	    "Seconds the primary has been in its current up/down state." },
	[M_LAST_DELIVERY_TIME] = { M_LAST_DELIVERY_TIME,
	    "holdfast_last_delivery_timestamp_seconds", "", METRICS_T_GAUGE,
	    "Unix time of the last delivery to the primary (0 = never)." },

	[M_TLS_HANDSHAKES_OK] = { M_TLS_HANDSHAKES_OK,
	    "holdfast_tls_handshakes_total", "result=\"ok\"",
	    METRICS_T_COUNTER, TLS_HELP },
	[M_TLS_HANDSHAKES_FAILED] = { M_TLS_HANDSHAKES_FAILED,
	    "holdfast_tls_handshakes_total", "result=\"failed\"",
	    METRICS_T_COUNTER, TLS_HELP },

	[M_LOG_SUPPRESSED] = { M_LOG_SUPPRESSED,
	    "holdfast_log_suppressed_total", "", METRICS_T_COUNTER,
	    "Log lines a peer could trigger that were not written because "
	    "their call site passed its rate limit." },
	[M_PRIMARY_SIZE] = { M_PRIMARY_SIZE,
	    "holdfast_primary_size_limit_bytes", "", METRICS_T_GAUGE,
	    "The SIZE the primary last advertised in EHLO (0: none or no "
	    "limit); kept across restarts." },
	[M_SIZE_LIMIT] = { M_SIZE_LIMIT, "holdfast_message_size_limit_bytes",
	    "", METRICS_T_GAUGE,
	    "The message size limit in force: max_message_size, or less to "
	    "stay under the primary's SIZE." },
	[M_TLS_READY] = { M_TLS_READY, "holdfast_tls_ready", "",
	    METRICS_T_GAUGE, "1 when STARTTLS is offered (a [tls] pair is "
	    "loaded), else 0." },
	[M_TLS_CERT_EXPIRY] = { M_TLS_CERT_EXPIRY,
	    "holdfast_tls_cert_expiry_timestamp_seconds", "", METRICS_T_GAUGE,
	    "Unix time the loaded STARTTLS certificate expires (0 = none)." },

	[M_NOTIFY_OK] = { M_NOTIFY_OK, "holdfast_notify_total",
	    "result=\"ok\"", METRICS_T_COUNTER, NOTIFY_HELP },
	[M_NOTIFY_FAILED] = { M_NOTIFY_FAILED, "holdfast_notify_total",
	    "result=\"failed\"", METRICS_T_COUNTER, NOTIFY_HELP },
	[M_NOTIFY_TIMEOUT] = { M_NOTIFY_TIMEOUT, "holdfast_notify_total",
	    "result=\"timeout\"", METRICS_T_COUNTER, NOTIFY_HELP },
	[M_NOTIFY_DROPPED] = { M_NOTIFY_DROPPED, "holdfast_notify_total",
	    "result=\"dropped\"", METRICS_T_COUNTER, NOTIFY_HELP },
	[M_NOTIFY_SUPPRESSED] = { M_NOTIFY_SUPPRESSED,
	    "holdfast_notify_total", "result=\"suppressed\"",
	    METRICS_T_COUNTER, NOTIFY_HELP },

	[M_DNSBL_ERRORS] = { M_DNSBL_ERRORS, "holdfast_dnsbl_errors_total",
	    NULL, METRICS_T_COUNTER,
	    "DNSBL answers that are error codes (127.255.255.0/24, e.g. "
	    "Spamhaus refusing the resolver), never counted as listings." },
	[M_QUEUE_AGE] = { M_QUEUE_AGE, "holdfast_queue_age_messages", NULL,
	    METRICS_T_GAUGE,
	    "Messages in the queue (queued, deferred or waiting) by age "
	    "since arrival; bucket is the upper bound (5m: 0-5m, 10m: "
	    "5-10m, ... 1280m, older), as in holdfastctl shape." },
	[M_SMTP_PAUSED] = { M_SMTP_PAUSED, "holdfast_smtp_paused", "",
	    METRICS_T_GAUGE,
	    "1 while holdfastctl pause-smtp turns new sessions away (421)." },
};

/* Series of the families above with labels NULL, added from the config. */
static struct {
	enum metrics_id	 family;
	char		 labels[160];
	double		 value;
} metrics_series[METRICS_SERIES_MAX];
static size_t metrics_nseries;

static double metrics_values[M_COUNT] = {
	[M_BUILD_INFO] = 1,
};

static struct {
	void	(*fn)(void *arg);
	void	 *arg;
} metrics_collectors[METRICS_COLLECTORS_MAX];
static size_t metrics_ncollectors;

static bool (*metrics_healthy)(void *arg);
static void *metrics_healthy_arg;

/*
 * The one listener; NULL when [metrics] listen is off or after stop.  It
 * owns a copy of [metrics] allow, so a config reload cannot pull it away.
 */
struct metrics_conn;

static struct {
	struct event_base	*base;
	struct evconnlistener	*lev;
	struct net_backoff	*backoff;
	struct net_cidr		 *allow;
	size_t			  nallow;
	TAILQ_HEAD(, metrics_conn) conns;
	size_t			  nconns;
} metrics_srv;

static void
metrics_check_id(enum metrics_id id, const char *func)
{
	if ((unsigned)id >= M_COUNT)
		fatalx("%s: bad metric id %u", func, (unsigned)id);
}

void
metrics_inc(enum metrics_id id)
{
	metrics_check_id(id, __func__);
	metrics_values[id] += 1;
}

void
metrics_add(enum metrics_id id, uint64_t n)
{
	metrics_check_id(id, __func__);
	metrics_values[id] += (double)n;
}

void
metrics_set(enum metrics_id id, double value)
{
	metrics_check_id(id, __func__);
	metrics_values[id] = value;
}

double
metrics_get(enum metrics_id id)
{
	metrics_check_id(id, __func__);
	return metrics_values[id];
}

int
metrics_series_add(enum metrics_id family, const char *label,
    const char *value)
{
	char labels[sizeof(metrics_series[0].labels)];
	const char *c;
	size_t i;
	int n;

	metrics_check_id(family, __func__);
	if (metrics_table[family].labels != NULL)
		fatalx("%s: %s has fixed labels", __func__,
		    metrics_table[family].name);
	for (c = value; *c != '\0'; c++)
		if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' &&
		    *c != '-')
			break;
	n = snprintf(labels, sizeof(labels), "%s=\"%s\"", label, value);
	if (*c != '\0' || *value == '\0' || n < 0 ||
	    (size_t)n >= sizeof(labels)) {
		log_warnx("metrics: %s: unusable label value",
		    metrics_table[family].name);
		return -1;
	}
	for (i = 0; i < metrics_nseries; i++)
		if (metrics_series[i].family == family &&
		    strcmp(metrics_series[i].labels, labels) == 0)
			return (int)i;
	if (metrics_nseries == METRICS_SERIES_MAX) {
		log_warnx("metrics: %s: more than %d series",
		    metrics_table[family].name, METRICS_SERIES_MAX);
		return -1;
	}
	metrics_series[metrics_nseries].family = family;
	memcpy(metrics_series[metrics_nseries].labels, labels,
	    (size_t)n + 1);
	metrics_series[metrics_nseries].value = 0;
	return (int)metrics_nseries++;
}

void
metrics_series_inc(int series)
{
	if (series < 0)
		return;
	if ((size_t)series >= metrics_nseries)
		fatalx("%s: bad series %d", __func__, series);
	metrics_series[series].value += 1;
}

void
metrics_series_set(int series, double value)
{
	if (series < 0)
		return;
	if ((size_t)series >= metrics_nseries)
		fatalx("%s: bad series %d", __func__, series);
	metrics_series[series].value = value;
}

double
metrics_series_get(int series)
{
	if (series < 0 || (size_t)series >= metrics_nseries)
		fatalx("%s: bad series %d", __func__, series);
	return metrics_series[series].value;
}

void
metrics_add_collector(void (*fn)(void *arg), void *arg)
{
	if (metrics_ncollectors == METRICS_COLLECTORS_MAX)
		fatalx("%s: more than %d collectors", __func__,
		    METRICS_COLLECTORS_MAX);
	metrics_collectors[metrics_ncollectors].fn = fn;
	metrics_collectors[metrics_ncollectors].arg = arg;
	metrics_ncollectors++;
}

static int metrics_age_series[SELECT_NBUCKETS];

/* The queue's collector: its stats struct as gauges. */
static void
metrics_queue_cb(void *arg)
{
	struct queue_stats st;
	size_t b;

	queue_stats_get(arg, &st);
	metrics_set(M_QUEUE_MSGS_QUEUED,
	    (double)st.state[QUEUE_STATS_QUEUED].messages);
	metrics_set(M_QUEUE_MSGS_DEFERRED,
	    (double)st.state[QUEUE_STATS_DEFERRED].messages);
	metrics_set(M_QUEUE_MSGS_HELD,
	    (double)st.state[QUEUE_STATS_HELD].messages);
	metrics_set(M_QUEUE_MSGS_DEAD,
	    (double)st.state[QUEUE_STATS_DEAD].messages);
	metrics_set(M_QUEUE_BYTES_QUEUED,
	    (double)st.state[QUEUE_STATS_QUEUED].bytes);
	metrics_set(M_QUEUE_BYTES_DEFERRED,
	    (double)st.state[QUEUE_STATS_DEFERRED].bytes);
	metrics_set(M_QUEUE_BYTES_HELD,
	    (double)st.state[QUEUE_STATS_HELD].bytes);
	metrics_set(M_QUEUE_BYTES_DEAD,
	    (double)st.state[QUEUE_STATS_DEAD].bytes);
	metrics_set(M_QUEUE_OLDEST_AGE, st.oldest == 0 ? 0 :
	    (double)(st.now - st.oldest));
	for (b = 0; b < SELECT_NBUCKETS; b++)
		metrics_series_set(metrics_age_series[b], (double)st.age[b]);
	metrics_set(M_HOLD_MODE, st.hold_mode);
	metrics_set(M_PRIMARY_UP, st.primary_up);
	metrics_set(M_PRIMARY_REFUSING, st.refusing);
	metrics_set(M_PRIMARY_CHANGE_TIME, (double)st.primary_since);
	metrics_set(M_PRIMARY_STATE_SECONDS,
	    (double)(st.now - st.primary_since));
	metrics_set(M_LAST_DELIVERY_TIME, (double)st.last_delivery);
	metrics_set(M_PRIMARY_SIZE, (double)st.primary_size);
	metrics_set(M_SIZE_LIMIT, (double)st.size_limit);
	if (st.spool_free_bytes >= 0) {
		metrics_set(M_SPOOL_FREE_BYTES, (double)st.spool_free_bytes);
		metrics_set(M_SPOOL_LOW, st.spool_low);
	}
	metrics_set(M_SPOOL_SUSPECT, st.spool_suspect);
}

void
metrics_add_queue(struct queue *q)
{
	size_t b;

	for (b = 0; b < SELECT_NBUCKETS; b++)
		metrics_age_series[b] = metrics_series_add(M_QUEUE_AGE,
		    "bucket", select_bucket_name(b));
	metrics_add_collector(metrics_queue_cb, q);
}

void
metrics_set_health(bool (*healthy)(void *arg), void *arg)
{
	metrics_healthy = healthy;
	metrics_healthy_arg = arg;
}

/* A growing, always terminated output buffer for the renderer. */
struct metrics_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

static void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			fatalx("%s: vsnprintf failed", __func__);
		if ((size_t)n < b->cap - b->len)
			break;
		b->cap = b->cap * 2 + (size_t)n;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	b->len += (size_t)n;
}

/*
 * Format v as the text format wants it: integers in full without an
 * exponent (a byte count or a timestamp stays exact and greppable), other
 * values in the shortest form that reads back the same.  No libm needed.
 */
static void
metrics_fmt_value(double v, char *out, size_t outlen)
{
	int prec;

	if (isnan(v))
		util_copy(out, outlen, "NaN");
	else if (isinf(v))
		util_copy(out, outlen, v > 0 ? "+Inf" : "-Inf");
	else if (v > -9e18 && v < 9e18 && v == (double)(long long)v)
		snprintf(out, outlen, "%lld", (long long)v);
	else {
		for (prec = 15; prec < 17; prec++) {
			snprintf(out, outlen, "%.*g", prec, v);
			if (strtod(out, NULL) == v)
				return;
		}
		snprintf(out, outlen, "%.17g", v);
	}
}

static void
metrics_render_series(struct metrics_buf *b, const struct metrics_def *d)
{
	char val[512];

	if (d->labels == NULL) {
		size_t i;

		for (i = 0; i < metrics_nseries; i++) {
			if (metrics_series[i].family != d->id)
				continue;
			metrics_fmt_value(metrics_series[i].value, val,
			    sizeof(val));
			metrics_buf_printf(b, "%s{%s} %s\n", d->name,
			    metrics_series[i].labels, val);
		}
		return;
	}
	metrics_fmt_value(metrics_values[d->id], val, sizeof(val));
	if (*d->labels != '\0')
		metrics_buf_printf(b, "%s{%s} %s\n", d->name, d->labels, val);
	else
		metrics_buf_printf(b, "%s %s\n", d->name, val);
}

char *
metrics_render(size_t *len)
{
	struct metrics_buf b = { NULL, 0, 0 };
	size_t i, j;

	for (i = 0; i < metrics_ncollectors; i++)
		metrics_collectors[i].fn(metrics_collectors[i].arg);

	b.cap = 8192;
	b.p = xmalloc(b.cap);
	b.p[0] = '\0';
	/* Each family once, at its first row, with all its rows. */
	for (i = 0; i < M_COUNT; i++) {
		const struct metrics_def *d = &metrics_table[i];

		for (j = 0; j < i; j++)
			if (strcmp(metrics_table[j].name, d->name) == 0)
				break;
		if (j < i)
			continue;
		metrics_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", d->name,
		    d->help, d->name, metrics_type_names[d->type]);
		for (j = i; j < M_COUNT; j++)
			if (strcmp(metrics_table[j].name, d->name) == 0)
				metrics_render_series(&b, &metrics_table[j]);
	}
	*len = b.len;
	return b.p;
}

/*
 * The HTTP side.  A scrape is one small GET, so the server is the least
 * that serves it: the peer is checked against [metrics] allow at accept
 * and a refused one is closed before a byte is read; at most
 * METRICS_CONN_MAX connections are open; each has METRICS_DEADLINE_SEC for
 * the whole request and reply (a byte now and then buys nothing); the
 * request head is at most METRICS_HEADERS_MAX bytes; a body is never read;
 * every reply ends the connection (Connection: close).
 */
struct metrics_conn {
	TAILQ_ENTRY(metrics_conn) entry;
	struct bufferevent	*bev;
	struct event		*deadline;
	bool			 replied;	/* close once it has left */
};

static const char *
metrics_http_reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		fatalx("%s: bad status %d", __func__, code);
	}
}

/* A whole response: status line, headers, and body unless head_only. */
static char *
metrics_http_reply(int code, const char *ctype, const char *body,
    size_t len, bool head_only, size_t *outlen)
{
	struct metrics_buf b = { NULL, 0, 0 };

	b.cap = 256 + (head_only ? 0 : len);
	b.p = xmalloc(b.cap);
	b.p[0] = '\0';
	metrics_buf_printf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n"
	    "Connection: close\r\n%s\r\n", code, metrics_http_reason(code),
	    ctype, len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head_only) {
		if (b.cap - b.len < len + 1) {
			b.cap = b.len + len + 1;
			b.p = xreallocarray(b.p, b.cap, 1);
		}
		memcpy(b.p + b.len, body, len);
		b.len += len;
		b.p[b.len] = '\0';
	}
	*outlen = b.len;
	return b.p;
}

static char *
metrics_http_plain(int code, const char *body, bool head_only,
    size_t *outlen)
{
	return metrics_http_reply(code, "text/plain; charset=utf-8", body,
	    strlen(body), head_only, outlen);
}

static char *
metrics_get_metrics(bool head_only, size_t *outlen)
{
	size_t len;
	char *text = metrics_render(&len), *out;

	out = metrics_http_reply(200,
	    "text/plain; version=0.0.4; charset=utf-8", text, len, head_only,
	    outlen);
	free(text);
	return out;
}

static char *
metrics_get_healthz(bool head_only, size_t *outlen)
{
	if (metrics_healthy == NULL || metrics_healthy(metrics_healthy_arg))
		return metrics_http_plain(200, "ok\n", head_only, outlen);
	return metrics_http_plain(503, "unhealthy\n", head_only, outlen);
}

static const struct {
	const char	*path;
	char		*(*fn)(bool head_only, size_t *outlen);
} metrics_routes[] = {
	{ "/metrics", metrics_get_metrics },
	{ "/healthz", metrics_get_healthz },
};

size_t
metrics_http_head_len(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A token character of RFC 9110 (method names). */
static bool
metrics_http_is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

char *
metrics_http_respond(const char *head, size_t len, size_t *outlen)
{
	char path[256];
	size_t i = 0, m, p, plen;
	bool head_only;

	/* method SP request-target SP HTTP/1.x CRLF, nothing else */
	while (i < len && head[i] != '\0' &&
	    metrics_http_is_tchar((unsigned char)head[i]))
		i++;
	m = i;
	if (m == 0 || i == len || head[i] != ' ')
		return metrics_http_plain(400, "bad request\n", false, outlen);
	p = ++i;
	while (i < len && (unsigned char)head[i] > 0x20 &&
	    (unsigned char)head[i] < 0x7f)
		i++;
	plen = i - p;
	if (plen == 0 || i == len || head[i] != ' ' || len - i - 1 < 9 ||
	    (memcmp(head + i + 1, "HTTP/1.0", 8) != 0 &&
	    memcmp(head + i + 1, "HTTP/1.1", 8) != 0) ||
	    (head[i + 9] != '\r' && head[i + 9] != '\n') ||
	    (head[i + 9] == '\r' && (len - i - 1 < 10 || head[i + 10] != '\n')))
		return metrics_http_plain(400, "bad request\n", false, outlen);
	head_only = m == 4 && memcmp(head, "HEAD", 4) == 0;
	if (!head_only && !(m == 3 && memcmp(head, "GET", 3) == 0))
		return metrics_http_plain(405, "method not allowed\n", false,
		    outlen);
	/* origin-form only; the query is ignored */
	for (i = 0; i < plen && head[p + i] != '?'; i++)
		;
	if (head[p] != '/' || i >= sizeof(path))
		return metrics_http_plain(404, "not found\n", head_only,
		    outlen);
	memcpy(path, head + p, i);
	path[i] = '\0';
	for (i = 0; i < UTIL_ARRAY_LEN(metrics_routes); i++)
		if (strcmp(path, metrics_routes[i].path) == 0)
			return metrics_routes[i].fn(head_only, outlen);
	return metrics_http_plain(404, "not found\n", head_only, outlen);
}

static void
metrics_conn_free(struct metrics_conn *c)
{
	TAILQ_REMOVE(&metrics_srv.conns, c, entry);
	metrics_srv.nconns--;
	event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
}

static void
metrics_conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	static struct log_limit ll = LOG_LIMIT_INIT("metrics deadline");
	struct metrics_conn *c = arg;

	(void)fd;
	(void)what;
	if (log_limit_ok(&ll))
		log_debug("metrics request deadline (%ds) passed, closing",
		    METRICS_DEADLINE_SEC);
	metrics_conn_free(c);
}

static void
metrics_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct metrics_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n, head, outlen;
	const char *p;
	char *out;

	n = len < METRICS_HEADERS_MAX ? len : METRICS_HEADERS_MAX;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) == NULL)
		fatalx("%s: evbuffer_pullup failed", __func__);
	if ((head = metrics_http_head_len(p, n)) == 0 &&
	    len < METRICS_HEADERS_MAX)
		return;		/* the head is not complete yet */
	if (head == 0)
		out = metrics_http_plain(431, "request header too large\n",
		    false, &outlen);
	else
		out = metrics_http_respond(p, head, &outlen);
	/* Nothing more is read: a body or a second request is ignored. */
	bufferevent_disable(bev, EV_READ);
	evbuffer_drain(in, len);
	if (bufferevent_write(bev, out, outlen) == -1)
		fatalx("%s: bufferevent_write failed", __func__);
	c->replied = true;
	free(out);
}

/* The reply has left: close. */
static void
metrics_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct metrics_conn *c = arg;

	/* (libevent also calls this once when the socket is first
	 * writable, before there is anything to send) */
	if (c->replied && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		metrics_conn_free(c);
}

static void
metrics_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct metrics_conn *c = arg;

	(void)bev;
	(void)what;
	metrics_conn_free(c);	/* EOF or error: nothing to say */
}

static void
metrics_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	static struct log_limit ll_refused = LOG_LIMIT_INIT("metrics refused");
	static struct log_limit ll_busy = LOG_LIMIT_INIT("metrics busy");
	struct timeval tv = { METRICS_DEADLINE_SEC, 0 };
	struct metrics_conn *c;
	char addr[NET_ADDR_MAX];
	unsigned port = 0;

	(void)l;
	(void)salen;
	(void)arg;
	if (!net_cidrs_match(metrics_srv.allow, metrics_srv.nallow, sa)) {
		if (log_limit_ok(&ll_refused)) {
			net_addr_fmt(sa, addr, sizeof(addr), &port);
			log_info("metrics refused addr=%s port=%u "
			    "reason=allow", addr, port);
		}
		evutil_closesocket(fd);
		return;
	}
	/*
	 * Full: the oldest goes, not the newcomer.  Refusing newcomers let
	 * any allowed peer (every local user, by default) keep out every
	 * scrape and health check with 8 idle connections per deadline.
	 */
	if (metrics_srv.nconns >= METRICS_CONN_MAX) {
		if (log_limit_ok(&ll_busy)) {
			net_addr_fmt(sa, addr, sizeof(addr), &port);
			log_warnx("metrics busy addr=%s port=%u reason=busy "
			    "max=%d: closed the oldest connection", addr, port,
			    METRICS_CONN_MAX);
		}
		metrics_conn_free(TAILQ_FIRST(&metrics_srv.conns));
	}
	c = xcalloc(1, sizeof(*c));
	c->bev = bufferevent_socket_new(metrics_srv.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	c->deadline = evtimer_new(metrics_srv.base, metrics_conn_deadline_cb,
	    c);
	if (c->bev == NULL || c->deadline == NULL)
		fatalx("%s: cannot set up a connection", __func__);
	TAILQ_INSERT_TAIL(&metrics_srv.conns, c, entry);
	metrics_srv.nconns++;
	evtimer_add(c->deadline, &tv);
	bufferevent_setcb(c->bev, metrics_conn_read_cb, metrics_conn_write_cb,
	    metrics_conn_event_cb, c);
	/* Read no further than one head can reach. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, METRICS_HEADERS_MAX);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
metrics_listen_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	(void)arg;
	net_backoff_start(metrics_srv.backoff, err);
}

int
metrics_start(struct event_base *base, const struct config *cf)
{
	struct evconnlistener *lev;

	if (metrics_values[M_START_TIME] == 0)
		metrics_values[M_START_TIME] = (double)util_now();
	if (cf->metrics_addr.sslen == 0)
		return 0;
	if (metrics_srv.lev != NULL)
		fatalx("%s: already started", __func__);
	lev = evconnlistener_new_bind(base, metrics_accept_cb, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    16, (const struct sockaddr *)&cf->metrics_addr.ss,
	    (int)cf->metrics_addr.sslen);
	if (lev == NULL) {
		log_warn("metrics listen addr=%s", cf->metrics_listen);
		return -1;
	}
	evconnlistener_set_error_cb(lev, metrics_listen_error_cb);
	metrics_srv.base = base;
	metrics_srv.lev = lev;
	metrics_srv.backoff = net_backoff_new(base, lev, "metrics");
	TAILQ_INIT(&metrics_srv.conns);
	metrics_srv.allow = xcalloc(cf->metrics_allow_nets.n + 1,
	    sizeof(*metrics_srv.allow));
	memcpy(metrics_srv.allow, cf->metrics_allow_nets.v,
	    cf->metrics_allow_nets.n * sizeof(*metrics_srv.allow));
	metrics_srv.nallow = cf->metrics_allow_nets.n;
	log_info("metrics listening addr=%s", cf->metrics_listen);
	return 0;
}

void
metrics_stop(void)
{
	if (metrics_srv.lev == NULL)
		return;
	while (!TAILQ_EMPTY(&metrics_srv.conns))
		metrics_conn_free(TAILQ_FIRST(&metrics_srv.conns));
	net_backoff_free(metrics_srv.backoff);
	metrics_srv.backoff = NULL;
	evconnlistener_free(metrics_srv.lev);
	metrics_srv.lev = NULL;
	free(metrics_srv.allow);
	metrics_srv.allow = NULL;
	metrics_srv.nallow = 0;
}
