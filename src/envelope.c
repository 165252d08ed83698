/*
 * envelope: struct envelope and its text form.
 *
 * The text form is one "key: value" line per field, each ended by '\n':
 *
 *	version: 1
 *	id: 5e1d0c3a9b7f2e41
 *	arrival: 1700000000
 *	sender: a@x.example
 *	size: 5120
 *	body: 8bitmime			(only when BODY=8BITMIME)
 *	smtputf8: yes			(only when SMTPUTF8)
 *	ret: FULL			(optional strings: absent means NULL,
 *	envid: ...			 present and empty means "")
 *	client_addr: 192.0.2.7
 *	client_port: 50122
 *	client_helo: mail.x.example
 *	client_name: mail.x.example
 *	proto: ESMTPS
 *	attempts: 3
 *	next_attempt: 1700000600
 *	last_reply: 451 4.3.0 try later
 *	dead_reason: ...
 *	held: yes			(only when held)
 *	rcpt: pending b@ours.example notify=SUCCESS,FAILURE orcpt=rfc822;b@x
 *	rcpt: done c@ours.example reply=250\x202.0.0\x20Ok
 *	rcpt: dead d\x20e@ours.example reply=550\x205.1.1\x20unknown
 *
 * "version: 1" is the first line; the other keys may come in any order but
 * at most once, except "rcpt", which is repeated once per recipient in
 * order.  A value is everything after ": " (an empty value may also be
 * written "key:").  In every value, bytes outside 0x20..0x7e and '\' are
 * written as \xNN; inside a rcpt line ' ' is escaped too, so the line is
 * space-separated fields: the state (pending, done, dead), the address
 * (possibly empty), then optional notify=, orcpt= and reply= fields, each at
 * most once.  The loader reverses the escapes, refuses \x00, raw bytes that
 * should have been escaped, unknown keys, duplicates, bad numbers, an id
 * that is not 16 lowercase hex digits, a last line without '\n', and a
 * missing id, arrival, sender or recipient.  envelope_dump() is canonical:
 * dump(load(dump(e))) == dump(e).
 */
#include "envelope.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "xmalloc.h"

#define ENVELOPE_MAX_TEXT	(1024 * 1024)
#define ENVELOPE_MAX_RCPT	100000

_Static_assert(sizeof(time_t) == sizeof(int64_t), "time_t is 64 bits");

enum envelope_kind {
	ENVELOPE_K_VERSION,
	ENVELOPE_K_ID,
	ENVELOPE_K_STR,
	ENVELOPE_K_U64,
	ENVELOPE_K_TIME,
	ENVELOPE_K_FLAG,
	ENVELOPE_K_RCPT,
};

#define ENVELOPE_F_REQUIRED	0x1	/* load fails without it */

static const struct envelope_key {
	const char		*name;
	enum envelope_kind	 kind;
	size_t			 off;
	int			 flags;
	uint64_t		 max;	/* numbers: largest value */
	const char		*word;	/* flags: the only value */
} envelope_keys[] = {
	{ "version", ENVELOPE_K_VERSION, 0, ENVELOPE_F_REQUIRED, 0, NULL },
	{ "id", ENVELOPE_K_ID, offsetof(struct envelope, id),
	    ENVELOPE_F_REQUIRED, 0, NULL },
	{ "arrival", ENVELOPE_K_TIME, offsetof(struct envelope, arrival),
	    ENVELOPE_F_REQUIRED, INT64_MAX, NULL },
	{ "sender", ENVELOPE_K_STR, offsetof(struct envelope, sender),
	    ENVELOPE_F_REQUIRED, 0, NULL },
	{ "size", ENVELOPE_K_U64, offsetof(struct envelope, size), 0,
	    UINT64_MAX, NULL },
	{ "body", ENVELOPE_K_FLAG, offsetof(struct envelope, body_8bit), 0,
	    0, "8bitmime" },
	{ "smtputf8", ENVELOPE_K_FLAG, offsetof(struct envelope, smtputf8), 0,
	    0, "yes" },
	{ "ret", ENVELOPE_K_STR, offsetof(struct envelope, ret), 0, 0, NULL },
	{ "envid", ENVELOPE_K_STR, offsetof(struct envelope, envid), 0, 0,
	    NULL },
	{ "client_addr", ENVELOPE_K_STR,
	    offsetof(struct envelope, client_addr), 0, 0, NULL },
	{ "client_port", ENVELOPE_K_U64,
	    offsetof(struct envelope, client_port), 0, 65535, NULL },
	{ "client_helo", ENVELOPE_K_STR,
	    offsetof(struct envelope, client_helo), 0, 0, NULL },
	{ "client_name", ENVELOPE_K_STR,
	    offsetof(struct envelope, client_name), 0, 0, NULL },
	{ "proto", ENVELOPE_K_STR, offsetof(struct envelope, proto), 0, 0,
	    NULL },
	{ "attempts", ENVELOPE_K_U64, offsetof(struct envelope, attempts), 0,
	    UINT64_MAX, NULL },
	{ "next_attempt", ENVELOPE_K_TIME,
	    offsetof(struct envelope, next_attempt), 0, INT64_MAX, NULL },
	{ "last_reply", ENVELOPE_K_STR, offsetof(struct envelope, last_reply),
	    0, 0, NULL },
	{ "dead_reason", ENVELOPE_K_STR,
	    offsetof(struct envelope, dead_reason), 0, 0, NULL },
	{ "held", ENVELOPE_K_FLAG, offsetof(struct envelope, held), 0, 0,
	    "yes" },
	{ "held_since", ENVELOPE_K_TIME, offsetof(struct envelope, held_since),
	    0, INT64_MAX, NULL },
	{ "age_base", ENVELOPE_K_TIME, offsetof(struct envelope, age_base), 0,
	    INT64_MAX, NULL },
	{ "rcpt", ENVELOPE_K_RCPT, 0, ENVELOPE_F_REQUIRED, 0, NULL },
};

static const char *const envelope_states[] = {
	[ENVELOPE_RCPT_PENDING] = "pending",
	[ENVELOPE_RCPT_DONE] = "done",
	[ENVELOPE_RCPT_DEAD] = "dead",
};

/* Optional rcpt fields, in dump order. */
static const struct envelope_rcpt_field {
	const char	*prefix;
	size_t		 off;
} envelope_rcpt_fields[] = {
	{ "notify=", offsetof(struct envelope_rcpt, notify) },
	{ "orcpt=", offsetof(struct envelope_rcpt, orcpt) },
	{ "reply=", offsetof(struct envelope_rcpt, reply) },
};

/* A growing output buffer for envelope_dump(). */
struct envelope_buf {
	char	*p;
	size_t	 len, cap;
};

static void
envelope_rcpt_free(struct envelope_rcpt *r)
{
	size_t k;

	free(r->addr);
	for (k = 0; k < UTIL_ARRAY_LEN(envelope_rcpt_fields); k++)
		free(*(char **)((char *)r + envelope_rcpt_fields[k].off));
}

struct envelope *
envelope_new(void)
{
	struct envelope *env = xcalloc(1, sizeof(*env));

	env->sender = xstrdup("");
	return env;
}

void
envelope_free(struct envelope *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < UTIL_ARRAY_LEN(envelope_keys); i++)
		if (envelope_keys[i].kind == ENVELOPE_K_STR)
			free(*(char **)((char *)env + envelope_keys[i].off));
	for (i = 0; i < env->nrcpt; i++)
		envelope_rcpt_free(&env->rcpts[i]);
	free(env->rcpts);
	free(env);
}

void
envelope_keep_rcpts(struct envelope *env, enum envelope_rcpt_state state)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpt; i++) {
		if (env->rcpts[i].state == state)
			env->rcpts[n++] = env->rcpts[i];
		else
			envelope_rcpt_free(&env->rcpts[i]);
	}
	env->nrcpt = n;	/* the allocation stays large enough */
}

struct envelope *
envelope_clone(const struct envelope *env)
{
	struct envelope *copy;
	size_t len;
	char *text = envelope_dump(env, &len), err[128];

	if ((copy = envelope_load(text, len, err, sizeof(err))) == NULL)
		fatalx("%s: own dump does not load: %s", __func__, err);
	free(text);
	return copy;
}

static struct envelope_rcpt *
envelope_rcpt_grow(struct envelope *env)
{
	struct envelope_rcpt *r;
	size_t n = env->nrcpt;

	/* Grow at powers of two: n is the old count. */
	if (n == 0 || (n & (n - 1)) == 0)
		env->rcpts = xreallocarray(env->rcpts, n == 0 ? 1 : 2 * n,
		    sizeof(*env->rcpts));
	r = &env->rcpts[env->nrcpt++];
	memset(r, 0, sizeof(*r));
	r->state = ENVELOPE_RCPT_PENDING;
	return r;
}

void
envelope_add_rcpt(struct envelope *env, const char *addr, const char *notify,
    const char *orcpt)
{
	struct envelope_rcpt *r = envelope_rcpt_grow(env);

	r->addr = xstrdup(addr);
	envelope_set_str(&r->notify, notify);
	envelope_set_str(&r->orcpt, orcpt);
}

void
envelope_set_str(char **field, const char *value)
{
	char *copy = value == NULL ? NULL : xstrdup(value);

	free(*field);
	*field = copy;
}

size_t
envelope_count(const struct envelope *env, enum envelope_rcpt_state state)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].state == state)
			n++;
	return n;
}

static void
envelope_buf_add(struct envelope_buf *b, const char *s, size_t n)
{
	if (b->cap - b->len < n + 1) {
		while (b->cap - b->len < n + 1)
			b->cap = b->cap == 0 ? 1024 : 2 * b->cap;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
envelope_buf_str(struct envelope_buf *b, const char *s)
{
	envelope_buf_add(b, s, strlen(s));
}

/* Append s escaped; a space is escaped too when esc_space (rcpt fields). */
static void
envelope_buf_esc(struct envelope_buf *b, const char *s, bool esc_space)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	char x[4];

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '\\' ||
		    (*p == ' ' && esc_space)) {
			x[0] = '\\';
			x[1] = 'x';
			x[2] = hex[*p >> 4];
			x[3] = hex[*p & 15];
			envelope_buf_add(b, x, 4);
		} else
			envelope_buf_add(b, (const char *)p, 1);
	}
}

static void
envelope_dump_rcpt(struct envelope_buf *b, const struct envelope_rcpt *r)
{
	const char *v;
	size_t k;

	envelope_buf_str(b, "rcpt: ");
	envelope_buf_str(b, envelope_states[r->state]);
	envelope_buf_str(b, " ");
	envelope_buf_esc(b, r->addr == NULL ? "" : r->addr, true);
	for (k = 0; k < UTIL_ARRAY_LEN(envelope_rcpt_fields); k++) {
		v = *(char *const *)((const char *)r +
		    envelope_rcpt_fields[k].off);
		if (v == NULL)
			continue;
		envelope_buf_str(b, " ");
		envelope_buf_str(b, envelope_rcpt_fields[k].prefix);
		envelope_buf_esc(b, v, true);
	}
	envelope_buf_str(b, "\n");
}

char *
envelope_dump(const struct envelope *env, size_t *len)
{
	struct envelope_buf b = { NULL, 0, 0 };
	const struct envelope_key *k;
	const char *base = (const char *)env, *v;
	char num[32];
	size_t i, j;

	for (i = 0; i < UTIL_ARRAY_LEN(envelope_keys); i++) {
		k = &envelope_keys[i];
		v = num;
		switch (k->kind) {
		case ENVELOPE_K_VERSION:
			snprintf(num, sizeof(num), "%d", ENVELOPE_VERSION);
			break;
		case ENVELOPE_K_ID:
			v = env->id;
			break;
		case ENVELOPE_K_STR:
			v = *(char *const *)(base + k->off);
			if (v == NULL && !(k->flags & ENVELOPE_F_REQUIRED))
				continue;
			if (v == NULL)
				v = "";
			break;
		case ENVELOPE_K_U64:
			snprintf(num, sizeof(num), "%" PRIu64,
			    *(const uint64_t *)(base + k->off));
			break;
		case ENVELOPE_K_TIME:
			snprintf(num, sizeof(num), "%" PRId64,
			    (int64_t)*(const time_t *)(base + k->off));
			break;
		case ENVELOPE_K_FLAG:
			if (!*(const bool *)(base + k->off))
				continue;
			v = k->word;
			break;
		case ENVELOPE_K_RCPT:
			for (j = 0; j < env->nrcpt; j++)
				envelope_dump_rcpt(&b, &env->rcpts[j]);
			continue;
		}
		envelope_buf_str(&b, k->name);
		envelope_buf_str(&b, ": ");
		envelope_buf_esc(&b, v, false);
		envelope_buf_str(&b, "\n");
	}
	*len = b.len;
	return b.p;
}

/*
 * Unescape s[0..n) into a new string in *out; -1 on a raw byte outside
 * 0x20..0x7e, a bad \xNN or \x00.
 */
static int
envelope_unesc(const char *s, size_t n, char **out)
{
	char *o = xmalloc(n + 1);
	size_t i, j = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c > 0x7e)
			goto fail;
		if (c != '\\') {
			o[j++] = (char)c;
			continue;
		}
		if (n - i < 4 || s[i + 1] != 'x' ||
		    (hi = util_hexval(s[i + 2])) == -1 ||
		    (lo = util_hexval(s[i + 3])) == -1 ||
		    (hi == 0 && lo == 0))
			goto fail;
		o[j++] = (char)(hi << 4 | lo);
		i += 3;
	}
	o[j] = '\0';
	*out = o;
	return 0;
fail:
	free(o);
	return -1;
}

static void
envelope_err(char *err, size_t errlen, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
envelope_err(char *err, size_t errlen, size_t line, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (errlen == 0)
		return;
	if (line > 0)
		n = snprintf(err, errlen, "line %zu: ", line);
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Parse one rcpt value v[0..n); -1 with a reason in *why. */
static int
envelope_load_rcpt(struct envelope *env, const char *v, size_t n,
    const char **why)
{
	struct envelope_rcpt *r;
	const size_t nfields = UTIL_ARRAY_LEN(envelope_rcpt_fields);
	const char *end = v + n, *sp, *f;
	char **field;
	size_t i, k, flen;

	if (env->nrcpt >= ENVELOPE_MAX_RCPT) {
		*why = "too many recipients";
		return -1;
	}
	r = envelope_rcpt_grow(env);
	/* state */
	sp = memchr(v, ' ', n);
	if (sp == NULL) {
		*why = "rcpt without address";
		return -1;
	}
	for (i = 0; i < UTIL_ARRAY_LEN(envelope_states); i++)
		if (strlen(envelope_states[i]) == (size_t)(sp - v) &&
		    memcmp(envelope_states[i], v, (size_t)(sp - v)) == 0)
			break;
	if (i == UTIL_ARRAY_LEN(envelope_states)) {
		*why = "bad rcpt state";
		return -1;
	}
	r->state = (enum envelope_rcpt_state)i;
	/* address, then fields, each ended by ' ' or the end */
	for (f = sp + 1, k = 0;; f = sp + 1, k++) {
		sp = memchr(f, ' ', (size_t)(end - f));
		flen = (size_t)((sp == NULL ? end : sp) - f);
		if (k == 0)
			field = &r->addr;
		else {
			for (i = 0; i < nfields; i++) {
				const char *p = envelope_rcpt_fields[i].prefix;

				if (flen >= strlen(p) &&
				    memcmp(f, p, strlen(p)) == 0)
					break;
			}
			if (i == nfields) {
				*why = "bad rcpt field";
				return -1;
			}
			field = (char **)((char *)r +
			    envelope_rcpt_fields[i].off);
			if (*field != NULL) {
				*why = "duplicate rcpt field";
				return -1;
			}
			f += strlen(envelope_rcpt_fields[i].prefix);
			flen -= strlen(envelope_rcpt_fields[i].prefix);
		}
		if (envelope_unesc(f, flen, field) == -1) {
			*why = "bad escape or byte";
			return -1;
		}
		if (sp == NULL)
			return 0;
	}
}

/* Parse one value v[0..n) of key k into env; -1 with a reason in *why. */
static int
envelope_load_value(struct envelope *env, const struct envelope_key *k,
    const char *v, size_t n, const char **why)
{
	char *base = (char *)env, *s;
	uint64_t u;
	size_t i;
	int rc = -1;

	if (k->kind == ENVELOPE_K_RCPT)
		return envelope_load_rcpt(env, v, n, why);
	if (envelope_unesc(v, n, &s) == -1) {
		*why = "bad escape or byte";
		return -1;
	}
	switch (k->kind) {
	case ENVELOPE_K_VERSION:
		if (strcmp(s, "1") != 0)
			*why = "unsupported version";
		else
			rc = 0;
		break;
	case ENVELOPE_K_RCPT:
		break;	/* handled above */
	case ENVELOPE_K_ID:
		for (i = 0; s[i] != '\0'; i++)
			if (util_hexval(s[i]) == -1 ||
			    (s[i] >= 'A' && s[i] <= 'F'))
				break;
		if (i != ENVELOPE_ID_LEN || s[i] != '\0') {
			*why = "id is not 16 lowercase hex digits";
			break;
		}
		memcpy(env->id, s, ENVELOPE_ID_LEN + 1);
		rc = 0;
		break;
	case ENVELOPE_K_STR:
		envelope_set_str((char **)(base + k->off), NULL);
		*(char **)(base + k->off) = s;
		return 0;
	case ENVELOPE_K_U64:
	case ENVELOPE_K_TIME:
		if (util_parse_u64(s, &u) == -1 || u > k->max) {
			*why = "bad number";
			break;
		}
		if (k->kind == ENVELOPE_K_U64)
			*(uint64_t *)(base + k->off) = u;
		else
			*(time_t *)(base + k->off) = (time_t)u;
		rc = 0;
		break;
	case ENVELOPE_K_FLAG:
		if (strcmp(s, k->word) != 0) {
			*why = "bad flag value";
			break;
		}
		*(bool *)(base + k->off) = true;
		rc = 0;
		break;
	}
	free(s);
	return rc;
}

struct envelope *
envelope_load(const char *text, size_t len, char *err, size_t errlen)
{
	struct envelope *env = envelope_new();
	const struct envelope_key *k = NULL;
	const char *p, *end = text + len, *nl, *colon, *v, *why = "malformed";
	uint32_t seen = 0;
	size_t line, i;

	_Static_assert(UTIL_ARRAY_LEN(envelope_keys) <= 32, "seen is 32 bits");
	if (len > ENVELOPE_MAX_TEXT) {
		envelope_err(err, errlen, 0, "envelope over %d bytes",
		    ENVELOPE_MAX_TEXT);
		goto fail;
	}
	for (p = text, line = 1; p < end; p = nl + 1, line++) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			envelope_err(err, errlen, line, "no newline at end");
			goto fail;
		}
		if ((colon = memchr(p, ':', (size_t)(nl - p))) == NULL) {
			envelope_err(err, errlen, line, "expected key: value");
			goto fail;
		}
		for (i = 0; i < UTIL_ARRAY_LEN(envelope_keys); i++) {
			k = &envelope_keys[i];
			if (strlen(k->name) == (size_t)(colon - p) &&
			    memcmp(k->name, p, (size_t)(colon - p)) == 0)
				break;
		}
		if (i == UTIL_ARRAY_LEN(envelope_keys)) {
			envelope_err(err, errlen, line, "unknown key");
			goto fail;
		}
		if ((k->kind == ENVELOPE_K_VERSION) != (line == 1)) {
			envelope_err(err, errlen, line,
			    "version must be the first line");
			goto fail;
		}
		if ((seen & (1U << i)) && k->kind != ENVELOPE_K_RCPT) {
			envelope_err(err, errlen, line, "duplicate key %s",
			    k->name);
			goto fail;
		}
		seen |= 1U << i;
		v = colon + 1;
		if (v < nl && *v++ != ' ') {
			envelope_err(err, errlen, line, "expected key: value");
			goto fail;
		}
		if (envelope_load_value(env, k, v, (size_t)(nl - v), &why) ==
		    -1) {
			envelope_err(err, errlen, line, "%s: %s", k->name, why);
			goto fail;
		}
	}
	for (i = 0; i < UTIL_ARRAY_LEN(envelope_keys); i++) {
		if ((envelope_keys[i].flags & ENVELOPE_F_REQUIRED) &&
		    !(seen & (1U << i))) {
			envelope_err(err, errlen, 0, "missing %s",
			    envelope_keys[i].name);
			goto fail;
		}
	}
	return env;
fail:
	envelope_free(env);
	return NULL;
}
