#!/usr/bin/env bash
# The Debian packages the tests need, installed when this machine allows it (root, or sudo without a prompt).
#
#   postgresql    initdb/pg_ctl for the throwaway PostgreSQL cluster of the end-to-end and store tests
#   redis-server  the Celery broker of the distributed-mode test
#   chromium      the headless browser tests of the report and the UI plugin
#   chromium-driver  chromedriver, which Selenium drives chromium through
#
# Where a package is missing and cannot be installed (no root, no password-less sudo, no apt-get), this prints
# which tests will be skipped; the tests themselves skip with a message naming the package. An install that was
# possible but failed is an error: the tests would otherwise be skipped on a machine that could run them.
# `make test` runs this first; SHOPFLOW_SKIP_SYSTEM_PACKAGES=1 (or true/yes/on, as every boolean setting:
# shopflow.config.options) turns it off.
set -euo pipefail

skip="$(printf '%s' "${SHOPFLOW_SKIP_SYSTEM_PACKAGES:-}" | tr '[:upper:]' '[:lower:]' | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')"
case "$skip" in
  1|true|yes|on) exit 0 ;;
  ''|0|false|no|off) ;;
  *) echo "SHOPFLOW_SKIP_SYSTEM_PACKAGES: '${SHOPFLOW_SKIP_SYSTEM_PACKAGES}' is not a boolean (true or false)" >&2
     exit 2 ;;
esac

have_postgres() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have() { command -v "$1" >/dev/null; }

missing=()
have_postgres || missing+=(postgresql)
have redis-server || missing+=(redis-server)
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if have sudo && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(none)
  fi
fi
if [ "${as_root[*]-}" = none ] || ! have apt-get; then
  echo "system packages missing and not installable here (needs root or password-less sudo, and apt-get):" >&2
  for package in "${missing[@]}"; do
    case $package in
      postgresql) echo "  postgresql: the PostgreSQL-backed tests will be skipped" >&2 ;;
      redis-server) echo "  redis-server: the distributed CeleryExecutor test will be skipped" >&2 ;;
      chromium) echo "  chromium: the headless browser tests will be skipped" >&2 ;;
      chromium-driver) echo "  chromium-driver: the headless browser tests will be skipped" >&2 ;;
    esac
  done
  echo "  install them with: apt-get install ${missing[*]}" >&2
  exit 0
fi

echo "installing Debian packages the tests need: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
