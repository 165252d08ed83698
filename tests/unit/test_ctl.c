/* The control socket's access rule: root, the daemon's user, or a member
 * of the control group through the primary or a supplementary group. */
#include "ctl.h"

#include <stdio.h>

#include "t.h"

static void
test_peer_allowed(void)
{
	static const gid_t none[1] = { 0 };
	static const gid_t supp[] = { 27, 4242, 100 };
	static const gid_t other[] = { 27, 100 };
	static const struct {
		const char	*name;
		uid_t		 uid;
		gid_t		 gid;
		const gid_t	*groups;
		size_t		 ngroups;
		gid_t		 ctlgid;
		bool		 want;
	} cases[] = {
		{ "root", 0, 0, none, 0, (gid_t)-1, true },
		{ "the daemon's user", 65534, 65534, none, 0, (gid_t)-1,
		  true },
		{ "stranger, no group configured", 1000, 1000, supp, 3,
		  (gid_t)-1, false },
		{ "primary group", 1000, 4242, none, 0, 4242, true },
		{ "supplementary group", 1000, 1000, supp, 3, 4242, true },
		{ "other groups only", 1000, 1000, other, 2, 4242, false },
		{ "no groups at all", 1000, 1000, none, 0, 4242, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (ctl_peer_allowed(cases[i].uid, cases[i].gid,
		    cases[i].groups, cases[i].ngroups, 65534,
		    cases[i].ctlgid) != cases[i].want) {
			fprintf(stderr, "  case %s\n", cases[i].name);
			T_CHECK(0);
		}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "ctl_peer_allowed", test_peer_allowed },
	};

	return T_RUN(cases);
}
