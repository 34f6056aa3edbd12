#!/usr/bin/env bash
# README's test command: install cnnlab with its test tools, then run the whole suite
# (ruff included, as a test). torch is pinned first to the CPU build; a bare `pip install torch`
# would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
python -m pytest "$@"
