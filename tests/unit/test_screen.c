#include "screen.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "t.h"

/*
 * Which DNSBL answers count as listings: a table of {site, answer, want}.
 * Error codes (127.255.255.0/24) never do, whatever the filter says.
 */
static void
test_dnsbl_match(void)
{
	static const struct {
		const char	*site;
		unsigned char	 a[4];
		bool		 listed, error;
	} cases[] = {
		/* no filter: 127.0.0.0/24 except 127.0.0.1 */
		{ "zen.test", { 127, 0, 0, 2 }, true, false },
		{ "zen.test", { 127, 0, 0, 11 }, true, false },
		{ "zen.test", { 127, 0, 0, 255 }, true, false },
		{ "zen.test", { 127, 0, 0, 0 }, true, false },
		{ "zen.test", { 127, 0, 0, 1 }, false, false },
		{ "zen.test", { 127, 0, 1, 2 }, false, false },
		{ "zen.test", { 127, 1, 0, 2 }, false, false },
		{ "zen.test", { 10, 0, 0, 2 }, false, false },
		{ "zen.test", { 127, 255, 255, 254 }, false, true },
		{ "zen.test", { 127, 255, 255, 252 }, false, true },
		{ "zen.test", { 127, 255, 255, 255 }, false, true },
		{ "zen.test", { 127, 255, 254, 1 }, false, false },
		/* ranges */
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 2 }, true, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 11 }, true, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 12 }, false, false },
		{ "b.test=127.0.0.[2..11]", { 127, 0, 0, 1 }, false, false },
		/* lists */
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 4 }, true, false },
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 3 }, false, false },
		{ "b.test=127.0.0.[2;4;9]", { 127, 0, 0, 10 }, false, false },
		/* a filter can admit 127.0.0.1, never an error code */
		{ "b.test=127.0.0.1", { 127, 0, 0, 1 }, true, false },
		{ "b.test=127.255.255.[0..255]", { 127, 255, 255, 254 }, false,
		  true },
		{ "b.test=127.[0..255].[0..255].[0..255]", { 127, 0, 1, 2 },
		  true, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config_dnsbl d;
		char err[256];
		bool listed, error;

		T_CHECK(config_dnsbl_parse(cases[i].site, &d, err,
		    sizeof(err)) == 0);
		listed = screen_dnsbl_match(&d, cases[i].a);
		error = screen_dnsbl_is_error(cases[i].a);
		if (listed != cases[i].listed || error != cases[i].error)
			fprintf(stderr, "  case %zu %s %u.%u.%u.%u: listed %d "
			    "error %d\n", i, cases[i].site, cases[i].a[0],
			    cases[i].a[1], cases[i].a[2], cases[i].a[3],
			    listed, error);
		T_CHECK(listed == cases[i].listed);
		T_CHECK(error == cases[i].error);
		free(d.zone);
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "screen_dnsbl_match", test_dnsbl_match },
	};

	return T_RUN(cases);
}
