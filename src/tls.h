/*
 * tls: the OpenSSL contexts, with no SMTP knowledge.
 *
 * The server context comes from [tls] cert and key (PEM, as certbot writes
 * fullchain.pem and privkey.pem) and is swapped on tls_reload() (SIGHUP);
 * a broken new pair keeps the old one, and a pair that cannot be opened
 * yet leaves STARTTLS off until a reload finds it.  The client context is for the
 * primary ([primary] tls, tls_ca, tls_name).  Both allow TLS 1.2 and 1.3
 * with a modern cipher list.  SSL objects returned are owned by the caller
 * (usually handed to a bufferevent that frees them); they keep their
 * context alive, so a reload never disturbs a session.
 */
#ifndef HOLDFAST_TLS_H
#define HOLDFAST_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>

#include "config.h"

struct bufferevent;
struct config;
struct tls;

enum tls_check {
	TLS_CHECK_OK,		/* no pair configured, or it loads */
	TLS_CHECK_MISSING,	/* cert or key cannot be opened (yet) */
	TLS_CHECK_INVALID,	/* opened but unusable: bad PEM, no match */
};

/*
 * NULL (logged) if a configured pair that exists, or a CA, cannot be used.
 * A pair that cannot be opened (certbot has not run yet) is a warning:
 * no STARTTLS until tls_reload() finds it.  Sets holdfast_tls_ready and
 * holdfast_tls_cert_expiry_timestamp_seconds, as tls_reload() does.
 */
struct tls *tls_new(const struct config *cf);
/* For holdfast -n: can the configured pair be opened and loaded?  err gets
 * the file and reason unless TLS_CHECK_OK. */
enum tls_check tls_check(const struct config *cf, char *err, size_t errlen);
void tls_free(struct tls *tls);
/* Reload the server certificate and key: 0, or -1 (logged; the old pair
 * stays in use). */
int tls_reload(struct tls *tls);

bool tls_server_enabled(const struct tls *tls);
/* notAfter of the server certificate in use (UNIX time), 0 if none. */
time_t tls_server_not_after(const struct tls *tls);
/* [primary] tls; CONFIG_TLS_NONE without a tls. */
enum config_tls tls_client_policy(const struct tls *tls);
/* A new SSL for an inbound STARTTLS; NULL if not enabled. */
SSL *tls_server_ssl(struct tls *tls);
/* A new SSL for STARTTLS to the primary, with SNI and (under verify) the
 * name to check. */
SSL *tls_client_ssl(struct tls *tls);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and the Received header. */
void tls_describe(SSL *ssl, char *out, size_t outlen);
/* Why TLS failed on bev (an OpenSSL filter): its queued errors and any
 * certificate verification failure, as one line. */
void tls_bufferevent_error(struct bufferevent *bev, char *out,
    size_t outlen);
/* The last OpenSSL error queue as one line (emptied). */
void tls_error_string(char *out, size_t outlen);

#endif
