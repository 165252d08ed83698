#include "select.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "envelope.h"
#include "util.h"

static const struct {
	const char	*name;
	unsigned	 bit;
} select_states[] = {
	{ "queued", SELECT_ST_QUEUED },
	{ "deferred", SELECT_ST_DEFERRED },
	{ "waiting", SELECT_ST_WAITING },
	{ "held", SELECT_ST_HELD },
	{ "dead", SELECT_ST_DEAD },
};

unsigned
select_state_bit(const char *state)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(select_states); i++)
		if (strcmp(select_states[i].name, state) == 0)
			return select_states[i].bit;
	return 0;
}

/* --state takes a comma-separated list: "queued,deferred". */
static int
select_parse_states(const char *v, unsigned *bits)
{
	char buf[128], *s, *tok;

	if (util_copy(buf, sizeof(buf), v) == -1)
		return -1;
	s = buf;
	while ((tok = strsep(&s, ",")) != NULL) {
		unsigned b = select_state_bit(tok);

		if (b == 0)
			return -1;
		*bits |= b;
	}
	return 0;
}

int
select_parse(int argc, char **argv, struct select *sel, const char **ids,
    size_t maxids, size_t *nids, char *err, size_t errlen)
{
	int i;

	memset(sel, 0, sizeof(*sel));
	*nids = 0;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--dry-run") == 0) {
			sel->dry_run = true;
			continue;
		}
		if (a[0] != '-') {
			if (*nids == maxids) {
				snprintf(err, errlen, "too many IDs");
				return -1;
			}
			ids[(*nids)++] = a;
			continue;
		}
		if (strcmp(a, "--state") != 0 && strcmp(a, "--from") != 0 &&
		    strcmp(a, "--rcpt") != 0 && strcmp(a, "--reply") != 0 &&
		    strcmp(a, "--older-than") != 0) {
			snprintf(err, errlen, "unknown option %.64s (allowed: "
			    "--state, --from, --rcpt, --reply, --older-than, "
			    "--dry-run)", a);
			return -1;
		}
		if (v == NULL) {
			snprintf(err, errlen, "%s needs a value", a);
			return -1;
		}
		i++;
		sel->any = true;
		if (strcmp(a, "--state") == 0) {
			if (select_parse_states(v, &sel->states) == -1) {
				snprintf(err, errlen, "--state %.64s: not "
				    "queued, deferred, waiting, held or dead",
				    v);
				return -1;
			}
		} else if (strcmp(a, "--from") == 0)
			sel->from = v;
		else if (strcmp(a, "--rcpt") == 0)
			sel->rcpt = v;
		else if (strcmp(a, "--reply") == 0)
			sel->reply = v;
		else if (util_parse_duration(v, &sel->older_than) == -1 ||
		    sel->older_than == 0) {
			snprintf(err, errlen, "--older-than %.64s: not a "
			    "duration such as 30m, 2h or 3d", v);
			return -1;
		}
	}
	if (sel->any && *nids > 0) {
		snprintf(err, errlen, "give IDs or selectors, not both");
		return -1;
	}
	if (sel->dry_run && !sel->any) {
		snprintf(err, errlen, "--dry-run needs a selector");
		return -1;
	}
	return 0;
}

static bool
select_glob(const char *pattern, const char *s)
{
	/* "<>" names the null sender, as the listings show it */
	if (strcmp(pattern, "<>") == 0)
		return *s == '\0';
	return fnmatch(pattern, s, FNM_CASEFOLD) == 0;
}

bool
select_match(const struct select *sel, const struct envelope *env,
    const char *state, time_t now)
{
	unsigned bit = select_state_bit(state);
	size_t i;
	bool hit;

	if (sel->states != 0) {
		if (bit == SELECT_ST_WAITING)
			bit |= env->attempts > 0 ? SELECT_ST_DEFERRED :
			    SELECT_ST_QUEUED;
		if ((sel->states & bit) == 0)
			return false;
	}
	if (sel->older_than != 0 && (env->arrival > now ||
	    (uint64_t)(now - env->arrival) < sel->older_than))
		return false;
	if (sel->from != NULL && !select_glob(sel->from, env->sender))
		return false;
	if (sel->rcpt != NULL) {
		for (i = 0, hit = false; i < env->nrcpt && !hit; i++)
			hit = select_glob(sel->rcpt, env->rcpts[i].addr);
		if (!hit)
			return false;
	}
	if (sel->reply != NULL) {
		hit = env->last_reply != NULL &&
		    select_glob(sel->reply, env->last_reply);
		for (i = 0; i < env->nrcpt && !hit; i++)
			hit = env->rcpts[i].reply != NULL &&
			    select_glob(sel->reply, env->rcpts[i].reply);
		if (!hit)
			return false;
	}
	return true;
}

void
select_fmt(const struct select *sel, char *out, size_t outlen)
{
	size_t i, used = 0;
	int n;

	out[0] = '\0';
#define SELECT_ADD(...) do {						\
	n = snprintf(out + used, outlen - used, __VA_ARGS__);		\
	if (n < 0 || (size_t)n >= outlen - used)			\
		return;							\
	used += (size_t)n;						\
} while (0)
	if (sel->states != 0) {
		SELECT_ADD("%s--state ", used ? " " : "");
		for (i = 0, n = 0; i < UTIL_ARRAY_LEN(select_states); i++)
			if (sel->states & select_states[i].bit)
				SELECT_ADD("%s%s", out[used - 1] == ' ' ? "" :
				    ",", select_states[i].name);
	}
	if (sel->from != NULL)
		SELECT_ADD("%s--from %s", used ? " " : "", sel->from);
	if (sel->rcpt != NULL)
		SELECT_ADD("%s--rcpt %s", used ? " " : "", sel->rcpt);
	if (sel->reply != NULL)
		SELECT_ADD("%s--reply %s", used ? " " : "", sel->reply);
	if (sel->older_than != 0)
		SELECT_ADD("%s--older-than %llus", used ? " " : "",
		    (unsigned long long)sel->older_than);
#undef SELECT_ADD
}

size_t
select_bucket(uint64_t age)
{
	uint64_t bound = 300;	/* 5 minutes, doubling */
	size_t b;

	if (age < bound)
		return 0;
	for (b = 1; b < SELECT_NBUCKETS - 1; b++) {
		if (age < bound * 2)
			return b;
		bound *= 2;
	}
	return SELECT_NBUCKETS - 1;
}

uint64_t
select_bucket_end(size_t bucket)
{
	if (bucket >= SELECT_NBUCKETS - 1)
		return UINT64_MAX;
	return (uint64_t)300 << bucket;
}

const char *
select_bucket_name(size_t bucket)
{
	static const char *const names[SELECT_NBUCKETS] = {
		"5m", "10m", "20m", "40m", "80m", "160m", "320m", "640m",
		"1280m", "older",
	};

	return bucket < SELECT_NBUCKETS ? names[bucket] : "older";
}
