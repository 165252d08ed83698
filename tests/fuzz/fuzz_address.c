/*
 * fuzz_address: smtp_proto_parse_path() on what follows "MAIL FROM:" or
 * "RCPT TO:".  Asserts what the relay check relies on: an OK mailbox holds
 * no control bytes and, unless it is <> or postmaster, a non-empty hostname
 * domain that is its part after the last '@'; ROUTED and OK leave rest
 * inside the input; SYNTAX leaves nothing behind; an OK mailbox put back
 * in brackets parses to itself.
 */
#include "fuzz.h"
#include "smtp_proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
fuzz_ok(const struct smtp_path *path)
{
	struct smtp_path again;
	char buf[SMTP_PATH_MAX + 2];
	const char *rest;
	size_t i, mlen, dlen;
	unsigned char c;

	mlen = strlen(path->mailbox);
	dlen = strlen(path->domain);
	FUZZ_ASSERT(mlen < sizeof(path->mailbox));
	FUZZ_ASSERT(dlen < sizeof(path->domain));
	for (i = 0; i < mlen; i++) {
		c = (unsigned char)path->mailbox[i];
		FUZZ_ASSERT(c >= 0x20 && c != 0x7f);
	}
	FUZZ_ASSERT(!(path->is_null && path->is_postmaster));
	if (path->is_null) {
		FUZZ_ASSERT(mlen == 0 && dlen == 0);
		return;
	}
	if (path->is_postmaster) {
		FUZZ_ASSERT(strcmp(path->mailbox, "postmaster") == 0);
		FUZZ_ASSERT(dlen == 0);
	} else {
		FUZZ_ASSERT(dlen > 0 && dlen <= SMTP_DOMAIN_MAX);
		FUZZ_ASSERT(path->domain[0] != '[' && path->domain[0] != '.');
		for (i = 0; i < dlen; i++) {
			c = (unsigned char)path->domain[i];
			FUZZ_ASSERT((c >= 'a' && c <= 'z') ||
			    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '.' || c >= 0x80);
		}
		FUZZ_ASSERT(strstr(path->domain, "..") == NULL);
		/* The domain is the mailbox's tail, after one '@'. */
		FUZZ_ASSERT(mlen > dlen + 1);
		FUZZ_ASSERT(path->mailbox[mlen - dlen - 1] == '@');
		FUZZ_ASSERT(strcmp(path->mailbox + mlen - dlen,
		    path->domain) == 0);
	}

	/* What we store and later send parses back to the same thing. */
	buf[0] = '<';
	memcpy(buf + 1, path->mailbox, mlen);
	buf[mlen + 1] = '>';
	buf[mlen + 2] = '\0';
	FUZZ_ASSERT(smtp_proto_parse_path(buf, &again, &rest) ==
	    SMTP_PATH_OK);
	FUZZ_ASSERT(strcmp(again.mailbox, path->mailbox) == 0);
	FUZZ_ASSERT(strcmp(again.domain, path->domain) == 0);
	FUZZ_ASSERT(again.is_postmaster == path->is_postmaster);
	FUZZ_ASSERT(!again.is_null && *rest == '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_path path;
	enum smtp_path_status st;
	const char *rest = NULL;
	char *in;
	size_t len;

	if (size > SMTP_LINE_MAX)
		return 0;
	/* An exact-size copy, so ASan sees any read past the NUL. */
	in = malloc(size + 1);
	if (in == NULL)
		abort();
	memcpy(in, data, size);
	in[size] = '\0';
	len = strlen(in);

	/* Poison the output so a field left unset shows. */
	memset(&path, 0xa5, sizeof(path));
	st = smtp_proto_parse_path(in, &path, &rest);
	switch (st) {
	case SMTP_PATH_SYNTAX:
		FUZZ_ASSERT(rest == NULL);
		FUZZ_ASSERT(path.mailbox[0] == '\0' && path.domain[0] == '\0');
		FUZZ_ASSERT(!path.is_null && !path.is_postmaster);
		break;
	case SMTP_PATH_ROUTED:
		FUZZ_ASSERT(!path.is_null && !path.is_postmaster);
		FUZZ_ASSERT(strlen(path.mailbox) < sizeof(path.mailbox));
		FUZZ_ASSERT(strlen(path.domain) < sizeof(path.domain));
		/* FALLTHROUGH */
	case SMTP_PATH_OK:
		FUZZ_ASSERT(rest != NULL && rest > in && rest <= in + len);
		FUZZ_ASSERT(*rest != ' ');
		FUZZ_ASSERT(rest[-1] == '>' || rest[-1] == ' ');
		if (st == SMTP_PATH_OK)
			fuzz_ok(&path);
		break;
	}
	free(in);
	return 0;
}
