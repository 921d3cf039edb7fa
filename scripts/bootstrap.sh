#!/usr/bin/env bash
# What a fresh Debian machine needs before `make demo` / `make test`: make and a Python 3.11+
# that can create virtualenvs. Installs only what is missing (needs root or sudo for apt).
set -euo pipefail

need=()
command -v make >/dev/null 2>&1 || need+=(make)
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

python3 -c 'import sys; assert sys.version_info >= (3, 11), "Interlink needs Python 3.11+"'
