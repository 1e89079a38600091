#!/usr/bin/env bash
# Install what tests/display/test_browser.py needs on a fresh Debian (or Ubuntu) machine:
# Debian's chromium (Playwright drives it; it never downloads a browser of its
# own) and pdbatch with its `test` extra (pytest, nbclient, ipykernel,
# jupyterlab, playwright, ipywidgets).
#
#   tests/setup_browser.sh            # into the active virtualenv, or ./.venv
#   PYTHON=/path/to/python tests/setup_browser.sh
#
# Then: PDBATCH_ALLOW_SKIP= python -m pytest -m browser tests/display/test_browser.py
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- chromium -----------------------------------------------------------------
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium: already installed ($(command -v chromium || command -v chromium-browser))"
else
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to apt-get install chromium" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update
    # fonts-liberation: readable text in screenshots on a machine with no fonts yet.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium fonts-liberation
fi

# --- python packages ----------------------------------------------------------
if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -n "${VIRTUAL_ENV:-}" ]; then
    python="$VIRTUAL_ENV/bin/python"
else
    if [ ! -x "$repo/.venv/bin/python" ]; then
        python3 -m venv "$repo/.venv"
    fi
    python="$repo/.venv/bin/python"
fi
"$python" -m pip install -e "$repo[test]"

# The kernel the notebooks run in must be this interpreter's ("python3" from
# ipykernel's own spec, which follows the interpreter that starts Jupyter).
"$python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null

# Widgets render only with the JupyterLab extension that ipywidgets brings along.
"$python" -m jupyter labextension list 2>&1 | grep -q "@jupyter-widgets/jupyterlab-manager" \
    || { echo "jupyterlab_widgets is missing: pip install ipywidgets" >&2; exit 1; }

"$python" - <<'PY'
import shutil
from importlib.metadata import version

browser = shutil.which("chromium") or shutil.which("chromium-browser")
print("ready:", browser, *(f"{p} {version(p)}" for p in ("playwright", "jupyterlab", "ipywidgets", "nbclient")))
PY
