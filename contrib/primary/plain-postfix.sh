#!/bin/sh
# The same drain settings for a primary without docker-mailserver (plain
# Postfix and rspamd from packages): applies the files in
# docker-mailserver/ the way DMS would, so there is one set to keep right.
# Run as root on the primary after replacing 203.0.113.25 in the files:
#
#   sh contrib/primary/plain-postfix.sh
#   postfix check && postfix reload; rspamadm configtest && systemctl reload rspamd
#
# It installs holdfast-backup.cidr and rspamd/holdfast-drain.lua into
# HOLDFAST_DIR (default /etc/postfix/holdfast), sets postfix-main.cf's lines
# with postconf -e, runs user-patches.sh (the PROXY postscreen listener on
# HOLDFAST_PROXY_PORT, default 2525; check_client_access prepended to the
# client, HELO and sender restrictions; the rspamd.local.lua line), then
# postfix-master.cf's lines with postconf -P, and copies the rspamd files to
# RSPAMD_CONFDIR/override.d (default /etc/rspamd).  Running it again
# changes nothing.  MAIL_CONFIG selects another Postfix instance, as for
# postconf.  tests/check-packaging runs it against a throw-away Postfix.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dms=$here/docker-mailserver
dir=${HOLDFAST_DIR:-/etc/postfix/holdfast}
rspamd=${RSPAMD_CONFDIR:-/etc/rspamd}

mkdir -p "$dir/rspamd" "$rspamd/override.d"
cp "$here/holdfast-backup.cidr" "$dir/"
cp "$dms/rspamd/holdfast-drain.lua" "$dir/rspamd/"
sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e "s|/tmp/docker-mailserver|$dir|g" \
    "$dms/postfix-main.cf" | while IFS= read -r line; do
	postconf -e "$line"
done
DMS_CONFIG=$dir RSPAMD_CONFDIR=$rspamd bash "$dms/user-patches.sh"
grep '^[0-9a-z]' "$dms/postfix-master.cf" | while IFS= read -r line; do
	postconf -P "$line"
done
cp "$dms"/rspamd/override.d/* "$rspamd/override.d/"
