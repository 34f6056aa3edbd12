#!/usr/bin/env bash
# README's test command: install cnnlab with its test tools, then run the whole suite
# (ruff included, as a test). torch is pinned first to the CPU build; a bare `pip install torch`
# would pull a multi-GB CUDA build. torchattacks is an oracle for the attack tests only; --no-deps
# because its declared torchvision dependency would pull a CUDA torch. Chromium (Debian) lets the
# report test open the HTML report headless; without it that part of the test skips, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,export,classic,quant]"
python -m pip install -q --no-deps "torchattacks==3.5.1"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "note: chromium could not be installed; the browser check will skip"
fi
python -m pytest "$@"
