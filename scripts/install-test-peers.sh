#!/usr/bin/env bash
# Installs and starts what the test suite talks to, on a fresh Debian machine (run as root):
# Postfix's smtp-sink/smtp-source, Perl Mail::DKIM and npm mailauth (the independent DKIM
# verifiers; mailauth for Ed25519), Dovecot (IMAP/POP3 bounce mailbox), Chromium (renders
# the HTML report), SpamAssassin (scores the bundled template with its local rules; never
# sa-update), unbound and BIND's dnssec-signzone (the DNSSEC-validating resolver of the DANE
# tests, started by the tests themselves), and PostgreSQL started if it is installed but not
# running.
# Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
for pkg in postfix libmail-dkim-perl dovecot-imapd dovecot-pop3d chromium spamassassin \
    unbound bind9-utils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q "${need[@]}"
fi

# The wheel test (tests/integration/test_wheel.py) installs bulkmail into a fresh venv:
# Debian's own python3 needs python3-venv for that (pyenv and python.org builds have it).
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  echo "installing: python3-venv"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
fi

# mailauth (npm): the independent verifier of Ed25519 DKIM signatures (RFC 8463), which
# Debian's Mail::DKIM 1.20230212 does not implement. Version pinned: engines node >= 18.
mailauth_dir="${BULKMAIL_MAILAUTH_DIR:-/opt/bulkmail-test-peers/mailauth}"
if [ ! -f "$mailauth_dir/node_modules/mailauth/package.json" ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing: nodejs npm"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
  fi
  echo "installing: mailauth (npm) in $mailauth_dir"
  mkdir -p "$mailauth_dir"
  npm install --prefix "$mailauth_dir" --no-audit --no-fund --silent mailauth@4.9.5
fi

# PostgreSQL: the multi-worker tests run against the server at 127.0.0.1:5432 as the
# "postgres" user without a password (or the admin URL in $BULKMAIL_TEST_PG).
if [ -z "${BULKMAIL_TEST_PG:-}" ] && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [ ! -d /etc/postgresql ]; then
    echo "installing: postgresql (test database, trust auth on loopback)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
    sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  fi
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    pg_isready -h 127.0.0.1 -p 5432 -q || { echo "PostgreSQL did not start" >&2; exit 1; }
  else
    echo "PostgreSQL is not installed; install it or set BULKMAIL_TEST_PG" >&2
    exit 1
  fi
fi
