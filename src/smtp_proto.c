#include "smtp_proto.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <stdio.h>
#include <string.h>

#include "util.h"

/*
 * Character classes are ASCII-only on purpose: <ctype.h> depends on the
 * locale, and peer bytes >= 0x80 must never be taken for letters.
 */
static bool
smtp_proto_is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool
smtp_proto_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
smtp_proto_is_alnum(unsigned char c)
{
	return smtp_proto_is_alpha(c) || smtp_proto_is_digit(c);
}

static bool
smtp_proto_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static char
smtp_proto_upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* True if a[0..n) equals b[0..n) ignoring ASCII case. */
static bool
smtp_proto_ncaseeq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (smtp_proto_upper(a[i]) != smtp_proto_upper(b[i]))
			return false;
	return true;
}

/*
 * A bounded output buffer: appends stop at cap - 1, the text stays
 * NUL-terminated, and full records that something was cut.
 */
struct smtp_proto_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	bool	 full;
};

static void
smtp_proto_buf_init(struct smtp_proto_buf *b, char *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	b->full = cap == 0;
	if (cap > 0)
		p[0] = '\0';
}

static void
smtp_proto_buf_putc(struct smtp_proto_buf *b, char c)
{
	if (b->len + 1 >= b->cap) {
		b->full = true;
		return;
	}
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

static void
smtp_proto_buf_puts(struct smtp_proto_buf *b, const char *s)
{
	for (; *s != '\0'; s++)
		smtp_proto_buf_putc(b, *s);
}

int
smtp_proto_split(const char *line, char *verb, size_t verblen,
    const char **args)
{
	size_t n, max;

	max = verblen < SMTP_VERB_MAX ? verblen : SMTP_VERB_MAX;
	for (n = 0; smtp_proto_is_alpha((unsigned char)line[n]); n++) {
		if (n + 1 >= max)
			goto bad;
		verb[n] = smtp_proto_upper(line[n]);
	}
	if (n == 0 || (line[n] != ' ' && line[n] != '\0'))
		goto bad;
	verb[n] = '\0';
	for (line += n; *line == ' '; line++)
		;
	*args = line;
	return 0;
bad:
	if (verblen > 0)
		verb[0] = '\0';
	return -1;
}

/* RFC 5322 atext, plus UTF-8 bytes for SMTPUTF8 (RFC 6531). */
static bool
smtp_proto_is_atext(unsigned char c)
{
	return smtp_proto_is_alnum(c) || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * A hostname: labels of letters, digits, '-' and UTF-8 bytes, separated by
 * single dots.  One trailing dot is allowed and kept; the caller's domain
 * match ignores it.
 */
static bool
smtp_proto_is_hostname(const char *d)
{
	size_t i, label = 0;
	unsigned char c;

	for (i = 0; d[i] != '\0'; i++) {
		c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (smtp_proto_is_alnum(c) || c == '-' || c >= 0x80)
			label++;
		else
			return false;
	}
	return i > 0 && i <= SMTP_DOMAIN_MAX;
}

/*
 * Parse the mailbox a (brackets and source route already removed) into
 * path.  Shapes that could route elsewhere set *routed and go on, so that
 * the caller can prefer ROUTED over SYNTAX: both refuse the address, but
 * a relay attempt should be answered as one.
 */
static enum smtp_path_status
smtp_proto_parse_mailbox(const char *a, struct smtp_path *path, bool *routed)
{
	const char *p = a, *dom;
	bool bad = false;

	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\\')
				p++;
			if (*p == '\0')
				return SMTP_PATH_SYNTAX;
			if (*p == '@' || *p == '%' || *p == '!')
				*routed = true;
		}
		if (++p == a + 2)
			return SMTP_PATH_SYNTAX;	/* "" */
	} else {
		for (; *p != '\0' && *p != '@'; p++) {
			if (*p == '%' || *p == '!')
				*routed = true;
			else if (*p == '.') {
				if (p == a || p[1] == '.' || p[1] == '@' ||
				    p[1] == '\0')
					bad = true;
			} else if (!smtp_proto_is_atext((unsigned char)*p))
				bad = true;
		}
		if (p == a || bad)
			return SMTP_PATH_SYNTAX;
		if (*p == '\0' && p - a == 10 &&
		    smtp_proto_ncaseeq(a, "postmaster", 10)) {
			util_copy(path->mailbox, sizeof(path->mailbox),
			    "postmaster");
			path->is_postmaster = true;
			return SMTP_PATH_OK;
		}
	}
	if (*p != '@')
		return SMTP_PATH_SYNTAX;
	dom = p + 1;
	if (*dom == '[' || strchr(dom, '@') != NULL)
		*routed = true;
	if (!smtp_proto_is_hostname(dom))
		return SMTP_PATH_SYNTAX;
	if (util_copy(path->mailbox, sizeof(path->mailbox), a) == -1 ||
	    util_copy(path->domain, sizeof(path->domain), dom) == -1)
		return SMTP_PATH_SYNTAX;
	return SMTP_PATH_OK;
}

enum smtp_path_status
smtp_proto_parse_path(const char *in, struct smtp_path *path,
    const char **rest)
{
	char buf[SMTP_PATH_MAX];
	const char *p, *a, *at;
	enum smtp_path_status st;
	bool quoted = false, routed = false;
	size_t len, i;

	memset(path, 0, sizeof(*path));
	while (*in == ' ')
		in++;
	if (*in != '<')
		return SMTP_PATH_SYNTAX;
	/* The closing '>' is the first one outside a quoted string. */
	for (p = in + 1; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			break;
	}
	if (*p != '>')
		return SMTP_PATH_SYNTAX;
	len = (size_t)(p - (in + 1));
	if (len > SMTP_PATH_MAX - 2 || (p[1] != ' ' && p[1] != '\0'))
		return SMTP_PATH_SYNTAX;
	memcpy(buf, in + 1, len);
	buf[len] = '\0';
	for (p++; *p == ' '; p++)
		;

	/*
	 * A control byte (bare CR, ESC, BEL, NUL...) is a syntax error, for
	 * MAIL as for RCPT: passed on, a bare CR splits the command at a
	 * primary that ends lines on CR, and an ESC reaches a terminal.
	 */
	for (i = 0; i < len; i++)
		if (smtp_proto_is_ctl((unsigned char)buf[i]))
			return SMTP_PATH_SYNTAX;
	a = buf;
	if (buf[0] == '@' && (at = strchr(buf, ':')) != NULL) {
		routed = true;		/* source route <@a,@b:u@d> */
		a = at + 1;
	}

	if (len == 0) {
		path->is_null = true;
		st = SMTP_PATH_OK;
	} else
		st = smtp_proto_parse_mailbox(a, path, &routed);
	if (routed) {
		/* Keep what a log line needs; never claim <> or postmaster. */
		memset(path, 0, sizeof(*path));
		util_copy(path->mailbox, sizeof(path->mailbox), a);
		if ((at = strrchr(a, '@')) != NULL)
			util_copy(path->domain, sizeof(path->domain), at + 1);
		st = SMTP_PATH_ROUTED;
	}
	if (st == SMTP_PATH_SYNTAX) {
		memset(path, 0, sizeof(*path));
		return st;
	}
	*rest = p;
	return st;
}

/* RFC 5321 esmtp-value: printable ASCII but '=' and space; UTF-8 too. */
static bool
smtp_proto_is_param_value(unsigned char c)
{
	return (c > ' ' && c < 0x7f && c != '=') || c >= 0x80;
}

int
smtp_proto_parse_params(const char *in, struct smtp_param *params,
    size_t max)
{
	struct smtp_param *pp;
	size_t n = 0, k, v;

	for (;;) {
		while (*in == ' ')
			in++;
		if (*in == '\0')
			return (int)n;
		if (n >= max || !smtp_proto_is_alnum((unsigned char)*in))
			return -1;
		pp = &params[n];
		memset(pp, 0, sizeof(*pp));
		for (k = 0; smtp_proto_is_alnum((unsigned char)*in) ||
		    *in == '-'; in++) {
			if (k + 1 >= sizeof(pp->keyword))
				return -1;
			pp->keyword[k++] = smtp_proto_upper(*in);
		}
		if (*in == '=') {
			for (in++, v = 0;
			    smtp_proto_is_param_value((unsigned char)*in);
			    in++) {
				if (v + 1 >= sizeof(pp->value))
					return -1;
				pp->value[v++] = *in;
			}
			if (v == 0)
				return -1;
			pp->has_value = true;
		}
		if (*in != ' ' && *in != '\0')
			return -1;
		n++;
	}
}

void
smtp_proto_reply_init(struct smtp_reply *reply)
{
	memset(reply, 0, sizeof(*reply));
}

/*
 * Length of an RFC 3463 enhanced code "c.s.d" at t[0..len) whose class is
 * cls, followed by a space or the end; 0 if there is none.
 */
static size_t
smtp_proto_enhanced_len(const char *t, size_t len, char cls)
{
	size_t i = 2, part, n;

	if (cls != '2' && cls != '4' && cls != '5')
		return 0;
	if (len < 5 || t[0] != cls || t[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (n = 0; i < len && smtp_proto_is_digit(t[i]); i++)
			n++;
		if (n < 1 || n > 3)
			return 0;
		if (part == 0) {
			if (i >= len || t[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && t[i] != ' ')
		return 0;
	return i;
}

int
smtp_proto_reply_feed(struct smtp_reply *reply, const char *line,
    size_t len)
{
	struct smtp_proto_buf b;
	size_t n, tlen;
	const char *t;
	bool last;
	int code;

	if (reply->complete || len < 3 || line[0] < '2' || line[0] > '5' ||
	    !smtp_proto_is_digit(line[1]) || !smtp_proto_is_digit(line[2]))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + line[2] - '0';
	if (len == 3)
		last = true;
	else if (line[3] == ' ')
		last = true;
	else if (line[3] == '-')
		last = false;
	else
		return -1;
	if (reply->nlines > 0 && code != reply->code)
		return -1;
	t = line + 3;
	tlen = len - 3;
	if (tlen > 0) {
		t++;
		tlen--;
	}

	if (reply->nlines == 0) {
		reply->code = code;
		n = smtp_proto_enhanced_len(t, tlen, line[0]);
		if (n > 0 && n < sizeof(reply->enhanced)) {
			memcpy(reply->enhanced, t, n);
			reply->enhanced[n] = '\0';
		} else
			n = 0;
	} else {
		/* Drop a repeated enhanced code: "550-5.1.1 a" "550 5.1.1 b" */
		n = strlen(reply->enhanced);
		if (n == 0 || tlen < n || memcmp(t, reply->enhanced, n) != 0 ||
		    (tlen > n && t[n] != ' '))
			n = 0;
	}
	for (; n < tlen && t[n] == ' '; n++)
		;
	t += n;
	tlen -= n;

	/* Control bytes become '?': '\n' is ours, it joins the lines. */
	b.p = reply->text;
	b.len = strlen(reply->text);
	b.cap = sizeof(reply->text);
	b.full = false;
	if (reply->nlines > 0)
		smtp_proto_buf_putc(&b, '\n');
	for (n = 0; n < tlen; n++)
		smtp_proto_buf_putc(&b,
		    smtp_proto_is_ctl((unsigned char)t[n]) ? '?' : t[n]);
	reply->nlines++;
	if (!last)
		return 0;
	reply->complete = true;
	return 1;
}

bool
smtp_proto_ehlo_has(const struct smtp_reply *reply, const char *keyword)
{
	size_t klen = strlen(keyword);
	const char *p;

	if (klen == 0)
		return false;
	for (p = strchr(reply->text, '\n'); p != NULL; p = strchr(p, '\n')) {
		p++;
		if (strnlen(p, klen) == klen &&
		    smtp_proto_ncaseeq(p, keyword, klen) &&
		    (p[klen] == ' ' || p[klen] == '\n' || p[klen] == '\0'))
			return true;
	}
	return false;
}

uint64_t
smtp_proto_ehlo_size(const struct smtp_reply *reply)
{
	const char *p, *v;
	uint64_t size = 0;

	for (p = strchr(reply->text, '\n'); p != NULL; p = strchr(p, '\n')) {
		p++;
		if (strnlen(p, 4) < 4 || !smtp_proto_ncaseeq(p, "SIZE", 4) ||
		    (p[4] != ' ' && p[4] != '\n' && p[4] != '\0'))
			continue;
		for (v = p + 4; *v == ' '; v++)
			;
		size = 0;
		for (; *v >= '0' && *v <= '9'; v++) {
			uint64_t d = (uint64_t)(*v - '0');

			if (size > (UINT64_MAX - d) / 10)
				return 0;
			size = size * 10 + d;
		}
		if (*v != '\n' && *v != '\0' && *v != ' ')
			return 0;
		return size;
	}
	return 0;
}

void
smtp_proto_reply_fmt(const struct smtp_reply *reply, char *out,
    size_t outlen)
{
	struct smtp_proto_buf b;
	char code[8];
	const char *t;

	smtp_proto_buf_init(&b, out, outlen);
	if (reply->nlines == 0)
		return;
	snprintf(code, sizeof(code), "%03d", reply->code % 1000);
	smtp_proto_buf_puts(&b, code);
	if (reply->enhanced[0] != '\0') {
		smtp_proto_buf_putc(&b, ' ');
		smtp_proto_buf_puts(&b, reply->enhanced);
	}
	if (reply->text[0] != '\0' && reply->text[0] != '\n')
		smtp_proto_buf_putc(&b, ' ');
	/* First line only; bytes outside printable ASCII become '?'. */
	for (t = reply->text; *t != '\0' && *t != '\n'; t++)
		smtp_proto_buf_putc(&b, (*t >= ' ' && *t < 0x7f) ? *t : '?');
}

/*
 * The DATA decoder.  The states are where the previous bytes left us; the
 * bytes held in DOT, DOT_CR and CR are not yet written, because what they
 * mean depends on the next byte.  prev_crlf says whether the last line
 * ended with a real CRLF: only then can ".\r\n" end the data, which is what
 * keeps "\n.\r\n" and friends from smuggling a second message past us.
 */
enum smtp_proto_data_state {
	SMTP_PROTO_DATA_ST_BOL,	/* at the start of a line */
	SMTP_PROTO_DATA_ST_TEXT,	/* inside a line */
	SMTP_PROTO_DATA_ST_CR,	/* CR held */
	SMTP_PROTO_DATA_ST_DOT,	/* '.' held at the start of a line */
	SMTP_PROTO_DATA_ST_DOT_CR,	/* '.' CR held */
};

void
smtp_proto_data_init(struct smtp_proto_data *d, bool dot_mode)
{
	memset(d, 0, sizeof(*d));
	d->dot_mode = dot_mode;
	d->state = SMTP_PROTO_DATA_ST_BOL;
	d->prev_crlf = true;	/* the DATA command's own CRLF */
	d->in_headers = true;
}

static void
smtp_proto_data_put(struct smtp_proto_data *d, char *out, size_t *o, char c)
{
	out[(*o)++] = c;
	if (d->in_headers && d->hdrlen < sizeof(d->hdr))
		d->hdr[d->hdrlen++] = c;
	d->state = SMTP_PROTO_DATA_ST_TEXT;
}

static void
smtp_proto_data_eol(struct smtp_proto_data *d, char *out, size_t *o, bool crlf)
{
	static const char received[] = "Received:";

	out[(*o)++] = '\r';
	out[(*o)++] = '\n';
	if (d->in_headers) {
		if (d->hdrlen == 0)
			d->in_headers = false;
		else if (d->hdrlen >= sizeof(received) - 1 &&
		    smtp_proto_ncaseeq(d->hdr, received,
		    sizeof(received) - 1))
			d->received++;
	}
	d->hdrlen = 0;
	d->prev_crlf = crlf;
	d->state = SMTP_PROTO_DATA_ST_BOL;
}

/* Byte c as line content: CR is held, LF ends the line, NUL is a space. */
static void
smtp_proto_data_text(struct smtp_proto_data *d, char *out, size_t *o, char c)
{
	if (c == '\r')
		d->state = SMTP_PROTO_DATA_ST_CR;
	else if (c == '\n')
		smtp_proto_data_eol(d, out, o, false);
	else
		smtp_proto_data_put(d, out, o, c == '\0' ? ' ' : c);
}

/*
 * The first CR, LF or NUL in [p, end), or end.  The three memchr results
 * are kept in the caller's cache (NULL: not looked up yet; end: none left)
 * and looked up again only once p has passed them, so a chunk is scanned
 * for each byte value at most once however its specials are spread.
 */
static const char *
smtp_proto_data_special(const char *p, const char *end, const char *cache[3])
{
	static const char specials[3] = { '\r', '\n', '\0' };
	const char *q, *first = end;
	size_t k;

	for (k = 0; k < 3; k++) {
		if (cache[k] == NULL || cache[k] < p) {
			q = memchr(p, specials[k], (size_t)(end - p));
			cache[k] = q != NULL ? q : end;
		}
		if (cache[k] < first)
			first = cache[k];
	}
	return first;
}

/*
 * n ordinary bytes (no CR, LF or NUL) as line content: exactly what n
 * calls of smtp_proto_data_put() would do, in one copy.
 */
static void
smtp_proto_data_run(struct smtp_proto_data *d, char *out, size_t *o,
    const char *run, size_t n)
{
	size_t room;

	memcpy(out + *o, run, n);
	*o += n;
	if (d->in_headers && d->hdrlen < sizeof(d->hdr)) {
		room = sizeof(d->hdr) - d->hdrlen;
		if (room > n)
			room = n;
		memcpy(d->hdr + d->hdrlen, run, room);
		d->hdrlen += room;
	}
	d->state = SMTP_PROTO_DATA_ST_TEXT;
}

/*
 * Runs of ordinary bytes inside a line (TEXT, or BOL when the byte is not
 * a dot that dot_mode must look at) are copied whole, and a CRLF found
 * inside the chunk ends the line at once; every other CR, LF, NUL and
 * line-start dot goes through the byte state machine below, so the result
 * is the same as feeding every byte to it, at any split of the input.
 */
size_t
smtp_proto_data_feed(struct smtp_proto_data *d, const char *in, size_t inlen,
    char *out, size_t *outlen)
{
	const char *cache[3] = { NULL, NULL, NULL };
	const char *end = in + inlen, *stop;
	size_t i = 0, o = 0;
	char c;

	while (i < inlen && !d->done) {
		c = in[i];
		if (d->state == SMTP_PROTO_DATA_ST_TEXT ||
		    (d->state == SMTP_PROTO_DATA_ST_BOL &&
		    !(d->dot_mode && c == '.'))) {
			stop = smtp_proto_data_special(in + i, end, cache);
			if (stop > in + i) {
				smtp_proto_data_run(d, out, &o, in + i,
				    (size_t)(stop - (in + i)));
				i = (size_t)(stop - in);
				if (i == inlen)
					break;
				c = in[i];
			}
			if (c == '\r' && i + 1 < inlen && in[i + 1] == '\n') {
				/* The usual line end: CR held, then LF. */
				smtp_proto_data_eol(d, out, &o, true);
				i += 2;
				continue;
			}
		}
		i++;
		switch ((enum smtp_proto_data_state)d->state) {
		case SMTP_PROTO_DATA_ST_BOL:
			if (d->dot_mode && c == '.') {
				d->state = SMTP_PROTO_DATA_ST_DOT;
				continue;
			}
			break;
		case SMTP_PROTO_DATA_ST_TEXT:
			break;
		case SMTP_PROTO_DATA_ST_CR:
			if (c == '\n') {
				smtp_proto_data_eol(d, out, &o, true);
				continue;
			}
			smtp_proto_data_put(d, out, &o, ' ');
			break;
		case SMTP_PROTO_DATA_ST_DOT:
			if (c == '\r') {
				d->state = SMTP_PROTO_DATA_ST_DOT_CR;
				continue;
			}
			if (c == '\n') {
				/* ".\n" is content, never the end. */
				smtp_proto_data_put(d, out, &o, '.');
				smtp_proto_data_eol(d, out, &o, false);
				continue;
			}
			/* un-stuff */
			d->state = SMTP_PROTO_DATA_ST_TEXT;
			break;
		case SMTP_PROTO_DATA_ST_DOT_CR:
			if (c == '\n') {
				if (d->prev_crlf) {
					d->done = true;
					continue;
				}
				smtp_proto_data_put(d, out, &o, '.');
				smtp_proto_data_eol(d, out, &o, true);
				continue;
			}
			/* Dot un-stuffed, the held CR was not a line end. */
			smtp_proto_data_put(d, out, &o, ' ');
			break;
		}
		smtp_proto_data_text(d, out, &o, c);
	}
	*outlen = o;
	d->out_total += o;
	return i;
}

size_t
smtp_proto_data_finish(struct smtp_proto_data *d, char *out)
{
	size_t o = 0;

	if (d->done)
		return 0;
	switch ((enum smtp_proto_data_state)d->state) {
	case SMTP_PROTO_DATA_ST_BOL:
		break;
	case SMTP_PROTO_DATA_ST_TEXT:
		smtp_proto_data_eol(d, out, &o, true);
		break;
	case SMTP_PROTO_DATA_ST_CR:
	case SMTP_PROTO_DATA_ST_DOT_CR:
		smtp_proto_data_put(d, out, &o, ' ');
		smtp_proto_data_eol(d, out, &o, true);
		break;
	case SMTP_PROTO_DATA_ST_DOT:
		smtp_proto_data_put(d, out, &o, '.');
		smtp_proto_data_eol(d, out, &o, true);
		break;
	}
	d->out_total += o;
	return o;
}

size_t
smtp_proto_dotstuff(bool *at_line_start, const char *in, size_t inlen,
    char *out)
{
	size_t i, o = 0;

	for (i = 0; i < inlen; i++) {
		if (*at_line_start && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		*at_line_start = in[i] == '\n';
	}
	return o;
}

static bool
smtp_proto_is_xchar(unsigned char c)
{
	return c >= '!' && c <= '~' && c != '+' && c != '=';
}

int
smtp_proto_xtext_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	struct smtp_proto_buf b;
	unsigned char c;

	smtp_proto_buf_init(&b, out, outlen);
	for (; *in != '\0'; in++) {
		c = (unsigned char)*in;
		if (smtp_proto_is_xchar(c))
			smtp_proto_buf_putc(&b, (char)c);
		else {
			smtp_proto_buf_putc(&b, '+');
			smtp_proto_buf_putc(&b, hex[c >> 4]);
			smtp_proto_buf_putc(&b, hex[c & 15]);
		}
	}
	return b.full ? -1 : 0;
}

int
smtp_proto_xtext_decode(const char *in, char *out, size_t outlen)
{
	struct smtp_proto_buf b;
	int hi, lo;

	smtp_proto_buf_init(&b, out, outlen);
	for (; *in != '\0'; in++) {
		if (*in == '+') {
			if ((hi = util_hexval(in[1])) == -1 ||
			    (lo = util_hexval(in[2])) == -1 ||
			    (hi == 0 && lo == 0))
				return -1;	/* a NUL would cut the value */
			smtp_proto_buf_putc(&b, (char)(hi << 4 | lo));
			in += 2;
		} else if (smtp_proto_is_xchar((unsigned char)*in))
			smtp_proto_buf_putc(&b, *in);
		else
			return -1;
	}
	return b.full ? -1 : 0;
}

/*
 * Append s with bytes outside printable ASCII and the characters that
 * could close a comment, a path or the field replaced by '?', at most max
 * bytes of it (a HELO is a domain; this keeps every line under 998).
 */
static void
smtp_proto_buf_puts_safe(struct smtp_proto_buf *b, const char *s, size_t max)
{
	size_t i;
	char c;

	for (i = 0; s[i] != '\0' && i < max; i++) {
		c = s[i];
		if (c < ' ' || c >= 0x7f || strchr("()\\<>;\"", c) != NULL)
			c = '?';
		smtp_proto_buf_putc(b, c);
	}
}

/*
 * Every field goes through the escaper, ours too: it costs nothing and a
 * bad hostname in the config cannot break the header either.  With tls set,
 * " (TLS)" follows the protocol; without rcpt, the "for" clause is left
 * out and the date follows the id, as Postfix does.
 */
int
smtp_proto_fmt_received(const struct smtp_received *r, char *out,
    size_t outlen)
{
	struct smtp_proto_buf b;
	char date[64];

	util_fmt_date(r->when, date, sizeof(date));
	smtp_proto_buf_init(&b, out, outlen);
	smtp_proto_buf_puts(&b, "Received: from ");
	smtp_proto_buf_puts_safe(&b, r->helo != NULL ? r->helo : "unknown",
	    SMTP_DOMAIN_MAX);
	smtp_proto_buf_puts(&b, " (");
	smtp_proto_buf_puts_safe(&b, r->rdns != NULL ? r->rdns : "unknown",
	    SMTP_DOMAIN_MAX);
	smtp_proto_buf_puts(&b, " [");
	smtp_proto_buf_puts_safe(&b, r->addr != NULL ? r->addr : "unknown",
	    64);
	smtp_proto_buf_puts(&b, "])\r\n\tby ");
	smtp_proto_buf_puts_safe(&b, r->hostname != NULL ? r->hostname : "",
	    SMTP_DOMAIN_MAX);
	smtp_proto_buf_puts(&b, " (holdfast) with ");
	smtp_proto_buf_puts_safe(&b, r->proto != NULL ? r->proto : "SMTP",
	    16);
	if (r->tls != NULL) {
		smtp_proto_buf_puts(&b, " (");
		smtp_proto_buf_puts_safe(&b, r->tls, 128);
		smtp_proto_buf_putc(&b, ')');
	}
	smtp_proto_buf_puts(&b, " id ");
	smtp_proto_buf_puts_safe(&b, r->id != NULL ? r->id : "", 64);
	if (r->rcpt != NULL) {
		smtp_proto_buf_puts(&b, "\r\n\tfor <");
		smtp_proto_buf_puts_safe(&b, r->rcpt, SMTP_PATH_MAX);
		smtp_proto_buf_puts(&b, ">; ");
	} else
		smtp_proto_buf_puts(&b, ";\r\n\t");
	smtp_proto_buf_puts(&b, date);
	smtp_proto_buf_puts(&b, "\r\n");
	if (b.full)
		return -1;
	return (int)b.len;
}

/* ---- PROXY protocol ---- */

static const unsigned char smtp_proxy_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static enum smtp_proxy_status
smtp_proto_proxy_v2(const unsigned char *buf, size_t len,
    struct smtp_proxy *proxy, size_t *consumed)
{
	size_t hlen;
	unsigned cmd, fam;

	if (len < 16)
		return SMTP_PROXY_MORE;
	if ((buf[12] & 0xf0) != 0x20)
		return SMTP_PROXY_BAD;
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	hlen = 16 + ((size_t)buf[14] << 8 | buf[15]);
	if (hlen > SMTP_PROXY_MAX)
		return SMTP_PROXY_BAD;
	if (len < hlen)
		return SMTP_PROXY_MORE;
	*consumed = hlen;
	if (cmd == 0x0)
		return SMTP_PROXY_LOCAL;	/* health check */
	if (cmd != 0x1)
		return SMTP_PROXY_BAD;
	memset(proxy, 0, sizeof(*proxy));
	switch (fam) {
	case 0x11:	/* TCP over IPv4 */
		if (hlen < 16 + 12)
			return SMTP_PROXY_BAD;
		proxy->family = AF_INET;
		memcpy(proxy->addr, buf + 16, 4);
		proxy->port = (unsigned)buf[24] << 8 | buf[25];
		return SMTP_PROXY_OK;
	case 0x21:	/* TCP over IPv6 */
		if (hlen < 16 + 36)
			return SMTP_PROXY_BAD;
		proxy->family = AF_INET6;
		memcpy(proxy->addr, buf + 16, 16);
		proxy->port = (unsigned)buf[48] << 8 | buf[49];
		return SMTP_PROXY_OK;
	case 0x00:
		return SMTP_PROXY_LOCAL;	/* UNSPEC: no address */
	default:
		return SMTP_PROXY_BAD;		/* UDP, unix: not SMTP */
	}
}

/* "PROXY TCP4 src dst sport dport\r\n" (or TCP6, or UNKNOWN ...). */
static enum smtp_proxy_status
smtp_proto_proxy_v1(const unsigned char *buf, size_t len,
    struct smtp_proxy *proxy, size_t *consumed)
{
	char line[108], *f[6], *p, *save = NULL;
	unsigned char dst[16];
	const unsigned char *eol;
	size_t n, nf = 0;
	uint64_t sport;

	eol = memchr(buf, '\n', len < 107 ? len : 107);
	if (eol == NULL)
		return len >= 107 ? SMTP_PROXY_BAD : SMTP_PROXY_MORE;
	n = (size_t)(eol - buf);
	if (n < 1 || buf[n - 1] != '\r')
		return SMTP_PROXY_BAD;
	memcpy(line, buf, n - 1);
	line[n - 1] = '\0';
	*consumed = n + 1;
	if (strlen(line) != n - 1)
		return SMTP_PROXY_BAD;		/* a NUL inside */
	for (p = strtok_r(line, " ", &save); p != NULL && nf < 6;
	    p = strtok_r(NULL, " ", &save))
		f[nf++] = p;
	if (nf < 2 || strcmp(f[0], "PROXY") != 0)
		return SMTP_PROXY_BAD;
	if (strcmp(f[1], "UNKNOWN") == 0)
		return SMTP_PROXY_LOCAL;
	if (nf != 6 || p != NULL)
		return SMTP_PROXY_BAD;
	memset(proxy, 0, sizeof(*proxy));
	if (strcmp(f[1], "TCP4") == 0)
		proxy->family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		proxy->family = AF_INET6;
	else
		return SMTP_PROXY_BAD;
	if (inet_pton(proxy->family, f[2], proxy->addr) != 1 ||
	    inet_pton(proxy->family, f[3], dst) != 1 ||
	    util_parse_u64(f[4], &sport) == -1 || sport == 0 ||
	    sport > 65535 || strlen(f[4]) > 5 ||
	    util_parse_u64(f[5], &sport) == -1 || sport == 0 ||
	    sport > 65535 || strlen(f[5]) > 5)
		return SMTP_PROXY_BAD;
	util_parse_u64(f[4], &sport);
	proxy->port = (unsigned)sport;
	return SMTP_PROXY_OK;
}

enum smtp_proxy_status
smtp_proto_proxy_parse(const unsigned char *buf, size_t len,
    struct smtp_proxy *proxy, size_t *consumed)
{
	size_t k = len < sizeof(smtp_proxy_sig) ? len : sizeof(smtp_proxy_sig);

	*consumed = 0;
	if (len == 0)
		return SMTP_PROXY_MORE;
	if (memcmp(buf, smtp_proxy_sig, k) == 0)
		return k < sizeof(smtp_proxy_sig) ? SMTP_PROXY_MORE :
		    smtp_proto_proxy_v2(buf, len, proxy, consumed);
	k = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", k) == 0)
		return k < 6 ? SMTP_PROXY_MORE :
		    smtp_proto_proxy_v1(buf, len, proxy, consumed);
	return SMTP_PROXY_BAD;
}
