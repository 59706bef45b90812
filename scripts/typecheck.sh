#!/usr/bin/env bash
# The type checker on the library and the nodes: mypy over echomimic/ and nodes/ as ComfyUI imports them
# (subpackages of the extension folder, whatever the clone is called): a link with a fixed package name.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/echomimic-typecheck.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ln -s "$REPO" "$WORK/echomimic_ext"
cd "$WORK"
python -m mypy --config-file "$REPO/pyproject.toml" -p echomimic_ext.echomimic -p echomimic_ext.nodes
