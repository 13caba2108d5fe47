#!/usr/bin/env bash
# Run the whole test suite: lint, types, import layering, then pytest (unit, conformance,
# integration and e2e). Installs its own dependencies first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check pocketkube tests bench
echo "== mypy"; mypy
echo "== import-linter"; lint-imports
echo "== pytest"
set +e
pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest ran no tests: failing" >&2
    exit 1
fi
exit "$rc"
