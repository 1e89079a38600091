#!/usr/bin/env bash
# Everything the test suite needs beyond `pip install -e '.[test]'`:
# the Cloud Storage and BigQuery emulators (each in its own venv) and the
# headless Chromium for the browser test. Idempotent: a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/emulators/setup.sh"
# the browser test's packages go into the Python that runs the tests
PYTHON="${PYTHON:-$(command -v python || command -v python3)}" bash "$here/setup_browser.sh"
