#include "drain.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"
#include "envelope.h"
#include "log.h"
#include "net.h"
#include "metrics.h"
#include "smtp_proto.h"
#include "tls.h"
#include "util.h"
#include "xmalloc.h"

#define DRAIN_BODY_CHUNK	(64 * 1024)
#define DRAIN_OUT_LOWAT		(128 * 1024)	/* refill below this */
#define DRAIN_IDLE_SEC		2		/* then QUIT */
#define DRAIN_REPLY_LINES	64		/* lines in one reply */

enum drain_state {
	DRAIN_ST_CONNECT,
	DRAIN_ST_BANNER,
	DRAIN_ST_EHLO,
	DRAIN_ST_HELO,
	DRAIN_ST_STARTTLS,	/* waiting for 220 */
	DRAIN_ST_TLS,		/* handshake */
	DRAIN_ST_IDLE,
	DRAIN_ST_XFORWARD,	/* XFORWARD replies pending */
	DRAIN_ST_TX,		/* MAIL, RCPTs, DATA replies pending */
	DRAIN_ST_BODY,		/* streaming the body */
	DRAIN_ST_DOT,		/* waiting for the final reply */
	DRAIN_ST_RSET,
	DRAIN_ST_QUIT,
};

static const char *const drain_state_names[] = {
	[DRAIN_ST_CONNECT] = "connect",
	[DRAIN_ST_BANNER] = "banner",
	[DRAIN_ST_EHLO] = "ehlo",
	[DRAIN_ST_HELO] = "helo",
	[DRAIN_ST_STARTTLS] = "starttls",
	[DRAIN_ST_TLS] = "tls-handshake",
	[DRAIN_ST_IDLE] = "idle",
	[DRAIN_ST_XFORWARD] = "xforward",
	[DRAIN_ST_TX] = "tx",
	[DRAIN_ST_BODY] = "body",
	[DRAIN_ST_DOT] = "dot",
	[DRAIN_ST_RSET] = "rset",
	[DRAIN_ST_QUIT] = "quit",
};

/* The capabilities we use from the primary's EHLO reply. */
#define DRAIN_F_PIPELINING	0x01
#define DRAIN_F_SIZE		0x02
#define DRAIN_F_8BITMIME	0x04
#define DRAIN_F_SMTPUTF8	0x08
#define DRAIN_F_DSN		0x10
#define DRAIN_F_STARTTLS	0x20
#define DRAIN_F_XFORWARD	0x40

#define DRAIN_XFWD_LINES	4	/* XFORWARD commands per message */

#define DRAIN_TLS_RETRY_SEC	3600	/* tls=may: plaintext after a failure */

struct drain_conn {
	struct drain		*d;
	uint64_t		 id;
	struct bufferevent	*bev;
	enum drain_state	 state;
	unsigned		 caps;
	bool			 greeted;	/* caps and size are known */
	uint64_t		 size;		/* the primary's SIZE, 0: none */
	struct smtp_reply	 reply;
	struct drain_job	*job;
	struct event		*idle;
	struct dns_query	*dnsq;		/* resolving the primary */
	bool			 tls;		/* STARTTLS done */
	bool			 in_reply;	/* drain_reply() is running */
	bool			 closed;	/* freed there: free(c) after */
	char			 xfwd_attrs[128];	/* the primary's list */
	char			*xfwd[DRAIN_XFWD_LINES];	/* to send */
	size_t			 nxfwd, xfwd_next;
	/* the transaction: commands sent, replies awaited */
	size_t			*rcpt_idx;	/* command i -> recipient */
	size_t			 ncmds;		/* MAIL + RCPTs + DATA */
	size_t			 nsent, nreplies;
	size_t			 naccepted;	/* RCPTs with 2xx */
	bool			 mail_failed;
	bool			 body_eof;
	bool			 at_line_start;
	char			*stuffbuf;
	TAILQ_ENTRY(drain_conn)	 entry;
};

struct drain {
	struct event_base	*base;
	const struct config	*cf;
	void			(*done)(void *, struct drain_job *);
	void			*arg;
	struct dns		*dns;
	struct tls		*tls;
	time_t			 tls_broken_until;	/* tls=may only */
	struct sockaddr_storage	 source;	/* [primary] source */
	socklen_t		 sourcelen;	/* 0: none */
	TAILQ_HEAD(, drain_conn) conns;
	size_t			 nconns;
	uint64_t		 next_id;
};

static void drain_conn_free(struct drain_conn *c);
static void drain_send_next(struct drain_conn *c);

static void
drain_enter_state(struct drain_conn *c, enum drain_state state)
{
	if (c->state != state)
		log_debug("drain=%" PRIu64 " state %s -> %s", c->id,
		    drain_state_names[c->state], drain_state_names[state]);
	c->state = state;
}

static void
drain_cmd(struct drain_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
drain_cmd(struct drain_conn *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char line[SMTP_LINE_MAX], esc[LOG_ESCAPE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		fatalx("%s: command too long", __func__);
	log_debug("drain=%" PRIu64 " send=%s", c->id,
	    log_escape(line, (size_t)n, esc, sizeof(esc)));
	evbuffer_add(out, line, (size_t)n);
	evbuffer_add(out, "\r\n", 2);
}

/* Finish the current job and hand it back. */
static void
drain_job_finish(struct drain_conn *c)
{
	struct drain_job *job = c->job;

	c->job = NULL;
	free(c->rcpt_idx);
	c->rcpt_idx = NULL;
	c->ncmds = c->nsent = c->nreplies = c->naccepted = 0;
	c->mail_failed = false;
	if (job != NULL && c->greeted) {
		job->greeted = true;
		job->primary_size = c->size;
		job->primary_smtputf8 = (c->caps & DRAIN_F_SMTPUTF8) != 0;
		job->primary_8bitmime = (c->caps & DRAIN_F_8BITMIME) != 0;
	}
	if (job != NULL)
		c->d->done(c->d->arg, job);
}

/*
 * The one classification of failure: the primary is unusable (connect,
 * timeout, broken session, 421, bad banner).  The job, if any, is reported
 * with site_failure and the connection closed.
 */
static void
drain_site_failure(struct drain_conn *c, const char *why)
{
	char esc[LOG_ESCAPE_MAX];

	log_info("drain=%" PRIu64 " primary failure state=%s reason=%s", c->id,
	    drain_state_names[c->state], log_escape(why, strlen(why), esc,
	    sizeof(esc)));
	if (c->job != NULL) {
		c->job->site_failure = true;
		util_copy(c->job->reply, sizeof(c->job->reply), why);
	}
	drain_job_finish(c);
	drain_conn_free(c);
}

static void
drain_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct drain_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state != DRAIN_ST_IDLE)
		return;
	drain_enter_state(c, DRAIN_ST_QUIT);
	drain_cmd(c, "QUIT");
}

static void
drain_go_idle(struct drain_conn *c)
{
	struct timeval tv = { DRAIN_IDLE_SEC, 0 };

	drain_enter_state(c, DRAIN_ST_IDLE);
	evtimer_add(c->idle, &tv);
}

static bool
drain_xfwd_offered(const struct drain_conn *c, const char *name)
{
	const char *p = c->xfwd_attrs;
	size_t n = strlen(name);

	while ((p = strcasestr(p, name)) != NULL) {
		if ((p == c->xfwd_attrs || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ' '))
			return true;
		p += n;
	}
	return false;
}

static void
drain_xfwd_free(struct drain_conn *c)
{
	size_t i;

	for (i = 0; i < c->nxfwd; i++)
		free(c->xfwd[i]);
	c->nxfwd = c->xfwd_next = 0;
}

/*
 * Postfix's XFORWARD attributes, one row each: the value from the envelope
 * (NULL: not sent), written into buf when it must be built.
 */
static const char *
drain_xfwd_name(const struct envelope *env, char *buf, size_t len)
{
	(void)buf;
	(void)len;
	return env->client_name != NULL ? env->client_name : "[UNAVAILABLE]";
}

static const char *
drain_xfwd_addr(const struct envelope *env, char *buf, size_t len)
{
	int n;

	if (strchr(env->client_addr, ':') == NULL)
		return env->client_addr;
	n = snprintf(buf, len, "IPV6:%s", env->client_addr);
	return n < 0 || (size_t)n >= len ? NULL : buf;
}

static const char *
drain_xfwd_port(const struct envelope *env, char *buf, size_t len)
{
	snprintf(buf, len, "%llu", (unsigned long long)env->client_port);
	return buf;
}

static const char *
drain_xfwd_proto(const struct envelope *env, char *buf, size_t len)
{
	(void)buf;
	(void)len;
	/* Postfix knows SMTP and ESMTP; TLS is not part of it. */
	return env->proto != NULL && strncmp(env->proto, "ESMTP", 5) == 0 ?
	    "ESMTP" : "SMTP";
}

static const char *
drain_xfwd_helo(const struct envelope *env, char *buf, size_t len)
{
	(void)buf;
	(void)len;
	return env->client_helo != NULL && *env->client_helo != '\0' ?
	    env->client_helo : "[UNAVAILABLE]";
}

static const struct {
	const char	*name;
	const char	*(*value)(const struct envelope *, char *, size_t);
} drain_xfwd_attrs[] = {
	{ "NAME", drain_xfwd_name },
	{ "ADDR", drain_xfwd_addr },
	{ "PORT", drain_xfwd_port },
	{ "PROTO", drain_xfwd_proto },
	{ "HELO", drain_xfwd_helo },
};

/*
 * Postfix's XFORWARD: the original client's name, address, port, protocol
 * and HELO, so the primary judges the real sender.  Values are xtext;
 * attributes are packed into commands of at most 512 octets.
 */
static void
drain_xfwd_build(struct drain_conn *c)
{
	const struct envelope *env = c->job->env;
	char val[SMTP_PATH_MAX * 2], attr[600], line[512];
	const char *name, *v;
	size_t i, used = 0;

	drain_xfwd_free(c);
	if (!(c->caps & DRAIN_F_XFORWARD) || env->client_addr == NULL)
		return;
	line[0] = '\0';
	for (i = 0; i < UTIL_ARRAY_LEN(drain_xfwd_attrs); i++) {
		int n;

		name = drain_xfwd_attrs[i].name;
		if (!drain_xfwd_offered(c, name))
			continue;
		if ((v = drain_xfwd_attrs[i].value(env, val, sizeof(val))) ==
		    NULL)
			continue;
		if (smtp_proto_xtext_encode(v, attr, sizeof(attr)) == -1)
			continue;
		/* "XFORWARD " + attrs + CRLF within 512 */
		if (used > 0 && used + 1 + strlen(name) + 1 + strlen(attr) >
		    512 - 11) {
			if (c->nxfwd < DRAIN_XFWD_LINES)
				c->xfwd[c->nxfwd++] = xstrdup(line);
			used = 0;
			line[0] = '\0';
		}
		n = snprintf(line + used, sizeof(line) - used, "%s%s=%s",
		    used ? " " : "", name, attr);
		if (n < 0 || (size_t)n >= sizeof(line) - used) {
			line[used] = '\0';	/* too long alone: skip it */
			continue;
		}
		used += (size_t)n;
	}
	if (used > 0 && c->nxfwd < DRAIN_XFWD_LINES)
		c->xfwd[c->nxfwd++] = xstrdup(line);
}

static void drain_tx_begin(struct drain_conn *c);

/* Start the transaction for c->job: XFORWARD first when offered. */
static void
drain_tx_start(struct drain_conn *c)
{
	evtimer_del(c->idle);
	if (c->job->env == NULL) {
		/* A health probe: reaching this point is the answer. */
		drain_go_idle(c);
		drain_job_finish(c);
		return;
	}
	drain_xfwd_build(c);
	if (c->nxfwd > 0) {
		drain_enter_state(c, DRAIN_ST_XFORWARD);
		drain_cmd(c, "XFORWARD %s", c->xfwd[c->xfwd_next++]);
		return;
	}
	drain_tx_begin(c);
}

/* One XFORWARD answered: the next, or the transaction.  A refusal only
 * costs the primary the information; the message still goes. */
static void
drain_xfwd_reply(struct drain_conn *c)
{
	if (c->reply.code / 100 != 2)
		log_info("drain=%" PRIu64 " XFORWARD refused code=%d", c->id,
		    c->reply.code);
	if (c->xfwd_next < c->nxfwd) {
		drain_cmd(c, "XFORWARD %s", c->xfwd[c->xfwd_next++]);
		return;
	}
	drain_xfwd_free(c);
	drain_tx_begin(c);
}

/* MAIL, RCPTs, DATA. */
static void
drain_tx_begin(struct drain_conn *c)
{
	struct envelope *env = c->job->env;
	size_t i, n = 0;

	c->rcpt_idx = xcalloc(env->nrcpt + 2, sizeof(*c->rcpt_idx));
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING)
			c->rcpt_idx[1 + n++] = i;
	c->ncmds = n + 2;
	c->nsent = c->nreplies = c->naccepted = 0;
	c->mail_failed = false;
	if (n == 0) {
		/* Nothing to send: report as-is. */
		drain_go_idle(c);
		drain_job_finish(c);
		return;
	}
	drain_enter_state(c, DRAIN_ST_TX);
	drain_send_next(c);
}

static void
drain_send_one(struct drain_conn *c, size_t i)
{
	struct envelope *env = c->job->env;
	char sizep[40] = "", bodyp[24] = "", utf8p[12] = "";
	char retp[16] = "", envidp[120] = "";

	if (i == 0) {
		if (c->caps & DRAIN_F_SIZE)
			snprintf(sizep, sizeof(sizep), " SIZE=%" PRIu64,
			    env->size);
		if (env->body_8bit && (c->caps & DRAIN_F_8BITMIME))
			util_copy(bodyp, sizeof(bodyp), " BODY=8BITMIME");
		if (env->smtputf8 && (c->caps & DRAIN_F_SMTPUTF8))
			util_copy(utf8p, sizeof(utf8p), " SMTPUTF8");
		if ((c->caps & DRAIN_F_DSN) && env->ret != NULL)
			snprintf(retp, sizeof(retp), " RET=%s", env->ret);
		if ((c->caps & DRAIN_F_DSN) && env->envid != NULL)
			snprintf(envidp, sizeof(envidp), " ENVID=%s",
			    env->envid);
		drain_cmd(c, "MAIL FROM:<%s>%s%s%s%s%s", env->sender, sizep,
		    bodyp, utf8p, retp, envidp);
	} else if (i < c->ncmds - 1) {
		const struct envelope_rcpt *r = &env->rcpts[c->rcpt_idx[i]];
		bool dsn = (c->caps & DRAIN_F_DSN) != 0;

		drain_cmd(c, "RCPT TO:<%s>%s%s%s%s", r->addr,
		    dsn && r->notify ? " NOTIFY=" : "",
		    dsn && r->notify ? r->notify : "",
		    dsn && r->orcpt ? " ORCPT=" : "",
		    dsn && r->orcpt ? r->orcpt : "");
	} else
		drain_cmd(c, "DATA");
}

static void
drain_send_next(struct drain_conn *c)
{
	if (c->caps & DRAIN_F_PIPELINING) {
		while (c->nsent < c->ncmds)
			drain_send_one(c, c->nsent++);
	} else if (c->nsent == c->nreplies && c->nsent < c->ncmds)
		drain_send_one(c, c->nsent++);
}

/* From the final dot on, every reply is timed again. */
static void
drain_enter_dot(struct drain_conn *c)
{
	struct timeval tv = { (time_t)c->d->cf->primary_timeout, 0 };

	bufferevent_set_timeouts(c->bev, &tv, &tv);
	drain_enter_state(c, DRAIN_ST_DOT);
}

/*
 * End a transaction that cannot be finished on this connection: every
 * accepted recipient gets code/reply, the job goes back, the connection
 * closes (mid-DATA, so the primary keeps nothing).
 */
static void
drain_abort_tx(struct drain_conn *c, int code, const char *reply)
{
	struct drain_job *job = c->job;
	size_t i;

	drain_enter_state(c, DRAIN_ST_QUIT);	/* takes no new job */
	util_copy(job->reply, sizeof(job->reply), reply);
	for (i = 1; i < c->ncmds - 1; i++) {
		struct drain_rcpt_result *r = &job->results[c->rcpt_idx[i]];

		if (r->code >= 200 && r->code < 300) {
			r->code = code;
			util_copy(r->reply, sizeof(r->reply), reply);
		}
	}
	drain_job_finish(c);
	drain_conn_free(c);
}

/* Queue more of the body; sends the final dot at EOF. */
static void
drain_body_fill(struct drain_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char buf[DRAIN_BODY_CHUNK];

	while (!c->body_eof && evbuffer_get_length(out) < DRAIN_OUT_LOWAT) {
		ssize_t n = read(c->job->body_fd, buf, sizeof(buf));
		size_t m;

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			/* Cannot finish the message: break the session so
			 * the primary discards it, and defer the message (a
			 * problem of ours, not the primary's). */
			log_warn("msg=%s drain body read", c->job->env->id);
			drain_abort_tx(c, 451, "451 4.3.0 local body read "
			    "error");
			return;
		}
		if (n == 0) {
			c->body_eof = true;
			/* Stored bodies end in CRLF; be safe anyway. */
			if (!c->at_line_start)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			drain_enter_dot(c);
			break;
		}
		m = smtp_proto_dotstuff(&c->at_line_start, buf, (size_t)n,
		    c->stuffbuf);
		evbuffer_add(out, c->stuffbuf, m);
	}
}

static void
drain_write_cb(struct bufferevent *bev, void *arg)
{
	struct drain_conn *c = arg;

	(void)bev;
	if (c->state == DRAIN_ST_BODY)
		drain_body_fill(c);
}

/* Record a reply for every accepted recipient (or all, if none yet). */
static void
drain_results_set(struct drain_conn *c, bool accepted_only)
{
	struct drain_job *job = c->job;
	size_t i;
	char text[DRAIN_REPLY_MAX];

	smtp_proto_reply_fmt(&c->reply, text, sizeof(text));
	util_copy(job->reply, sizeof(job->reply), text);
	for (i = 1; i < c->ncmds - 1; i++) {
		struct drain_rcpt_result *r = &job->results[c->rcpt_idx[i]];

		if (accepted_only && !(r->code >= 200 && r->code < 300))
			continue;
		r->code = c->reply.code;
		util_copy(r->reply, sizeof(r->reply), text);
	}
}

/* A reply within the MAIL/RCPT/DATA exchange. */
static void
drain_tx_reply(struct drain_conn *c)
{
	size_t i = c->nreplies++;
	int code = c->reply.code;

	if (i == 0) {
		if (code / 100 != 2) {
			c->mail_failed = true;
			drain_results_set(c, false);
		}
	} else if (i < c->ncmds - 1) {
		struct drain_rcpt_result *r =
		    &c->job->results[c->rcpt_idx[i]];

		if (!c->mail_failed) {
			r->code = code;
			smtp_proto_reply_fmt(&c->reply, r->reply,
			    sizeof(r->reply));
			if (code / 100 == 2)
				c->naccepted++;
		}
	} else {
		/* The DATA reply. */
		if (code == 354 && c->naccepted > 0 && !c->mail_failed) {
			struct timeval tv = {
				(time_t)c->d->cf->primary_timeout, 0 };

			/*
			 * While we send, only writing is timed: a slow link
			 * must not look like a silent primary.
			 */
			bufferevent_set_timeouts(c->bev, NULL, &tv);
			drain_enter_state(c, DRAIN_ST_BODY);
			c->body_eof = false;
			c->at_line_start = true;
			drain_body_fill(c);
			return;
		}
		if (code == 354) {
			/* Nobody to deliver to, yet 354: end it empty and
			 * take the dot's reply (it changes no result). */
			evbuffer_add(bufferevent_get_output(c->bev), ".\r\n",
			    3);
			drain_enter_dot(c);
			return;
		} else if (!c->mail_failed && c->naccepted > 0)
			drain_results_set(c, true);
		drain_job_finish(c);
		drain_enter_state(c, DRAIN_ST_RSET);
		drain_cmd(c, "RSET");
		return;
	}
	if (!(c->caps & DRAIN_F_PIPELINING) && (c->mail_failed ||
	    (i == c->ncmds - 2 && c->naccepted == 0))) {
		/* Unpipelined: stop early, nothing left to say. */
		drain_job_finish(c);
		drain_enter_state(c, DRAIN_ST_RSET);
		drain_cmd(c, "RSET");
		return;
	}
	drain_send_next(c);
}

static void
drain_ehlo_done(struct drain_conn *c)
{
	static const struct {
		const char	*keyword;
		unsigned	 flag;
	} caps[] = {
		{ "PIPELINING", DRAIN_F_PIPELINING },
		{ "SIZE", DRAIN_F_SIZE },
		{ "8BITMIME", DRAIN_F_8BITMIME },
		{ "SMTPUTF8", DRAIN_F_SMTPUTF8 },
		{ "DSN", DRAIN_F_DSN },
		{ "STARTTLS", DRAIN_F_STARTTLS },
		{ "XFORWARD", DRAIN_F_XFORWARD },
	};
	const char *p;
	size_t i;

	c->caps = 0;
	for (i = 0; i < UTIL_ARRAY_LEN(caps); i++)
		if (smtp_proto_ehlo_has(&c->reply, caps[i].keyword))
			c->caps |= caps[i].flag;
	c->size = smtp_proto_ehlo_size(&c->reply);
	c->greeted = true;
	/* Keep "XFORWARD NAME ADDR ..." to send only what it takes. */
	c->xfwd_attrs[0] = '\0';
	for (p = c->reply.text; p != NULL && *p != '\0';
	    p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncasecmp(p, "XFORWARD ", 9) == 0) {
			size_t n = strcspn(p + 9, "\n");

			if (n >= sizeof(c->xfwd_attrs))
				n = sizeof(c->xfwd_attrs) - 1;
			memcpy(c->xfwd_attrs, p + 9, n);
			c->xfwd_attrs[n] = '\0';
		}
}

static void drain_read_cb(struct bufferevent *bev, void *arg);
static void drain_write_cb(struct bufferevent *bev, void *arg);
static void drain_event_cb(struct bufferevent *bev, short what, void *arg);

/* After EHLO: send STARTTLS if the policy and the primary allow it. */
static bool
drain_want_tls(struct drain_conn *c)
{
	enum config_tls policy = tls_client_policy(c->d->tls);

	if (policy == CONFIG_TLS_NONE || !(c->caps & DRAIN_F_STARTTLS))
		return false;
	if (policy == CONFIG_TLS_MAY && c->d->tls_broken_until > time(NULL))
		return false;
	drain_enter_state(c, DRAIN_ST_STARTTLS);
	drain_cmd(c, "STARTTLS");
	return true;
}

/* 220 to STARTTLS: the session goes on over a TLS filter. */
static void
drain_tls_start(struct drain_conn *c)
{
	SSL *ssl = tls_client_ssl(c->d->tls);
	struct bufferevent *f;
	struct timeval tv = { (time_t)c->d->cf->connect_timeout, 0 };

	f = bufferevent_openssl_filter_new(c->d->base, c->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		drain_site_failure(c, "cannot start TLS");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	c->bev = f;
	bufferevent_setcb(f, drain_read_cb, drain_write_cb, drain_event_cb, c);
	bufferevent_setwatermark(f, EV_WRITE, DRAIN_OUT_LOWAT / 2, 0);
	bufferevent_set_timeouts(f, &tv, &tv);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	drain_enter_state(c, DRAIN_ST_TLS);
}

/* Greeted in plaintext while the policy wants TLS: a site failure. */
static bool
drain_tls_missing(struct drain_conn *c)
{
	if (c->tls || tls_client_policy(c->d->tls) < CONFIG_TLS_ENCRYPT)
		return false;
	drain_site_failure(c, "the primary offers no STARTTLS and [primary] "
	    "tls requires it");
	return true;
}

/*
 * Every complete reply comes here; one switch on the state.  It is long
 * (~100 lines) on purpose: one short case per state, in the order a
 * session goes through them, so the whole conversation reads in one place.
 */
static void
drain_reply_state(struct drain_conn *c)
{
	const struct config *cf = c->d->cf;
	char text[DRAIN_REPLY_MAX], esc[LOG_ESCAPE_MAX];
	struct timeval tv;

	smtp_proto_reply_fmt(&c->reply, text, sizeof(text));
	log_debug("drain=%" PRIu64 " reply=%s", c->id,
	    log_escape(text, strlen(text), esc, sizeof(esc)));
	if (c->reply.code == 421 && c->state != DRAIN_ST_QUIT) {
		drain_site_failure(c, text);
		return;
	}
	switch (c->state) {
	case DRAIN_ST_CONNECT:
	case DRAIN_ST_IDLE:
		drain_site_failure(c, "unexpected reply");
		return;
	case DRAIN_ST_BANNER:
		if (c->reply.code != 220) {
			drain_site_failure(c, text);
			return;
		}
		tv.tv_sec = (time_t)cf->primary_timeout;
		tv.tv_usec = 0;
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		drain_enter_state(c, DRAIN_ST_EHLO);
		drain_cmd(c, "EHLO %s", cf->helo_name);
		return;
	case DRAIN_ST_EHLO:
		if (c->reply.code / 100 != 2) {
			drain_enter_state(c, DRAIN_ST_HELO);
			drain_cmd(c, "HELO %s", cf->helo_name);
			return;
		}
		drain_ehlo_done(c);
		if (!c->tls && drain_want_tls(c))
			return;
		if (drain_tls_missing(c))
			return;
		break;
	case DRAIN_ST_STARTTLS:
		if (c->reply.code == 220) {
			drain_tls_start(c);
			return;
		}
		if (tls_client_policy(c->d->tls) >= CONFIG_TLS_ENCRYPT) {
			drain_site_failure(c, text);
			return;
		}
		break;	/* tls=may: go on in plaintext */
	case DRAIN_ST_TLS:
		drain_site_failure(c, "reply during the TLS handshake");
		return;
	case DRAIN_ST_HELO:
		if (c->reply.code / 100 != 2) {
			drain_site_failure(c, text);
			return;
		}
		c->caps = 0;	/* no ESMTP: no SIZE, 8BITMIME, SMTPUTF8 */
		c->size = 0;
		c->greeted = true;
		if (drain_tls_missing(c))
			return;
		break;
	case DRAIN_ST_XFORWARD:
		drain_xfwd_reply(c);
		return;
	case DRAIN_ST_TX:
		drain_tx_reply(c);
		return;
	case DRAIN_ST_BODY:
		/* A reply while we still send: the primary gave up on this
		 * message (a 4xx/5xx about it); the session is unusable. */
		drain_abort_tx(c, c->reply.code / 100 == 2 ? 451 :
		    c->reply.code, text);
		return;
	case DRAIN_ST_DOT:
		drain_results_set(c, true);
		/* Idle first, so done() can hand this connection the next
		 * message at once. */
		drain_go_idle(c);
		drain_job_finish(c);
		return;
	case DRAIN_ST_RSET:
		if (c->reply.code / 100 != 2) {
			drain_site_failure(c, text);
			return;
		}
		break;
	case DRAIN_ST_QUIT:
		drain_conn_free(c);
		return;
	}
	/* Ready for a transaction. */
	if (c->job != NULL)
		drain_tx_start(c);
	else
		drain_go_idle(c);
}

/*
 * One complete reply; false when it closed the connection (c is freed).
 * The handlers free c wherever they end a session: drain_conn_free only
 * marks it here, and the memory goes once they have all returned.
 */
static bool
drain_reply(struct drain_conn *c)
{
	c->in_reply = true;
	drain_reply_state(c);
	c->in_reply = false;
	if (c->closed) {
		free(c);
		return false;
	}
	return true;
}

static void
drain_read_cb(struct bufferevent *bev, void *arg)
{
	struct drain_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		size_t eol_len, len;
		struct evbuffer_ptr eol;
		char line[SMTP_LINE_MAX];
		int rc;

		eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (eol.pos == -1) {
			if (evbuffer_get_length(in) > SMTP_LINE_MAX)
				drain_site_failure(c, "reply line too long");
			return;
		}
		len = (size_t)eol.pos;
		if (len + eol_len > SMTP_LINE_MAX) {
			drain_site_failure(c, "reply line too long");
			return;
		}
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		if (len > 0 && line[len - 1] == '\r')
			len--;
		line[len] = '\0';
		rc = smtp_proto_reply_feed(&c->reply, line, len);
		if (rc == -1 || (rc == 0 &&
		    c->reply.nlines >= DRAIN_REPLY_LINES)) {
			drain_site_failure(c, "malformed reply");
			return;
		}
		if (rc == 0)
			continue;
		/* drain_reply may free c or hand it a new job. */
		if (!drain_reply(c))
			return;
		smtp_proto_reply_init(&c->reply);
		if (c->bev != bev)	/* STARTTLS: a new stream */
			return;
	}
}

static void
drain_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct drain_conn *c = arg;
	char why[320];

	(void)bev;
	if ((what & BEV_EVENT_CONNECTED) && c->state == DRAIN_ST_TLS) {
		char info[128];
		struct timeval tv = { (time_t)c->d->cf->primary_timeout, 0 };

		tls_describe(bufferevent_openssl_get_ssl(c->bev), info,
		    sizeof(info));
		metrics_inc(M_TLS_HANDSHAKES_OK);
		log_info("drain=%" PRIu64 " tls established tls=\"%s\"",
		    c->id, info);
		c->tls = true;
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		drain_enter_state(c, DRAIN_ST_EHLO);
		drain_cmd(c, "EHLO %s", c->d->cf->helo_name);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		drain_enter_state(c, DRAIN_ST_BANNER);
		return;
	}
	if (c->state == DRAIN_ST_TLS) {
		char err[256];

		tls_bufferevent_error(c->bev, err, sizeof(err));
		metrics_inc(M_TLS_HANDSHAKES_FAILED);
		snprintf(why, sizeof(why), "TLS handshake failed: %.200s", err);
		if (tls_client_policy(c->d->tls) == CONFIG_TLS_MAY) {
			/* Never a silent downgrade under encrypt/verify;
			 * under may, plaintext for a while. */
			c->d->tls_broken_until = time(NULL) +
			    DRAIN_TLS_RETRY_SEC;
		}
		drain_site_failure(c, why);
		return;
	}
	/*
	 * An idle connection that the primary closes, or whose read timeout
	 * ([primary] timeout, counted from the last reply) ends before the
	 * idle QUIT, is simply done: nothing was asked, nothing failed.
	 */
	if (c->state == DRAIN_ST_QUIT || (c->state == DRAIN_ST_IDLE &&
	    (what & (BEV_EVENT_EOF | BEV_EVENT_TIMEOUT)))) {
		drain_conn_free(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "timeout in %s",
		    drain_state_names[c->state]);
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed in %s",
		    drain_state_names[c->state]);
	else
		snprintf(why, sizeof(why), "%s in %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()),
		    drain_state_names[c->state]);
	drain_site_failure(c, why);
}

static void
drain_conn_free(struct drain_conn *c)
{
	struct drain *d = c->d;

	if (c->job != NULL) {
		c->job->site_failure = true;
		util_copy(c->job->reply, sizeof(c->job->reply),
		    "connection closed");
		drain_job_finish(c);
	}
	TAILQ_REMOVE(&d->conns, c, entry);
	d->nconns--;
	dns_cancel(c->dnsq);
	drain_xfwd_free(c);
	log_debug("drain=%" PRIu64 " closed", c->id);
	event_free(c->idle);
	bufferevent_free(c->bev);
	free(c->stuffbuf);
	free(c->rcpt_idx);
	if (c->in_reply)
		c->closed = true;	/* drain_reply frees it on return */
	else
		free(c);
}

static struct drain_conn *
drain_conn_new(struct drain *d)
{
	const struct config *cf = d->cf;
	struct drain_conn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = { (time_t)cf->connect_timeout, 0 };

	c->d = d;
	c->id = ++d->next_id;
	c->state = DRAIN_ST_CONNECT;
	smtp_proto_reply_init(&c->reply);
	c->stuffbuf = xmalloc(2 * DRAIN_BODY_CHUNK);
	c->bev = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("drain bufferevent");
	c->idle = evtimer_new(d->base, drain_idle_cb, c);
	bufferevent_setcb(c->bev, drain_read_cb, drain_write_cb,
	    drain_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, DRAIN_OUT_LOWAT / 2, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&d->conns, c, entry);
	d->nconns++;
	log_debug("drain=%" PRIu64 " connecting host=%s port=%" PRIu64, c->id,
	    cf->primary_host, cf->primary_port);
	return c;
}

/*
 * Connect to sa, from [primary] source when set: the primary (or the
 * router in front of it) may trust only that address.
 */
static void
drain_connect(struct drain_conn *c, const struct sockaddr *sa,
    socklen_t salen)
{
	struct drain *d = c->d;
	char why[160];
	int fd;

	if (d->sourcelen > 0) {
		if (sa->sa_family != d->source.ss_family) {
			drain_site_failure(c, "the primary's address family "
			    "differs from [primary] source");
			return;
		}
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd == -1 || bind(fd, (const struct sockaddr *)&d->source,
		    d->sourcelen) == -1) {
			snprintf(why, sizeof(why), "cannot bind [primary] "
			    "source %s: %s", d->cf->primary_source,
			    strerror(errno));
			if (fd != -1)
				close(fd);
			drain_site_failure(c, why);
			return;
		}
		if (bufferevent_setfd(c->bev, fd) == -1) {
			close(fd);
			drain_site_failure(c, "connect failed");
			return;
		}
	}
	if (bufferevent_socket_connect(c->bev, sa, (int)salen) == -1)
		drain_site_failure(c, "connect failed");
}

static void
drain_resolved_cb(void *arg, const struct sockaddr *sa, socklen_t salen)
{
	struct drain_conn *c = arg;

	c->dnsq = NULL;
	if (sa == NULL) {
		drain_site_failure(c, "cannot resolve the primary's host");
		return;
	}
	drain_connect(c, sa, salen);
}

int
drain_send(struct drain *d, struct drain_job *job)
{
	struct sockaddr_storage ss;
	struct drain_conn *c;
	socklen_t sslen;

	TAILQ_FOREACH(c, &d->conns, entry)
		if (c->state == DRAIN_ST_IDLE && c->job == NULL) {
			c->job = job;
			drain_tx_start(c);
			return 0;
		}
	if (d->nconns >= d->cf->primary_connections) {
		/* A connection on its way to idle will take it. */
		TAILQ_FOREACH(c, &d->conns, entry)
			if (c->job == NULL && c->state != DRAIN_ST_QUIT) {
				c->job = job;
				return 0;
			}
		errno = EBUSY;
		return -1;
	}
	c = drain_conn_new(d);
	c->job = job;
	if (net_literal(d->cf->primary_host, (unsigned)d->cf->primary_port,
	    &ss, &sslen) == 0)
		drain_connect(c, (struct sockaddr *)&ss, sslen);
	else	/* a name: looked up for every connection, never cached */
		c->dnsq = dns_resolve(d->dns, d->cf->primary_host,
		    (unsigned)d->cf->primary_port, d->sourcelen > 0 ?
		    d->source.ss_family : AF_UNSPEC, drain_resolved_cb, c);
	return 0;
}

struct drain *
drain_new(struct event_base *base, const struct config *cf,
    struct dns *dns, struct tls *tls,
    void (*done)(void *arg, struct drain_job *job), void *arg)
{
	struct drain *d = xcalloc(1, sizeof(*d));

	d->base = base;
	d->dns = dns;
	d->tls = tls;
	d->cf = cf;
	d->done = done;
	d->arg = arg;
	d->source = cf->primary_source_addr.ss;	/* sslen 0: not bound */
	d->sourcelen = cf->primary_source_addr.sslen;
	TAILQ_INIT(&d->conns);
	return d;
}

void
drain_free(struct drain *d)
{
	struct drain_conn *c;

	if (d == NULL)
		return;
	while ((c = TAILQ_FIRST(&d->conns)) != NULL)
		drain_conn_free(c);
	free(d);
}

size_t
drain_connections(const struct drain *d)
{
	return d->nconns;
}
