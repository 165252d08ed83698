#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "net.h"
#include "util.h"
#include "xmalloc.h"

enum config_type {
	CONFIG_T_STRING,
	CONFIG_T_HOST,		/* a hostname: letters, digits, - . only */
	CONFIG_T_LIST,		/* comma-separated, may repeat */
	CONFIG_T_LISTEN,	/* a list of addr:port[ proxy] */
	CONFIG_T_HOSTPORT,	/* one addr:port, or "" */
	CONFIG_T_DOMAINS,	/* a list of domains, lowercased */
	CONFIG_T_CIDRS,		/* a list of addr/len */
	CONFIG_T_DNSBL,		/* a list of zone[=filter][*weight] */
	CONFIG_T_ADDR,		/* one address literal, IPv4 or IPv6 */
	CONFIG_T_DNS_SERVER,	/* an address literal, optional :port
				 * ([v6]:port), 53 when none */
	CONFIG_T_ENUM,		/* one of the key's words */
	CONFIG_T_UINT,
	CONFIG_T_SIZE,
	CONFIG_T_DURATION,
};

struct config_key {
	const char		*section;
	const char		*name;
	enum config_type	 type;
	size_t			 offset;
	const char		*def;	/* NULL: required */
	uint64_t		 min, max;
	const char		*help;
	/* Named in the rows that use them (the rest are 0): */
	size_t			 typed;	/* the parsed twin of the field */
	const char		*words;	/* ENUM: "a|b|c", in enum order */
};

#define OFF(f) offsetof(struct config, f)

/* FNV-1a, 64 bits: enough to tell that the file changed. */
#define CONFIG_FNV_INIT	0xcbf29ce484222325ULL

static uint64_t
config_fnv(uint64_t h, const char *p, size_t n)
{
	while (n-- > 0) {
		h ^= (unsigned char)*p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define NOMAX UINT64_MAX

/* Rows set typed and words by name; the others leave them 0. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct config_key config_keys[] = {
	{ "server", "hostname", CONFIG_T_HOST, OFF(hostname), NULL, 0, 0,
	  "name in the banner, EHLO reply and Received header" },
	{ "server", "listen", CONFIG_T_LISTEN, OFF(listen), NULL, 0, 0,
	  "address:port to accept SMTP on; repeatable",
	  .typed = OFF(listen_addrs) },
	{ "server", "domains", CONFIG_T_DOMAINS, OFF(domains), NULL, 0, 0,
	  "relay domains: every recipient in them is accepted" },
	{ "server", "max_message_size", CONFIG_T_SIZE, OFF(max_message_size),
	  "50M", 1024, NOMAX, "largest message accepted, in stored bytes" },
	{ "server", "max_recipients", CONFIG_T_UINT, OFF(max_recipients),
	  "100", 1, 100000, "recipients per message; more get 452" },
	{ "server", "max_sessions", CONFIG_T_UINT, OFF(max_sessions),
	  "500", 1, 100000, "open inbound sessions; more get 421" },
	{ "server", "timeout", CONFIG_T_DURATION, OFF(timeout), "300s", 1,
	  86400, "idle time allowed per command or DATA read" },
	{ "server", "min_data_rate", CONFIG_T_SIZE, OFF(min_data_rate), "64",
	  0, NOMAX, "slowest DATA, octets/s over 30 s; slower is cut" },
	{ "server", "proxy_from", CONFIG_T_CIDRS, OFF(proxy_from), "", 0, 0,
	  "CIDRs allowed to send a PROXY header on a proxy listener",
	  .typed = OFF(proxy_from_nets) },
	{ "server", "user", CONFIG_T_STRING, OFF(user), "holdfast", 0, 0,
	  "user to run as after binding, when started as root" },
	{ "server", "group", CONFIG_T_STRING, OFF(group), "holdfast", 0, 0,
	  "group to run as after binding, when started as root" },
	{ "spool", "dir", CONFIG_T_STRING, OFF(spool_dir), NULL, 0, 0,
	  "spool directory (tmp/ queue/ dead/ ... below it)" },
	{ "spool", "queue_lifetime", CONFIG_T_DURATION, OFF(queue_lifetime),
	  "30d", 1, NOMAX, "age at which a queued message goes to dead/" },
	{ "spool", "bounce_lifetime", CONFIG_T_DURATION, OFF(bounce_lifetime),
	  "1d", 1, NOMAX, "the same for messages from the null sender <>" },
	{ "spool", "commit_workers", CONFIG_T_UINT, OFF(commit_workers), "4",
	  1, 64, "threads that fsync commits off the event loop" },
	{ "spool", "min_free", CONFIG_T_SIZE, OFF(min_free), "100M", 0, NOMAX,
	  "below this much free space new mail gets 452 4.3.1" },
	{ "screen", "greet_wait", CONFIG_T_DURATION, OFF(greet_wait), "2s", 0,
	  30, "pregreet test: banner delay; talking first gets 421 (0: off)" },
	{ "screen", "dnsbl", CONFIG_T_DNSBL, OFF(dnsbl), "", 0, 0,
	  "DNSBL zones as zone[=filter][*weight] (Postfix's syntax)" },
	{ "screen", "dnsbl_threshold", CONFIG_T_UINT, OFF(dnsbl_threshold),
	  "1", 1, 1000, "summed weight at which RCPT gets 450 4.7.1" },
	{ "screen", "dns_server", CONFIG_T_DNS_SERVER, OFF(screen_dns_server),
	  "", 0, 0, "ip[:port] for DNSBL lookups (default: the system's)",
	  .typed = OFF(screen_dns_addr) },
	{ "screen", "allow", CONFIG_T_CIDRS, OFF(screen_allow), "", 0, 0,
	  "CIDRs that skip every screen and per-address limit",
	  .typed = OFF(screen_allow_nets) },
	{ "screen", "max_sessions_per_ip", CONFIG_T_UINT,
	  OFF(max_sessions_per_ip), "50", 1, 100000,
	  "open sessions from one address; more get 421 4.7.0" },
	{ "screen", "conn_rate", CONFIG_T_UINT, OFF(conn_rate), "60", 1,
	  1000000, "new connections per minute from one address (421)" },
	{ "screen", "msg_rate", CONFIG_T_UINT, OFF(msg_rate), "120", 1,
	  1000000, "messages per minute from one address (451 4.7.1)" },
	{ "primary", "host", CONFIG_T_STRING, OFF(primary_host), NULL, 0, 0,
	  "the primary's address or name; never an MX lookup" },
	{ "primary", "port", CONFIG_T_UINT, OFF(primary_port), "25", 1, 65535,
	  "the primary's port" },
	{ "primary", "connections", CONFIG_T_UINT, OFF(primary_connections),
	  "2", 1, 100, "parallel connections to the primary" },
	{ "primary", "probe_interval", CONFIG_T_DURATION, OFF(probe_interval),
	  "30s", 1, 86400, "how often a down primary is tried" },
	{ "primary", "retry_min", CONFIG_T_DURATION, OFF(retry_min), "5m", 1,
	  NOMAX, "first retry delay after a 4xx for a message" },
	{ "primary", "retry_max", CONFIG_T_DURATION, OFF(retry_max), "1h", 1,
	  NOMAX, "largest retry delay (the delay doubles up to it)" },
	{ "primary", "connect_timeout", CONFIG_T_DURATION,
	  OFF(connect_timeout), "30s", 1, 3600, "connect and banner timeout" },
	{ "primary", "timeout", CONFIG_T_DURATION, OFF(primary_timeout),
	  "300s", 1, 86400, "timeout for each reply from the primary" },
	{ "primary", "helo_name", CONFIG_T_HOST, OFF(helo_name), "", 0, 0,
	  "name sent in EHLO (default: [server] hostname)" },
	{ "primary", "etrn_from", CONFIG_T_CIDRS, OFF(etrn_from), "", 0, 0,
	  "CIDRs whose ETRN starts a drain at once (others get 458)",
	  .typed = OFF(etrn_from_nets) },
	{ "primary", "refuse_limit", CONFIG_T_UINT, OFF(refuse_limit), "5", 1,
	  10000, "5xx for this many messages in a row pause the drain" },
	{ "primary", "refuse_pause", CONFIG_T_DURATION, OFF(refuse_pause),
	  "1h", 1, NOMAX, "how long such a pause lasts (flush ends it)" },
	{ "primary", "tls", CONFIG_T_ENUM, OFF(primary_tls), "may", 0, 0,
	  "STARTTLS to the primary", .typed = OFF(primary_tls_policy),
	  .words = "none|may|encrypt|verify" },
	{ "primary", "tls_ca", CONFIG_T_STRING, OFF(primary_tls_ca), "", 0, 0,
	  "CA file for tls = verify (default: the system's)" },
	{ "primary", "tls_name", CONFIG_T_STRING, OFF(primary_tls_name), "",
	  0, 0, "name to verify and send as SNI (default: host)" },
	{ "primary", "source", CONFIG_T_ADDR, OFF(primary_source), "", 0, 0,
	  "local address the drain binds to (default: the kernel's)",
	  .typed = OFF(primary_source_addr) },
	{ "tls", "cert", CONFIG_T_STRING, OFF(tls_cert), "", 0, 0,
	  "PEM certificate chain for STARTTLS (e.g. fullchain.pem)" },
	{ "tls", "key", CONFIG_T_STRING, OFF(tls_key), "", 0, 0,
	  "PEM private key (e.g. privkey.pem)" },
	{ "control", "socket", CONFIG_T_STRING, OFF(control_socket),
	  "/run/holdfast/control.sock", 0, 0,
	  "control socket path (its directory is created if missing)" },
	{ "control", "group", CONFIG_T_STRING, OFF(control_group), "", 0, 0,
	  "group allowed to use the control socket (mode 0660)" },
	{ "metrics", "listen", CONFIG_T_HOSTPORT, OFF(metrics_listen), "", 0,
	  0, "address:port for /metrics and /healthz (default: off)",
	  .typed = OFF(metrics_addr) },
	{ "metrics", "allow", CONFIG_T_CIDRS, OFF(metrics_allow),
	  "127.0.0.0/8, ::1/128", 0, 0, "CIDRs allowed to scrape; others are closed at accept",
	  .typed = OFF(metrics_allow_nets) },
	{ "notify", "exec", CONFIG_T_STRING, OFF(notify_exec), "", 0, 0,
	  "program and arguments run on events, no shell (default: off)" },
	{ "notify", "primary_down_after", CONFIG_T_DURATION,
	  OFF(notify_primary_down_after), "10m", 1, NOMAX,
	  "primary down this long: notice primary-down" },
	{ "notify", "timeout", CONFIG_T_DURATION, OFF(notify_timeout), "30s",
	  1, 3600, "the program is killed after this long" },
	{ "notify", "repeat_interval", CONFIG_T_DURATION,
	  OFF(notify_repeat_interval), "10m", 0, NOMAX,
	  "the same event again within this is suppressed (counted)" },
};
#pragma GCC diagnostic pop

static void
config_list_add(struct config_list *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
}

static void
config_list_free(struct config_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static char *
config_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static bool
config_is_hostname(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.')
			return false;
	return true;
}

static int config_dnsbl_add(struct config *cf, const char *item);

/* The index of val among words "a|b|c", or -1. */
static int
config_word(const char *words, const char *val)
{
	size_t n = strlen(val);
	const char *p = words, *bar;
	int i;

	for (i = 0;; i++) {
		bar = strchr(p, '|');
		if ((size_t)(bar != NULL ? bar - p : (ptrdiff_t)strlen(p)) ==
		    n && strncmp(p, val, n) == 0)
			return i;
		if (bar == NULL)
			return -1;
		p = bar + 1;
	}
}

/* "addr:port[ proxy]" into *sa (text allocated); -1 if malformed. */
static int
config_sockaddr_parse(const char *val, bool proxy_ok,
    struct config_sockaddr *sa)
{
	char addr[NET_ADDR_MAX + 16];

	memset(sa, 0, sizeof(*sa));
	if (config_listen_split(val, addr, sizeof(addr), &sa->proxy) == -1 ||
	    (sa->proxy && !proxy_ok) ||
	    net_parse_hostport(addr, &sa->ss, &sa->sslen) == -1) {
		memset(sa, 0, sizeof(*sa));
		return -1;
	}
	sa->text = xstrdup(addr);
	return 0;
}

/* Check one item of a list key, normalise it in place and add its parsed
 * form to the key's typed twin; NULL or a reason. */
static const char *
config_item(struct config *cf, const struct config_key *k, char *item)
{
	void *typed = (char *)cf + k->typed;
	size_t n;

	switch (k->type) {
	case CONFIG_T_DOMAINS:
		for (char *c = item; *c != '\0'; c++)
			*c = (char)tolower((unsigned char)*c);
		n = strlen(item);
		if (n > 1 && item[n - 1] == '.')
			item[n - 1] = '\0';
		/* One root dot is tolerated; empty labels ("a..b", ".a",
		 * "a..") never match. */
		if (!config_is_hostname(item) || strchr(item, '.') == NULL ||
		    item[0] == '.' || strstr(item, "..") ||
		    item[strlen(item) - 1] == '.')
			return "not a domain name";
		return NULL;
	case CONFIG_T_CIDRS: {
		struct config_cidrs *l = typed;
		struct net_cidr c;

		if (net_cidr_parse(item, &c) == -1)
			return "not an address or CIDR";
		l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
		l->v[l->n++] = c;
		return NULL;
	}
	case CONFIG_T_LISTEN: {
		struct config_sockaddrs *l = typed;
		struct config_sockaddr sa;

		if (config_sockaddr_parse(item, true, &sa) == -1)
			return "not address:port (with \" proxy\" after it "
			    "for a PROXY listener)";
		l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
		l->v[l->n++] = sa;
		return NULL;
	}
	case CONFIG_T_DNSBL:
		if (config_dnsbl_add(cf, item) == -1)
			return "not zone[=filter][*weight] (filter d.d.d.d, "
			    "each d a number or [n;n..m]; weight "
			    "-1000..1000, not 0)";
		return NULL;
	case CONFIG_T_LIST:
		return NULL;	/* any text */
	case CONFIG_T_STRING:
	case CONFIG_T_HOST:
	case CONFIG_T_HOSTPORT:
	case CONFIG_T_ADDR:
	case CONFIG_T_DNS_SERVER:
	case CONFIG_T_ENUM:
	case CONFIG_T_UINT:
	case CONFIG_T_SIZE:
	case CONFIG_T_DURATION:
		break;
	}
	abort();	/* not a list: never split into items */
}

/* A comma-separated value: each item checked, parsed and appended. */
static const char *
config_set_list(struct config *cf, const struct config_key *k,
    const char *val)
{
	struct config_list *l = (struct config_list *)((char *)cf + k->offset);
	char *copy = xstrdup(val), *p = copy, *item;
	const char *why = NULL;

	while (why == NULL && (item = strsep(&p, ",")) != NULL) {
		item = config_trim(item);
		if (*item == '\0')
			continue;
		if ((why = config_item(cf, k, item)) == NULL)
			config_list_add(l, item);
	}
	free(copy);
	return why;
}

static const char *
config_set_number(struct config *cf, const struct config_key *k,
    const char *val)
{
	uint64_t v = 0;
	int rc;

	rc = k->type == CONFIG_T_SIZE ? util_parse_size(val, &v) :
	    k->type == CONFIG_T_DURATION ? util_parse_duration(val, &v) :
	    util_parse_u64(val, &v);
	if (rc == -1)
		return k->type == CONFIG_T_SIZE ? "not a size (e.g. 50M)" :
		    k->type == CONFIG_T_DURATION ?
		    "not a duration (e.g. 30s, 5m, 1h, 30d)" : "not a number";
	if (v < k->min || v > k->max)
		return "out of range";
	*(uint64_t *)(void *)((char *)cf + k->offset) = v;
	return NULL;
}

_Static_assert(sizeof(enum config_tls) == sizeof(int),
    "an ENUM key's typed twin is stored as an int");

/* Parse one value into its field and its typed twin; NULL or a reason
 * (for an ENUM, the caller lists the words). */
static const char *
config_set(struct config *cf, const struct config_key *k, const char *val)
{
	char **field = (char **)(void *)((char *)cf + k->offset);
	void *typed = (char *)cf + k->typed;

	switch (k->type) {
	case CONFIG_T_ENUM: {
		int w = config_word(k->words, val);

		if (w == -1)
			return "not one of";
		*(int *)typed = w;
		break;
	}
	case CONFIG_T_HOST:
		if (*val != '\0' && !config_is_hostname(val))
			return "not a hostname";
		break;
	case CONFIG_T_ADDR: {
		struct config_sockaddr sa = { .sslen = 0 };

		if (*val != '\0' &&
		    net_addr_parse(val, &sa.ss, &sa.sslen) == -1)
			return "not an IPv4 or IPv6 address";
		*(struct config_sockaddr *)typed = sa;
		break;
	}
	case CONFIG_T_DNS_SERVER: {
		struct config_sockaddr sa = { .sslen = 0 };

		if (*val == '\0')
			;
		else if (net_literal(val, 53, &sa.ss, &sa.sslen) == 0)
			;
		else if (net_parse_hostport(val, &sa.ss, &sa.sslen) == -1)
			return "not ip[:port]";
		*(struct config_sockaddr *)typed = sa;
		break;
	}
	case CONFIG_T_HOSTPORT: {
		struct config_sockaddr sa = { .sslen = 0 };

		if (*val != '\0' &&
		    config_sockaddr_parse(val, false, &sa) == -1)
			return "not address:port";
		free(((struct config_sockaddr *)typed)->text);
		*(struct config_sockaddr *)typed = sa;
		break;
	}
	case CONFIG_T_STRING:
		break;
	case CONFIG_T_LIST:
	case CONFIG_T_LISTEN:
	case CONFIG_T_CIDRS:
	case CONFIG_T_DNSBL:
	case CONFIG_T_DOMAINS:
		return config_set_list(cf, k, val);
	case CONFIG_T_UINT:
	case CONFIG_T_SIZE:
	case CONFIG_T_DURATION:
		return config_set_number(cf, k, val);
	}
	free(*field);
	*field = xstrdup(val);
	return NULL;
}

static const struct config_key *
config_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++)
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

/* One octet pattern of a filter: a number, or [n;n..m;...]. */
static int
config_dnsbl_octet(const char *s, unsigned char bits[32])
{
	const char *p = s;
	bool bracket = *p == '[';

	if (bracket)
		p++;
	for (;;) {
		unsigned long lo, hi, v;
		char *end;

		if (!isdigit((unsigned char)*p))
			return -1;
		lo = strtoul(p, &end, 10);
		p = end;
		hi = lo;
		if (bracket && p[0] == '.' && p[1] == '.') {
			if (!isdigit((unsigned char)p[2]))
				return -1;
			hi = strtoul(p + 2, &end, 10);
			p = end;
		}
		if (lo > 255 || hi > 255 || lo > hi)
			return -1;
		for (v = lo; v <= hi; v++)
			bits[v / 8] |= (unsigned char)(1u << (v % 8));
		if (!bracket)
			return *p == '\0' ? 0 : -1;
		if (*p == ';') {
			p++;
			continue;
		}
		return p[0] == ']' && p[1] == '\0' ? 0 : -1;
	}
}

int
config_dnsbl_parse(const char *s, struct config_dnsbl *out, char *err,
    size_t errlen)
{
	char *copy = xstrdup(s), *eq, *star, *zone, *c;
	long w = 1;

	memset(out, 0, sizeof(*out));
	if ((star = strrchr(copy, '*')) != NULL) {
		char *end;

		*star++ = '\0';
		errno = 0;
		w = strtol(star, &end, 10);
		if (end == star || *end != '\0' || errno != 0 || w == 0 ||
		    w < -1000 || w > 1000) {
			snprintf(err, errlen, "bad weight in %s (an integer "
			    "-1000..1000, not 0)", s);
			goto fail;
		}
	}
	if ((eq = strchr(copy, '=')) != NULL) {
		char *oct[4], *p;
		int i;

		*eq++ = '\0';
		p = eq;
		for (i = 0; i < 4; i++) {
			/* Dots split octets, but ".." is a range inside []. */
			oct[i] = p;
			if (*p == '[')
				p = strchr(p, ']');
			if (p != NULL)
				p = strchr(p, '.');
			if (i < 3) {
				if (p == NULL)
					break;
				*p++ = '\0';
			} else if (p != NULL)
				break;
		}
		if (i < 4) {
			snprintf(err, errlen, "bad filter in %s (d.d.d.d, "
			    "each d a number or [n;n..m])", s);
			goto fail;
		}
		for (i = 0; i < 4; i++)
			if (config_dnsbl_octet(oct[i], out->filter[i]) == -1) {
				snprintf(err, errlen, "bad filter in %s "
				    "(d.d.d.d, each d a number or [n;n..m])",
				    s);
				goto fail;
			}
		out->has_filter = true;
	}
	zone = copy;
	for (c = zone; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	if (*zone != '\0' && zone[strlen(zone) - 1] == '.')
		zone[strlen(zone) - 1] = '\0';
	if (!config_is_hostname(zone) || strchr(zone, '.') == NULL ||
	    zone[0] == '.' || strstr(zone, "..") != NULL) {
		snprintf(err, errlen, "bad zone in %s", s);
		goto fail;
	}
	out->zone = xstrdup(zone);
	out->weight = (int)w;
	free(copy);
	return 0;
fail:
	free(copy);
	memset(out, 0, sizeof(*out));
	return -1;
}

/* Parse the blank-separated entries of one comma-separated [screen] dnsbl
 * item (Postfix splits on both) into cf's typed rows; -1 if one is bad. */
static int
config_dnsbl_add(struct config *cf, const char *item)
{
	char *copy = xstrdup(item), *p = copy, *w, why[8];
	int rc = 0;

	while (rc == 0 && (w = strsep(&p, " \t")) != NULL) {
		struct config_dnsbl d;

		if (*w == '\0')
			continue;
		if (config_dnsbl_parse(w, &d, why, sizeof(why)) == -1) {
			rc = -1;
			break;
		}
		cf->dnsbl_sites = xreallocarray(cf->dnsbl_sites,
		    cf->ndnsbl_sites + 1, sizeof(*cf->dnsbl_sites));
		cf->dnsbl_sites[cf->ndnsbl_sites++] = d;
	}
	free(copy);
	return rc;
}

/* Keys that may be given more than once (their values add up). */
static bool
config_is_list(const struct config_key *k)
{
	return k->type == CONFIG_T_LIST || k->type == CONFIG_T_LISTEN ||
	    k->type == CONFIG_T_CIDRS || k->type == CONFIG_T_DOMAINS ||
	    k->type == CONFIG_T_DNSBL;
}

/* One line, comment already cut and trimmed: a [section] or key = value.
 * -1 with "path:line: why" in err. */
static int
config_parse_line(struct config *cf, char *s, char *section, size_t seclen,
    bool *seen, const char *where, char *err, size_t errlen)
{
	const struct config_key *k;
	char *eq, *key, *val;
	const char *why;
	size_t i;

	if (*s == '[') {
		char *end = strchr(s, ']');

		if (end == NULL || end[1] != '\0' ||
		    util_copy(section, seclen, config_trim(s + 1)) == -1) {
			snprintf(err, errlen, "%s: bad section line", where);
			return -1;
		}
		*strchr(section, ']') = '\0';
		config_trim(section);
		return 0;
	}
	if ((eq = strchr(s, '=')) == NULL) {
		snprintf(err, errlen, "%s: expected key = value", where);
		return -1;
	}
	*eq = '\0';
	key = config_trim(s);
	val = config_trim(eq + 1);
	if ((k = config_find(section, key)) == NULL) {
		snprintf(err, errlen, "%s: unknown key [%s] %s", where,
		    section, key);
		return -1;
	}
	i = (size_t)(k - config_keys);
	if (seen[i] && !config_is_list(k)) {
		snprintf(err, errlen, "%s: [%s] %s given twice", where,
		    section, key);
		return -1;
	}
	seen[i] = true;
	if ((why = config_set(cf, k, val)) != NULL) {
		snprintf(err, errlen, "%s: [%s] %s: %s%s%s", where, section,
		    key, why, k->words != NULL ? " " : "",
		    k->words != NULL ? k->words : "");
		return -1;
	}
	return 0;
}

/* Every line of fp, hashed as config_file_stat does. */
static int
config_parse_file(struct config *cf, FILE *fp, const char *path,
    bool *seen, char *err, size_t errlen)
{
	char section[64] = "", *line = NULL, *s, where[PATH_MAX + 32];
	size_t cap = 0;
	unsigned lineno = 0;
	ssize_t len;
	int rc = 0;

	while (rc == 0 && (len = getline(&line, &cap, fp)) != -1) {
		cf->hash = config_fnv(cf->hash, line, (size_t)len);
		lineno++;
		if (memchr(line, '\0', (size_t)len) != NULL) {
			/* Everything after it would be dropped unseen. */
			snprintf(err, errlen, "%s:%u: a NUL byte", path,
			    lineno);
			rc = -1;
			break;
		}
		if ((s = strchr(line, '#')) != NULL)
			*s = '\0';
		s = config_trim(line);
		if (*s == '\0')
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		rc = config_parse_line(cf, s, section, sizeof(section), seen,
		    where, err, errlen);
	}
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	free(line);
	return rc;
}

/* The defaults of the keys the file did not set; -1 if one is required. */
static int
config_defaults(struct config *cf, const bool *seen, const char *path,
    char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		const struct config_key *k = &config_keys[i];

		if (seen[i])
			continue;
		if (k->def == NULL) {
			snprintf(err, errlen, "%s: missing required key "
			    "[%s] %s", path, k->section, k->name);
			return -1;
		}
		if (config_set(cf, k, k->def) != NULL)
			abort();	/* a bad default is a programming error */
	}
	if (*cf->helo_name == '\0') {
		free(cf->helo_name);
		cf->helo_name = xstrdup(cf->hostname);
	}
	return 0;
}

static bool
config_sockaddr_eq(const struct config_sockaddr *a,
    const struct config_sockaddr *b)
{
	return a->sslen != 0 && a->sslen == b->sslen &&
	    memcmp(&a->ss, &b->ss, a->sslen) == 0;
}

/* The listeners: a proxy one needs someone to trust; no address is bound
 * twice (it would fail at bind, after -n said yes). */
static int
config_check_listen(const struct config *cf, const char *path, char *err,
    size_t errlen)
{
	const struct config_sockaddrs *l = &cf->listen_addrs;
	size_t i, j;

	for (i = 0; i < l->n; i++) {
		if (l->v[i].proxy && cf->proxy_from_nets.n == 0) {
			snprintf(err, errlen, "%s: [server] listen %s is "
			    "marked proxy but [server] proxy_from is empty "
			    "(every connection would be refused)", path,
			    l->v[i].text);
			return -1;
		}
		for (j = 0; j < i; j++)
			if (config_sockaddr_eq(&l->v[i], &l->v[j])) {
				snprintf(err, errlen, "%s: [server] listen "
				    "names %s twice", path, l->v[i].text);
				return -1;
			}
		if (config_sockaddr_eq(&l->v[i], &cf->metrics_addr)) {
			snprintf(err, errlen, "%s: [metrics] listen %s is "
			    "also in [server] listen", path,
			    cf->metrics_addr.text);
			return -1;
		}
	}
	return 0;
}

/* What no single line can say: keys that need or contradict each other.
 * The error names the keys, not a line. */
static int
config_check(const struct config *cf, const char *path, char *err,
    size_t errlen)
{
	if (cf->listen.n == 0) {
		snprintf(err, errlen, "%s: [server] listen needs at least "
		    "one address", path);
		return -1;
	}
	if (cf->domains.n == 0) {
		snprintf(err, errlen, "%s: [server] domains needs at least "
		    "one domain", path);
		return -1;
	}
	if (config_check_listen(cf, path, err, errlen) == -1)
		return -1;
	if (cf->retry_max < cf->retry_min) {
		snprintf(err, errlen, "%s: [primary] retry_max is below "
		    "[primary] retry_min", path);
		return -1;
	}
	if ((*cf->tls_cert == '\0') != (*cf->tls_key == '\0')) {
		snprintf(err, errlen, "%s: [tls] cert and [tls] key go "
		    "together (%s is not set)", path,
		    *cf->tls_cert == '\0' ? "cert" : "key");
		return -1;
	}
	if (*cf->control_socket != '/') {
		snprintf(err, errlen, "%s: [control] socket: not an absolute "
		    "path", path);
		return -1;
	}
	if (*cf->notify_exec != '\0' && *cf->notify_exec != '/') {
		snprintf(err, errlen, "%s: [notify] exec: not an absolute "
		    "path (no shell runs it)", path);
		return -1;
	}
	return 0;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *cf = xcalloc(1, sizeof(*cf));
	bool seen[UTIL_ARRAY_LEN(config_keys)] = { false };
	struct stat st;
	char *real;
	FILE *fp;
	int rc;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		config_free(cf);
		return NULL;
	}
	cf->hash = CONFIG_FNV_INIT;
	if (fstat(fileno(fp), &st) == 0)
		cf->mtime = (int64_t)st.st_mtime;
	real = realpath(path, NULL);
	cf->path = xstrdup(real != NULL ? real : path);
	free(real);
	rc = config_parse_file(cf, fp, path, seen, err, errlen);
	fclose(fp);
	if (rc == -1 || config_defaults(cf, seen, path, err, errlen) == -1 ||
	    config_check(cf, path, err, errlen) == -1) {
		config_free(cf);
		return NULL;
	}
	return cf;
}

void
config_free(struct config *cf)
{
	size_t i;

	if (cf == NULL)
		return;
	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		char *field = (char *)cf + config_keys[i].offset;

		char *typed = (char *)cf + config_keys[i].typed;

		switch (config_keys[i].type) {
		case CONFIG_T_HOSTPORT:
			free(((struct config_sockaddr *)(void *)typed)->text);
			/* FALLTHROUGH */
		case CONFIG_T_STRING:
		case CONFIG_T_ENUM:
		case CONFIG_T_HOST:
		case CONFIG_T_ADDR:
		case CONFIG_T_DNS_SERVER:
			free(*(char **)field);
			break;
		case CONFIG_T_LISTEN: {
			struct config_sockaddrs *l = (void *)typed;

			for (size_t j = 0; j < l->n; j++)
				free(l->v[j].text);
			free(l->v);
		}
			/* FALLTHROUGH */
		case CONFIG_T_CIDRS:
			if (config_keys[i].type == CONFIG_T_CIDRS)
				free(((struct config_cidrs *)(void *)typed)->v);
			/* FALLTHROUGH */
		case CONFIG_T_LIST:
		case CONFIG_T_DNSBL:
		case CONFIG_T_DOMAINS:
			config_list_free((struct config_list *)field);
			break;
		case CONFIG_T_UINT:
		case CONFIG_T_SIZE:
		case CONFIG_T_DURATION:
			break;
		}
	}
	for (i = 0; i < cf->ndnsbl_sites; i++)
		free(cf->dnsbl_sites[i].zone);
	free(cf->dnsbl_sites);
	free(cf->path);
	free(cf);
}

int
config_file_stat(const char *path, int64_t *mtime, uint64_t *hash)
{
	char buf[8192];
	struct stat st;
	size_t n;
	FILE *fp;
	int rc = 0;

	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	*hash = CONFIG_FNV_INIT;
	if (fstat(fileno(fp), &st) == -1)
		rc = -1;
	else
		*mtime = (int64_t)st.st_mtime;
	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), fp)) > 0)
		*hash = config_fnv(*hash, buf, n);
	if (ferror(fp))
		rc = -1;
	fclose(fp);
	return rc;
}

/* One value as the config file would say it. */
static char *
config_fmt_value(const struct config *cf, const struct config_key *k)
{
	const char *field = (const char *)cf + k->offset;
	char buf[64];
	uint64_t v;
	size_t i, len = 0;
	char *out;

	switch (k->type) {
	case CONFIG_T_STRING:
	case CONFIG_T_ENUM:
	case CONFIG_T_HOST:
	case CONFIG_T_ADDR:
	case CONFIG_T_DNS_SERVER:
	case CONFIG_T_HOSTPORT:
		return xstrdup(*(char *const *)field != NULL ?
		    *(char *const *)field : "");
	case CONFIG_T_LIST:
	case CONFIG_T_LISTEN:
	case CONFIG_T_CIDRS:
	case CONFIG_T_DNSBL:
	case CONFIG_T_DOMAINS: {
		const struct config_list *l =
		    (const struct config_list *)field;

		for (i = 0; i < l->n; i++)
			len += strlen(l->v[i]) + 2;
		out = xcalloc(1, len + 1);
		for (i = 0, len = 0; i < l->n; i++) {
			size_t n = strlen(l->v[i]);

			if (i > 0) {
				memcpy(out + len, ", ", 2);
				len += 2;
			}
			memcpy(out + len, l->v[i], n);	/* sized above */
			len += n;
		}
		return out;
	}
	case CONFIG_T_UINT:
		snprintf(buf, sizeof(buf), "%llu",
		    (unsigned long long)*(const uint64_t *)field);
		return xstrdup(buf);
	case CONFIG_T_SIZE:
		v = *(const uint64_t *)field;
		if (v != 0 && v % (1024 * 1024 * 1024) == 0)
			snprintf(buf, sizeof(buf), "%lluG",
			    (unsigned long long)(v >> 30));
		else if (v != 0 && v % (1024 * 1024) == 0)
			snprintf(buf, sizeof(buf), "%lluM",
			    (unsigned long long)(v >> 20));
		else if (v != 0 && v % 1024 == 0)
			snprintf(buf, sizeof(buf), "%lluK",
			    (unsigned long long)(v >> 10));
		else
			snprintf(buf, sizeof(buf), "%llu",
			    (unsigned long long)v);
		return xstrdup(buf);
	case CONFIG_T_DURATION:
		v = *(const uint64_t *)field;
		if (v != 0 && v % 86400 == 0)
			snprintf(buf, sizeof(buf), "%llud",
			    (unsigned long long)(v / 86400));
		else if (v != 0 && v % 3600 == 0)
			snprintf(buf, sizeof(buf), "%lluh",
			    (unsigned long long)(v / 3600));
		else if (v != 0 && v % 60 == 0)
			snprintf(buf, sizeof(buf), "%llum",
			    (unsigned long long)(v / 60));
		else
			snprintf(buf, sizeof(buf), "%llus",
			    (unsigned long long)v);
		return xstrdup(buf);
	}
	return xstrdup("");
}

void
config_print(const struct config *cf, bool all)
{
	struct config *def = xcalloc(1, sizeof(*def));
	const char *section = "";
	size_t i;

	/* The defaults, formatted the same way, to compare with. */
	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++)
		if (config_keys[i].def != NULL &&
		    config_set(def, &config_keys[i], config_keys[i].def) !=
		    NULL)
			abort();	/* a bad default is a programming error */
	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		const struct config_key *k = &config_keys[i];
		char *v = config_fmt_value(cf, k), *d = NULL;
		bool same;

		if (k->def != NULL)
			d = config_fmt_value(def, k);
		same = d != NULL && strcmp(v, d) == 0;
		/* helo_name's default is the hostname */
		if (k->offset == OFF(helo_name))
			same = strcmp(cf->helo_name, cf->hostname) == 0;
		if (all || !same) {
			if (strcmp(section, k->section) != 0) {
				printf("%s[%s]\n", *section ? "\n" : "",
				    k->section);
				section = k->section;
			}
			printf("%s =%s%s\n", k->name, *v != '\0' ? " " : "",
			    v);
		}
		free(d);
		free(v);
	}
	config_free(def);
}

int
config_listen_split(const char *listen, char *addr, size_t addrlen,
    bool *proxy)
{
	const char *sp = strchr(listen, ' ');
	size_t n = sp != NULL ? (size_t)(sp - listen) : strlen(listen);

	*proxy = false;
	if (sp != NULL) {
		while (*sp == ' ')
			sp++;
		if (strcmp(sp, "proxy") != 0)
			return -1;
		*proxy = true;
	}
	if (n >= addrlen)
		return -1;
	memcpy(addr, listen, n);
	addr[n] = '\0';
	return 0;
}

bool
config_is_our_domain(const struct config *cf, const char *domain)
{
	size_t i, n = strlen(domain);

	if (n > 1 && domain[n - 1] == '.')
		n--;
	for (i = 0; i < cf->domains.n; i++)
		if (strlen(cf->domains.v[i]) == n &&
		    strncasecmp(cf->domains.v[i], domain, n) == 0)
			return true;
	return false;
}

void
config_print_keys(void)
{
	const char *section = "";
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		const struct config_key *k = &config_keys[i];

		if (strcmp(section, k->section) != 0)
			printf("%s[%s]\n", i ? "\n" : "", section = k->section);
		printf("%-18s = %-10s # %s%s%s%s\n", k->name,
		    k->def ? k->def : "", k->def ? "" : "(required) ",
		    k->words ? k->words : "", k->words ? ": " : "", k->help);
	}
}
