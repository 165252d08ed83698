#include "tls.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "xmalloc.h"

/* TLS 1.2 suites with forward secrecy and AEAD; 1.3 uses OpenSSL's own. */
#define TLS_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

struct tls {
	const struct config	*cf;
	SSL_CTX			*server;	/* NULL: no STARTTLS offered */
	SSL_CTX			*client;
	enum config_tls		 policy;
};

/* Append one OpenSSL error (code e, or text s) to out; false when full. */
static bool
tls_error_append(char *out, size_t outlen, size_t *used, unsigned long e,
    const char *s)
{
	char buf[256];
	int n;

	if (s == NULL) {
		ERR_error_string_n(e, buf, sizeof(buf));
		s = buf;
	}
	n = snprintf(out + *used, outlen - *used, "%s%s", *used ? "; " : "",
	    s);
	if (n < 0 || (size_t)n >= outlen - *used)
		return false;
	*used += (size_t)n;
	return true;
}

void
tls_error_string(char *out, size_t outlen)
{
	unsigned long e;
	size_t used = 0;

	out[0] = '\0';
	while ((e = ERR_get_error()) != 0)
		if (!tls_error_append(out, outlen, &used, e, NULL))
			break;
	if (out[0] == '\0')
		util_copy(out, outlen, "unknown TLS error");
}

static SSL_CTX *
tls_ctx_new(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (ctx == NULL)
		fatalx("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS) != 1)
		fatalx("SSL_CTX_set_cipher_list");
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/*
 * Whether this process can open the configured cert and key: 0, or -1 with
 * why ("PATH: strerror") naming the first file it cannot open.  A
 * missing or unreadable pair is the normal state of a new machine before
 * certbot ran, unlike a pair that does not load.
 */
static int
tls_pair_open_check(const struct config *cf, char *why, size_t whylen)
{
	const char *paths[2] = { cf->tls_cert, cf->tls_key };
	FILE *fp;
	size_t i;

	for (i = 0; i < 2; i++) {
		if ((fp = fopen(paths[i], "r")) == NULL) {
			snprintf(why, whylen, "%s: %s", paths[i],
			    strerror(errno));
			return -1;
		}
		fclose(fp);
	}
	return 0;
}

/* A server context from the configured pair, or NULL with err filled. */
static SSL_CTX *
tls_server_ctx_try(const struct config *cf, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_server_method());

	if (SSL_CTX_use_certificate_chain_file(ctx, cf->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cf->tls_key, SSL_FILETYPE_PEM) !=
	    1 || SSL_CTX_check_private_key(ctx) != 1) {
		tls_error_string(err, errlen);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Sessions are short and one-shot; no cache to bound. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

/* A server context from the configured pair, or NULL (logged). */
static SSL_CTX *
tls_server_ctx_load(const struct config *cf)
{
	SSL_CTX *ctx;
	char err[512];

	if ((ctx = tls_server_ctx_try(cf, err, sizeof(err))) == NULL)
		log_warnx("tls cannot load cert=%s key=%s reason=\"%s\"",
		    cf->tls_cert, cf->tls_key, err);
	return ctx;
}

/* The leaf certificate's notAfter as unix time; 0 if unknown. */
static double
tls_ctx_expiry(SSL_CTX *ctx)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	const ASN1_TIME *t;
	struct tm tm;

	if (x == NULL || (t = X509_get0_notAfter(x)) == NULL ||
	    ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (double)timegm(&tm);
}

/* holdfast_tls_ready and the expiry gauge follow the server context. */
static void
tls_metrics_update(const struct tls *tls)
{
	metrics_set(M_TLS_READY, tls->server != NULL ? 1 : 0);
	metrics_set(M_TLS_CERT_EXPIRY, tls->server != NULL ?
	    tls_ctx_expiry(tls->server) : 0);
}

enum tls_check
tls_check(const struct config *cf, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	err[0] = '\0';
	if (*cf->tls_cert == '\0')
		return TLS_CHECK_OK;
	if (tls_pair_open_check(cf, err, errlen) == -1)
		return TLS_CHECK_MISSING;
	if ((ctx = tls_server_ctx_try(cf, err, errlen)) == NULL)
		return TLS_CHECK_INVALID;
	SSL_CTX_free(ctx);
	return TLS_CHECK_OK;
}

struct tls *
tls_new(const struct config *cf)
{
	struct tls *tls = xcalloc(1, sizeof(*tls));
	char err[512];

	tls->cf = cf;
	tls->policy = cf->primary_tls_policy;
	if (*cf->tls_cert != '\0') {
		/* Before the first certificate exists (certbot has not run
		 * yet): serve without STARTTLS until a SIGHUP finds it. */
		if (tls_pair_open_check(cf, err, sizeof(err)) == -1)
			log_warnx("tls certificate not available, STARTTLS off "
			    "until a reload finds it: cert=%s key=%s "
			    "reason=\"%s\"", cf->tls_cert, cf->tls_key, err);
		else if ((tls->server = tls_server_ctx_load(cf)) == NULL)
			goto fail;
	}
	tls_metrics_update(tls);
	tls->client = tls_ctx_new(TLS_client_method());
	if (tls->policy == CONFIG_TLS_VERIFY) {
		int rc = *cf->primary_tls_ca != '\0' ?
		    SSL_CTX_load_verify_locations(tls->client,
		    cf->primary_tls_ca, NULL) :
		    SSL_CTX_set_default_verify_paths(tls->client);

		if (rc != 1) {
			tls_error_string(err, sizeof(err));
			log_warnx("tls cannot load CA %s reason=\"%s\"",
			    *cf->primary_tls_ca ? cf->primary_tls_ca :
			    "(system)", err);
			goto fail;
		}
		SSL_CTX_set_verify(tls->client, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(tls->client, SSL_VERIFY_NONE, NULL);
	return tls;
fail:
	tls_free(tls);
	return NULL;
}

void
tls_free(struct tls *tls)
{
	if (tls == NULL)
		return;
	SSL_CTX_free(tls->server);
	SSL_CTX_free(tls->client);
	free(tls);
}

int
tls_reload(struct tls *tls)
{
	SSL_CTX *ctx;
	char err[512];

	if (*tls->cf->tls_cert == '\0')
		return 0;
	if (tls_pair_open_check(tls->cf, err, sizeof(err)) == -1 ||
	    (ctx = tls_server_ctx_try(tls->cf, err, sizeof(err))) == NULL) {
		log_warnx("tls reload failed; %s: cert=%s key=%s reason=\"%s\"",
		    tls->server != NULL ? "keeping the old certificate" :
		    "STARTTLS stays off", tls->cf->tls_cert, tls->cf->tls_key,
		    err);
		return -1;
	}
	/* Sessions hold their own reference to the old context. */
	SSL_CTX_free(tls->server);
	tls->server = ctx;
	tls_metrics_update(tls);
	log_info("tls reloaded cert=%s", tls->cf->tls_cert);
	return 0;
}

bool
tls_server_enabled(const struct tls *tls)
{
	return tls != NULL && tls->server != NULL;
}

time_t
tls_server_not_after(const struct tls *tls)
{
	return tls_server_enabled(tls) ? (time_t)tls_ctx_expiry(tls->server) :
	    0;
}

enum config_tls
tls_client_policy(const struct tls *tls)
{
	return tls == NULL ? CONFIG_TLS_NONE : tls->policy;
}

SSL *
tls_server_ssl(struct tls *tls)
{
	SSL *ssl;

	if (!tls_server_enabled(tls))
		return NULL;
	if ((ssl = SSL_new(tls->server)) == NULL)
		fatalx("SSL_new");
	return ssl;
}

SSL *
tls_client_ssl(struct tls *tls)
{
	const struct config *cf = tls->cf;
	const char *name = *cf->primary_tls_name != '\0' ?
	    cf->primary_tls_name : cf->primary_host;
	SSL *ssl;

	if ((ssl = SSL_new(tls->client)) == NULL)
		fatalx("SSL_new");
	/* SNI only for names, never for address literals. */
	if (strspn(name, "0123456789.") != strlen(name) &&
	    strchr(name, ':') == NULL)
		SSL_set_tlsext_host_name(ssl, name);
	if (tls->policy == CONFIG_TLS_VERIFY) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, name) != 1)
			fatalx("SSL_set1_host");
	}
	return ssl;
}

void
tls_describe(SSL *ssl, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
}

void
tls_bufferevent_error(struct bufferevent *bev, char *out, size_t outlen)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e;
	size_t used = 0;
	long vr;

	out[0] = '\0';
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!tls_error_append(out, outlen, &used, e, NULL))
			return;
	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		char buf[200];

		snprintf(buf, sizeof(buf), "certificate: %s",
		    X509_verify_cert_error_string(vr));
		tls_error_append(out, outlen, &used, 0, buf);
		return;
	}
	if (out[0] == '\0')
		tls_error_string(out, outlen);
}
