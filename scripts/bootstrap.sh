#!/usr/bin/env bash
# Create .venv (once) and install uniref with its test and demo extras. Offline-safe: pip only needs the
# package registry; torch 2.14.1 comes first so that no other torch build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,text,sam]"
