"""A primary built like the operator's, on loopback, for integration tests.

The operator's primary (docs in ../shared/context, contrib/primary/README.md)
is docker-mailserver behind a router's HAProxy: HAProxy sends PROXY v2 to a
postscreen listener, Postfix runs rspamd as its milter and delivers to
Dovecot over LMTP.  Primary(env) starts the same pieces from the Debian
packages, each as a private instance under the test's directory:

    HAProxy   the router: frontend on `port` (the drain port holdfast
              connects to), contrib/primary/haproxy.cfg with its
              placeholders filled in, send-proxy-v2 to postscreen
    Postfix   a DMS-like main.cf/master.cf (the image's part), then
              contrib/primary/docker-mailserver/ applied the way DMS 15
              applies it: postfix-master.cf line by line with postconf -P,
              postfix-main.cf appended and rewritten with postconf -n,
              then user-patches.sh (postconf -M/-P/-e) run as DMS runs it
    rspamd    a second instance (--var LOCAL_CONFDIR etc.) with DMS's
              local.d settings and contrib's override.d copied in, the
              proxy worker as milter (self_scan), DNS at an unused port
    Dovecot   a second instance (own base_dir, state_dir), LMTP on a
              loopback port, delivering to a Maildir per user

The backup's address placeholder 203.0.113.25 in the contrib files becomes
`backup` (default 127.0.0.2: the "drain /32"); the config volume path
/tmp/docker-mailserver becomes the test's copy of it.  Nothing else is
changed, so what the test applies is what the operator applies.

The primary's own listeners bind `addr` (default 127.0.0.10: ports picked
at random on 127.0.0.1 by tests running beside this one cannot collide
with them); holdfast's [primary] host is pr.addr, port pr.port.

Loopback stands for the Internet here: mynetworks is addr/32 only.  But
rspamd takes every 127/8 address for a local one whatever local_networks
says (and skips SPF, the milter headers and more for it): a test that
wants to see which address rspamd scored gives holdfast a client outside
127/8 (test_failover_drill: PROXY v2 carrying 198.51.100.7) and names it
in mark_ips.  rspamd 3.4's proxy worker sometimes crashes scanning a
multi-megabyte plain-text body (a slow-rule timer); the milter then fails
open and the message arrives unscanned: send big messages as attachments.

Start/stop: start() brings everything up (router last); stop_mailserver()
and start_mailserver() stop and start Postfix alone, the way an outage of
the mail server looks from outside while the router's HAProxy stays up
(it accepts the drain's connection and closes it).  Everything is stopped
by PID when the test ends.  Tests skip (hf.Skip) when a package is missing.
"""

import glob
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time

import holdfast as hf

CONTRIB = os.path.join(hf.REPO, "contrib", "primary")
DMS_CONTRIB = os.path.join(CONTRIB, "docker-mailserver")
BACKUP_PLACEHOLDER = "203.0.113.25"
DMS_VOLUME = "/tmp/docker-mailserver"

HAPROXY = "/usr/sbin/haproxy"
RSPAMD = "/usr/bin/rspamd"
DOVECOT = "/usr/sbin/dovecot"

# rspamd compiles its URL TLD list (hyperscan) for ~30 s at every start
# unless the result is cached: one cache for every test run on this machine
# (it holds nothing but compiled patterns).
HS_CACHE = "/var/tmp/holdfast-tests-rspamd-hs"

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# docker-mailserver 15's master.cf, the services a test needs (the public
# port 25 postscreen is left out; the drain comes in on the PROXY listener
# that user-patches.sh creates).
DMS_MASTER_CF = """\
smtpd          pass  -       -       n       -       -       smtpd
pickup         fifo  n       -       n       60      1       pickup
  -o content_filter=
  -o receive_override_options=no_header_body_checks
cleanup        unix  n       -       n       -       0       cleanup
qmgr           unix  n       -       n       300     1       qmgr
rewrite        unix  -       -       n       -       -       trivial-rewrite
bounce         unix  -       -       n       -       0       bounce
defer          unix  -       -       n       -       0       bounce
trace          unix  -       -       n       -       0       bounce
verify         unix  -       -       n       -       1       verify
flush          unix  n       -       n       1000?   0       flush
proxymap       unix  -       -       n       -       -       proxymap
proxywrite     unix  -       -       n       -       1       proxymap
smtp           unix  -       -       n       -       -       smtp
relay          unix  -       -       n       -       -       smtp
showq          unix  n       -       n       -       -       showq
error          unix  -       -       n       -       -       error
retry          unix  -       -       n       -       -       error
discard        unix  -       -       n       -       -       discard
anvil          unix  -       -       n       -       1       anvil
scache         unix  -       -       n       -       1       scache
lmtp           unix  -       -       n       -       -       lmtp
postlog        unix-dgram n  -       n       -       1       postlogd
"""


def missing_packages():
    """Debian packages this harness needs that are not installed."""
    need = {HAPROXY: "haproxy", RSPAMD: "rspamd", DOVECOT: "dovecot-core",
            "/usr/lib/dovecot/lmtp": "dovecot-lmtpd",
            hf.POSTFIX: "postfix"}
    return [p for path, p in need.items() if not os.path.exists(path)]


def _fill(text, subst):
    for k, v in subst.items():
        text = text.replace(k, v)
    return text


class Proc:
    """A foreground process started by the harness, stopped by PID."""

    def __init__(self, name, argv, log, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.log = log
        self.env = env
        self.cwd = cwd
        self.proc = None

    def start(self):
        out = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=self.env, cwd=self.cwd, start_new_session=True)
        finally:
            out.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Primary:
    """HAProxy + postscreen/Postfix + rspamd + Dovecot LMTP on loopback.

    port: HAProxy's drain frontend (give it to holdfast as [primary] port);
    backup: the address the primary trusts (holdfast's [primary] source);
    size_limit: Postfix message_size_limit, advertised as EHLO SIZE;
    domain/users: the mail domain and its mailboxes (Maildir per user)."""

    def __init__(self, env, name="primary", backup="127.0.0.2",
                 size_limit=25 * 1024 * 1024, domain="example.org",
                 users=("user",), hostname="mail.example.org",
                 mark_ips=None, addr="127.0.0.10"):
        missing = missing_packages()
        if missing:
            raise hf.Skip("Debian packages missing: " + " ".join(missing))
        self.env = env
        self.name = name
        self.backup = backup
        self.size_limit = size_limit
        self.domain = domain
        self.users = list(users)
        self.hostname = hostname
        # {SYMBOL: address}: a test-only rspamd multimap symbol (score
        # 0.01) that fires when rspamd scores a message as coming from
        # that address, so the milter headers show which one it used
        self.mark_ips = dict(mark_ips or {})
        # every listener of the primary binds addr, not 127.0.0.1: tests
        # running beside this one (other worktrees, other engineers) take
        # random ports on 127.0.0.1, and a port picked here could be taken
        # there before the primary binds it
        self.addr = addr
        self.base = env.path(name)
        os.makedirs(self.base)
        os.chmod(self.base, 0o755)
        self.port = self.free_port()          # HAProxy frontend (drain)
        self.proxy_port = self.free_port()    # postscreen, PROXY v2
        self.lmtp_port = self.free_port()
        self.milter_port = self.free_port()   # rspamd proxy worker
        self.controller_port = self.free_port()
        self.normal_port = self.free_port()   # rspamd normal worker (off)
        self.dns_port = self.free_port()      # nothing listens there
        self.volume = os.path.join(self.base, "dms-config")
        self.pf_etc = os.path.join(self.base, "postfix", "etc")
        self.pf_queue = os.path.join(self.base, "postfix", "queue")
        self.pf_data = os.path.join(self.base, "postfix", "data")
        self.maillog = env.artifact(os.path.join(self.base, "postfix",
                                                 "maillog"))
        self.rs_dir = os.path.join(self.base, "rspamd")
        self.rs_log = env.artifact(os.path.join(self.rs_dir, "log",
                                                "rspamd.log"))
        self.dc_dir = os.path.join(self.base, "dovecot")
        self.dc_log = env.artifact(os.path.join(self.dc_dir, "dovecot.log"))
        self.mail_dir = os.path.join(self.base, "mail")
        self.hap_log = env.artifact(os.path.join(self.base, "haproxy.log"))
        self.hap_cfg = env.artifact(os.path.join(self.base, "haproxy.cfg"))
        self.subst = {BACKUP_PLACEHOLDER: backup, DMS_VOLUME: self.volume}
        self.procs = {}
        self.set_up = False
        self.postfix_up = False
        self.started_at = None    # time.monotonic() of the last start
        self.applied = []     # postconf commands run, for the test's notes
        env.own(self)

    def __repr__(self):
        return "Primary(%s drain port %d)" % (self.name, self.port)

    # ------------------------------------------------------------ ports
    def free_port(self):
        """A TCP port free on self.addr a moment ago, never one used
        before in this test process."""
        for _ in range(200):
            s = socket.socket()
            try:
                s.bind((self.addr, random.randint(20000, 60000)))
                port = s.getsockname()[1]
            except OSError:
                continue
            finally:
                s.close()
            if port in hf._used_ports or self.port_open(port, 0.2):
                continue
            hf._used_ports.add(port)
            return port
        hf.fail("no free port on %s" % self.addr)

    def port_open(self, port, timeout=1.0):
        try:
            with socket.create_connection((self.addr, port), timeout=timeout):
                return True
        except OSError:
            return False

    def wait_port(self, port, timeout, proc=None, what="listener"):
        def ok():
            if proc is not None and proc.poll() is not None:
                hf.fail("%s exited (rc=%s) before listening on %s:%d"
                        % (what, proc.returncode, self.addr, port))
            return self.port_open(port, 0.5)
        hf.wait_until(ok, timeout, "%s on %s:%d" % (what, self.addr, port))

    # ------------------------------------------------------------ setup
    def setup(self):
        """Write every config (once); start() calls it."""
        if self.set_up:
            return
        self.set_up = True
        self._setup_volume()
        self._setup_dovecot()
        self._setup_rspamd()
        self._setup_postfix()
        self._setup_haproxy()

    def _setup_volume(self):
        """The DMS config volume: contrib's files, placeholders filled."""
        os.makedirs(os.path.join(self.volume, "rspamd"))
        for src in glob.glob(os.path.join(DMS_CONTRIB, "**"), recursive=True):
            rel = os.path.relpath(src, DMS_CONTRIB)
            dst = os.path.join(self.volume, rel)
            if os.path.isdir(src):
                os.makedirs(dst, exist_ok=True)
                continue
            with open(src) as f:
                text = _fill(f.read(), self.subst)
            with open(dst, "w") as f:
                f.write(text)
            shutil.copymode(src, dst)
        with open(os.path.join(CONTRIB, "holdfast-backup.cidr")) as f:
            text = _fill(f.read(), self.subst)
        with open(os.path.join(self.volume, "holdfast-backup.cidr"), "w") as f:
            f.write(text)
        for d, _, files in os.walk(self.volume):
            os.chmod(d, 0o755)
            for fn in files:
                os.chmod(os.path.join(d, fn), 0o755 if fn.endswith(".sh")
                         else 0o644)

    def _setup_dovecot(self):
        d = self.dc_dir
        for sub in ("base", "state"):
            os.makedirs(os.path.join(d, sub))
        os.makedirs(self.mail_dir)
        shutil.chown(self.mail_dir, "nobody", "nogroup")
        conf = """\
instance_name = hf-%(name)s
base_dir = %(d)s/base
state_dir = %(d)s/state
protocols = lmtp
listen = %(addr)s
ssl = no
log_path = %(log)s
info_log_path = %(log)s
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:%(mail)s/%%n/Maildir
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
lmtp_rcpt_check_quota = no
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%(mail)s/%%n
}
service lmtp {
  inet_listener lmtp {
    address = %(addr)s
    port = %(port)d
  }
  unix_listener lmtp {
    mode = 0600
  }
}
service anvil {
  chroot =
}
""" % {"name": self.name, "d": d, "log": self.dc_log, "mail": self.mail_dir,
       "port": self.lmtp_port, "addr": self.addr}
        self.dc_conf = os.path.join(d, "dovecot.conf")
        with open(self.dc_conf, "w") as f:
            f.write(conf)
        self.env.artifact(self.dc_conf)

    def _setup_rspamd(self):
        """LOCAL_CONFDIR with DMS 15's local.d (workers on our ports, the
        normal worker off: the proxy scans itself) and the config volume's
        rspamd/override.d copied into override.d, as DMS does."""
        r = self.rs_dir
        for sub in ("local.d", "override.d", "db", "run", "log"):
            os.makedirs(os.path.join(r, sub))
        local = {
            "actions.conf": "greylist = 4;\nadd_header = 6;\nreject = 11;\n"
                            "rewrite_subject = null;\n",
            "milter_headers.conf": "extended_spam_headers = true;\n",
            "settings.conf": "authenticated {\n  priority = high;\n"
                             "  authenticated = yes;\n"
                             "  apply {\n    groups_enabled = [dkim];\n"
                             "  }\n}\n",
            # DMS: local_networks = 127.0.0.1/8, 10/8, ...; on loopback
            # 127/8 is "the Internet", so only the pod's own address
            # (rspamd takes all of 127/8 for local anyway).
            "options.inc": 'pidfile = false;\nsoft_reject_on_timeout = true;\n'
                           'local_networks = "%s/32";\n'
                           'disable_hyperscan = true;\n'
            'hs_cache_dir = "%s";\n'
                           'dns {\n  nameserver = ["%s:%d"];\n'
                           '  timeout = 0.2s;\n  retransmits = 1;\n}\n'
                           % (self.addr, HS_CACHE, self.addr,
                              self.dns_port),
            "worker-proxy.inc": 'bind_socket = "%s:%d";\n'
                                'milter = yes;\ntimeout = 120s;\n'
                                'upstream "local" {\n  default = yes;\n'
                                '  self_scan = yes;\n}\n'
                                'count = 1;\nmax_retries = 5;\n'
                                'discard_on_reject = false;\n'
                                'quarantine_on_reject = false;\n'
                                'spam_header = "X-Spam";\n'
                                % (self.addr, self.milter_port),
            "worker-normal.inc": 'enabled = false;\n'
                                 'bind_socket = "%s:%d";\n'
                                 % (self.addr, self.normal_port),
            "worker-controller.inc": 'bind_socket = "%s:%d";\n'
                                     % (self.addr, self.controller_port),
            "worker-fuzzy.inc": "count = -1;\n",
            "fuzzy_check.conf": "enabled = false;\n",
            "logging.inc": "level = \"info\";\n",
        }
        if self.mark_ips:
            local["multimap.conf"] = "".join(
                '%s {\n  type = "ip";\n  map = ["%s"];\n  score = 0.01;\n'
                '  description = "test: scored as %s";\n}\n'
                % (sym, addr, addr) for sym, addr in self.mark_ips.items())
        for fn, text in local.items():
            with open(os.path.join(r, "local.d", fn), "w") as f:
                f.write(text)
        # DMS: cp /tmp/docker-mailserver/rspamd/override.d/* \
        #    /etc/rspamd/override.d
        src = os.path.join(self.volume, "rspamd", "override.d")
        for fn in sorted(os.listdir(src)) if os.path.isdir(src) else []:
            shutil.copy(os.path.join(src, fn), os.path.join(r, "override.d"))
        os.makedirs(HS_CACHE, exist_ok=True)
        subprocess.run(["chown", "-R", "_rspamd:_rspamd", r, HS_CACHE],
                       check=True)

    def _main_cf(self):
        """DMS 15's main.cf (target/postfix/main.cf) where it matters to a
        drain, with the paths and DNS of a private loopback instance."""
        m = [
            ("compatibility_level", "3.6"),
            ("queue_directory", self.pf_queue),
            ("data_directory", self.pf_data),
            ("command_directory", "/usr/sbin"),
            ("daemon_directory", "/usr/lib/postfix/sbin"),
            ("shlib_directory", "/usr/lib/postfix"),
            ("meta_directory", "/etc/postfix"),
            ("mail_owner", "postfix"),
            ("setgid_group", "postdrop"),
            ("myhostname", self.hostname),
            ("mydomain", self.domain),
            ("maillog_file", self.maillog),
            ("maillog_file_prefixes", self.base),
            # Postfix wants an interface's own address here; the listener
            # binds addr explicitly (user-patches.sh: service addr:port)
            ("inet_interfaces", "127.0.0.1"),
            ("inet_protocols", "ipv4"),
            ("alias_maps", ""),
            ("alias_database", ""),
            ("smtp_dns_support_level", "disabled"),
            ("smtpd_peername_lookup", "no"),
            # --- DMS 15 main.cf
            ("smtpd_banner", "$myhostname ESMTP"),
            ("biff", "no"),
            ("append_dot_mydomain", "no"),
            ("smtputf8_enable", "no"),
            ("mydestination", "$myhostname, localhost.$mydomain, localhost"),
            ("relayhost", ""),
            # DMS: 127.0.0.0/8 [::1]/128 [fe80::]/64; 127/8 stands for the
            # Internet here
            ("mynetworks", self.addr + "/32"),
            ("mailbox_size_limit", "0"),
            ("recipient_delimiter", "+"),
            ("smtpd_tls_security_level", "none"),
            ("smtpd_helo_required", "yes"),
            ("smtpd_delay_reject", "yes"),
            ("smtpd_helo_restrictions", "permit_mynetworks, "
             "reject_invalid_helo_hostname, permit"),
            ("smtpd_relay_restrictions", "permit_mynetworks "
             "permit_sasl_authenticated defer_unauth_destination"),
            ("smtpd_recipient_restrictions", "permit_sasl_authenticated, "
             "permit_mynetworks, reject_unauth_destination, "
             "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname, "
             "reject_unknown_recipient_domain"),
            ("smtpd_client_restrictions", "permit_mynetworks, "
             "permit_sasl_authenticated, reject_unauth_destination"),
            ("smtpd_sender_restrictions", "$dms_smtpd_sender_restrictions"),
            ("smtpd_discard_ehlo_keywords", "silent-discard, dsn"),
            ("smtpd_data_restrictions", "permit_mynetworks, "
             "permit_sasl_authenticated, reject_unauth_pipelining"),
            ("disable_vrfy_command", "yes"),
            ("smtpd_forbid_bare_newline", "yes"),
            ("dms_smtpd_sender_restrictions", "permit_sasl_authenticated, "
             "permit_mynetworks, reject_unknown_sender_domain"),
            ("postscreen_dnsbl_action", "enforce"),
            ("postscreen_dnsbl_sites", ""),        # no DNS on loopback
            ("postscreen_dnsbl_threshold", "3"),
            ("postscreen_greet_action", "enforce"),
            ("postscreen_bare_newline_action", "enforce"),
            ("smtpd_sasl_auth_enable", "no"),
            ("virtual_mailbox_domains", self.domain),
            ("virtual_mailbox_maps", "texthash:%s/vmailbox" % self.pf_etc),
            ("virtual_transport", "lmtp:inet:%s:%d" % (self.addr,
                                                       self.lmtp_port)),
            ("milter_protocol", "6"),
            ("milter_default_action", "accept"),
            # DMS's rspamd setup: __rspamd__setup_postfix
            ("smtpd_milters", "inet:%s:%d" % (self.addr, self.milter_port)),
            ("non_smtpd_milters", "inet:%s:%d" % (self.addr,
                                                  self.milter_port)),
            ("message_size_limit", str(self.size_limit)),
            # the tests' pace
            ("queue_run_delay", "1s"),
            ("minimal_backoff_time", "1s"),
            ("maximal_backoff_time", "2s"),
        ]
        return "".join("%s = %s\n" % kv for kv in m)

    def _postconf(self, *args, env_extra=None):
        env = dict(os.environ, MAIL_CONFIG=self.pf_etc)
        env.update(env_extra or {})
        p = subprocess.run(["/usr/sbin/postconf"] + list(args), env=env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30)
        self.applied.append("postconf " + " ".join(args))
        hf.check(p.returncode == 0, "postconf %s: %s" % (" ".join(args),
                                                          p.stderr.strip()))
        return p

    def _setup_postfix(self):
        for d in (self.pf_etc, self.pf_queue, self.pf_data):
            os.makedirs(d)
        shutil.chown(self.pf_data, "postfix")
        with open(os.path.join(self.pf_etc, "main.cf"), "w") as f:
            f.write(self._main_cf())
        with open(os.path.join(self.pf_etc, "master.cf"), "w") as f:
            f.write(DMS_MASTER_CF)
        with open(os.path.join(self.pf_etc, "vmailbox"), "w") as f:
            for u in self.users:
                f.write("%s@%s OK\n" % (u, self.domain))
        # DMS 15, __postfix__setup_override_configuration: postfix-master.cf
        # line by line with postconf -P (lines starting [0-9a-z])
        with open(os.path.join(self.volume, "postfix-master.cf")) as f:
            for line in f:
                line = line.strip()
                if re.match(r"^[0-9a-z]", line):
                    self._postconf("-P", line)
        # ... then postfix-main.cf appended to main.cf and rewritten by
        # postconf -n (which drops parameters nothing references)
        main = os.path.join(self.pf_etc, "main.cf")
        with open(os.path.join(self.volume, "postfix-main.cf")) as f:
            extra = f.read()
        with open(main, "a") as f:
            f.write(extra)
        p = self._postconf("-n")
        with open(main + ".new", "w") as f:
            f.write(p.stdout)
        os.rename(main + ".new", main)
        # DMS _setup_run_user_patches: /bin/bash user-patches.sh
        p = subprocess.run(
            ["/bin/bash", os.path.join(self.volume, "user-patches.sh")],
            env=dict(os.environ, MAIL_CONFIG=self.pf_etc,
                     DMS_CONFIG=self.volume, RSPAMD_CONFDIR=self.rs_dir,
                     HOLDFAST_PROXY_PORT="%s:%d" % (self.addr,
                                                    self.proxy_port)),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60)
        hf.check(p.returncode == 0, "user-patches.sh failed: %s%s"
                 % (p.stdout, p.stderr))
        subprocess.run(["chown", "-R", "_rspamd:_rspamd", self.rs_dir],
                       check=True)
        for fn in ("main.cf", "master.cf"):
            self.env.artifact(os.path.join(self.pf_etc, fn))

    def _setup_haproxy(self):
        """contrib/primary/haproxy.cfg, the router's part, with the
        placeholders filled in: the frontend binds our drain port, the
        backend (the NodePort in front of the PROXY listener) is our
        postscreen port."""
        with open(os.path.join(CONTRIB, "haproxy.cfg")) as f:
            text = _fill(f.read(), self.subst)
        text = text.replace("bind :2526", "bind %s:%d" % (self.addr,
                                                           self.port))
        text = re.sub(r"\b192\.0\.2\.10:30125\b",
                      "%s:%d" % (self.addr, self.proxy_port), text)
        hf.check(str(self.port) in text and str(self.proxy_port) in text,
                 "haproxy.cfg: placeholders not found")
        glob_cfg = ("global\n    pidfile %s/haproxy.pid\n    log stdout "
                    "format raw local0 info\n\ndefaults\n    log global\n"
                    "    option tcplog\n\n" % self.base)
        with open(self.hap_cfg, "w") as f:
            f.write(glob_cfg + text)

    # ------------------------------------------------------------ start/stop
    def start(self, timeout=60):
        """Set up (once) and start Dovecot, rspamd, Postfix and HAProxy;
        returns when each one answers."""
        self.setup()
        self.start_dovecot()
        self.start_rspamd()
        self.wait_rspamd(timeout)
        self.start_mailserver()
        self.start_router()
        return self

    def start_dovecot(self):
        p = Proc("dovecot", [DOVECOT, "-F", "-c", self.dc_conf],
                 os.path.join(self.dc_dir, "stdout.log")).start()
        self.procs["dovecot"] = p
        self.wait_port(self.lmtp_port, 20, proc=p.proc, what="dovecot lmtp")

    def start_rspamd(self):
        r = self.rs_dir
        p = Proc("rspamd", [RSPAMD, "-f", "-u", "_rspamd", "-g", "_rspamd",
                            "-c", "/etc/rspamd/rspamd.conf",
                            "--var", "LOCAL_CONFDIR=" + r,
                            "--var", "DBDIR=" + os.path.join(r, "db"),
                            "--var", "RUNDIR=" + os.path.join(r, "run"),
                            "--var", "LOGDIR=" + os.path.join(r, "log")],
                 os.path.join(r, "stdout.log"), cwd=r).start()
        self.procs["rspamd"] = p

    def wait_rspamd(self, timeout=60):
        """The proxy worker listens and the controller answers /ping."""
        p = self.procs["rspamd"]

        def ready():
            if not p.alive():
                hf.fail("rspamd exited rc=%s: %s" % (
                    p.proc.returncode, self._tail(self.rs_log)))
            if not self.port_open(self.milter_port, 0.3):
                return False
            try:
                st, _, body = hf.http_get(self.addr, self.controller_port,
                                          "/ping", timeout=2)
            except OSError:
                return False
            return st == 200
        hf.wait_until(ready, timeout, "rspamd milter and controller",
                      interval=0.2)

    def start_mailserver(self):
        """Start Postfix (the mail server's SMTP side).  Postfix's master
        says why it could not start only to syslog (absent here): on a
        failure the ports it needs are checked, and it is tried once more."""
        rc, out = hf.run_pty([hf.POSTFIX, "-c", self.pf_etc, "check"],
                             timeout=60)
        hf.check(rc == 0, "postfix check: %s" % out)
        for attempt in (1, 2):
            # at or before the primary's return: Postfix's listeners
            # are bound while `postfix start` runs
            self.started_at = time.monotonic()
            rc, out = hf.run_pty([hf.POSTFIX, "-c", self.pf_etc, "start"],
                                 timeout=60)
            if rc == 0:
                break
            busy = [p for p in (self.proxy_port,) if self.port_open(p, 0.3)]
            hf.note("postfix start failed (rc=%d, attempt %d)%s: %s"
                    % (rc, attempt, " port %r is taken" % busy if busy
                       else "", out.strip()))
            pid = self.master_pid()
            if pid and hf.pid_alive(pid):
                hf.stop_pid(pid, 5)
            time.sleep(1)
        hf.check(rc == 0, "postfix start failed (rc=%d): %s %s"
                 % (rc, out, self._tail(self.maillog)))
        self.postfix_up = True
        self.wait_port(self.proxy_port, 20, what="postscreen (PROXY listener)")

    def master_pid(self):
        try:
            with open(os.path.join(self.pf_queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop_mailserver(self):
        """Stop Postfix; returns when its master is gone."""
        if not self.postfix_up:
            return
        pid = self.master_pid()
        hf.run_pty([hf.POSTFIX, "-c", self.pf_etc, "stop"], timeout=30)
        if pid and not hf.wait_pid_gone(pid, 15):
            hf.stop_pid(pid, 5, signal.SIGKILL)
        self.postfix_up = False
        hf.wait_until(lambda: not self.port_open(self.proxy_port, 0.2), 10,
                      "postscreen to stop listening")

    def start_router(self):
        p = Proc("haproxy", [HAPROXY, "-db", "-f", self.hap_cfg],
                 self.hap_log).start()
        self.procs["haproxy"] = p
        self.wait_port(self.port, 20, proc=p.proc, what="haproxy frontend")

    def cleanup(self):
        for name in ("haproxy",):
            if name in self.procs:
                self.procs[name].stop()
        try:
            self.stop_mailserver()
        except hf.Fail as e:
            print("  primary cleanup: %s" % e)
        for name in ("rspamd", "dovecot"):
            if name in self.procs:
                self.procs[name].stop()
        self.env.artifact(self.mail_dir)

    # ------------------------------------------------------------ looking
    @staticmethod
    def _tail(path, n=15):
        try:
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no %s)" % path
        return "\n".join(lines[-n:])

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rspamd_log(self):
        try:
            with open(self.rs_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def maildir_messages(self, user=None):
        """[(path, bytes)] of the messages in user's Maildir (new/ and
        cur/), oldest first."""
        user = user or self.users[0]
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mail_dir, user, "Maildir", sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    out.append((os.path.getmtime(p), p, f.read()))
        out.sort()
        return [(p, data) for _, p, data in out]

    def postscreen_lines(self, addr=None):
        """postscreen's log lines (optionally only those naming addr)."""
        out = []
        for line in self.log_text().splitlines():
            if "/postscreen[" not in line:
                continue
            if addr and "[%s]" % addr not in line:
                continue
            out.append(line)
        return out


def split_message(raw):
    """(header lines as a list of unfolded str, body bytes) of a message as
    delivered (LF or CRLF line ends)."""
    raw = raw.replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    lines = []
    for l in head.decode("utf-8", "replace").split("\n"):
        if l[:1] in (" ", "\t") and lines:
            lines[-1] += " " + l.strip()
        else:
            lines.append(l)
    return lines, body


def header_values(raw, name):
    lines, _ = split_message(raw)
    pre = name.lower() + ":"
    return [l[len(pre):].strip() for l in lines if l.lower().startswith(pre)]
