#!/usr/bin/env bash
# Chromium for the browser tests (tests/e2e/browser.py, driven by the Python playwright
# package): Debian's `chromium` and `chromium-driver`, installed only if missing (needs root or
# sudo for apt). Playwright's own browser download is never used: it fetches from a CDN.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing chromium (Debian packages chromium, chromium-driver)" >&2
# The package lists may be missing on a fresh machine: update once, only if the install fails.
install() {
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends chromium chromium-driver >/dev/null
}
install 2>/dev/null || {
  $sudo apt-get update -qq
  install
}
[ -x /usr/bin/chromium ] || {
  echo "/usr/bin/chromium is still missing after installing chromium" >&2
  exit 1
}
