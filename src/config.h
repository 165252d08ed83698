/*
 * config: the configuration grammar and struct config.
 *
 * One INI-style file ([section], key = value, # comments).  Every key is a
 * row of one table {section, name, type, default, min, max, help, typed,
 * words}; a load validates everything or fails with "file:line: what is
 * wrong".  Each value is parsed once, at load, into its typed twin
 * (socket addresses, CIDR arrays, DNSBL rows, enums): consumers never
 * parse the text again; the text stays for config_print.  The
 * struct is immutable after config_load(); the caller owns it and frees it
 * with config_free().  No sockets, no spool.
 */
#ifndef HOLDFAST_CONFIG_H
#define HOLDFAST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "net.h"

struct config_list {
	char	**v;
	size_t	  n;
};

/* A list of CIDRs, parsed once at load (the text stays in a config_list
 * beside it, for config_print). */
struct config_cidrs {
	struct net_cidr	*v;
	size_t		 n;
};

/* A socket address parsed at load: [server] listen rows (with their
 * " proxy" flag) and [metrics] listen (sslen 0: off). */
struct config_sockaddr {
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	bool			 proxy;
	char			*text;	/* "addr:port" as written, no flag */
};

struct config_sockaddrs {
	struct config_sockaddr	*v;
	size_t			 n;
};

/* [primary] tls, in the order of its words "none|may|encrypt|verify". */
enum config_tls {
	CONFIG_TLS_NONE,	/* never STARTTLS to the primary */
	CONFIG_TLS_MAY,		/* when offered */
	CONFIG_TLS_ENCRYPT,	/* required, no certificate check */
	CONFIG_TLS_VERIFY,	/* required, chain and name checked */
};

/*
 * One [screen] dnsbl entry in Postfix's postscreen_dnsbl_sites form,
 * zone[=filter][*weight], parsed once at load.  The filter is d.d.d.d where
 * each d is a number or [n;n..m;...]; as a bitmap per octet.  Without a
 * filter, any answer in 127.0.0.0/24 but 127.0.0.1 is a listing.
 */
struct config_dnsbl {
	char		*zone;		/* lowercased, no trailing dot */
	bool		 has_filter;
	unsigned char	 filter[4][32];	/* bit v of octet i: v allowed */
	int		 weight;	/* -1000..1000, not 0; negative allows */
};

struct config {
	/* [server] */
	char			*hostname;
	struct config_list	 listen;	/* "addr:port", "[v6]:port" */
	struct config_sockaddrs	 listen_addrs;	/* parsed from listen */
	struct config_list	 domains;	/* lowercased, no trailing dot */
	uint64_t		 max_message_size;
	uint64_t		 max_recipients;
	uint64_t		 max_sessions;
	uint64_t		 timeout;	/* seconds, per command/DATA */
	uint64_t		 min_data_rate;	/* octets/s over DATA */
	struct config_list	 proxy_from;	/* CIDRs trusted for PROXY */
	struct config_cidrs	 proxy_from_nets; /* parsed from proxy_from */
	char			*user, *group;	/* dropped to when root */
	/* [spool] */
	char			*spool_dir;
	uint64_t		 queue_lifetime;
	uint64_t		 bounce_lifetime;
	uint64_t		 commit_workers;
	uint64_t		 min_free;	/* below: 452 4.3.1 */
	/* [screen] */
	uint64_t		 greet_wait;	/* pregreet test, 0 = off */
	struct config_list	 dnsbl;		/* as written; see below */
	struct config_dnsbl	*dnsbl_sites;	/* parsed from dnsbl */
	size_t			 ndnsbl_sites;
	uint64_t		 dnsbl_threshold;
	char			*screen_dns_server;
	struct config_sockaddr	 screen_dns_addr; /* sslen 0: the system's */
	struct config_list	 screen_allow;	/* CIDRs: no screens */
	struct config_cidrs	 screen_allow_nets;
	uint64_t		 max_sessions_per_ip;
	uint64_t		 conn_rate;	/* per minute per address */
	uint64_t		 msg_rate;	/* per minute per address */
	/* [primary] */
	char			*primary_host;
	uint64_t		 primary_port;
	uint64_t		 primary_connections;
	uint64_t		 probe_interval;
	uint64_t		 retry_min;
	uint64_t		 retry_max;
	uint64_t		 connect_timeout;
	uint64_t		 primary_timeout;
	char			*helo_name;	/* default: hostname */
	struct config_list	 etrn_from;	/* CIDRs allowed ETRN */
	struct config_cidrs	 etrn_from_nets;
	uint64_t		 refuse_limit;	/* 5xx in a row: breaker */
	uint64_t		 refuse_pause;
	char			*primary_tls;	/* none|may|encrypt|verify */
	enum config_tls		 primary_tls_policy; /* parsed from it */
	char			*primary_tls_ca;
	char			*primary_tls_name;
	char			*primary_source; /* "" = the kernel's choice */
	struct config_sockaddr	 primary_source_addr; /* sslen 0: "" */
	/* [tls] */
	char			*tls_cert;	/* "" = no STARTTLS */
	char			*tls_key;
	/* [control] */
	char			*control_socket; /* default spool/control.sock */
	char			*control_group;	/* "" = the daemon's group */
	/* [metrics] */
	char			*metrics_listen; /* "" = off */
	struct config_sockaddr	 metrics_addr;	/* sslen 0 = off */
	struct config_list	 metrics_allow;	/* CIDRs */
	struct config_cidrs	 metrics_allow_nets;
	/* [notify] */
	char			*notify_exec;	/* "" = off; argv words */
	uint64_t		 notify_primary_down_after;
	uint64_t		 notify_timeout;
	uint64_t		 notify_repeat_interval;
	/* the file it was loaded from (absolute when it could be made so),
	 * its mtime and FNV-1a hash at load: status says when it changed */
	char			*path;
	int64_t			 mtime;
	uint64_t		 hash;
};

/* Load path into a new config; on error return NULL with "path:line: why"
 * in err; an error of the whole file (a required key missing, keys that
 * contradict each other) says "path: [section] key ..." naming the keys. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cf);

/* Split a listen value "addr:port[ proxy]" into addr and the proxy flag;
 * -1 if malformed. */
int config_listen_split(const char *listen, char *addr, size_t addrlen,
    bool *proxy);

/* Parse one dnsbl entry "zone[=filter][*weight]" into *out (out->zone
 * allocated; free with free()); -1 with the reason in err. */
int config_dnsbl_parse(const char *s, struct config_dnsbl *out, char *err,
    size_t errlen);

/* True if domain (any case, trailing dot tolerated) is one of ours. */
bool config_is_our_domain(const struct config *cf, const char *domain);

/* Write the key table as "[section] key = default  # help" lines to stdout;
 * an enumeration's help starts with its allowed words "a|b|c:". */
void config_print_keys(void);
/*
 * Write cf's effective values to stdout in the file's own syntax, under
 * their [section]s: with all, every key; else only those whose value
 * differs from its default (like postconf -n).  The output loads back to
 * the same values.
 */
void config_print(const struct config *cf, bool all);
/* The mtime and FNV-1a hash of the file at path now (as config_load
 * records them): 0, or -1 with errno. */
int config_file_stat(const char *path, int64_t *mtime, uint64_t *hash);

#endif
