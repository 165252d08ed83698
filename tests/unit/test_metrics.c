#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>

#include "t.h"
#include "xmalloc.h"

/* The rendered registry; freed by the next call. */
static char *render_text;

static const char *
render(void)
{
	size_t len;

	free(render_text);
	render_text = metrics_render(&len);
	if (strlen(render_text) != len)
		T_CHECK(!"render length");
	return render_text;
}

static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
		p++;
	}
	return false;
}

#define T_LINE(text, line)                                                   \
	do {                                                                 \
		if (!has_line((text), (line))) {                             \
			fprintf(stderr, "  %s:%d: no line \"%s\"\n",         \
			    __FILE__, __LINE__, (line));                     \
			t_failed_checks++;                                   \
		}                                                            \
	} while (0)

static void
reset_all(void)
{
	int i;

	for (i = 0; i < M_COUNT; i++)
		metrics_set((enum metrics_id)i, 0);
	metrics_set(M_BUILD_INFO, 1);
}

static void
test_render_lines(void)
{
	const char *text;

	reset_all();
	text = render();
	T_LINE(text, "# HELP holdfast_build_info Always 1; the version label "
	    "names the running build.");
	T_LINE(text, "# TYPE holdfast_build_info gauge");
	T_LINE(text, "holdfast_build_info{version=\"" HOLDFAST_VERSION "\"} 1");
	T_LINE(text, "# TYPE holdfast_start_time_seconds gauge");
	T_LINE(text, "# TYPE holdfast_queue_messages gauge");
	T_LINE(text, "holdfast_queue_messages{state=\"queued\"} 0");
	T_LINE(text, "holdfast_queue_messages{state=\"deferred\"} 0");
	T_LINE(text, "holdfast_queue_messages{state=\"held\"} 0");
	T_LINE(text, "holdfast_queue_messages{state=\"dead\"} 0");
	T_LINE(text, "# TYPE holdfast_queue_bytes gauge");
	T_LINE(text, "holdfast_queue_bytes{state=\"dead\"} 0");
	T_LINE(text, "holdfast_queue_oldest_message_age_seconds 0");
	T_LINE(text, "holdfast_hold_mode 0");
	T_LINE(text, "holdfast_spool_free_bytes 0");
	T_LINE(text, "# TYPE holdfast_messages_accepted_total counter");
	T_LINE(text, "holdfast_messages_accepted_total 0");
	T_LINE(text, "# TYPE holdfast_deliveries_total counter");
	T_LINE(text, "holdfast_deliveries_total{result=\"delivered\"} 0");
	T_LINE(text, "holdfast_deliveries_total{result=\"deferred\"} 0");
	T_LINE(text, "holdfast_deliveries_total{result=\"dead\"} 0");
	T_LINE(text, "holdfast_deliveries_total{result=\"expired\"} 0");
	T_LINE(text, "# TYPE holdfast_smtp_replies_total counter");
	T_LINE(text, "holdfast_smtp_replies_total{class=\"2xx\"} 0");
	T_LINE(text, "holdfast_smtp_replies_total{class=\"5xx\"} 0");
	T_LINE(text, "# TYPE holdfast_smtp_connections_open gauge");
	T_LINE(text, "# TYPE holdfast_smtp_connections_total counter");
	T_LINE(text, "# TYPE holdfast_primary_up gauge");
	T_LINE(text, "holdfast_primary_up 0");
	T_LINE(text, "holdfast_primary_refusing 0");
	T_LINE(text, "holdfast_primary_last_change_timestamp_seconds 0");
	T_LINE(text, "holdfast_primary_state_seconds 0");
	T_LINE(text, "holdfast_last_delivery_timestamp_seconds 0");
	T_LINE(text, "# TYPE holdfast_tls_handshakes_total counter");
	T_LINE(text, "holdfast_tls_handshakes_total{result=\"ok\"} 0");
	T_LINE(text, "holdfast_tls_handshakes_total{result=\"failed\"} 0");
	T_CHECK(text[strlen(text) - 1] == '\n');
}

static void
test_inc_add_set(void)
{
	static const struct {
		double		 value;
		const char	*want;
	} fmts[] = {
		{ 0, "holdfast_spool_free_bytes 0" },
		{ -0.0, "holdfast_spool_free_bytes 0" },
		{ 42, "holdfast_spool_free_bytes 42" },
		/* 1.2 TB and a timestamp: no exponent, every digit */
		{ 1234567890123.0, "holdfast_spool_free_bytes 1234567890123" },
		{ 1700000000, "holdfast_spool_free_bytes 1700000000" },
		{ 9007199254740992.0,
		  "holdfast_spool_free_bytes 9007199254740992" },
		{ 0.5, "holdfast_spool_free_bytes 0.5" },
		{ 0.1, "holdfast_spool_free_bytes 0.1" },
		{ -3.25, "holdfast_spool_free_bytes -3.25" },
		{ 1.0 / 0.0, "holdfast_spool_free_bytes +Inf" },
		{ -1.0 / 0.0, "holdfast_spool_free_bytes -Inf" },
	};
	size_t i;

	reset_all();
	metrics_inc(M_MSGS_ACCEPTED);
	metrics_inc(M_MSGS_ACCEPTED);
	metrics_add(M_MSGS_ACCEPTED, 40);
	T_CHECK(metrics_get(M_MSGS_ACCEPTED) == 42);
	metrics_add(M_DELIVERIES_DEAD, (uint64_t)1 << 40);
	T_CHECK(metrics_get(M_DELIVERIES_DEAD) == 1099511627776.0);
	metrics_set(M_PRIMARY_UP, 1);
	metrics_set(M_SMTP_CONNECTIONS_OPEN, 7);
	metrics_set(M_SMTP_CONNECTIONS_OPEN, 6);
	T_CHECK(metrics_get(M_SMTP_CONNECTIONS_OPEN) == 6);
	render();
	T_LINE(render_text, "holdfast_messages_accepted_total 42");
	T_LINE(render_text, "holdfast_deliveries_total{result=\"dead\"} "
	    "1099511627776");
	T_LINE(render_text, "holdfast_deliveries_total{result=\"expired\"} 0");
	T_LINE(render_text, "holdfast_primary_up 1");
	T_LINE(render_text, "holdfast_smtp_connections_open 6");

	for (i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		metrics_set(M_SPOOL_FREE_BYTES, fmts[i].value);
		render();
		if (!has_line(render_text, fmts[i].want)) {
			fprintf(stderr, "  fmt case %zu: no \"%s\"\n", i,
			    fmts[i].want);
			T_CHECK(!"value format");
		}
	}
}

static int collector_calls;
static bool collector_on;	/* collectors cannot be removed */

static void
collector_cb(void *arg)
{
	int *n = arg;

	if (!collector_on)
		return;
	collector_calls++;
	metrics_set(M_QUEUE_MSGS_QUEUED, *n);
	metrics_set(M_PRIMARY_STATE_SECONDS, 3600);
}

static bool health_state;

static bool
health_cb(void *arg)
{
	(void)arg;
	return health_state;
}

static void
test_collector(void)
{
	static int queued = 17;

	reset_all();
	collector_on = true;
	metrics_add_collector(collector_cb, &queued);
	T_CHECK(collector_calls == 0);
	render();
	T_CHECK(collector_calls == 1);
	T_LINE(render_text, "holdfast_queue_messages{state=\"queued\"} 17");
	T_LINE(render_text, "holdfast_primary_state_seconds 3600");
	queued = 18;
	render();
	T_CHECK(collector_calls == 2);
	T_LINE(render_text, "holdfast_queue_messages{state=\"queued\"} 18");
	/* Registering the health check has no effect on rendering. */
	metrics_set_health(health_cb, NULL);
	render();
	T_CHECK(collector_calls == 3);
	collector_on = false;
}

static bool
is_name(const char *s, size_t n, bool colon_ok)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '_' || (colon_ok && c == ':') ||
		    (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

#define MAX_SERIES 64

/*
 * Parse the whole rendering: every enum value must show up as exactly one
 * series (each gets a distinct value here), names and label names use the
 * Prometheus charset, a name{labels} pair appears once, and each family
 * has one HELP and one TYPE before its series, which are contiguous.
 */
static void
test_table(void)
{
	char series[MAX_SERIES][160], families[MAX_SERIES][96];
	char fam_type[MAX_SERIES][16], cur[96] = "";
	int fam_help[MAX_SERIES], seen[M_COUNT];
	size_t nseries = 0, nfam = 0, j;
	char *text, *line, *save = NULL;
	int id;

	for (id = 0; id < M_COUNT; id++) {
		metrics_set((enum metrics_id)id, 1000 + id);
		seen[id] = 0;
	}
	/* A family of added series shows up through its one series. */
	{
		int h = metrics_series_add(M_DNSBL_ERRORS, "zone",
		    "zen.example.test");

		T_CHECK(h >= 0);
		while (metrics_series_get(h) < 1000 + M_DNSBL_ERRORS)
			metrics_series_inc(h);
	}
	{
		int h = metrics_series_add(M_QUEUE_AGE, "bucket", "5m");

		T_CHECK(h >= 0);
		metrics_series_set(h, 1000 + M_QUEUE_AGE);
		T_CHECK(metrics_series_get(h) == 1000 + M_QUEUE_AGE);
	}
	render();
	text = xstrdup(render_text);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char name[96], *brace, *sp;
		size_t n;

		if (strncmp(line, "# HELP ", 7) == 0 ||
		    strncmp(line, "# TYPE ", 7) == 0) {
			bool help = line[2] == 'H';

			sp = strchr(line + 7, ' ');
			T_CHECK(sp != NULL && sp[1] != '\0');
			if (sp == NULL)
				continue;
			n = (size_t)(sp - (line + 7));
			T_CHECK(n < sizeof(name));
			snprintf(name, sizeof(name), "%.*s", (int)n, line + 7);
			for (j = 0; j < nfam; j++)
				if (strcmp(families[j], name) == 0)
					break;
			if (j == nfam) {
				T_CHECK(nfam < MAX_SERIES);
				snprintf(families[nfam], sizeof(families[0]),
				    "%s", name);
				fam_help[nfam] = 0;
				fam_type[nfam][0] = '\0';
				nfam++;
			} else
				T_CHECK(strcmp(cur, name) == 0);
			if (help)
				fam_help[j]++;
			else {
				T_CHECK(fam_type[j][0] == '\0');
				snprintf(fam_type[j], sizeof(fam_type[0]),
				    "%s", sp + 1);
				T_CHECK(strcmp(sp + 1, "counter") == 0 ||
				    strcmp(sp + 1, "gauge") == 0);
			}
			snprintf(cur, sizeof(cur), "%s", name);
			continue;
		}
		T_CHECK(line[0] != '#');
		sp = strrchr(line, ' ');
		T_CHECK(sp != NULL);
		if (sp == NULL)
			continue;
		*sp = '\0';
		brace = strchr(line, '{');
		n = brace != NULL ? (size_t)(brace - line) : strlen(line);
		T_CHECK(is_name(line, n, true));
		T_CHECK(strncmp(line, "holdfast_", 9) == 0);
		/* A series belongs to the family whose TYPE came last. */
		T_CHECK(strlen(cur) == n && strncmp(line, cur, n) == 0);
		if (brace != NULL) {
			char *eq = strchr(brace, '=');

			T_CHECK(eq != NULL && is_name(brace + 1,
			    (size_t)(eq - brace - 1), false));
			T_CHECK(strncmp(brace + 1, "__", 2) != 0);
			T_CHECK(eq != NULL && eq[1] == '"');
			T_CHECK(line[strlen(line) - 1] == '}');
			T_CHECK(strstr(line, "\"}") != NULL);
		}
		for (j = 0; j < nseries; j++)
			if (strcmp(series[j], line) == 0) {
				fprintf(stderr, "  duplicate %s\n", line);
				T_CHECK(!"unique series");
			}
		T_CHECK(nseries < MAX_SERIES);
		if (nseries < MAX_SERIES)
			snprintf(series[nseries++], sizeof(series[0]), "%s",
			    line);
		id = atoi(sp + 1) - 1000;
		T_CHECK(id >= 0 && id < M_COUNT);
		if (id >= 0 && id < M_COUNT)
			seen[id]++;
		/* Counters, and only counters, end in _total. */
		for (j = 0; j < nfam; j++)
			if (strncmp(families[j], line, n) == 0 &&
			    families[j][n] == '\0')
				break;
		if (j < nfam) {
			bool total = n > 6 && strncmp(line + n - 6, "_total",
			    6) == 0;

			T_CHECK(total == (strcmp(fam_type[j], "counter") == 0));
		}
	}
	T_CHECK(nseries == M_COUNT);
	for (id = 0; id < M_COUNT; id++)
		if (seen[id] != 1) {
			fprintf(stderr, "  id %d rendered %d times\n", id,
			    seen[id]);
			T_CHECK(!"every id once");
		}
	for (j = 0; j < nfam; j++) {
		T_CHECK(fam_help[j] == 1);
		T_CHECK(fam_type[j][0] != '\0');
	}
	free(text);
	reset_all();
}

/*
 * The HTTP request path: where the head ends, and the status of the reply
 * to it (every reply closes the connection; HEAD has no body).
 */
static void
test_http(void)
{
	static const struct {
		const char	*in;
		int		 tail;	/* after the head; -1: incomplete */
		int		 status;
		bool		 body;
	} cases[] = {
		{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 0, 200, true },
		{ "GET /metrics HTTP/1.0\r\n\r\n", 0, 200, true },
		{ "GET /metrics?x=1 HTTP/1.1\n\n", 0, 200, true },
		{ "HEAD /metrics HTTP/1.1\r\n\r\n", 0, 200, false },
		{ "HEAD /nope HTTP/1.1\r\n\r\n", 0, 404, false },
		{ "GET /nope HTTP/1.1\r\n\r\n", 0, 404, true },
		{ "GET http://x/metrics HTTP/1.1\r\n\r\n", 0, 404, true },
		{ "POST /metrics HTTP/1.1\r\n\r\nbody", 4, 405, true },
		{ "BREW /pot HTTP/1.1\r\n\r\n", 0, 405, true },
		{ "GET /metrics HTCPCP/1.0\r\n\r\n", 0, 400, true },
		{ "GET /metrics HTTP/2.0\r\n\r\n", 0, 400, true },
		{ "GET /metrics\r\n\r\n", 0, 400, true },
		{ "GET  /metrics HTTP/1.1\r\n\r\n", 0, 400, true },
		{ "G\x01T /metrics HTTP/1.1\r\n\r\n", 0, 400, true },
		{ "\r\n\r\n", 0, 400, true },
		{ "GET /metrics HTTP/1.1\r\nHost: x\r\n", -1, 0, false },
		{ "GET /metrics HTTP/1.1\r\n\r", -1, 0, false },
		{ "", -1, 0, false },
	};
	size_t i, head, len;
	char *out, want[32];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *in = cases[i].in;

		head = metrics_http_head_len(in, strlen(in));
		if (head != (cases[i].tail < 0 ? 0 :
		    strlen(in) - (size_t)cases[i].tail)) {
			fprintf(stderr, "  case %zu: head %zu\n", i, head);
			T_CHECK(!"head length");
			continue;
		}
		if (head == 0)
			continue;
		out = metrics_http_respond(in, head, &len);
		snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
		if (strncmp(out, want, strlen(want)) != 0) {
			fprintf(stderr, "  case %zu: %.40s, want %s\n", i, out,
			    want);
			T_CHECK(!"status");
		}
		T_CHECK(strstr(out, "\r\nConnection: close\r\n") != NULL);
		T_CHECK((strstr(out, "\r\n\r\n")[4] != '\0') ==
		    cases[i].body);
		T_CHECK((strstr(out, "\r\nAllow: GET, HEAD\r\n") != NULL) ==
		    (cases[i].status == 405));
		free(out);
	}
}

/* Series added from the config: bounded, deduplicated, values checked. */
static void
test_series(void)
{
	int a, b, c;

	a = metrics_series_add(M_DNSBL_ERRORS, "zone", "bl1.example.test");
	b = metrics_series_add(M_DNSBL_ERRORS, "zone", "bl2.example.test");
	c = metrics_series_add(M_DNSBL_ERRORS, "zone", "bl1.example.test");
	T_CHECK(a >= 0 && b >= 0 && a != b && c == a);
	T_CHECK(metrics_series_add(M_DNSBL_ERRORS, "zone", "x\"}y") == -1);
	T_CHECK(metrics_series_add(M_DNSBL_ERRORS, "zone", "") == -1);
	metrics_series_inc(a);
	metrics_series_inc(a);
	metrics_series_inc(-1);
	render();
	T_CHECK(strstr(render_text, "# TYPE holdfast_dnsbl_errors_total "
	    "counter\n") != NULL);
	T_CHECK(strstr(render_text, "\nholdfast_dnsbl_errors_total{zone=\""
	    "bl1.example.test\"} 2\n") != NULL);
	T_CHECK(strstr(render_text, "\nholdfast_dnsbl_errors_total{zone=\""
	    "bl2.example.test\"} 0\n") != NULL);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "metrics_render_lines", test_render_lines },
		{ "metrics_inc_add_set", test_inc_add_set },
		{ "metrics_collector", test_collector },
		{ "metrics_table", test_table },
		{ "metrics_http", test_http },
		{ "metrics_series", test_series },	/* after table */
	};
	int rc = T_RUN(cases);

	free(render_text);
	return rc;
}
