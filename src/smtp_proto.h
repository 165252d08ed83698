/*
 * smtp_proto: pure SMTP text handling, no I/O.
 *
 * Splits command lines, parses <path>s and ESMTP parameters, parses
 * (multi-line) replies, decodes DATA/BDAT streams into canonical stored
 * form, dot-stuffs stored bodies for sending, xtext-codes values and formats
 * the Received header.  Everything here takes peer bytes, so every function
 * bounds its input and output; nothing allocates.  It is the most heavily
 * unit-tested and fuzzed file.
 */
#ifndef HOLDFAST_SMTP_PROTO_H
#define HOLDFAST_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SMTP_LINE_MAX	2048	/* command line, CRLF included */
#define SMTP_PATH_MAX	256	/* RFC 5321 4.5.3.1.3, brackets included */
#define SMTP_DOMAIN_MAX	255
#define SMTP_VERB_MAX	16
#define SMTP_PARAMS_MAX	16	/* ESMTP parameters on one MAIL/RCPT */
#define SMTP_REPLY_MAX	2048	/* reply text kept, all lines */

/*
 * Split a command line (no CRLF) into an upper-cased verb and the argument
 * text after one space.  Returns 0, or -1 if the verb is empty, too long or
 * not letters.  *args points into line ("" when there are none).
 */
int smtp_proto_split(const char *line, char *verb, size_t verblen,
    const char **args);

/*
 * A parsed path.  mailbox is "local@domain" exactly as given (a quoted
 * local part keeps its quotes), "" for the null path <>, or "postmaster".
 */
struct smtp_path {
	char	mailbox[SMTP_PATH_MAX];
	char	domain[SMTP_DOMAIN_MAX + 1];	/* "" for <> and postmaster */
	bool	is_null;			/* <> */
	bool	is_postmaster;			/* bare postmaster, no domain */
};

enum smtp_path_status {
	SMTP_PATH_OK,
	/*
	 * 501 (5.1.7 for MAIL, 5.1.3 for RCPT): no <...>, unbalanced, too
	 * long, not a mailbox, or a control byte (< 0x20 or 0x7f: bare CR,
	 * ESC, BEL, NUL...) anywhere between the brackets.
	 */
	SMTP_PATH_SYNTAX,
	/*
	 * Parses, but is a shape that can route somewhere else: a source
	 * route <@a,@b:u@d>, % or ! in the local part, a quoted local part
	 * holding @, more than one @ (u@foreign@ours), or an address
	 * literal domain [1.2.3.4].  RCPT answers it 554 5.7.1 (relaying
	 * denied).
	 */
	SMTP_PATH_ROUTED,
};

/*
 * Parse "<path>[ params]" as found after "FROM:" or "TO:" (leading spaces
 * allowed).  On SMTP_PATH_OK or SMTP_PATH_ROUTED, *rest points at the text
 * after '>' (parameters, leading spaces skipped).  The domain must be a
 * hostname (letters, digits, '-', '.', or UTF-8 bytes >= 0x80).
 */
enum smtp_path_status smtp_proto_parse_path(const char *in,
    struct smtp_path *path, const char **rest);

struct smtp_param {
	char	 keyword[32];		/* upper-cased */
	char	 value[SMTP_PATH_MAX * 2 + 8];	/* "" when absent */
	bool	 has_value;
};

/*
 * Parse space-separated ESMTP parameters "KEY[=VALUE] ...".  Returns the
 * number parsed (at most max), or -1 on a syntax error (empty keyword, bad
 * characters, value too long, more than max parameters).
 */
int smtp_proto_parse_params(const char *in, struct smtp_param *params,
    size_t max);

/*
 * A reply from a server, fed one line at a time (without CRLF).
 * code is the 3-digit code; enhanced is "x.y.z" when the first line has
 * one; text holds every line's text after the code and separator, lines
 * joined by '\n', truncated to fit.
 */
struct smtp_reply {
	int	code;
	char	enhanced[16];
	char	text[SMTP_REPLY_MAX];
	size_t	nlines;
	bool	complete;
};

void smtp_proto_reply_init(struct smtp_reply *reply);
/*
 * Feed one reply line.  Returns 1 when the reply is complete (a line with
 * code and space, or a bare 3-digit code), 0 when more lines follow, -1 when
 * the line is malformed or its code differs from the first line's.
 */
int smtp_proto_reply_feed(struct smtp_reply *reply, const char *line,
    size_t len);
/* True if an EHLO reply lists keyword (case-insensitive, first word of a
 * line after the first). */
bool smtp_proto_ehlo_has(const struct smtp_reply *reply, const char *keyword);
/*
 * The SIZE an EHLO reply advertises (RFC 1870): its number, or 0 when the
 * reply has no SIZE line, SIZE has no number or 0 (no fixed limit), or the
 * number is malformed or does not fit in 64 bits.
 */
uint64_t smtp_proto_ehlo_size(const struct smtp_reply *reply);
/* Format "code enhanced first-line-text" into out (for logs/envelopes). */
void smtp_proto_reply_fmt(const struct smtp_reply *reply, char *out,
    size_t outlen);

/*
 * Streaming decoder for DATA (dot_mode) and BDAT chunks.  Output is the
 * stored form: CRLF line ends only (a bare LF is a line end; a CR not
 * followed by LF, and a NUL, become a space), dot-stuffing removed.  In
 * dot_mode, only <CRLF>.<CRLF> ends the data: the CRLF before the dot must
 * be a real CRLF (the DATA command's own CRLF counts for the first line), so
 * "\n.\n", "\n.\r\n", "\r.\r" and the like are content.  The decoder also
 * counts Received: header fields in the header section (up to the first
 * empty line).
 */
struct smtp_proto_data {
	bool		dot_mode;
	bool		done;		/* end of data seen (dot_mode) */
	int		state;		/* private */
	bool		prev_crlf;	/* private */
	bool		in_headers;
	unsigned	received;	/* Received: fields in the header */
	char		hdr[10];	/* private: start of the current line */
	size_t		hdrlen;		/* private */
	uint64_t	out_total;	/* bytes written to out so far */
};

void smtp_proto_data_init(struct smtp_proto_data *d, bool dot_mode);
/*
 * Decode in[0..inlen) into out, which must hold 2 * inlen + 4 bytes; set
 * *outlen.  Returns the number of input bytes consumed: all of them, unless
 * the end of data was found (d->done), after which the rest is the next
 * command's.
 */
size_t smtp_proto_data_feed(struct smtp_proto_data *d, const char *in,
    size_t inlen, char *out, size_t *outlen);
/*
 * After the last BDAT chunk: flush a held CR (as a space) and end the last
 * line with CRLF if it is unterminated.  out holds 4 bytes.  Returns the
 * bytes written.  In dot_mode after done it writes nothing.
 */
size_t smtp_proto_data_finish(struct smtp_proto_data *d, char *out);

/*
 * Dot-stuffer for sending a stored (canonical CRLF) body with DATA: a '.'
 * at the start of a line is doubled.  at_line_start must start true.  out
 * holds 2 * inlen bytes.  Returns the bytes written.
 */
size_t smtp_proto_dotstuff(bool *at_line_start, const char *in, size_t inlen,
    char *out);

/* xtext (RFC 3461 4): encode in into out; -1 if it does not fit. */
int smtp_proto_xtext_encode(const char *in, char *out, size_t outlen);
/* Decode xtext; -1 on a malformed "+XX" or if it does not fit. */
int smtp_proto_xtext_decode(const char *in, char *out, size_t outlen);

struct smtp_received {
	const char	*helo;		/* peer's HELO/EHLO argument, raw */
	const char	*rdns;		/* verified name, or NULL: "unknown" */
	const char	*addr;		/* client IP as text */
	const char	*hostname;	/* ours */
	const char	*proto;		/* "SMTP", "ESMTP", "ESMTPS", ... */
	const char	*tls;		/* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384",
					 * or NULL */
	const char	*id;		/* queue ID */
	const char	*rcpt;		/* the one recipient, or NULL */
	time_t		 when;
};

/*
 * Format the Received header field, CRLF-terminated and folded:
 *   Received: from HELO (RDNS [ADDR])\r\n\tby HOSTNAME (holdfast) with PROTO
 *   id ID\r\n\tfor <RCPT>; DATE\r\n
 * Peer-controlled text (helo, rdns, rcpt) is escaped: bytes outside
 * printable ASCII and the characters ( ) \ < > ; " become '?', so nothing a
 * peer sends can end the field or add another.  Returns the length, or -1
 * if it does not fit.
 */
int smtp_proto_fmt_received(const struct smtp_received *r, char *out,
    size_t outlen);
/* The longest field smtp_proto_fmt_received() makes: every part is cut to
 * its bound (names 255, address 64, protocol 16, TLS 128, ID 64, path
 * 256), which sum to about 1400 octets. */
#define SMTP_RECEIVED_MAX	1536

/*
 * PROXY protocol header (v1 text or v2 binary), as sent by a trusted load
 * balancer before any SMTP byte.  Nothing of it is believed unless it
 * parses completely; the caller also checks who sent it.
 */
#define SMTP_PROXY_MAX	536	/* v2 header cap (16 + 520); v1 is 107 */

enum smtp_proxy_status {
	SMTP_PROXY_MORE,	/* incomplete: read more (up to the cap) */
	SMTP_PROXY_OK,		/* addr and port set */
	SMTP_PROXY_LOCAL,	/* v2 LOCAL or v1 UNKNOWN: use the peer */
	SMTP_PROXY_BAD,		/* malformed: close the connection */
};

struct smtp_proxy {
	int		family;		/* AF_INET or AF_INET6 */
	unsigned char	addr[16];	/* the original client */
	unsigned	port;
};

/* Parse buf[0..len); on OK or LOCAL *consumed is the header's length. */
enum smtp_proxy_status smtp_proto_proxy_parse(const unsigned char *buf,
    size_t len, struct smtp_proxy *proxy, size_t *consumed);

#endif
