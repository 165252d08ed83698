#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

int
util_copy(char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (dstlen == 0)
		return -1;
	if (n >= dstlen) {
		memcpy(dst, src, dstlen - 1);
		dst[dstlen - 1] = '\0';
		return -1;
	}
	memcpy(dst, src, n + 1);
	return 0;
}

int
util_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int
util_parse_scaled(const char *s, const char *units, const uint64_t *mult,
    uint64_t *out)
{
	char num[32];
	size_t n = strlen(s);
	uint64_t v, m = 1;
	const char *u;

	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, s, n + 1);
	if ((u = strchr(units, num[n - 1])) != NULL && num[n - 1] != '\0') {
		m = mult[u - units];
		num[n - 1] = '\0';
	}
	if (util_parse_u64(num, &v) == -1)
		return -1;
	if (v != 0 && m > UINT64_MAX / v)
		return -1;
	*out = v * m;
	return 0;
}

int
util_parse_duration(const char *s, uint64_t *seconds)
{
	static const uint64_t mult[] = { 1, 60, 3600, 86400 };

	return util_parse_scaled(s, "smhd", mult, seconds);
}

int
util_parse_size(const char *s, uint64_t *bytes)
{
	static const uint64_t mult[] = { 1024, 1024 * 1024,
		1024 * 1024 * 1024, 1024, 1024 * 1024, 1024 * 1024 * 1024 };

	return util_parse_scaled(s, "KMGkmg", mult, bytes);
}

/*
 * Random octets from the kernel, UTIL_RANDOM_POOL at a time per thread: a
 * message's ID and a session's ID each cost a getrandom(2) otherwise.  The
 * octets are the kernel's, each handed out once; nothing here forks without
 * exec after drawing.
 */
#define UTIL_RANDOM_POOL	256

void
util_random(void *out, size_t n)
{
	static _Thread_local unsigned char pool[UTIL_RANDOM_POOL];
	static _Thread_local size_t left;
	unsigned char *o = out;
	ssize_t got;

	while (n > 0) {
		size_t k;

		if (left == 0) {
			do
				got = getrandom(pool, sizeof(pool), 0);
			while (got == -1 && errno == EINTR);
			if (got != (ssize_t)sizeof(pool))
				fatal("getrandom");
			left = sizeof(pool);
		}
		k = n < left ? n : left;
		memcpy(o, pool + sizeof(pool) - left, k);
		explicit_bzero(pool + sizeof(pool) - left, k);
		left -= k;
		o += k;
		n -= k;
	}
}

void
util_random_hex(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char buf[64];
	size_t i;

	if (n > 2 * sizeof(buf))
		fatalx("%s: %zu too long", __func__, n);
	util_random(buf, (n + 1) / 2);
	for (i = 0; i < n; i++)
		out[i] = hex[(buf[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
	out[n] = '\0';
}

void
util_fmt_date(time_t t, char *out, size_t outlen)
{
	/* formatted once a second per thread: a Received header each */
	static _Thread_local time_t cached_t = -1;
	static _Thread_local char cached[64];
	struct tm tm;

	if (t != cached_t) {
		localtime_r(&t, &tm);
		if (strftime(cached, sizeof(cached),
		    "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
			cached[0] = '\0';
		cached_t = t;
	}
	if (util_copy(out, outlen, cached) == -1 && outlen > 0)
		out[0] = '\0';
}

void
util_fmt_duration(uint64_t s, char *out, size_t outlen)
{
	if (s >= 86400)
		snprintf(out, outlen, "%llud%lluh", (unsigned long long)s / 86400,
		    (unsigned long long)(s % 86400) / 3600);
	else if (s >= 3600)
		snprintf(out, outlen, "%lluh%llum", (unsigned long long)s / 3600,
		    (unsigned long long)(s % 3600) / 60);
	else if (s >= 60)
		snprintf(out, outlen, "%llum%llus", (unsigned long long)s / 60,
		    (unsigned long long)s % 60);
	else
		snprintf(out, outlen, "%llus", (unsigned long long)s);
}

time_t
util_now(void)
{
	return time(NULL);
}

bool
util_strcaseeq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

int
util_sd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun;
	socklen_t len;
	int fd, rc;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_copy(sun.sun_path, sizeof(sun.sun_path), path) == -1)
		return -1;
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    strlen(path));
	if (path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	/* Never block the loop on a slow reader. */
	rc = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
	    (struct sockaddr *)&sun, len) == -1 ? -1 : 0;
	close(fd);
	return rc;
}

int
util_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
