#include "tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "xmalloc.h"

/* TLS 1.2 suites with forward secrecy and AEAD; 1.3 uses OpenSSL's own. */
#define TLS_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

struct tls {
	const struct config	*cf;
	SSL_CTX			*server;	/* NULL: no STARTTLS offered */
	SSL_CTX			*client;
	enum tls_policy		 policy;
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

/* A server context from the configured pair, or NULL (logged). */
static SSL_CTX *
tls_server_ctx_load(const struct config *cf)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_server_method());
	char err[512];

	if (SSL_CTX_use_certificate_chain_file(ctx, cf->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cf->tls_key, SSL_FILETYPE_PEM) !=
	    1 || SSL_CTX_check_private_key(ctx) != 1) {
		tls_error_string(err, sizeof(err));
		log_warnx("tls cannot load cert=%s key=%s reason=\"%s\"",
		    cf->tls_cert, cf->tls_key, err);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Sessions are short and one-shot; no cache to bound. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

static const struct {
	const char	*name;
	enum tls_policy	 policy;
} tls_policies[] = {
	{ "none", TLS_POLICY_NONE },
	{ "may", TLS_POLICY_MAY },
	{ "encrypt", TLS_POLICY_ENCRYPT },
	{ "verify", TLS_POLICY_VERIFY },
};

struct tls *
tls_new(const struct config *cf)
{
	struct tls *tls = xcalloc(1, sizeof(*tls));
	char err[512];
	size_t i;

	tls->cf = cf;
	tls->policy = TLS_POLICY_MAY;
	for (i = 0; i < UTIL_ARRAY_LEN(tls_policies); i++)
		if (strcmp(cf->primary_tls, tls_policies[i].name) == 0)
			tls->policy = tls_policies[i].policy;
	if (*cf->tls_cert != '\0' &&
	    (tls->server = tls_server_ctx_load(cf)) == NULL)
		goto fail;
	tls->client = tls_ctx_new(TLS_client_method());
	if (tls->policy == TLS_POLICY_VERIFY) {
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

	if (*tls->cf->tls_cert == '\0')
		return 0;
	if ((ctx = tls_server_ctx_load(tls->cf)) == NULL) {
		log_warnx("tls reload failed; keeping the old certificate");
		return -1;
	}
	/* Sessions hold their own reference to the old context. */
	SSL_CTX_free(tls->server);
	tls->server = ctx;
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
	const X509 *x;
	const ASN1_TIME *t;
	struct tm tm;

	if (!tls_server_enabled(tls) ||
	    (x = SSL_CTX_get0_certificate(tls->server)) == NULL ||
	    (t = X509_get0_notAfter(x)) == NULL ||
	    ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

enum tls_policy
tls_client_policy(const struct tls *tls)
{
	return tls == NULL ? TLS_POLICY_NONE : tls->policy;
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
	if (tls->policy == TLS_POLICY_VERIFY) {
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
