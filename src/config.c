#include "config.h"

#include <ctype.h>
#include <errno.h>
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
	CONFIG_T_DOMAINS,	/* a list of domains, lowercased */
	CONFIG_T_CIDRS,		/* a list of addr/len */
	CONFIG_T_DNSBL,		/* a list of zone[=filter][*weight] */
	CONFIG_T_ADDR,		/* one address literal, IPv4 or IPv6 */
	CONFIG_T_ENUM,		/* one word of a fixed set (checked below) */
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

static const struct config_key config_keys[] = {
	{ "server", "hostname", CONFIG_T_HOST, OFF(hostname), NULL, 0, 0,
	  "name in the banner, EHLO reply and Received header" },
	{ "server", "listen", CONFIG_T_LIST, OFF(listen), NULL, 0, 0,
	  "address:port to accept SMTP on; repeatable" },
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
	  "CIDRs allowed to send a PROXY header on a proxy listener" },
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
	{ "screen", "dns_server", CONFIG_T_STRING, OFF(screen_dns_server), "",
	  0, 0, "ip[:port] for DNSBL lookups (default: the system's)" },
	{ "screen", "allow", CONFIG_T_CIDRS, OFF(screen_allow), "", 0, 0,
	  "CIDRs that skip every screen and per-address limit" },
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
	  "CIDRs whose ETRN starts a drain at once (others get 458)" },
	{ "primary", "refuse_limit", CONFIG_T_UINT, OFF(refuse_limit), "5", 1,
	  10000, "5xx for this many messages in a row pause the drain" },
	{ "primary", "refuse_pause", CONFIG_T_DURATION, OFF(refuse_pause),
	  "1h", 1, NOMAX, "how long such a pause lasts (flush ends it)" },
	{ "primary", "tls", CONFIG_T_ENUM, OFF(primary_tls), "may", 0, 0,
	  "none|may|encrypt|verify: STARTTLS to the primary" },
	{ "primary", "tls_ca", CONFIG_T_STRING, OFF(primary_tls_ca), "", 0, 0,
	  "CA file for tls = verify (default: the system's)" },
	{ "primary", "tls_name", CONFIG_T_STRING, OFF(primary_tls_name), "",
	  0, 0, "name to verify and send as SNI (default: host)" },
	{ "primary", "source", CONFIG_T_ADDR, OFF(primary_source), "", 0, 0,
	  "local address the drain binds to (default: the kernel's)" },
	{ "tls", "cert", CONFIG_T_STRING, OFF(tls_cert), "", 0, 0,
	  "PEM certificate chain for STARTTLS (e.g. fullchain.pem)" },
	{ "tls", "key", CONFIG_T_STRING, OFF(tls_key), "", 0, 0,
	  "PEM private key (e.g. privkey.pem)" },
	{ "control", "socket", CONFIG_T_STRING, OFF(control_socket),
	  "/run/holdfast/control.sock", 0, 0,
	  "control socket path (its directory is created if missing)" },
	{ "control", "group", CONFIG_T_STRING, OFF(control_group), "", 0, 0,
	  "group allowed to use the control socket (mode 0660)" },
	{ "metrics", "listen", CONFIG_T_STRING, OFF(metrics_listen), "", 0, 0,
	  "address:port for /metrics and /healthz (default: off)" },
	{ "metrics", "allow", CONFIG_T_CIDRS, OFF(metrics_allow),
	  "127.0.0.0/8, ::1/128", 0, 0, "CIDRs allowed to scrape; others are closed at accept" },
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

static bool config_dnsbl_item_is_valid(const char *item);

/* Parse one value into its field; return NULL or a reason. */
static const char *
config_set(struct config *cf, const struct config_key *k, const char *val)
{
	char *field = (char *)cf + k->offset;
	uint64_t v = 0;
	int rc = -1;

	switch (k->type) {
	case CONFIG_T_ENUM:
		if (strcmp(val, "none") != 0 && strcmp(val, "may") != 0 &&
		    strcmp(val, "encrypt") != 0 && strcmp(val, "verify") != 0)
			return "not one of none, may, encrypt, verify";
		/* FALLTHROUGH */
	case CONFIG_T_HOST:
		if (k->type == CONFIG_T_HOST && *val != '\0' &&
		    !config_is_hostname(val))
			return "not a hostname";
		/* FALLTHROUGH */
	case CONFIG_T_ADDR:
		if (k->type == CONFIG_T_ADDR && *val != '\0') {
			struct sockaddr_storage ss;
			socklen_t sslen;

			if (net_addr_parse(val, &ss, &sslen) == -1)
				return "not an IPv4 or IPv6 address";
		}
		/* FALLTHROUGH */
	case CONFIG_T_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(val);
		return NULL;
	case CONFIG_T_LIST:
	case CONFIG_T_CIDRS:
	case CONFIG_T_DNSBL:
	case CONFIG_T_DOMAINS: {
		char *copy = xstrdup(val), *p = copy, *item;
		const char *why = NULL;

		while ((item = strsep(&p, ",")) != NULL) {
			size_t n;

			item = config_trim(item);
			if (*item == '\0')
				continue;
			if (k->type == CONFIG_T_DOMAINS) {
				for (char *c = item; *c != '\0'; c++)
					*c = (char)tolower((unsigned char)*c);
				n = strlen(item);
				if (n > 1 && item[n - 1] == '.')
					item[n - 1] = '\0';
				/* One root dot is tolerated; empty labels
				 * ("a..b", ".a", "a..") never match. */
				if (!config_is_hostname(item) ||
				    strchr(item, '.') == NULL ||
				    item[0] == '.' || strstr(item, "..") ||
				    item[strlen(item) - 1] == '.') {
					why = "not a domain name";
					break;
				}
			}
			if (k->type == CONFIG_T_CIDRS &&
			    net_cidr_parse(item, NULL) == -1) {
				why = "not an address or CIDR";
				break;
			}
			if (k->type == CONFIG_T_DNSBL &&
			    !config_dnsbl_item_is_valid(item)) {
				why = "not zone[=filter][*weight] (filter "
				    "d.d.d.d, each d a number or [n;n..m]; "
				    "weight -1000..1000, not 0)";
				break;
			}
			config_list_add((struct config_list *)field, item);
		}
		free(copy);
		return why;
	}
	case CONFIG_T_UINT:
		rc = util_parse_u64(val, &v);
		break;
	case CONFIG_T_SIZE:
		rc = util_parse_size(val, &v);
		break;
	case CONFIG_T_DURATION:
		rc = util_parse_duration(val, &v);
		break;
	}
	if (rc == -1)
		return k->type == CONFIG_T_SIZE ? "not a size (e.g. 50M)" :
		    k->type == CONFIG_T_DURATION ?
		    "not a duration (e.g. 30s, 5m, 1h, 30d)" : "not a number";
	if (v < k->min || v > k->max)
		return "out of range";
	*(uint64_t *)field = v;
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

/* Every blank-separated entry of one comma-separated item parses. */
static bool
config_dnsbl_item_is_valid(const char *item)
{
	char *copy = xstrdup(item), *p = copy, *w, err[8];
	bool ok = true;

	while (ok && (w = strsep(&p, " \t")) != NULL) {
		struct config_dnsbl d;

		if (*w == '\0')
			continue;
		if (config_dnsbl_parse(w, &d, err, sizeof(err)) == -1)
			ok = false;
		else
			free(d.zone);
	}
	free(copy);
	return ok;
}

/* Parse [screen] dnsbl into typed rows; entries are split on commas (by
 * the list type) and on blanks, as Postfix does. */
static int
config_dnsbl_load(struct config *cf, const char *path, unsigned lineno,
    char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < cf->dnsbl.n; i++) {
		char *copy = xstrdup(cf->dnsbl.v[i]), *p = copy, *item;

		while ((item = strsep(&p, " \t")) != NULL) {
			struct config_dnsbl d;
			char why[256];

			if (*item == '\0')
				continue;
			if (config_dnsbl_parse(item, &d, why,
			    sizeof(why)) == -1) {
				snprintf(err, errlen, "%s:%u: [screen] dnsbl: "
				    "%s", path, lineno, why);
				free(copy);
				return -1;
			}
			cf->dnsbl_sites = xreallocarray(cf->dnsbl_sites,
			    cf->ndnsbl_sites + 1, sizeof(*cf->dnsbl_sites));
			cf->dnsbl_sites[cf->ndnsbl_sites++] = d;
		}
		free(copy);
	}
	return 0;
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	struct config *cf = xcalloc(1, sizeof(*cf));
	struct stat st;
	char *real;
	ssize_t len;
	bool seen[UTIL_ARRAY_LEN(config_keys)] = { false };
	char section[64] = "", *line = NULL;
	size_t cap = 0, i;
	unsigned lineno = 0;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	cf->hash = CONFIG_FNV_INIT;
	if (fstat(fileno(fp), &st) == 0)
		cf->mtime = (int64_t)st.st_mtime;
	real = realpath(path, NULL);
	cf->path = xstrdup(real != NULL ? real : path);
	free(real);
	while ((len = getline(&line, &cap, fp)) != -1) {
		char *s, *eq, *key, *val;
		const struct config_key *k;
		const char *why;

		cf->hash = config_fnv(cf->hash, line, (size_t)len);
		lineno++;
		if ((s = strchr(line, '#')) != NULL)
			*s = '\0';
		s = config_trim(line);
		if (*s == '\0')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');

			if (end == NULL || end[1] != '\0' ||
			    util_copy(section, sizeof(section),
			    config_trim(s + 1)) == -1) {
				snprintf(err, errlen, "%s:%u: bad section line",
				    path, lineno);
				goto fail;
			}
			*strchr(section, ']') = '\0';
			config_trim(section);
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL) {
			snprintf(err, errlen, "%s:%u: expected key = value",
			    path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = config_trim(s);
		val = config_trim(eq + 1);
		if ((k = config_find(section, key)) == NULL) {
			snprintf(err, errlen, "%s:%u: unknown key [%s] %s",
			    path, lineno, section, key);
			goto fail;
		}
		i = (size_t)(k - config_keys);
		if (seen[i] && k->type != CONFIG_T_LIST &&
		    k->type != CONFIG_T_CIDRS && k->type != CONFIG_T_DOMAINS &&
		    k->type != CONFIG_T_DNSBL) {
			snprintf(err, errlen, "%s:%u: [%s] %s given twice",
			    path, lineno, section, key);
			goto fail;
		}
		seen[i] = true;
		if ((why = config_set(cf, k, val)) != NULL) {
			snprintf(err, errlen, "%s:%u: [%s] %s: %s", path,
			    lineno, section, key, why);
			goto fail;
		}
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		const struct config_key *k = &config_keys[i];

		if (seen[i])
			continue;
		if (k->def == NULL) {
			snprintf(err, errlen, "%s:%u: missing required key "
			    "[%s] %s", path, lineno, k->section, k->name);
			goto fail;
		}
		if (config_set(cf, k, k->def) != NULL)
			abort();	/* a bad default is a programming error */
	}
	if (cf->listen.n == 0 || cf->domains.n == 0) {
		snprintf(err, errlen, "%s:%u: [server] listen and domains "
		    "need at least one value", path, lineno);
		goto fail;
	}
	if (cf->retry_max < cf->retry_min) {
		snprintf(err, errlen, "%s:%u: [primary] retry_max is below "
		    "retry_min", path, lineno);
		goto fail;
	}
	if (*cf->metrics_listen != '\0') {
		struct sockaddr_storage ss;
		socklen_t sslen;

		if (net_parse_hostport(cf->metrics_listen, &ss, &sslen) == -1) {
			snprintf(err, errlen, "%s:%u: [metrics] listen: not "
			    "address:port", path, lineno);
			goto fail;
		}
	}
	for (i = 0; i < cf->listen.n; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen;
		char addr[NET_ADDR_MAX + 16];
		bool proxy;

		if (config_listen_split(cf->listen.v[i], addr, sizeof(addr),
		    &proxy) == -1 ||
		    net_parse_hostport(addr, &ss, &sslen) == -1) {
			snprintf(err, errlen, "%s:%u: [server] listen: %s is "
			    "not address:port", path, lineno, cf->listen.v[i]);
			goto fail;
		}
	}
	if ((*cf->tls_cert == '\0') != (*cf->tls_key == '\0')) {
		snprintf(err, errlen, "%s:%u: [tls] cert and key go together",
		    path, lineno);
		goto fail;
	}
	if (config_dnsbl_load(cf, path, lineno, err, errlen) == -1)
		goto fail;
	if (*cf->notify_exec != '\0' && *cf->notify_exec != '/') {
		snprintf(err, errlen, "%s:%u: [notify] exec: not an absolute "
		    "path (no shell runs it)", path, lineno);
		goto fail;
	}
	if (*cf->helo_name == '\0') {
		free(cf->helo_name);
		cf->helo_name = xstrdup(cf->hostname);
	}
	free(line);
	fclose(fp);
	return cf;
fail:
	free(line);
	if (fp != NULL)
		fclose(fp);
	config_free(cf);
	return NULL;
}

void
config_free(struct config *cf)
{
	size_t i;

	if (cf == NULL)
		return;
	for (i = 0; i < UTIL_ARRAY_LEN(config_keys); i++) {
		char *field = (char *)cf + config_keys[i].offset;

		switch (config_keys[i].type) {
		case CONFIG_T_STRING:
		case CONFIG_T_ENUM:
		case CONFIG_T_HOST:
		case CONFIG_T_ADDR:
			free(*(char **)field);
			break;
		case CONFIG_T_LIST:
		case CONFIG_T_CIDRS:
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
		return xstrdup(*(char *const *)field != NULL ?
		    *(char *const *)field : "");
	case CONFIG_T_LIST:
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
		printf("%-18s = %-10s # %s%s\n", k->name,
		    k->def ? k->def : "", k->def ? "" : "(required) ", k->help);
	}
}
