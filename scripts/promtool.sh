#!/usr/bin/env bash
# promtool, for `tests/integration/test_promtool.py` (`promtool check rules` on
# deploy/prometheus/alerts.yml). Debian ships it in the `prometheus` package; installed only if
# it is missing (needs root or sudo for apt). The server the package brings is never started
# by this script: only the promtool binary is used (in a container without an init system,
# as CI's, the package's service does not start at all).
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing promtool (Debian package prometheus)" >&2
# The package lists may be missing on a fresh machine: update once, only if the install fails.
# --no-install-recommends skips the node exporter and the web assets.
install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends prometheus >/dev/null
}
install 2>/dev/null || {
  $sudo apt-get update -qq
  install
}
command -v promtool >/dev/null 2>&1 || {
  echo "promtool is still missing after installing prometheus" >&2
  exit 1
}
