/*
 * envelope: struct envelope and its versioned "key: value" text form.
 *
 * An envelope is everything about a message except its bytes: sender and
 * ESMTP parameters, recipients with their status, the original client (for
 * XFORWARD and the Received header), arrival, attempts, next attempt, last
 * reply, dead reason.  Pure code: no files, no clock.  The caller owns what
 * envelope_new()/envelope_load() return and frees it with envelope_free();
 * strings inside belong to the envelope.
 */
#ifndef HOLDFAST_ENVELOPE_H
#define HOLDFAST_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ENVELOPE_VERSION	1
#define ENVELOPE_ID_LEN		16	/* hex characters */

enum envelope_rcpt_state {
	ENVELOPE_RCPT_PENDING,	/* still to deliver */
	ENVELOPE_RCPT_DONE,	/* the primary took it (2xx) */
	ENVELOPE_RCPT_DEAD,	/* refused (5xx) or expired: in dead/ */
};

struct envelope_rcpt {
	char				*addr;		/* mailbox, no <> */
	char				*notify;	/* DSN NOTIFY= or NULL */
	char				*orcpt;		/* DSN ORCPT= (xtext) or NULL */
	enum envelope_rcpt_state	 state;
	char				*reply;		/* last reply or NULL */
};

struct envelope {
	char			 id[ENVELOPE_ID_LEN + 1];
	time_t			 arrival;
	char			*sender;	/* "" for <> */
	uint64_t		 size;		/* stored body bytes */
	bool			 body_8bit;	/* BODY=8BITMIME */
	bool			 smtputf8;	/* SMTPUTF8 */
	char			*ret;		/* DSN RET= or NULL */
	char			*envid;		/* DSN ENVID= (xtext) or NULL */
	/* the original client */
	char			*client_addr;
	uint64_t		 client_port;
	char			*client_helo;	/* raw bytes, may be odd */
	char			*client_name;	/* rDNS or NULL */
	char			*proto;		/* SMTP, ESMTP, ESMTPS */
	/* delivery state */
	uint64_t		 attempts;
	time_t			 next_attempt;
	char			*last_reply;
	char			*dead_reason;	/* set when moved to dead/ */
	bool			 held;		/* in hold/ */
	time_t			 held_since;	/* when it was held */
	/*
	 * Lifetimes count from here (0: arrival).  Time held, in hold-mode
	 * or in dead/ before a requeue moves it on: held mail does not age.
	 */
	time_t			 age_base;
	struct envelope_rcpt	*rcpts;
	size_t			 nrcpt;
};

struct envelope *envelope_new(void);
void envelope_free(struct envelope *env);
/* Append a recipient (strings copied; notify/orcpt may be NULL). */
void envelope_add_rcpt(struct envelope *env, const char *addr,
    const char *notify, const char *orcpt);
/* Replace a string field: frees the old value, copies the new (NULL ok). */
void envelope_set_str(char **field, const char *value);
/* Drop every recipient not in state. */
void envelope_keep_rcpts(struct envelope *env,
    enum envelope_rcpt_state state);
/* A deep copy (caller frees). */
struct envelope *envelope_clone(const struct envelope *env);
/* Recipients in state. */
size_t envelope_count(const struct envelope *env,
    enum envelope_rcpt_state state);

/*
 * Serialise env into a new NUL-terminated buffer (caller frees); *len gets
 * its length.  Every value is escaped so that it is one line: bytes outside
 * 0x20..0x7e and '\' are written as \xNN.
 */
char *envelope_dump(const struct envelope *env, size_t *len);
/*
 * Parse text[0..len) into a new envelope; NULL with a reason in err on
 * any malformed, unknown-version or missing-required line.
 */
struct envelope *envelope_load(const char *text, size_t len, char *err,
    size_t errlen);

#endif
