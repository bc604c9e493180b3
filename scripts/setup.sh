#!/usr/bin/env bash
# Set up hamopt on a fresh machine: a virtual environment in .venv with the CPU build of
# torch 2.13.0 and hamopt with all extras (ray included, so the Ray backend's tests run in CI).
# Safe to rerun (it only installs what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: any other torch request would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[lab,demo,dev,ray,fused]"
# the SOAP baseline (hamopt.families.soap); --no-deps: it needs only torch and numpy, already here
.venv/bin/python -m pip install -q --no-deps "pytorch-optimizer==4.1.0"
