#include "smtp_server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "envelope.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "pause.h"
#include "queue.h"
#include "screen.h"
#include "smtp_proto.h"
#include "spool.h"
#include "tls.h"
#include "util.h"
#include "xmalloc.h"

#define SMTP_DATA_CHUNK		(64 * 1024)	/* decoded per step */
#define SMTP_INPUT_HIGHWAT	(256 * 1024)	/* unread input held */
/*
 * With TLS the input is held twice: ciphertext in the socket bufferevent,
 * plaintext in the TLS filter above it, which may also overrun its mark by
 * one TLS record (16 KB).  Together they stay within SMTP_INPUT_HIGHWAT.
 */
#define SMTP_TLS_RAW_HIGHWAT	(32 * 1024)
#define SMTP_TLS_RECORD_MAX	(16 * 1024 + 2048)
#define SMTP_TLS_INPUT_HIGHWAT	\
	(SMTP_INPUT_HIGHWAT - SMTP_TLS_RAW_HIGHWAT - SMTP_TLS_RECORD_MAX)
/*
 * Content read by smtp_read_more() in pieces of SMTP_READ_PIECE, at most
 * SMTP_READ_PIECES per read event, on plain sessions; libevent 2.1 reads
 * at most SMTP_LIBEVENT_READ (its EVBUFFER_MAX_READ) per read event.
 */
#define SMTP_READ_PIECE		(64 * 1024)
#define SMTP_READ_PIECES	4
#define SMTP_LIBEVENT_READ	4096
#define SMTP_MAX_RECEIVED	50
#define SMTP_MAX_ERRORS		20		/* then we hang up */
#define SMTP_OUTPUT_HIGHWAT	(64 * 1024)	/* unread replies held */
#define SMTP_PREBANNER_SEC	30		/* PROXY, lookups, pregreet */
#define SMTP_RATE_WINDOW_SEC	30		/* min_data_rate measured */
#define SMTP_LINGER_MAX		100		/* 20 ms checks: 2 s */
#define SMTP_FREE_RECHECK_MS	100		/* free space, at MAIL */

enum smtp_state {
	SMTP_ST_PROXY,		/* waiting for the PROXY header */
	SMTP_ST_CONNECT,	/* screening: names, DNSBL, pregreet wait */
	SMTP_ST_GREET,		/* banner sent, no HELO yet */
	SMTP_ST_IDLE,		/* greeted, no transaction */
	SMTP_ST_MAIL,		/* MAIL accepted */
	SMTP_ST_RCPT,		/* at least one RCPT accepted */
	SMTP_ST_DATA,		/* reading DATA content */
	SMTP_ST_BDAT,		/* reading a BDAT chunk */
	SMTP_ST_BDAT_WAIT,	/* between BDAT chunks */
	SMTP_ST_COMMIT,		/* waiting for the queue to commit */
	SMTP_ST_CLOSING,	/* flushing the last reply */
};

static const char *const smtp_state_names[] = {
	[SMTP_ST_PROXY] = "proxy",
	[SMTP_ST_CONNECT] = "connect",
	[SMTP_ST_GREET] = "greet",
	[SMTP_ST_IDLE] = "idle",
	[SMTP_ST_MAIL] = "mail",
	[SMTP_ST_RCPT] = "rcpt",
	[SMTP_ST_DATA] = "data",
	[SMTP_ST_BDAT] = "bdat",
	[SMTP_ST_BDAT_WAIT] = "bdat-wait",
	[SMTP_ST_COMMIT] = "commit",
	[SMTP_ST_CLOSING] = "closing",
};

#define ST(x) (1u << (x))
#define SMTP_ST_ANY_CMD (ST(SMTP_ST_GREET) | ST(SMTP_ST_IDLE) |           \
    ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT) | ST(SMTP_ST_BDAT_WAIT))

/* Replies: one table; handlers name a row, never write codes inline. */
enum smtp_rid {
	SMTP_R_OK,
	SMTP_R_SENDER_OK,
	SMTP_R_RCPT_OK,
	SMTP_R_RESET,
	SMTP_R_BYE,
	SMTP_R_HELP,
	SMTP_R_VRFY,
	SMTP_R_DATA_GO,
	SMTP_R_UNKNOWN,
	SMTP_R_TOO_LONG,
	SMTP_R_SYNTAX,
	SMTP_R_BAD_CHARS,
	SMTP_R_BAD_SENDER,
	SMTP_R_BAD_RCPT,
	SMTP_R_NEED_UTF8,
	SMTP_R_NEED_HELO,
	SMTP_R_NESTED_MAIL,
	SMTP_R_NEED_MAIL,
	SMTP_R_NEED_RCPT,
	SMTP_R_BAD_SEQ,
	SMTP_R_PARAM,
	SMTP_R_BODY_TYPE,
	SMTP_R_RELAY,
	SMTP_R_TOO_MANY_RCPT,
	SMTP_R_SIZE,
	SMTP_R_LOOP,
	SMTP_R_IO,
	SMTP_R_NOSPACE,
	SMTP_R_TIMEOUT,
	SMTP_R_SHUTDOWN,
	SMTP_R_PAUSED,
	SMTP_R_BUSY,
	SMTP_R_ERRORS,
	SMTP_R_BAD_BDAT,
	SMTP_R_ETRN_OK,
	SMTP_R_ETRN_DENIED,
	SMTP_R_TLS_GO,
	SMTP_R_NO_TLS,
	SMTP_R_PREGREET,
	SMTP_R_LIMIT,
	SMTP_R_MSG_RATE,
	SMTP_R_DNSBL,
	SMTP_R_TOO_SLOW,
	SMTP_R_SPOOL_LOW,
	SMTP_R_NONE,		/* not a reply: the handler has answered */
};

static const struct smtp_reply_row {
	int		 code;
	const char	*enhanced;
	const char	*text;
} smtp_replies[] = {
	[SMTP_R_OK] = { 250, "2.0.0", "Ok" },
	[SMTP_R_SENDER_OK] = { 250, "2.1.0", "Ok" },	/* RFC 3463 */
	[SMTP_R_RCPT_OK] = { 250, "2.1.5", "Ok" },
	[SMTP_R_RESET] = { 250, "2.0.0", "Ok: reset" },
	[SMTP_R_BYE] = { 221, "2.0.0", "Bye" },
	[SMTP_R_HELP] = { 214, "2.0.0", "See RFC 5321; this is a backup MX" },
	[SMTP_R_VRFY] = { 252, "2.0.0", "Send mail, it will be relayed" },
	[SMTP_R_DATA_GO] = { 354, NULL, "End data with <CR><LF>.<CR><LF>" },
	[SMTP_R_UNKNOWN] = { 500, "5.5.2", "Error: command not recognized" },
	[SMTP_R_TOO_LONG] = { 500, "5.5.2", "Error: line too long" },
	[SMTP_R_SYNTAX] = { 501, "5.5.4", "Syntax error in parameters" },
	[SMTP_R_BAD_CHARS] = { 501, "5.5.2", "Error: invalid characters" },
	[SMTP_R_BAD_SENDER] = { 501, "5.1.7", "Bad sender address syntax" },
	[SMTP_R_BAD_RCPT] = { 501, "5.1.3", "Bad recipient address syntax" },
	[SMTP_R_NEED_UTF8] = { 553, "5.6.7", "Must declare SMTPUTF8 to send "
	    "a non-ASCII address" },
	[SMTP_R_NEED_HELO] = { 503, "5.5.1", "Error: send HELO/EHLO first" },
	[SMTP_R_NESTED_MAIL] = { 503, "5.5.1", "Error: nested MAIL command" },
	[SMTP_R_NEED_MAIL] = { 503, "5.5.1", "Error: need MAIL command" },
	[SMTP_R_NEED_RCPT] = { 503, "5.5.1", "Error: need RCPT command" },
	[SMTP_R_BAD_SEQ] = { 503, "5.5.1", "Error: bad sequence of commands" },
	[SMTP_R_PARAM] = { 555, "5.5.4", "Unsupported parameter" },
	[SMTP_R_BODY_TYPE] = { 504, "5.5.4", "Unsupported BODY type" },
	[SMTP_R_RELAY] = { 554, "5.7.1", "Relay access denied" },
	[SMTP_R_TOO_MANY_RCPT] = { 452, "4.5.3", "Error: too many recipients" },
	[SMTP_R_SIZE] = { 552, "5.3.4", "Message size exceeds fixed limit" },
	[SMTP_R_LOOP] = { 554, "5.4.6", "Too many Received headers: mail loop" },
	[SMTP_R_IO] = { 451, "4.3.0", "Error: queue file write error" },
	[SMTP_R_NOSPACE] = { 452, "4.3.1", "Insufficient system storage" },
	[SMTP_R_TIMEOUT] = { 421, "4.4.2", "Error: timeout exceeded" },
	[SMTP_R_SHUTDOWN] = { 421, "4.3.2", "Service shutting down" },
	[SMTP_R_PAUSED] = { 421, "4.3.2", "Service paused, try again later" },
	[SMTP_R_BUSY] = { 421, "4.7.0", "Error: too many connections" },
	[SMTP_R_ERRORS] = { 421, "4.7.0", "Error: too many errors" },
	[SMTP_R_ETRN_OK] = { 250, "2.0.0", "Queuing started" },
	[SMTP_R_TLS_GO] = { 220, "2.0.0", "Ready to start TLS" },
	[SMTP_R_PREGREET] = { 421, "4.7.0", "Error: talked before the "
	    "greeting" },
	[SMTP_R_LIMIT] = { 421, "4.7.0", "Error: too many connections from "
	    "your address, try later" },
	[SMTP_R_MSG_RATE] = { 451, "4.7.1", "Error: too many messages from "
	    "your address, try later" },
	[SMTP_R_DNSBL] = { 450, "4.7.1", "Service unavailable: client "
	    "listed in a DNS blocklist, try later" },
	[SMTP_R_TOO_SLOW] = { 421, "4.4.2", "Error: data rate too low" },
	[SMTP_R_SPOOL_LOW] = { 452, "4.3.1", "Insufficient system storage" },
	[SMTP_R_NO_TLS] = { 454, "4.7.0", "TLS not available" },
	[SMTP_R_ETRN_DENIED] = { 458, "4.7.1", "Unable to queue messages: "
	    "not allowed from this address" },
	[SMTP_R_BAD_BDAT] = { 421, "4.7.0", "Error: cannot find the end of "
	    "the BDAT chunk" },
};

/* Why a transaction failed while its content was still being read. */
enum smtp_tx_error {
	SMTP_TX_OK,
	SMTP_TX_SIZE,
	SMTP_TX_LOOP,
	SMTP_TX_IO,
};

struct smtp_tx {
	struct envelope		*env;
	struct spool_msg	*msg;		/* from DATA/first BDAT */
	struct smtp_proto_data	 data;
	enum smtp_tx_error	 error;
	int			 io_errno;
	uint64_t		 bdat_left;	/* bytes of this chunk */
	bool			 bdat_last;
	bool			 bdat;		/* BDAT, not DATA, used */
};

struct smtp_session {
	uint64_t		 id;
	struct smtp_server	*srv;
	struct bufferevent	*bev;
	char			 addr[NET_ADDR_MAX];
	unsigned		 port;
	char			 via[NET_ADDR_MAX];	/* the proxy, or "" */
	unsigned		 via_port;
	struct sockaddr_storage	 sa;		/* the client */
	char			*rdns;		/* verified name or NULL */
	struct dns_query	*dnsq;
	struct screen_query	*dnsblq;
	struct event		*greet_timer;
	bool			 screened;	/* counted by screen_connect */
	bool			 logged;	/* "connected" written, so
						 * "disconnected" is too */
	bool			 wait_dns, wait_dnsbl, wait_greet;
	unsigned		 dnsbl_weight;
	char			 dnsbl_zone[128];
	time_t			 data_start;	/* for min_data_rate */
	uint64_t		 data_in;
	time_t			 line_since;	/* a partial command line */
	enum smtp_state		 state;
	char			 helo[SMTP_DOMAIN_MAX + 1];
	bool			 esmtp;
	bool			 utf8_offered;	/* our EHLO listed SMTPUTF8 */
	bool			 tls;		/* STARTTLS done */
	char			 tlsinfo[128];	/* protocol and cipher */
	bool			 skip_line;	/* discarding an overlong line */
	uint64_t		 discard;	/* octets of a refused BDAT chunk */
	unsigned		 read_more;	/* smtp_read_more() pieces left in
						 * this read event */
	bool			 gone;		/* peer left during a commit */
	bool			 processing;	/* inside smtp_process() */
	bool			 process_next;	/* the caller runs smtp_process()
						 * next: its flush sends the
						 * reply (banner, after commit) */
	unsigned		 linger;	/* flush checks while closing */
	bool			 tls_closed;	/* close_notify sent */
	struct event		*linger_ev;
	unsigned		 errors;
	unsigned		 nmsgs;
	struct smtp_tx		*tx;		/* &tx_store or NULL: none */
	struct smtp_tx		 tx_store;
	TAILQ_ENTRY(smtp_session) entry;
};

struct smtp_server {
	struct event_base	*base;
	const struct config	*cf;
	struct spool		*spool;
	struct queue		*queue;
	struct dns		*dns;
	struct tls		*tls;
	struct screen		*screen;
	struct smtp_listener	*listeners;
	size_t			 nlisteners;
	TAILQ_HEAD(, smtp_session) sessions;
	size_t			 nsessions;
	bool			 stopping;
	char			*scratch;	/* decoder output, loop-only */
	struct pause		*pause;		/* pause-smtp; may be NULL */
	/* holdfastctl trace: protocol lines of matching sessions at info */
	char			 trace_cidr[NET_ADDR_MAX + 8]; /* "": all */
	struct net_cidr		 trace_net;	/* trace_cidr, parsed */
	time_t			 trace_until;	/* 0: off */
	/* the spool's free space, looked up at most every
	 * SMTP_FREE_RECHECK_MS for MAIL (smtp_spool_free()) */
	int64_t			 free_bytes;
	struct timeval		 free_at;	/* {0, 0}: never */
};

struct smtp_listener {
	struct smtp_server	*srv;
	struct evconnlistener	*l;
	struct net_backoff	*backoff;	/* accept() failures */
	bool			 proxy;	/* a PROXY header comes first */
};

/* What a command's arguments must be; anything else is a 501. */
enum smtp_args {
	SMTP_ARGS_ANY,
	SMTP_ARGS_NONE,
	SMTP_ARGS_SOME,		/* non-empty */
	SMTP_ARGS_KEYWORD,	/* start with .keyword, handler gets the rest */
	SMTP_ARGS_CHUNK,	/* "size [LAST]" (RFC 3030) */
};

/*
 * A handler returns the reply dispatch sends, or SMTP_R_NONE when it has
 * answered itself (several lines, or nothing until the chunk is read).
 */
struct smtp_command {
	const char	*verb;
	unsigned	 states;	/* ST() mask where it is allowed */
	enum smtp_rid	 wrong_state;	/* reply elsewhere (greeted, no BDAT) */
	enum smtp_rid	 in_bdat_tx;	/* reply inside a BDAT transaction */
	enum smtp_rid	 nul;		/* reply to a line with a NUL in it */
	enum smtp_args	 args;
	const char	*keyword;	/* with SMTP_ARGS_KEYWORD */
	enum smtp_rid	(*handler)(struct smtp_session *, const char *args);
	/* when refused (wrong state or arguments): what else is owed
	 * before the reply, which it may change; NULL for nothing */
	void		(*refused)(struct smtp_session *, const char *args,
			    enum smtp_rid *rid);
};

/*
 * What a command outside its row's states gets, by the session's state:
 * before EHLO/HELO every verb gets SMTP_R_NEED_HELO; between BDAT chunks
 * every verb gets 503 and ends the transaction (RFC 3030); elsewhere
 * (SMTP_R_NONE) the row says.
 */
struct smtp_state_refusal {
	enum smtp_rid	 rid;
	bool		 ends_tx;
};

/*
 * One rate limit per log line a client can trigger (log.h): a flood of bad
 * sessions costs at most LOG_LIMIT_PER_SEC lines a second at each site.
 */
enum smtp_ll {
	SMTP_LL_ERRORS,
	SMTP_LL_DEFERRED,
	SMTP_LL_RELAY,
	SMTP_LL_DNSBL_RCPT,
	SMTP_LL_BDAT,
	SMTP_LL_PIPELINED,
	SMTP_LL_ETRN,
	SMTP_LL_TOO_LARGE,
	SMTP_LL_LOOP,
	SMTP_LL_DATA_SLOW,
	SMTP_LL_CMD_SLOW,
	SMTP_LL_TOO_LONG,
	SMTP_LL_TLS_FAILED,
	SMTP_LL_TIMEOUT,
	SMTP_LL_PREGREET,
	SMTP_LL_PAUSED,
	SMTP_LL_DNSBL,
	SMTP_LL_SCREEN,
	SMTP_LL_PROXY_BAD,
	SMTP_LL_PROXY_UNTRUSTED,
	SMTP_LL_BAD_PATH,
	SMTP_LL_BAD_RCPT,
	SMTP_LL_ACCEPT,
	SMTP_LL_LOST,
	SMTP_LL_PROXY_GONE,
	SMTP_LL_COUNT
};

static struct log_limit smtp_ll[SMTP_LL_COUNT] = {
	[SMTP_LL_ERRORS] = LOG_LIMIT_INIT("smtp too many errors"),
	[SMTP_LL_DEFERRED] = LOG_LIMIT_INIT("smtp deferred message"),
	[SMTP_LL_RELAY] = LOG_LIMIT_INIT("smtp relay denied"),
	[SMTP_LL_DNSBL_RCPT] = LOG_LIMIT_INIT("smtp deferred dnsbl"),
	[SMTP_LL_BDAT] = LOG_LIMIT_INIT("smtp bad bdat"),
	[SMTP_LL_PIPELINED] = LOG_LIMIT_INIT("smtp starttls pipelined"),
	[SMTP_LL_ETRN] = LOG_LIMIT_INIT("smtp etrn refused"),
	[SMTP_LL_TOO_LARGE] = LOG_LIMIT_INIT("smtp too large"),
	[SMTP_LL_LOOP] = LOG_LIMIT_INIT("smtp mail loop"),
	[SMTP_LL_DATA_SLOW] = LOG_LIMIT_INIT("smtp data too slow"),
	[SMTP_LL_CMD_SLOW] = LOG_LIMIT_INIT("smtp command too slow"),
	[SMTP_LL_TOO_LONG] = LOG_LIMIT_INIT("smtp line too long"),
	[SMTP_LL_TLS_FAILED] = LOG_LIMIT_INIT("smtp tls failed"),
	[SMTP_LL_TIMEOUT] = LOG_LIMIT_INIT("smtp timeout"),
	[SMTP_LL_PREGREET] = LOG_LIMIT_INIT("smtp pregreet"),
	[SMTP_LL_PAUSED] = LOG_LIMIT_INIT("smtp paused"),
	[SMTP_LL_DNSBL] = LOG_LIMIT_INIT("smtp dnsbl listed"),
	[SMTP_LL_SCREEN] = LOG_LIMIT_INIT("smtp deferred connect"),
	[SMTP_LL_PROXY_BAD] = LOG_LIMIT_INIT("smtp bad proxy"),
	[SMTP_LL_PROXY_UNTRUSTED] = LOG_LIMIT_INIT("smtp proxy untrusted"),
	[SMTP_LL_BAD_PATH] = LOG_LIMIT_INIT("smtp bad sender"),
	[SMTP_LL_BAD_RCPT] = LOG_LIMIT_INIT("smtp bad recipient"),
	[SMTP_LL_ACCEPT] = LOG_LIMIT_INIT("smtp session setup"),
	/* a line every such session writes: a cap only a flood reaches */
	[SMTP_LL_LOST] = LOG_LIMIT_INIT_N("smtp lost connection", 200),
	[SMTP_LL_PROXY_GONE] = LOG_LIMIT_INIT("smtp proxy unfinished"),
};

static void smtp_session_free(struct smtp_session *s);
static void smtp_close_flushed(struct smtp_session *s);
static bool smtp_proxy_in(struct smtp_session *s, struct evbuffer *in);
static void smtp_log_connected(struct smtp_session *s);
static void smtp_process(struct smtp_session *s);

/* Whether s is traced now (holdfastctl trace); a trace past its end
 * ends here. */
static bool
smtp_tracing(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	if (srv->trace_until == 0)
		return false;
	if (util_now() >= srv->trace_until) {
		srv->trace_until = 0;
		log_info("trace off reason=expired");
		return false;
	}
	return srv->trace_cidr[0] == '\0' || net_cidrs_match(&srv->trace_net,
	    1, (const struct sockaddr *)&s->sa);
}

/* Whether smtp_trace() shows anything for s now: callers skip escaping
 * what would not be shown (a command and a reply per round trip). */
static bool
smtp_trace_on(struct smtp_session *s)
{
	return smtp_tracing(s) || log_is_verbose();
}

static void smtp_trace(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A protocol trace line about s: at debug (-v), or at info for a session
 * holdfastctl trace names.  Callers pass commands, replies and states
 * only: never message content (DATA and BDAT bytes do not come here) and
 * never authentication data.
 */
static void
smtp_trace(struct smtp_session *s, const char *fmt, ...)
{
	char buf[LOG_ESCAPE_MAX + 128];
	bool traced = smtp_tracing(s);
	va_list ap;

	if (!traced && !log_is_verbose())
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (traced)
		log_info("sess=%016" PRIx64 " trace %s", s->id, buf);
	else
		log_debug("sess=%016" PRIx64 " %s", s->id, buf);
}

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state state)
{
	if (s->state == SMTP_ST_CLOSING)
		return;		/* final: the last reply is on its way */
	if (s->state != state)
		smtp_trace(s, "state %s -> %s", smtp_state_names[s->state],
		    smtp_state_names[state]);
	s->state = state;
}

/* Whether smtp_flush() writes s's replies itself (a plain connection);
 * a TLS session's go through its bufferevent. */
static bool
smtp_direct(struct smtp_session *s)
{
	return !s->tls && bufferevent_get_underlying(s->bev) == NULL;
}

/* line[0..len) and CRLF onto the output, in one piece when it fits. */
static void
smtp_out(struct smtp_session *s, const char *line, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char buf[1024];

	if (len + 2 <= sizeof(buf)) {
		memcpy(buf, line, len);
		memcpy(buf + len, "\r\n", 2);
		evbuffer_add(out, buf, len + 2);
	} else {
		evbuffer_add(out, line, len);
		evbuffer_add(out, "\r\n", 2);
	}
}

/*
 * Every reply goes out here, counted once by class; a multi-line reply
 * comes as one string, its lines joined by CRLF.
 */
static void
smtp_reply_raw(struct smtp_session *s, const char *line)
{
	char esc[LOG_ESCAPE_MAX];
	size_t len = strlen(line);

	static const enum metrics_id classes[] = { M_SMTP_REPLIES_2XX,
		M_SMTP_REPLIES_3XX, M_SMTP_REPLIES_4XX, M_SMTP_REPLIES_5XX };

	if (line[0] >= '2' && line[0] <= '5')
		metrics_inc(classes[line[0] - '2']);
	smtp_out(s, line, len);
	/* Outside smtp_process() nothing flushes it: the bufferevent does,
	 * unless smtp_process() comes next and its flush writes directly (a
	 * plain connection).  TLS keeps the write event on here: a write
	 * timeout during the commit turned it off. */
	if (!s->processing && (!s->process_next || !smtp_direct(s)))
		bufferevent_enable(s->bev, EV_WRITE);
	if (smtp_trace_on(s))
		smtp_trace(s, "reply=%s", log_escape(line, len, esc,
		    sizeof(esc)));
}

/* Append " " and word to the string buf[0..n), truncating to size;
 * returns the new length. */
static size_t
smtp_cat(char *buf, size_t size, size_t n, const char *word)
{
	size_t len = strlen(word);

	if (n + 1 >= size)
		return n;
	buf[n++] = ' ';
	if (len > size - 1 - n)
		len = size - 1 - n;
	memcpy(buf + n, word, len);
	n += len;
	buf[n] = '\0';
	return n;
}

static void
smtp_reply(struct smtp_session *s, enum smtp_rid rid)
{
	const struct smtp_reply_row *r = &smtp_replies[rid];
	char line[512];
	size_t n;

	/* "code[ enhanced][ hostname (421)] text", as snprintf would make
	 * it, without its cost on every round trip. */
	line[0] = (char)('0' + r->code / 100);
	line[1] = (char)('0' + r->code / 10 % 10);
	line[2] = (char)('0' + r->code % 10);
	line[3] = '\0';
	n = 3;
	if (r->enhanced != NULL)
		n = smtp_cat(line, sizeof(line), n, r->enhanced);
	if (r->code == 421)
		n = smtp_cat(line, sizeof(line), n, s->srv->cf->hostname);
	(void)smtp_cat(line, sizeof(line), n, r->text);
	smtp_reply_raw(s, line);
	if (r->code >= 500 && ++s->errors >= SMTP_MAX_ERRORS &&
	    s->state != SMTP_ST_CLOSING) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_ERRORS]))
			log_info("sess=%016" PRIx64 " too many errors", s->id);
		smtp_reply(s, SMTP_R_ERRORS);
	}
	if (r->code == 421)
		smtp_enter_state(s, SMTP_ST_CLOSING);
}

/* End the open transaction, if any (s->tx points into the session). */
static void
smtp_tx_reset(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;

	if (tx == NULL)
		return;
	if (tx->msg != NULL)
		spool_msg_abort(tx->msg);
	envelope_free(tx->env);
	memset(tx, 0, sizeof(*tx));	/* a stale pointer reads nothing */
	s->tx = NULL;
}

/* ---- commands ---- */

/* EHLO/HELO (SMTP_ARGS_SOME: the name is there). */
static enum smtp_rid
smtp_greet(struct smtp_session *s, const char *args, bool esmtp)
{
	const struct config *cf = s->srv->cf;
	char lines[1024];

	/* Kept raw (bounded); escaped wherever it is shown. */
	util_copy(s->helo, sizeof(s->helo), args);
	s->esmtp = esmtp;
	smtp_tx_reset(s);
	smtp_enter_state(s, SMTP_ST_IDLE);
	if (!esmtp) {
		memcpy(lines, "250", 4);
		(void)smtp_cat(lines, sizeof(lines), 3, cf->hostname);
		smtp_reply_raw(s, lines);
		return SMTP_R_NONE;
	}
	/*
	 * SIZE is never above what the primary takes; SMTPUTF8 only while
	 * the primary is not known to lack it (its addresses would be
	 * refused there; a sender then downgrades or keeps the message).
	 * 8BITMIME stays: 8-bit bodies pass everywhere in practice.
	 */
	s->utf8_offered = queue_primary_has_smtputf8(s->srv->queue);
	snprintf(lines, sizeof(lines),
	    "250-%s\r\n"
	    "%s"
	    "250-PIPELINING\r\n"
	    "250-SIZE %" PRIu64 "\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-8BITMIME\r\n"
	    "%s"
	    "250-DSN\r\n"
	    "250-ETRN\r\n"
	    "250 CHUNKING", cf->hostname,
	    tls_server_enabled(s->srv->tls) && !s->tls ?
	    "250-STARTTLS\r\n" : "", queue_size_limit(s->srv->queue),
	    s->utf8_offered ? "250-SMTPUTF8\r\n" : "");
	smtp_reply_raw(s, lines);
	return SMTP_R_NONE;
}

static enum smtp_rid
smtp_cmd_ehlo(struct smtp_session *s, const char *args)
{
	return smtp_greet(s, args, true);
}

static enum smtp_rid
smtp_cmd_helo(struct smtp_session *s, const char *args)
{
	return smtp_greet(s, args, false);
}

/* Find "FROM:" / "TO:" (any case, spaces allowed before the path). */
static const char *
smtp_after_keyword(const char *args, const char *kw)
{
	size_t n = strlen(kw);

	if (strncasecmp(args, kw, n) != 0)
		return NULL;
	return args + n;
}

static bool
smtp_value_is_xtext(const char *v)
{
	char buf[SMTP_PATH_MAX * 2];

	return smtp_proto_xtext_decode(v, buf, sizeof(buf)) == 0;
}

/*
 * RFC 3461 ORCPT=addr-type;xtext, addr-type an atom ("rfc822", "utf-8"):
 * what else a peer puts before the ';' would reach the primary as it is,
 * and a strict primary's 501 there sends the recipient to dead/.
 */
static bool
smtp_is_orcpt(const char *v)
{
	const char *semi = strchr(v, ';');
	size_t n;

	if (semi == NULL || semi == v)
		return false;
	for (n = 0; v + n < semi; n++)
		if (!((v[n] >= 'a' && v[n] <= 'z') ||
		    (v[n] >= 'A' && v[n] <= 'Z') ||
		    (v[n] >= '0' && v[n] <= '9') ||
		    strchr("!#$%&'*+-/=?^_`{|}~", v[n]) != NULL))
			return false;
	return smtp_value_is_xtext(semi + 1);
}

/*
 * A non-ASCII address is valid only in a transaction that declared
 * SMTPUTF8 (RFC 6531 3.4); without it the primary's Postfix answers 553
 * 5.6.7 (or takes raw bytes it may not route), so it is a syntax error
 * here too, answered at once rather than found in dead/ later.
 */
static bool
smtp_addr_is_ascii(const char *addr)
{
	for (; *addr != '\0'; addr++)
		if ((unsigned char)*addr >= 0x80)
			return false;
	return true;
}

/*
 * MAIL FROM parameters, one row each: whether a value must be there (and
 * the reply when it is not as the row says), then a check that applies it
 * to the envelope and returns SMTP_R_OK or the refusal.
 */
enum smtp_value { SMTP_VALUE_ANY, SMTP_VALUE_NONE, SMTP_VALUE_NEEDED };

struct smtp_mail_param {
	const char	*keyword;
	enum smtp_value	 value;
	enum smtp_rid	 bad_value;
	enum smtp_rid	(*apply)(struct smtp_session *, struct envelope *,
			    const char *value);
};

/* Is the parameter's value present or absent as rule says? */
static bool
smtp_value_ok(enum smtp_value rule, const struct smtp_param *pm)
{
	return !((rule == SMTP_VALUE_NONE && pm->has_value) ||
	    (rule == SMTP_VALUE_NEEDED && !pm->has_value));
}

static enum smtp_rid
smtp_mail_size(struct smtp_session *s, struct envelope *env, const char *v)
{
	uint64_t size, limit = queue_size_limit(s->srv->queue);

	(void)env;
	if (util_parse_u64(v, &size) == -1)
		return SMTP_R_SYNTAX;
	if (size > limit) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_TOO_LARGE]))
			log_info("sess=%016" PRIx64 " message too large "
			    "claim=%" PRIu64 " limit=%" PRIu64, s->id, size,
			    limit);
		return SMTP_R_SIZE;
	}
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_mail_body(struct smtp_session *s, struct envelope *env, const char *v)
{
	(void)s;
	if (util_strcaseeq(v, "8BITMIME"))
		env->body_8bit = true;
	else if (!util_strcaseeq(v, "7BIT"))
		return SMTP_R_BODY_TYPE;
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_mail_utf8(struct smtp_session *s, struct envelope *env, const char *v)
{
	(void)v;
	if (!s->utf8_offered)
		return SMTP_R_PARAM;
	env->smtputf8 = true;
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_mail_ret(struct smtp_session *s, struct envelope *env, const char *v)
{
	(void)s;
	if (!util_strcaseeq(v, "FULL") && !util_strcaseeq(v, "HDRS"))
		return SMTP_R_PARAM;
	envelope_set_str(&env->ret, v);
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_mail_envid(struct smtp_session *s, struct envelope *env, const char *v)
{
	(void)s;
	if (strlen(v) > 100 || !smtp_value_is_xtext(v))	/* RFC 3461 4.4 */
		return SMTP_R_PARAM;
	envelope_set_str(&env->envid, v);
	return SMTP_R_OK;
}

static const struct smtp_mail_param smtp_mail_params[] = {
	{ "SIZE", SMTP_VALUE_NEEDED, SMTP_R_SYNTAX, smtp_mail_size },
	{ "BODY", SMTP_VALUE_ANY, SMTP_R_BODY_TYPE, smtp_mail_body },
	{ "SMTPUTF8", SMTP_VALUE_NONE, SMTP_R_PARAM, smtp_mail_utf8 },
	{ "RET", SMTP_VALUE_ANY, SMTP_R_PARAM, smtp_mail_ret },
	{ "ENVID", SMTP_VALUE_NEEDED, SMTP_R_PARAM, smtp_mail_envid },
};

/* One parameter: its row, its value's presence, then the row's check. */
static enum smtp_rid
smtp_mail_param(struct smtp_session *s, struct envelope *env,
    const struct smtp_param *pm)
{
	const struct smtp_mail_param *row;
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(smtp_mail_params); i++) {
		row = &smtp_mail_params[i];
		if (strcmp(pm->keyword, row->keyword) != 0)
			continue;
		if (!smtp_value_ok(row->value, pm))
			return row->bad_value;
		return row->apply(s, env, pm->value);
	}
	return SMTP_R_PARAM;
}

/*
 * The spool's free space for MAIL's min_free check: a statfs at most every
 * SMTP_FREE_RECHECK_MS (the loop's cached clock), not one per transaction.
 * A disk that fills faster still fails the commit, never a 250 (spool.h).
 */
static int64_t
smtp_spool_free(struct smtp_server *srv)
{
	struct timeval now, d;

	if (event_base_gettimeofday_cached(srv->base, &now) == -1)
		return spool_free_bytes(srv->spool);
	timersub(&now, &srv->free_at, &d);
	if (!timerisset(&srv->free_at) || d.tv_sec != 0 ||
	    d.tv_usec >= SMTP_FREE_RECHECK_MS * 1000) {
		srv->free_bytes = spool_free_bytes(srv->spool);
		srv->free_at = now;
	}
	return srv->free_bytes;
}

/* Screening and spool space first: a deferred sender learns nothing. */
static enum smtp_rid
smtp_mail_admit(struct smtp_session *s)
{
	const struct config *cf = s->srv->cf;
	const char *why;
	int64_t free_bytes;

	if (screen_message(s->srv->screen, (struct sockaddr *)&s->sa, &why) ==
	    SCREEN_DEFER) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_DEFERRED]))
			log_info("sess=%016" PRIx64 " deferred addr=%s "
			    "reason=\"%s\"", s->id, s->addr, why);
		metrics_inc(M_SCREEN_LIMIT);
		return SMTP_R_MSG_RATE;
	}
	free_bytes = smtp_spool_free(s->srv);
	if (free_bytes >= 0 && (uint64_t)free_bytes < cf->min_free) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_DEFERRED]))
			log_warnx("sess=%016" PRIx64 " deferred reason=\"spool "
			    "below min_free\" free=%lld", s->id,
			    (long long)free_bytes);
		return SMTP_R_SPOOL_LOW;
	}
	return SMTP_R_OK;
}

/* MAIL, args after "FROM:". */
static enum smtp_rid
smtp_cmd_mail(struct smtp_session *s, const char *p)
{
	struct smtp_param params[SMTP_PARAMS_MAX];
	struct smtp_path path;
	struct envelope *env;
	const char *rest;
	char esc[LOG_ESCAPE_MAX];
	enum smtp_rid rid;
	int i, n;

	if ((rid = smtp_mail_admit(s)) != SMTP_R_OK)
		return rid;
	if (smtp_proto_parse_path(p, &path, &rest) == SMTP_PATH_SYNTAX) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_BAD_PATH]))
			log_info("sess=%016" PRIx64 " bad sender addr=%s "
			    "path=%s", s->id, s->addr,
			    log_escape(p, strlen(p), esc, sizeof(esc)));
		return SMTP_R_BAD_SENDER;
	}
	if ((n = smtp_proto_parse_params(rest, params, SMTP_PARAMS_MAX)) ==
	    -1)
		return SMTP_R_SYNTAX;
	env = envelope_new();
	envelope_set_str(&env->sender, path.is_null ? "" : path.mailbox);
	for (i = 0; i < n && rid == SMTP_R_OK; i++)
		rid = smtp_mail_param(s, env, &params[i]);
	if (rid == SMTP_R_OK && !env->smtputf8 &&
	    !smtp_addr_is_ascii(env->sender)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_BAD_PATH]))
			log_info("sess=%016" PRIx64 " non-ASCII sender without "
			    "SMTPUTF8 addr=%s from=%s", s->id, s->addr,
			    log_addr(env->sender, esc, sizeof(esc)));
		rid = SMTP_R_NEED_UTF8;
	}
	if (rid != SMTP_R_OK) {
		envelope_free(env);
		return rid;
	}
	smtp_tx_reset(s);
	s->tx = &s->tx_store;
	memset(s->tx, 0, sizeof(*s->tx));
	s->tx->env = env;
	smtp_enter_state(s, SMTP_ST_MAIL);
	if (smtp_trace_on(s))
		smtp_trace(s, "mail from=%s", log_addr(env->sender, esc,
		    sizeof(esc)));
	return SMTP_R_SENDER_OK;
}

static bool
smtp_is_notify(const char *v)
{
	char copy[64], *p = copy, *item;
	bool never = false, other = false;

	if (util_copy(copy, sizeof(copy), v) == -1)
		return false;
	while ((item = strsep(&p, ",")) != NULL) {
		if (util_strcaseeq(item, "NEVER"))
			never = true;
		else if (util_strcaseeq(item, "SUCCESS") ||
		    util_strcaseeq(item, "FAILURE") ||
		    util_strcaseeq(item, "DELAY"))
			other = true;
		else
			return false;
	}
	return !(never && other);
}

/*
 * RCPT TO parameters (RFC 3461 DSN), the same shape as MAIL's: the row's
 * value rule, then its check, which keeps the value for the recipient.
 * Every refusal is 555 (SMTP_R_PARAM); a repeated parameter keeps the last.
 */
struct smtp_rcpt_dsn {
	const char	*notify, *orcpt;
};

struct smtp_rcpt_param {
	const char	*keyword;
	enum smtp_value	 value;
	enum smtp_rid	 bad_value;
	enum smtp_rid	(*apply)(struct smtp_rcpt_dsn *, const char *value);
};

static enum smtp_rid
smtp_rcpt_notify(struct smtp_rcpt_dsn *dsn, const char *v)
{
	if (!smtp_is_notify(v))
		return SMTP_R_PARAM;
	dsn->notify = v;
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_rcpt_orcpt(struct smtp_rcpt_dsn *dsn, const char *v)
{
	if (!smtp_is_orcpt(v))
		return SMTP_R_PARAM;
	dsn->orcpt = v;
	return SMTP_R_OK;
}

static const struct smtp_rcpt_param smtp_rcpt_params[] = {
	{ "NOTIFY", SMTP_VALUE_NEEDED, SMTP_R_PARAM, smtp_rcpt_notify },
	{ "ORCPT", SMTP_VALUE_NEEDED, SMTP_R_PARAM, smtp_rcpt_orcpt },
};

/* One parameter: its row, its value's presence, then the row's check. */
static enum smtp_rid
smtp_rcpt_param(struct smtp_rcpt_dsn *dsn, const struct smtp_param *pm)
{
	const struct smtp_rcpt_param *row;
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(smtp_rcpt_params); i++) {
		row = &smtp_rcpt_params[i];
		if (strcmp(pm->keyword, row->keyword) != 0)
			continue;
		if (!smtp_value_ok(row->value, pm))
			return row->bad_value;
		return row->apply(dsn, pm->value);
	}
	return SMTP_R_PARAM;
}

static enum smtp_rid
smtp_cmd_rcpt(struct smtp_session *s, const char *p)
{
	const struct config *cf = s->srv->cf;
	struct smtp_param params[SMTP_PARAMS_MAX];
	struct envelope *env = s->tx->env;
	struct smtp_path path;
	const char *rest;
	struct smtp_rcpt_dsn dsn = { NULL, NULL };
	enum smtp_rid rid;
	char esc[LOG_ESCAPE_MAX];
	enum smtp_path_status st;
	size_t i;
	int n, k;

	st = smtp_proto_parse_path(p, &path, &rest);
	if (st == SMTP_PATH_SYNTAX || path.is_null) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_BAD_RCPT]))
			log_info("sess=%016" PRIx64 " bad recipient addr=%s "
			    "path=%s", s->id, s->addr,
			    log_escape(p, strlen(p), esc, sizeof(esc)));
		return SMTP_R_BAD_RCPT;
	}
	if (!env->smtputf8 && !smtp_addr_is_ascii(path.mailbox)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_BAD_RCPT]))
			log_info("sess=%016" PRIx64 " non-ASCII recipient without "
			    "SMTPUTF8 addr=%s rcpt=%s", s->id, s->addr,
			    log_addr(path.mailbox, esc, sizeof(esc)));
		return SMTP_R_NEED_UTF8;
	}
	if (st == SMTP_PATH_ROUTED ||
	    (!path.is_postmaster && !config_is_our_domain(cf, path.domain))) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_RELAY]))
			log_info("sess=%016" PRIx64 " relay denied addr=%s "
			    "rcpt=%s", s->id, s->addr,
			    log_addr(path.mailbox, esc, sizeof(esc)));
		return SMTP_R_RELAY;
	}
	if (s->dnsbl_weight >= cf->dnsbl_threshold) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_DNSBL_RCPT]))
			log_info("sess=%016" PRIx64 " deferred addr=%s "
			    "reason=dnsbl zone=%s weight=%u", s->id, s->addr,
			    s->dnsbl_zone, s->dnsbl_weight);
		metrics_inc(M_SCREEN_DNSBL);
		return SMTP_R_DNSBL;
	}
	if ((n = smtp_proto_parse_params(rest, params, SMTP_PARAMS_MAX)) ==
	    -1)
		return SMTP_R_SYNTAX;
	for (k = 0; k < n; k++)
		if ((rid = smtp_rcpt_param(&dsn, &params[k])) != SMTP_R_OK)
			return rid;
	/* The primary gets the canonical form: no trailing root dot. */
	if (!path.is_postmaster && (i = strlen(path.mailbox)) > 0 &&
	    path.mailbox[i - 1] == '.')
		path.mailbox[i - 1] = '\0';
	for (i = 0; i < env->nrcpt; i++)
		if (strcmp(env->rcpts[i].addr, path.mailbox) == 0)
			return SMTP_R_RCPT_OK;	/* duplicate: once is enough */
	if (env->nrcpt >= cf->max_recipients)
		return SMTP_R_TOO_MANY_RCPT;
	envelope_add_rcpt(env, path.mailbox, dsn.notify, dsn.orcpt);
	smtp_enter_state(s, SMTP_ST_RCPT);
	return SMTP_R_RCPT_OK;
}

/* Open the spool handle and write our Received header first. */
static int
smtp_tx_open(struct smtp_session *s)
{
	const struct config *cf = s->srv->cf;
	struct smtp_tx *tx = s->tx;
	struct smtp_received r;
	char hdr[2048];
	int len;

	if (spool_is_suspect(s->srv->spool)) {
		/* A failed fsync: promise nothing more on this disk. */
		errno = EIO;
		return -1;
	}
	if ((tx->msg = spool_msg_new(s->srv->spool)) == NULL)
		return -1;
	util_copy(tx->env->id, sizeof(tx->env->id), spool_msg_id(tx->msg));
	tx->env->arrival = util_now();
	memset(&r, 0, sizeof(r));
	r.helo = s->helo;
	r.rdns = s->rdns;
	r.addr = s->addr;
	r.hostname = cf->hostname;
	r.proto = s->tls ? (s->esmtp ? "ESMTPS" : "SMTPS") :
	    (s->esmtp ? "ESMTP" : "SMTP");
	r.tls = s->tls ? s->tlsinfo : NULL;
	r.id = tx->env->id;
	r.rcpt = tx->env->nrcpt == 1 ? tx->env->rcpts[0].addr : NULL;
	r.when = tx->env->arrival;
	if ((len = smtp_proto_fmt_received(&r, hdr, sizeof(hdr))) == -1) {
		errno = ENAMETOOLONG;
		spool_msg_abort(tx->msg);
		tx->msg = NULL;
		return -1;
	}
	if (spool_msg_write(tx->msg, hdr, (size_t)len) == -1) {
		tx->error = SMTP_TX_IO;
		tx->io_errno = errno;
	}
	return 0;
}

static enum smtp_rid
smtp_cmd_data(struct smtp_session *s, const char *args)
{
	(void)args;
	if (smtp_tx_open(s) == -1)
		return errno == ENOSPC ? SMTP_R_NOSPACE : SMTP_R_IO;
	smtp_proto_data_init(&s->tx->data, true);
	s->data_start = time(NULL);
	s->data_in = 0;
	smtp_enter_state(s, SMTP_ST_DATA);
	return SMTP_R_DATA_GO;
}

/* Parse "size [LAST]"; -1 on bad syntax. */
static int
smtp_bdat_parse(const char *args, uint64_t *size, bool *last)
{
	char sizestr[24], *sp;

	*last = false;
	if (util_copy(sizestr, sizeof(sizestr), args) == -1)
		return -1;
	if ((sp = strchr(sizestr, ' ')) != NULL) {
		*sp++ = '\0';
		while (*sp == ' ')
			sp++;
		if (!util_strcaseeq(sp, "LAST"))
			return -1;
		*last = true;
	}
	return util_parse_u64(sizestr, size);
}

/* BDAT, its arguments checked by dispatch (SMTP_ARGS_CHUNK). */
static enum smtp_rid
smtp_cmd_bdat(struct smtp_session *s, const char *args)
{
	uint64_t size;
	bool last;

	(void)smtp_bdat_parse(args, &size, &last);
	if (s->tx->msg == NULL) {
		if (smtp_tx_open(s) == -1) {
			s->tx->error = SMTP_TX_IO;
			s->tx->io_errno = errno;
		}
		smtp_proto_data_init(&s->tx->data, false);
		s->tx->bdat = true;
		s->data_start = time(NULL);
		s->data_in = 0;
	}
	s->tx->bdat_left = size;
	s->tx->bdat_last = last;
	smtp_enter_state(s, SMTP_ST_BDAT);
	return SMTP_R_NONE;	/* answered when the chunk is in */
}

static enum smtp_rid
smtp_cmd_rset(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_tx_reset(s);
	if (s->state != SMTP_ST_GREET)
		smtp_enter_state(s, SMTP_ST_IDLE);
	return SMTP_R_RESET;
}

static enum smtp_rid
smtp_cmd_noop(struct smtp_session *s, const char *args)
{
	(void)s;
	(void)args;
	return SMTP_R_OK;
}

static enum smtp_rid
smtp_cmd_vrfy(struct smtp_session *s, const char *args)
{
	(void)s;
	(void)args;
	return SMTP_R_VRFY;
}

static enum smtp_rid
smtp_cmd_help(struct smtp_session *s, const char *args)
{
	(void)s;
	(void)args;
	return SMTP_R_HELP;
}

static void smtp_read_cb(struct bufferevent *bev, void *arg);
static void smtp_write_cb(struct bufferevent *bev, void *arg);
static void smtp_event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * RFC 3207.  Whatever the client pipelined after STARTTLS is plaintext
 * that must not be taken as coming through TLS (CVE-2011-0411): dropped.
 * The 220 goes out in the clear, then the session continues on a TLS
 * filter over the same socket, back at the greeting stage.
 */
static enum smtp_rid
smtp_cmd_starttls(struct smtp_session *s, const char *args)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *f;
	struct timeval tv = { (time_t)s->srv->cf->timeout, 0 };
	SSL *ssl;

	(void)args;
	if (s->tls)
		return SMTP_R_BAD_SEQ;
	if ((ssl = tls_server_ssl(s->srv->tls)) == NULL)
		return SMTP_R_NO_TLS;
	smtp_reply(s, SMTP_R_TLS_GO);
	/* The 220 goes out in the clear through the bufferevent below. */
	bufferevent_enable(s->bev, EV_WRITE);
	if (evbuffer_get_length(in) > 0) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_PIPELINED]))
			log_info("sess=%016" PRIx64 " discarded %zu octets "
			    "pipelined after STARTTLS", s->id,
			    evbuffer_get_length(in));
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	f = bufferevent_openssl_filter_new(s->srv->base, s->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		log_warnx("sess=%016" PRIx64 " tls filter failed", s->id);
		return SMTP_R_SHUTDOWN;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_TLS_RAW_HIGHWAT);
	s->bev = f;
	bufferevent_setcb(f, smtp_read_cb, smtp_write_cb, smtp_event_cb, s);
	bufferevent_setwatermark(f, EV_READ, 0, SMTP_TLS_INPUT_HIGHWAT);
	bufferevent_set_timeouts(f, &tv, &tv);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	s->tls = true;
	s->helo[0] = '\0';
	s->esmtp = false;
	smtp_tx_reset(s);
	smtp_enter_state(s, SMTP_ST_GREET);
	return SMTP_R_NONE;	/* the 220 went out in the clear */
}

/* RFC 1985: from the primary's addresses, start a drain at once. */
static enum smtp_rid
smtp_cmd_etrn(struct smtp_session *s, const char *args)
{
	const struct config *cf = s->srv->cf;

	(void)args;
	if (!net_cidrs_match(cf->etrn_from_nets.v, cf->etrn_from_nets.n,
	    (struct sockaddr *)&s->sa)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_ETRN]))
			log_info("sess=%016" PRIx64 " etrn refused addr=%s",
			    s->id, s->addr);
		return SMTP_R_ETRN_DENIED;
	}
	log_info("sess=%016" PRIx64 " etrn addr=%s", s->id, s->addr);
	queue_flush(s->srv->queue, NULL);
	return SMTP_R_ETRN_OK;
}

static enum smtp_rid
smtp_cmd_quit(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_tx_reset(s);
	smtp_reply(s, SMTP_R_BYE);
	smtp_enter_state(s, SMTP_ST_CLOSING);
	return SMTP_R_NONE;	/* CLOSING: nothing after the 221 */
}

static const struct smtp_state_refusal smtp_state_refusals[] = {
	[SMTP_ST_PROXY] = { SMTP_R_NONE, false },
	[SMTP_ST_CONNECT] = { SMTP_R_NONE, false },
	[SMTP_ST_GREET] = { SMTP_R_NEED_HELO, false },
	[SMTP_ST_IDLE] = { SMTP_R_NONE, false },
	[SMTP_ST_MAIL] = { SMTP_R_NONE, false },
	[SMTP_ST_RCPT] = { SMTP_R_NONE, false },
	[SMTP_ST_DATA] = { SMTP_R_NONE, false },
	[SMTP_ST_BDAT] = { SMTP_R_NONE, false },
	[SMTP_ST_BDAT_WAIT] = { SMTP_R_BAD_SEQ, true },
	[SMTP_ST_COMMIT] = { SMTP_R_NONE, false },
	[SMTP_ST_CLOSING] = { SMTP_R_NONE, false },
};

/*
 * A refused BDAT still has its chunk on the wire: it must be read and
 * dropped, or its bytes would be taken as commands (smuggling).  When even
 * the size is unreadable, the stream cannot be resynchronised: hang up.
 */
static void
smtp_bdat_refused(struct smtp_session *s, const char *args,
    enum smtp_rid *rid)
{
	uint64_t size;
	bool last;

	if (smtp_bdat_parse(args, &size, &last) == -1) {
		smtp_reply(s, SMTP_R_SYNTAX);
		if (log_limit_ok(&smtp_ll[SMTP_LL_BDAT]))
			log_info("sess=%016" PRIx64 " bad BDAT size, "
			    "closing", s->id);
		*rid = SMTP_R_BAD_BDAT;
	} else
		s->discard = size;
}

#define NUL_BAD SMTP_R_BAD_CHARS

/*
 * Every rule dispatch applies, by verb.  Outside .states the reply is the
 * session state's (smtp_state_refusals) if it has one, .in_bdat_tx in an
 * open BDAT transaction and .wrong_state otherwise.  .nul answers a NUL in
 * an allowed command; .refused settles what a refusal leaves on the wire.
 */
static const struct smtp_command smtp_commands[] = {
	{ "EHLO", SMTP_ST_ANY_CMD, SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_SOME, NULL, smtp_cmd_ehlo, NULL },
	{ "HELO", SMTP_ST_ANY_CMD, SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_SOME, NULL, smtp_cmd_helo, NULL },
	{ "MAIL", ST(SMTP_ST_IDLE), SMTP_R_NESTED_MAIL, SMTP_R_NESTED_MAIL,
	  NUL_BAD, SMTP_ARGS_KEYWORD, "FROM:", smtp_cmd_mail, NULL },
	/* An address with a NUL in it is a relay attempt. */
	{ "RCPT", ST(SMTP_ST_MAIL) | ST(SMTP_ST_RCPT), SMTP_R_NEED_MAIL,
	  SMTP_R_NEED_MAIL, SMTP_R_RELAY, SMTP_ARGS_KEYWORD, "TO:",
	  smtp_cmd_rcpt, NULL },
	{ "DATA", ST(SMTP_ST_RCPT), SMTP_R_NEED_RCPT, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_NONE, NULL, smtp_cmd_data, NULL },
	{ "BDAT", ST(SMTP_ST_RCPT) | ST(SMTP_ST_BDAT_WAIT), SMTP_R_NEED_RCPT,
	  SMTP_R_NEED_RCPT, NUL_BAD, SMTP_ARGS_CHUNK, NULL, smtp_cmd_bdat,
	  smtp_bdat_refused },
	{ "RSET", SMTP_ST_ANY_CMD, SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_ANY, NULL, smtp_cmd_rset, NULL },
	{ "NOOP", SMTP_ST_ANY_CMD, SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_ANY, NULL, smtp_cmd_noop, NULL },
	{ "VRFY", SMTP_ST_ANY_CMD & ~ST(SMTP_ST_BDAT_WAIT), SMTP_R_BAD_SEQ,
	  SMTP_R_BAD_SEQ, NUL_BAD, SMTP_ARGS_ANY, NULL, smtp_cmd_vrfy, NULL },
	{ "HELP", SMTP_ST_ANY_CMD & ~ST(SMTP_ST_BDAT_WAIT), SMTP_R_BAD_SEQ,
	  SMTP_R_BAD_SEQ, NUL_BAD, SMTP_ARGS_ANY, NULL, smtp_cmd_help, NULL },
	{ "ETRN", ST(SMTP_ST_IDLE), SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_SOME, NULL, smtp_cmd_etrn, NULL },
	{ "STARTTLS", ST(SMTP_ST_IDLE), SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ,
	  NUL_BAD, SMTP_ARGS_NONE, NULL, smtp_cmd_starttls, NULL },
	{ "QUIT", SMTP_ST_ANY_CMD, SMTP_R_BAD_SEQ, SMTP_R_BAD_SEQ, NUL_BAD,
	  SMTP_ARGS_ANY, NULL, smtp_cmd_quit, NULL },
};

#undef NUL_BAD

/* The refusal of a command outside its states (see smtp_commands). */
static enum smtp_rid
smtp_wrong_state(struct smtp_session *s, const struct smtp_command *cmd)
{
	const struct smtp_state_refusal *r = &smtp_state_refusals[s->state];

	if (r->ends_tx) {
		smtp_tx_reset(s);
		smtp_enter_state(s, SMTP_ST_IDLE);
	}
	if (r->rid != SMTP_R_NONE)
		return r->rid;
	return s->tx != NULL && s->tx->bdat ? cmd->in_bdat_tx :
	    cmd->wrong_state;
}

/* Arguments against the row's policy; NULL when they break it. */
static const char *
smtp_check_args(const struct smtp_command *cmd, const char *args)
{
	uint64_t size;
	bool last;

	switch (cmd->args) {
	case SMTP_ARGS_ANY:
		return args;
	case SMTP_ARGS_NONE:
		return *args == '\0' ? args : NULL;
	case SMTP_ARGS_SOME:
		return *args != '\0' ? args : NULL;
	case SMTP_ARGS_KEYWORD:
		return smtp_after_keyword(args, cmd->keyword);
	case SMTP_ARGS_CHUNK:
		return smtp_bdat_parse(args, &size, &last) == 0 ? args : NULL;
	}
	return NULL;
}

/* A refusal: the row's .refused settles the wire, then the reply. */
static void
smtp_refuse(struct smtp_session *s, const struct smtp_command *cmd,
    const char *args, enum smtp_rid rid)
{
	if (cmd->refused != NULL)
		cmd->refused(s, args, &rid);
	smtp_reply(s, rid);
}

/* The one place that answers 500/501/503 for a command line. */
static void
smtp_dispatch(struct smtp_session *s, const char *line, size_t len)
{
	char verb[SMTP_VERB_MAX], esc[LOG_ESCAPE_MAX];
	const struct smtp_command *cmd = NULL;
	const char *args, *rest;
	enum smtp_rid rid;
	size_t i;

	if (smtp_trace_on(s))
		smtp_trace(s, "cmd=%s", log_escape(line, len, esc,
		    sizeof(esc)));
	if (smtp_proto_split(line, verb, sizeof(verb), &args) == 0)
		for (i = 0; i < UTIL_ARRAY_LEN(smtp_commands); i++)
			if (strcmp(smtp_commands[i].verb, verb) == 0)
				cmd = &smtp_commands[i];
	if (cmd == NULL)
		smtp_reply(s, SMTP_R_UNKNOWN);
	else if (memchr(line, '\0', len) != NULL)
		smtp_reply(s, (cmd->states & ST(s->state)) != 0 ? cmd->nul :
		    SMTP_R_BAD_CHARS);
	else if ((cmd->states & ST(s->state)) == 0)
		smtp_refuse(s, cmd, args, smtp_wrong_state(s, cmd));
	else if ((rest = smtp_check_args(cmd, args)) == NULL)
		smtp_refuse(s, cmd, args, SMTP_R_SYNTAX);
	else if ((rid = cmd->handler(s, rest)) != SMTP_R_NONE)
		smtp_reply(s, rid);
}

/* ---- message content ---- */

static void
smtp_tx_write(struct smtp_session *s, const char *buf, size_t len)
{
	struct smtp_tx *tx = s->tx;

	if (tx->error == SMTP_TX_OK && tx->data.received > SMTP_MAX_RECEIVED)
		tx->error = SMTP_TX_LOOP;
	if (tx->error == SMTP_TX_OK &&
	    tx->data.out_total > queue_size_limit(s->srv->queue))
		tx->error = SMTP_TX_SIZE;
	if (tx->error != SMTP_TX_OK) {
		/* Keep reading to the end, store nothing more. */
		if (tx->msg != NULL && tx->error != SMTP_TX_IO) {
			spool_msg_abort(tx->msg);
			tx->msg = NULL;
		}
		return;
	}
	if (len > 0 && spool_msg_write(tx->msg, buf, len) == -1) {
		tx->error = SMTP_TX_IO;
		tx->io_errno = errno;
	}
}

static void
smtp_commit_cb(void *arg, int err, const struct envelope *env)
{
	struct smtp_session *s = arg;
	char esc[LOG_ESCAPE_MAX];

	if (s->gone) {
		/* The client left before its answer; a committed message is
		 * still delivered (the client may send it again). */
		smtp_session_free(s);
		return;
	}
	s->process_next = true;		/* see the end */
	if (err == 0) {
		char line[128];

		log_info("msg=%s accepted sess=%016" PRIx64 " addr=%s "
		    "from=%s nrcpt=%zu size=%" PRIu64 " tls=%s", env->id,
		    s->id, s->addr, log_addr(env->sender, esc, sizeof(esc)),
		    env->nrcpt, env->size, s->tls ? "yes" : "no");
		memcpy(line, "250 2.0.0 Ok: queued as", 24);
		(void)smtp_cat(line, sizeof(line), 23, env->id);
		smtp_reply_raw(s, line);
		s->nmsgs++;
	} else {
		log_warnx("sess=%016" PRIx64 " message not accepted "
		    "reason=\"%s\"", s->id, strerror(err));
		smtp_reply(s, err == ENOSPC ? SMTP_R_NOSPACE : SMTP_R_IO);
	}
	smtp_tx_reset(s);
	smtp_enter_state(s, SMTP_ST_IDLE);
	if (s->srv->stopping)
		smtp_reply(s, SMTP_R_SHUTDOWN);
	/* A read timeout during the commit disabled reading. */
	bufferevent_enable(s->bev, EV_READ);
	/* The replies above go out in smtp_process()'s flush (smtp_flush:
	 * directly on a plain connection). */
	s->process_next = false;
	smtp_process(s);
}

/* The content is complete: answer an error, or hand it to the queue. */
static void
smtp_tx_end(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct spool_msg *msg;
	struct envelope *env;

	if (tx->error == SMTP_TX_OK && !queue_size_fits(s->srv->queue,
	    tx->data.out_total, tx->env)) {
		/* Within the limit, but not with this many recipients. */
		if (log_limit_ok(&smtp_ll[SMTP_LL_TOO_LARGE]))
			log_info("sess=%016" PRIx64 " message too large for "
			    "the primary size=%" PRIu64 " nrcpt=%zu", s->id,
			    tx->data.out_total, tx->env->nrcpt);
		smtp_reply(s, SMTP_R_SIZE);
		goto reset;
	}
	switch (tx->error) {
	case SMTP_TX_OK:
		break;
	case SMTP_TX_SIZE:
		if (log_limit_ok(&smtp_ll[SMTP_LL_TOO_LARGE]))
			log_info("sess=%016" PRIx64 " message too large "
			    "size>%" PRIu64, s->id,
			    queue_size_limit(s->srv->queue));
		smtp_reply(s, SMTP_R_SIZE);
		goto reset;
	case SMTP_TX_LOOP:
		if (log_limit_ok(&smtp_ll[SMTP_LL_LOOP]))
			log_info("sess=%016" PRIx64 " mail loop received=%u",
			    s->id, tx->data.received);
		smtp_reply(s, SMTP_R_LOOP);
		goto reset;
	case SMTP_TX_IO:
		/* spool logged the cause */
		smtp_reply(s, tx->io_errno == ENOSPC ? SMTP_R_NOSPACE : SMTP_R_IO);
		goto reset;
	}
	env = tx->env;
	msg = tx->msg;
	tx->msg = NULL;
	env->size = spool_msg_size(msg);
	env->client_addr = xstrdup(s->addr);
	env->client_port = s->port;
	env->client_helo = xstrdup(s->helo);
	if (s->rdns != NULL)
		env->client_name = xstrdup(s->rdns);
	env->proto = xstrdup(s->tls ? (s->esmtp ? "ESMTPS" : "SMTPS") :
	    (s->esmtp ? "ESMTP" : "SMTP"));
	tx->env = NULL;		/* the queue owns it now */
	smtp_enter_state(s, SMTP_ST_COMMIT);
	queue_submit(s->srv->queue, msg, env, smtp_commit_cb, s);
	return;
reset:
	smtp_tx_reset(s);
	smtp_enter_state(s, SMTP_ST_IDLE);
}

/* Slowloris: a message trickling in slower than min_data_rate. */
static bool
smtp_too_slow(struct smtp_session *s)
{
	time_t elapsed = time(NULL) - s->data_start;

	return s->srv->cf->min_data_rate > 0 &&
	    elapsed >= SMTP_RATE_WINDOW_SEC &&
	    s->data_in / (uint64_t)elapsed < s->srv->cf->min_data_rate &&
	    !screen_is_allowed(s->srv->screen, (struct sockaddr *)&s->sa);
}

/* Decode DATA or BDAT content from the input; false when it needs more. */
static bool
smtp_content_in(struct smtp_session *s, struct evbuffer *in)
{
	struct smtp_tx *tx = s->tx;
	size_t avail = evbuffer_get_length(in), take, used, outlen;
	unsigned char *p;

	if (avail == 0 && !(s->state == SMTP_ST_BDAT && tx->bdat_left == 0))
		return false;
	take = avail < SMTP_DATA_CHUNK ? avail : SMTP_DATA_CHUNK;
	if (s->state == SMTP_ST_BDAT && take > tx->bdat_left)
		take = (size_t)tx->bdat_left;
	p = evbuffer_pullup(in, (ssize_t)take);
	used = smtp_proto_data_feed(&tx->data, (const char *)p, take,
	    s->srv->scratch, &outlen);
	evbuffer_drain(in, used);
	s->data_in += used;
	if (smtp_too_slow(s)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_DATA_SLOW]))
			log_info("sess=%016" PRIx64 " data too slow addr=%s "
			    "octets=%" PRIu64 " seconds=%lld", s->id, s->addr,
			    s->data_in,
			    (long long)(time(NULL) - s->data_start));
		smtp_tx_reset(s);
		smtp_reply(s, SMTP_R_TOO_SLOW);
		return false;
	}
	smtp_tx_write(s, s->srv->scratch, outlen);
	if (s->state == SMTP_ST_DATA) {
		if (tx->data.done)
			smtp_tx_end(s);
		return true;
	}
	tx->bdat_left -= used;
	if (tx->bdat_left > 0)
		return true;
	if (!tx->bdat_last) {
		char line[64];

		if (tx->error == SMTP_TX_OK) {
			snprintf(line, sizeof(line), "250 2.0.0 Ok: %" PRIu64
			    " octets", tx->data.out_total);
			smtp_reply_raw(s, line);
			smtp_enter_state(s, SMTP_ST_BDAT_WAIT);
		} else
			smtp_tx_end(s);	/* answers the error, resets */
		return true;
	}
	outlen = smtp_proto_data_finish(&tx->data, s->srv->scratch);
	smtp_tx_write(s, s->srv->scratch, outlen);
	smtp_tx_end(s);
	return true;
}

/* Read one command line; false when it needs more input. */
static bool
smtp_line_in(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr eol;
	size_t len, eol_len;
	char line[SMTP_LINE_MAX];	/* len + eol_len fit, checked below */

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		len = evbuffer_get_length(in);
		/* One byte now and then must not keep a line open forever. */
		if (len > 0 && s->line_since == 0)
			s->line_since = time(NULL);
		else if (len > 0 && time(NULL) - s->line_since >
		    (time_t)s->srv->cf->timeout) {
			if (log_limit_ok(&smtp_ll[SMTP_LL_CMD_SLOW]))
				log_info("sess=%016" PRIx64 " command too slow",
				    s->id);
			smtp_reply(s, SMTP_R_TIMEOUT);
			return false;
		}
		if (len > SMTP_LINE_MAX) {
			/* Answer now and discard to the line end, buffering
			 * nothing more. */
			evbuffer_drain(in, len);
			if (!s->skip_line) {
				if (log_limit_ok(&smtp_ll[SMTP_LL_TOO_LONG]))
					log_info("sess=%016" PRIx64
					    " line too long", s->id);
				smtp_reply(s, SMTP_R_TOO_LONG);
			}
			s->skip_line = true;
		}
		return false;
	}
	len = (size_t)eol.pos;
	s->line_since = 0;
	if (s->skip_line || len + eol_len > SMTP_LINE_MAX) {
		evbuffer_drain(in, len + eol_len);
		if (!s->skip_line)
			smtp_reply(s, SMTP_R_TOO_LONG);
		s->skip_line = false;
		return true;
	}
	evbuffer_remove(in, line, len);
	evbuffer_drain(in, eol_len);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	smtp_dispatch(s, line, len);
	return true;
}

static void
smtp_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	smtp_close_flushed(arg);
}

/*
 * Free a closing session once its last reply is on the wire.  Under TLS
 * the filter's buffer empties before the socket below it does, so that
 * one is watched too, briefly (at most SMTP_LINGER_MAX * 20 ms).
 */
static void
smtp_close_flushed(struct smtp_session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	struct timeval tv = { 0, 20 * 1000 };

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return;		/* the write callback comes back */
	if (under != NULL && s->tlsinfo[0] != '\0' && !s->tls_closed) {
		/* A clean TLS end: close_notify after the last reply. */
		s->tls_closed = true;
		SSL_shutdown(bufferevent_openssl_get_ssl(s->bev));
	}
	if (under != NULL &&
	    evbuffer_get_length(bufferevent_get_output(under)) > 0 &&
	    s->linger++ < SMTP_LINGER_MAX) {
		if (s->linger_ev == NULL &&
		    (s->linger_ev = evtimer_new(s->srv->base, smtp_linger_cb,
		    s)) == NULL)
			fatalx("linger timer");
		evtimer_add(s->linger_ev, &tv);
		return;
	}
	smtp_session_free(s);
}

/*
 * On a plain connection the replies made while processing wait with the
 * write event off and go out here in one write once the input is
 * consumed: no epoll change and no extra loop turn per reply (two
 * epoll_ctl and a wakeup each before).  What the socket does not take at
 * once is left to the bufferevent (write event on, its write callback and
 * timeout as before).  true if the output is empty afterwards.
 */
static bool
smtp_flush(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	if (!smtp_direct(s))
		return evbuffer_get_length(out) == 0;
	if (evbuffer_get_length(out) > 0) {
		/* The bufferevent keeps its output's front frozen: only its
		 * own write callback drains it, and it unfreezes it too. */
		evbuffer_unfreeze(out, 1);
		(void)evbuffer_write(out, bufferevent_getfd(s->bev));
		evbuffer_freeze(out, 1);
	}
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(s->bev, EV_WRITE);
		return false;
	}
	if (bufferevent_get_enabled(s->bev) & EV_WRITE)
		bufferevent_disable(s->bev, EV_WRITE);
	return true;
}

/*
 * libevent 2.1 reads at most 4096 octets per read event (EVBUFFER_MAX_READ
 * in evbuffer_read(), whatever bufferevent_set_max_single_read() says),
 * each with an ioctl(FIONREAD) and mostly an epoll_wait of its own.  So
 * while a plain session reads content (DATA, BDAT, a refused chunk) and
 * has consumed its input, smtp_process() reads the socket itself, in
 * pieces of up to SMTP_READ_PIECE: at most SMTP_READ_PIECES of them per
 * read event, and only after a read event that brought a full 4096 (the
 * socket likely holds more; else the read would only find it empty).  The
 * input stays under SMTP_INPUT_HIGHWAT as before.  A short read ends the
 * pieces; EOF and errors are left to libevent's next read, which finds
 * them again (the socket stays readable), as are the read timeouts.
 * true if it added input.
 */
static bool
smtp_read_more(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	size_t len = evbuffer_get_length(in), want;
	ssize_t n;
	int err;

	if (s->read_more == 0 || len >= SMTP_INPUT_HIGHWAT || !smtp_direct(s) ||
	    !(bufferevent_get_enabled(s->bev) & EV_READ))
		return false;
	want = SMTP_INPUT_HIGHWAT - len;
	if (want > SMTP_READ_PIECE)
		want = SMTP_READ_PIECE;
	s->read_more--;
	/* The bufferevent keeps its input's end frozen outside its own
	 * read; the watermark callback still sees what is added here. */
	evbuffer_unfreeze(in, 0);
	if (evbuffer_reserve_space(in, (ev_ssize_t)want, &v, 1) != 1) {
		evbuffer_freeze(in, 0);
		s->read_more = 0;
		return false;
	}
	do
		n = read(bufferevent_getfd(s->bev), v.iov_base, want);
	while (n == -1 && errno == EINTR);
	err = n == -1 ? errno : 0;
	if (n > 0) {
		v.iov_len = (size_t)n;
		/* Only a broken libevent refuses what it just reserved; the
		 * octets are off the socket and the stream is lost without
		 * them. */
		if (evbuffer_commit_space(in, &v, 1) != 0)
			fatalx("evbuffer_commit_space");
	}
	evbuffer_freeze(in, 0);
	if (n < (ssize_t)want)
		s->read_more = 0;	/* drained, EOF or an error */
	/* The error is the socket's: libevent's read sees only the EOF. */
	if (n == -1 && err != EAGAIN)
		log_debug("sess=%016" PRIx64 " socket error: %s", s->id,
		    strerror(err));
	return n > 0;
}

/* Consume input as far as the state allows. */
static void
smtp_process(struct smtp_session *s)
{
	struct evbuffer *in;
	bool full;

	/* Handlers may start processing again (a greeting after PROXY):
	 * the loop below picks up the new state instead. */
	if (s->processing)
		return;
	s->processing = true;
again:
	full = false;
	for (;;) {
		bool more = false;

		in = bufferevent_get_input(s->bev);	/* STARTTLS swaps it */
		/* A client that does not read its replies gets no more. */
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) >
		    SMTP_OUTPUT_HIGHWAT) {
			full = true;
			break;
		}
		if (s->discard > 0 && s->state != SMTP_ST_CLOSING) {
			size_t n = evbuffer_get_length(in);

			if (n == 0 && !smtp_read_more(s, in))
				break;
			n = evbuffer_get_length(in);
			if (n > s->discard)
				n = (size_t)s->discard;
			evbuffer_drain(in, n);
			s->discard -= n;
			continue;
		}
		switch (s->state) {
		case SMTP_ST_PROXY:
			more = smtp_proxy_in(s, in);
			break;
		case SMTP_ST_CONNECT:
		case SMTP_ST_COMMIT:
		case SMTP_ST_CLOSING:
			more = false;
			break;
		case SMTP_ST_DATA:
		case SMTP_ST_BDAT:
			more = smtp_content_in(s, in) ||
			    ((s->state == SMTP_ST_DATA ||
			    s->state == SMTP_ST_BDAT) &&
			    evbuffer_get_length(in) == 0 &&
			    smtp_read_more(s, in));
			break;
		case SMTP_ST_GREET:
		case SMTP_ST_IDLE:
		case SMTP_ST_MAIL:
		case SMTP_ST_RCPT:
		case SMTP_ST_BDAT_WAIT:
			more = smtp_line_in(s, in);
			break;
		}
		if (!more)
			break;
	}
	/* Written at once: the input held back by the limit goes on. */
	if (smtp_flush(s) && full)
		goto again;
	s->processing = false;
	s->read_more = 0;	/* given per read event by smtp_read_cb() */
	if (s->state == SMTP_ST_CLOSING) {
		bufferevent_disable(s->bev, EV_READ);
		smtp_close_flushed(s);
	}
}

/* ---- session plumbing ---- */

static void
smtp_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	/* libevent's read was full: the socket may hold more content. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) >=
	    SMTP_LIBEVENT_READ && !s->processing)
		s->read_more = SMTP_READ_PIECES;
	smtp_process(s);
}

static void
smtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SMTP_ST_CLOSING) {
		smtp_close_flushed(s);
		return;
	}
	/* Output drained: go on with input held back by the limit. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		smtp_process(s);
}

static void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		/* The TLS handshake finished. */
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

		tls_describe(ssl, s->tlsinfo, sizeof(s->tlsinfo));
		metrics_inc(M_TLS_HANDSHAKES_OK);
		log_info("sess=%016" PRIx64 " tls established tls=\"%s\"",
		    s->id, s->tlsinfo);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->tls && s->tlsinfo[0] == '\0') {
		char err[256];

		tls_bufferevent_error(s->bev, err, sizeof(err));
		metrics_inc(M_TLS_HANDSHAKES_FAILED);
		if (log_limit_ok(&smtp_ll[SMTP_LL_TLS_FAILED]))
			log_info("sess=%016" PRIx64 " tls handshake failed "
			    "addr=%s reason=\"%s\"", s->id, s->addr, err);
		/* Let the TLS alert reach the client before closing. */
		smtp_tx_reset(s);
		s->state = SMTP_ST_CLOSING;
		bufferevent_disable(s->bev, EV_READ);
		smtp_close_flushed(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && s->state == SMTP_ST_CLOSING) {
		smtp_session_free(s);	/* the peer does not even read */
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_TIMEOUT])) {
			if (s->state == SMTP_ST_PROXY)
				smtp_log_connected(s);
			log_info("sess=%016" PRIx64 " timeout state=%s", s->id,
			    smtp_state_names[s->state]);
		}
		if (s->state == SMTP_ST_COMMIT)
			return;	/* the commit answers soon */
		if (s->state == SMTP_ST_PROXY) {
			/* No SMTP before the header: a load balancer would
			 * pass it on to a client that never saw a banner. */
			smtp_session_free(s);
			return;
		}
		smtp_tx_reset(s);
		smtp_reply(s, SMTP_R_TIMEOUT);
		bufferevent_enable(s->bev, EV_WRITE);
		smtp_process(s);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_debug("sess=%016" PRIx64 " socket error: %s", s->id,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	/* Gone before the PROXY header ended: limited as a bad one. */
	if (s->state == SMTP_ST_PROXY &&
	    log_limit_ok(&smtp_ll[SMTP_LL_PROXY_GONE]))
		smtp_log_connected(s);
	if (s->state == SMTP_ST_COMMIT) {
		s->gone = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	if (s->tx != NULL && s->tx->msg != NULL &&
	    log_limit_ok(&smtp_ll[SMTP_LL_LOST]))
		log_info("sess=%016" PRIx64 " lost connection in %s, message "
		    "discarded", s->id, smtp_state_names[s->state]);
	smtp_session_free(s);
}

static void
smtp_session_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	if (s->logged)
		log_info("sess=%016" PRIx64 " disconnected addr=%s msgs=%u",
		    s->id, s->addr, s->nmsgs);
	smtp_tx_reset(s);
	dns_cancel(s->dnsq);
	screen_cancel(s->dnsblq);
	if (s->greet_timer != NULL)
		event_free(s->greet_timer);
	if (s->linger_ev != NULL)
		event_free(s->linger_ev);
	if (s->screened)
		screen_disconnect(srv->screen, (struct sockaddr *)&s->sa);
	free(s->rdns);
	bufferevent_free(s->bev);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nsessions--;
	metrics_set(M_SMTP_CONNECTIONS_OPEN, (double)srv->nsessions);
	free(s);
}

/*
 * The greeting waits for the client's name, the DNSBL answers and the
 * pregreet delay.  A client that talks before it is not an MTA: 421.
 */
static void
smtp_banner_maybe(struct smtp_session *s)
{
	const struct config *cf = s->srv->cf;
	struct timeval tv = { (time_t)cf->timeout, 0 };
	char banner[512];

	if (s->state != SMTP_ST_CONNECT || s->wait_dns || s->wait_dnsbl ||
	    s->wait_greet)
		return;
	if (cf->greet_wait > 0 &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) > 0 &&
	    !screen_is_allowed(s->srv->screen, (struct sockaddr *)&s->sa)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_PREGREET]))
			log_info("sess=%016" PRIx64 " pregreet addr=%s "
			    "octets=%zu", s->id, s->addr,
			    evbuffer_get_length(bufferevent_get_input(s->bev)));
		metrics_inc(M_SCREEN_PREGREET);
		smtp_reply(s, SMTP_R_PREGREET);
		smtp_process(s);
		return;
	}
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	memcpy(banner, "220", 4);	/* "220 <hostname> ESMTP holdfast" */
	(void)smtp_cat(banner, sizeof(banner), smtp_cat(banner,
	    sizeof(banner), 3, cf->hostname), "ESMTP holdfast");
	/* Sent by smtp_process()'s flush, as the replies to commands are. */
	s->process_next = true;
	smtp_reply_raw(s, banner);
	s->process_next = false;
	smtp_enter_state(s, SMTP_ST_GREET);
	smtp_process(s);
}

static void
smtp_rdns_cb(void *arg, const char *name)
{
	struct smtp_session *s = arg;
	char esc[LOG_ESCAPE_MAX];

	s->dnsq = NULL;
	s->wait_dns = false;
	if (name != NULL) {
		s->rdns = xstrdup(name);
		log_debug("sess=%016" PRIx64 " rdns=%s", s->id,
		    log_escape(name, strlen(name), esc, sizeof(esc)));
	}
	smtp_banner_maybe(s);
}

static void
smtp_dnsbl_cb(void *arg, unsigned weight, const char *zone)
{
	struct smtp_session *s = arg;

	s->dnsblq = NULL;
	s->wait_dnsbl = false;
	s->dnsbl_weight = weight;
	if (zone != NULL) {
		util_copy(s->dnsbl_zone, sizeof(s->dnsbl_zone), zone);
		if (log_limit_ok(&smtp_ll[SMTP_LL_DNSBL]))
			log_info("sess=%016" PRIx64 " dnsbl listed addr=%s "
			    "zone=%s weight=%u", s->id, s->addr, zone, weight);
	}
	smtp_banner_maybe(s);
}

static void
smtp_greet_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	(void)fd;
	(void)what;
	s->wait_greet = false;
	smtp_banner_maybe(s);
}

/*
 * The session's first line (two through a proxy: the proxy's address,
 * then the client's).  A session refused at connect (busy, over its
 * address's limits, a bad or untrusted PROXY) writes it, and
 * "disconnected", only while its refusal line is within the rate limit: a
 * peer that opens connections as fast as it can, directly or through the
 * load balancer, must not write two lines for each.
 */
static void
smtp_log_connected(struct smtp_session *s)
{
	if (s->logged)
		return;
	s->logged = true;
	if (s->via[0] == '\0') {
		log_info("sess=%016" PRIx64 " smtp connected addr=%s port=%u",
		    s->id, s->addr, s->port);
		return;
	}
	log_info("sess=%016" PRIx64 " smtp connected addr=%s port=%u", s->id,
	    s->via, s->via_port);
	log_info("sess=%016" PRIx64 " proxy addr=%s via=%s port=%u", s->id,
	    s->addr, s->via, s->port);
}

/* The client's address is known for good (after PROXY, if any): screen
 * it and start everything the greeting waits for. */
static void
smtp_session_start(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;
	const struct sockaddr *sa = (struct sockaddr *)&s->sa;
	const char *why;

	smtp_enter_state(s, SMTP_ST_CONNECT);
	if (screen_connect(srv->screen, sa, &why) == SCREEN_DEFER) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_SCREEN])) {
			smtp_log_connected(s);
			log_info("sess=%016" PRIx64 " deferred addr=%s reason=\"%s\"",
			    s->id, s->addr, why);
		}
		metrics_inc(M_SCREEN_LIMIT);
		smtp_reply(s, SMTP_R_LIMIT);
		smtp_process(s);
		return;
	}
	s->screened = true;
	smtp_log_connected(s);
	if (srv->dns != NULL) {
		s->wait_dns = true;
		s->dnsq = dns_rdns(srv->dns, sa, smtp_rdns_cb, s);
	}
	if (!screen_is_allowed(srv->screen, sa)) {
		if ((s->dnsblq = screen_dnsbl(srv->screen, sa, smtp_dnsbl_cb,
		    s)) != NULL)
			s->wait_dnsbl = true;
		if (srv->cf->greet_wait > 0) {
			struct timeval tv = { (time_t)srv->cf->greet_wait, 0 };

			s->greet_timer = evtimer_new(srv->base, smtp_greet_cb,
			    s);
			if (s->greet_timer == NULL ||
			    evtimer_add(s->greet_timer, &tv) == -1)
				fatalx("greet timer");
			s->wait_greet = true;
		}
	}
	smtp_banner_maybe(s);
}

/* A proxy listener: the header first, from a trusted sender only. */
static bool
smtp_proxy_in(struct smtp_session *s, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in), used;
	struct smtp_proxy px;
	enum smtp_proxy_status st;
	unsigned char *p;

	if (len == 0)
		return false;
	if (len > SMTP_PROXY_MAX)
		len = SMTP_PROXY_MAX;
	p = evbuffer_pullup(in, (ssize_t)len);
	st = smtp_proto_proxy_parse(p, len, &px, &used);
	switch (st) {
	case SMTP_PROXY_MORE:
		if (len < SMTP_PROXY_MAX)
			return false;
		/* too long to be a header */
		/* FALLTHROUGH */
	case SMTP_PROXY_BAD:
		if (log_limit_ok(&smtp_ll[SMTP_LL_PROXY_BAD])) {
			smtp_log_connected(s);
			log_info("sess=%016" PRIx64 " bad PROXY header "
			    "addr=%s, closing", s->id, s->addr);
		}
		smtp_enter_state(s, SMTP_ST_CLOSING);
		smtp_process(s);
		return false;
	case SMTP_PROXY_LOCAL:
		evbuffer_drain(in, used);
		break;
	case SMTP_PROXY_OK:
		evbuffer_drain(in, used);
		memset(&s->sa, 0, sizeof(s->sa));
		if (px.family == AF_INET) {
			struct sockaddr_in *sin = (void *)&s->sa;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, px.addr, 4);
			sin->sin_port = htons((uint16_t)px.port);
		} else {
			struct sockaddr_in6 *sin6 = (void *)&s->sa;

			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, px.addr, 16);
			sin6->sin6_port = htons((uint16_t)px.port);
		}
		/* Logged with "connected" once the session is served, or
		 * within the limit if it is refused. */
		util_copy(s->via, sizeof(s->via), s->addr);
		s->via_port = s->port;
		net_addr_fmt((struct sockaddr *)&s->sa, s->addr,
		    sizeof(s->addr), &s->port);
		break;
	}
	smtp_session_start(s);
	return true;	/* go on in whatever state that left */
}

static void
smtp_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct smtp_listener *sl = arg;
	struct smtp_server *srv = sl->srv;
	struct smtp_session *s;
	struct timeval tv = { SMTP_PREBANNER_SEC, 0 };

	(void)l;
	s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	util_random(&s->id, sizeof(s->id));
	net_addr_fmt(sa, s->addr, sizeof(s->addr), &s->port);
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_ACCEPT]))
			log_warnx("sess=%016" PRIx64 " bufferevent failed",
			    s->id);
		evutil_closesocket(fd);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;
	metrics_inc(M_SMTP_CONNECTIONS);
	metrics_set(M_SMTP_CONNECTIONS_OPEN, (double)srv->nsessions);
	memcpy(&s->sa, sa, (size_t)salen < sizeof(s->sa) ? (size_t)salen :
	    sizeof(s->sa));
	bufferevent_setcb(s->bev, smtp_read_cb, smtp_write_cb, smtp_event_cb,
	    s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_INPUT_HIGHWAT);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	/*
	 * Writing is enabled when a reply waits that smtp_flush() does not
	 * send directly (smtp_reply_raw, smtp_flush).  A new bufferevent has
	 * it on, and the banner would turn the write event on and off again:
	 * two epoll changes for nothing.
	 */
	bufferevent_disable(s->bev, EV_WRITE);
	bufferevent_enable(s->bev, EV_READ);
	if (srv->stopping || srv->nsessions > srv->cf->max_sessions) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_SCREEN]))
			smtp_log_connected(s);
		smtp_reply(s, srv->stopping ? SMTP_R_SHUTDOWN : SMTP_R_BUSY);
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (srv->pause != NULL && pause_until(srv->pause, util_now()) != 0) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_PAUSED]))
			log_info("sess=%016" PRIx64 " paused addr=%s",
			    s->id, s->addr);
		smtp_reply(s, SMTP_R_PAUSED);
		bufferevent_disable(s->bev, EV_READ);
		return;
	}
	if (!sl->proxy) {
		smtp_session_start(s);
		return;
	}
	/* Nothing of a PROXY header is believed from anyone else. */
	if (!net_cidrs_match(srv->cf->proxy_from_nets.v,
	    srv->cf->proxy_from_nets.n, sa)) {
		if (log_limit_ok(&smtp_ll[SMTP_LL_PROXY_UNTRUSTED])) {
			smtp_log_connected(s);
			log_info("sess=%016" PRIx64 " PROXY from untrusted addr=%s, "
			    "closing", s->id, s->addr);
		}
		smtp_enter_state(s, SMTP_ST_CLOSING);
		smtp_process(s);
		return;
	}
	/* "connected" waits for the header: a bad one is rate-limited. */
	smtp_enter_state(s, SMTP_ST_PROXY);
	smtp_process(s);
}

static void
smtp_listen_error_cb(struct evconnlistener *l, void *arg)
{
	struct smtp_listener *sl = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	/* EMFILE and friends: pause instead of spinning on accept(). */
	net_backoff_start(sl->backoff, err);
}

struct smtp_server *
smtp_server_new(struct event_base *base, const struct config *cf,
    struct spool *sp, struct queue *q, struct dns *dns, struct tls *tls)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	size_t i;

	srv->base = base;
	srv->dns = dns;
	srv->tls = tls;
	srv->cf = cf;
	srv->spool = sp;
	srv->queue = q;
	TAILQ_INIT(&srv->sessions);
	srv->scratch = xmalloc(2 * SMTP_DATA_CHUNK + 4);
	srv->listeners = xcalloc(cf->listen_addrs.n, sizeof(*srv->listeners));
	if ((srv->screen = screen_new(base, cf)) == NULL)
		goto fail;
	for (i = 0; i < cf->listen_addrs.n; i++) {
		const struct config_sockaddr *la = &cf->listen_addrs.v[i];
		struct smtp_listener *sl = &srv->listeners[srv->nlisteners];
		struct evconnlistener *l;

		sl->proxy = la->proxy;
		sl->srv = srv;
		/* [::]:25 beside 0.0.0.0:25: v6 sockets take v6 only. */
		l = evconnlistener_new_bind(base, smtp_accept_cb, sl,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		    LEV_OPT_CLOSE_ON_EXEC | (la->ss.ss_family == AF_INET6 ?
		    LEV_OPT_BIND_IPV6ONLY : 0), 512,
		    (const struct sockaddr *)&la->ss, (int)la->sslen);
		if (l == NULL) {
			log_warn("listen %s", la->text);
			goto fail;
		}
		evconnlistener_set_error_cb(l, smtp_listen_error_cb);
		sl->l = l;
		sl->backoff = net_backoff_new(base, l, "smtp");
		srv->nlisteners++;
		log_info("smtp listening addr=%s%s", la->text,
		    sl->proxy ? " proxy" : "");
	}
	return srv;
fail:
	smtp_server_free(srv);
	return NULL;
}

void
smtp_server_stop(struct smtp_server *srv)
{
	struct smtp_session *s, *next;
	size_t i;

	srv->stopping = true;
	for (i = 0; i < srv->nlisteners; i++) {
		net_backoff_free(srv->listeners[i].backoff);
		evconnlistener_free(srv->listeners[i].l);
	}
	srv->nlisteners = 0;
	for (s = TAILQ_FIRST(&srv->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->state == SMTP_ST_COMMIT || s->state == SMTP_ST_CLOSING)
			continue;
		if (s->tx != NULL && s->tx->msg != NULL)
			log_info("sess=%016" PRIx64 " shutdown in %s, message "
			    "discarded", s->id, smtp_state_names[s->state]);
		smtp_tx_reset(s);
		smtp_reply(s, SMTP_R_SHUTDOWN);
		smtp_process(s);
	}
}

int
smtp_server_trace_set(struct smtp_server *srv, const char *cidr,
    uint64_t seconds)
{
	struct net_cidr c;

	if (cidr != NULL && (net_cidr_parse(cidr, &c) == -1 ||
	    util_copy(srv->trace_cidr, sizeof(srv->trace_cidr), cidr) == -1))
		return -1;
	if (cidr != NULL)
		srv->trace_net = c;
	if (cidr == NULL)
		srv->trace_cidr[0] = '\0';
	srv->trace_until = util_now() + (time_t)seconds;
	log_info("trace on addr=%s until=+%llus", cidr != NULL ? cidr : "all",
	    (unsigned long long)seconds);
	return 0;
}

void
smtp_server_trace_off(struct smtp_server *srv)
{
	if (srv->trace_until != 0)
		log_info("trace off reason=operator");
	srv->trace_until = 0;
}

time_t
smtp_server_trace_get(const struct smtp_server *srv, const char **cidr)
{
	*cidr = srv->trace_cidr[0] != '\0' ? srv->trace_cidr : "all";
	return srv->trace_until > util_now() ? srv->trace_until : 0;
}

void
smtp_server_set_pause(struct smtp_server *srv, struct pause *p)
{
	srv->pause = p;
}

size_t
smtp_server_sessions(const struct smtp_server *srv)
{
	return srv->nsessions;
}

void
smtp_server_free(struct smtp_server *srv)
{
	struct smtp_session *s;
	size_t i;

	if (srv == NULL)
		return;
	for (i = 0; i < srv->nlisteners; i++) {
		net_backoff_free(srv->listeners[i].backoff);
		evconnlistener_free(srv->listeners[i].l);
	}
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		smtp_session_free(s);
	screen_free(srv->screen);
	free(srv->listeners);
	free(srv->scratch);
	free(srv);
}
