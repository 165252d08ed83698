#!/bin/bash
# docker-mailserver: docker-data/dms/config/user-patches.sh (merge into
# yours).  DMS runs it at every container start, after postfix-master.cf
# and postfix-main.cf were applied and before Postfix and rspamd start, so
# each step checks before it changes anything (a restarted container runs
# it again).  Needs holdfast-backup.cidr next to it in the config volume.
#
# The variables are for tests (tests/integration/lib/primary.py runs this
# file against a Postfix and an rspamd of its own); leave them alone.
set -euo pipefail
DMS_CONFIG=${DMS_CONFIG:-/tmp/docker-mailserver}
RSPAMD_CONFDIR=${RSPAMD_CONFDIR:-/etc/rspamd}
# The PROXY v2 postscreen listener that HAProxy's backend reaches through
# the Kubernetes NodePort (the operator's alternate listener 2525);
# [host:]port, also the master.cf service name.
PROXY_PORT=${HOLDFAST_PROXY_PORT:-2525}
cidr="cidr:$DMS_CONFIG/holdfast-backup.cidr"

# 1. The PROXY v2 postscreen listener, if there is none yet (postconf -M
#    creates a service; postfix-master.cf can only change existing ones).
#    postscreen hands the connection to the "smtpd pass" service, which
#    DMS has and a plain Postfix without postscreen lacks.
if [ -z "$(postconf -M smtpd/pass 2>/dev/null)" ]; then
	postconf -M "smtpd/pass=smtpd pass - - n - - smtpd"
fi
if [ -z "$(postconf -M "$PROXY_PORT/inet" 2>/dev/null)" ]; then
	postconf -M "$PROXY_PORT/inet=$PROXY_PORT inet n - n - 1 postscreen"
	postconf -P "$PROXY_PORT/inet/postscreen_upstream_proxy_protocol=haproxy" \
	    "$PROXY_PORT/inet/postscreen_upstream_proxy_timeout=5s" \
	    "$PROXY_PORT/inet/syslog_name=postfix/smtpd-proxy${PROXY_PORT##*:}"
fi

# 2. The backup passes the client, HELO and sender restrictions (DMS:
#    reject_unknown_sender_domain; yours may add reject_unknown_client_
#    hostname or spoofing checks): holdfast accepted the message already,
#    and a refusal here only strands it in the backup's queue.  Prepended
#    to whatever the lists are, so DMS's defaults and yours stay in force
#    for everyone else.  Never added to the relay or recipient lists: the
#    backup gets no relaying (reject_unauth_destination stays).
for p in smtpd_client_restrictions smtpd_helo_restrictions \
    smtpd_sender_restrictions; do
	cur=$(postconf -h "$p")
	case $cur in *holdfast-backup.cidr*) continue ;; esac
	postconf -e "$p = check_client_access $cidr${cur:+, $cur}"
done

# 3. rspamd: the drain's reject cap, which must run before GTUBE (see the
#    file).  rspamd loads $RSPAMD_CONFDIR/rspamd.local.lua; DMS copies only
#    rspamd/override.d/ from the config volume, so it is installed here.
lua=$RSPAMD_CONFDIR/rspamd.local.lua
if ! grep -qs 'holdfast-drain.lua' "$lua"; then
	printf '%s\n' "-- holdfast-drain.lua (user-patches.sh)" \
	    "dofile('$DMS_CONFIG/rspamd/holdfast-drain.lua')" >>"$lua"
fi
