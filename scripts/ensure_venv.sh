#!/usr/bin/env bash
# Make a virtual environment match pinned requirements, doing work only when they changed.
#
#   scripts/ensure_venv.sh VENV PYTHON STAMP -- PIP_INSTALL_ARGS... [-- PIP_INSTALL_ARGS...]
#
# Each group of arguments after a ``--`` is one ``pip install``, run in order.
# STAMP is a file inside VENV whose name carries a hash of the requirement files (the Makefile
# computes it). When it exists, nothing happens. Otherwise the venv is (re)created if missing,
# broken or of another Python minor version, the pinned requirements are installed into it,
# stale stamps are removed and STAMP is written. A venv that is merely out of date is updated in
# place rather than rebuilt, so a colleague's running tests keep their interpreter.
set -euo pipefail

if [[ $# -lt 4 || "$4" != "--" ]]; then
    echo "usage: $0 VENV PYTHON STAMP -- PIP_INSTALL_ARGS... [-- PIP_INSTALL_ARGS...]" >&2
    exit 2
fi
venv=$1 python=$2 stamp=$3
shift 4

if [[ -f "$stamp" ]]; then
    exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
    echo "error: $python is not on PATH; Tollgate targets Python 3.11 (set PYTHON=... to override)" >&2
    exit 1
fi
want=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

have=""
if [[ -x "$venv/bin/python" ]]; then
    have=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
fi
if [[ "$have" != "$want" ]]; then
    [[ -e "$venv" ]] && echo "==> $venv is ${have:-broken}, not Python $want: recreating it"
    rm -rf "$venv"
    echo "==> creating $venv with $python ($want)"
    "$python" -m venv "$venv"
fi

pip_install() {
    echo "==> pip install $* (into $venv)"
    # The machine's pip configuration may name extra local indexes that do not exist; pip says
    # so once per package, which is noise here.
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

start=$SECONDS
group=()
for arg in "$@"; do
    if [[ "$arg" == "--" ]]; then
        pip_install "${group[@]}"
        group=()
    else
        group+=("$arg")
    fi
done
if [[ ${#group[@]} -gt 0 ]]; then
    pip_install "${group[@]}"
fi
rm -f "$venv"/.deps-*
touch "$stamp"
echo "==> $venv ready ($((SECONDS - start))s)"
