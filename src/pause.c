#include "pause.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "spool.h"
#include "util.h"
#include "xmalloc.h"

#define PAUSE_FILE	"smtp-pause"

struct pause {
	struct spool	*spool;
	time_t		 since, until;	/* 0: not paused */
};

static int
pause_store(struct pause *p)
{
	return spool_state_span_store(p->spool, PAUSE_FILE, p->since, p->until);
}

static void
pause_metrics_cb(void *arg)
{
	struct pause *p = arg;

	metrics_set(M_SMTP_PAUSED, pause_until(p, util_now()) != 0);
}

struct pause *
pause_new(struct spool *sp)
{
	struct pause *p = xcalloc(1, sizeof(*p));

	p->spool = sp;
	metrics_add_collector(pause_metrics_cb, p);
	if (spool_state_span_load(sp, PAUSE_FILE, &p->since, &p->until) ==
	    -1) {
		if (errno == EBADMSG)
			log_warnx("smtp-pause file unreadable; smtp not paused");
		p->since = p->until = 0;
		return p;
	}
	if (pause_until(p, util_now()) != 0)
		log_info("smtp paused (restored) until=%lld",
		    (long long)p->until);
	return p;
}

void
pause_free(struct pause *p)
{
	free(p);
}

int
pause_set(struct pause *p, uint64_t seconds)
{
	time_t now = util_now(), osince = p->since, ountil = p->until;

	if (p->until == 0)
		p->since = now;
	p->until = now + (time_t)seconds;
	if (pause_store(p) == -1) {
		p->since = osince;
		p->until = ountil;
		return -1;
	}
	log_info("smtp paused until=+%llus: new sessions get 421 4.3.2",
	    (unsigned long long)seconds);
	return 0;
}

void
pause_off(struct pause *p, const char *why)
{
	if (p->until == 0)
		return;
	p->since = p->until = 0;
	if (pause_store(p) == -1)
		log_warnx("smtp resume not persisted; the pause may return "
		    "after a restart until its end");
	log_info("smtp resumed reason=%s", why);
}

time_t
pause_until(struct pause *p, time_t now)
{
	if (p->until != 0 && now >= p->until)
		pause_off(p, "expired");
	return p->until;
}

time_t
pause_since(const struct pause *p)
{
	return p->since;
}
