#!/usr/bin/env bash
# The whole-catalogue study in one command: a thin wrapper over bench/full_study.py (its --help lists the options;
# README "Study" has the command for a GPU machine). Runs from the repository root with the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" bench/full_study.py "$@"
