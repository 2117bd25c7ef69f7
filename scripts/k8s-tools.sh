#!/usr/bin/env bash
# Installs what test/unit/k8s.test.ts needs to check deploy/k8s/ offline, idempotently, under .tools/:
#   kustomize             built from its Go module into .tools/bin (~1 min once; the Go build cache
#                         makes a rebuild after a version change cheap)
#   kubernetes-validate   from PyPI into the venv .tools/k8s-venv: it ships the OpenAPI schemas of
#                         every Kubernetes release's built-in kinds, so nothing is fetched at test time
#   CRDs                  the CustomResourceDefinitions of the operators the manifests use, copied out
#                         of those operators' own Go modules (`go mod download`, no build) into
#                         .tools/k8s-crds/<group>_<plural>.yaml
# A second run with everything in place changes nothing and takes well under a second.
# Usage: scripts/k8s-tools.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/k8s-venv"
CRDS="$TOOLS/k8s-crds"
mkdir -p "$BIN"

# Pinned versions. The operator versions are the ones deploy/k8s/README.md tells you to install.
# v5.8.1: the newest whose go.mod asks for no newer Go than the machines have (v5.8.3 wants 1.27).
KUSTOMIZE_VERSION=v5.8.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# module@version  path-in-module  (each file is one CRD)
CRD_SOURCES=(
  "github.com/kedacore/keda/v2@v2.21.0 config/crd/bases/keda.sh_scaledobjects.yaml"
  "github.com/rabbitmq/cluster-operator/v2@v2.16.0 config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml"
  "github.com/cloudnative-pg/cloudnative-pg@v1.29.1 config/crd/bases/postgresql.cnpg.io_clusters.yaml"
  "github.com/cloudnative-pg/cloudnative-pg@v1.29.1 config/crd/bases/postgresql.cnpg.io_databases.yaml"
  "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
)
# The KEDA scalers' sources: the test reads the trigger metadata names they accept from them.
KEDA_SCALERS="github.com/kedacore/keda/v2@v2.21.0 pkg/scalers/rabbitmq_scaler.go pkg/scalers/temporal_scaler.go"

log() { printf '[k8s-tools] %s\n' "$*"; }
die() { printf '[k8s-tools] ERROR: %s\n' "$*" >&2; exit 1; }
# As scripts/infra.sh does: root runs it, anyone else needs passwordless sudo.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@" || die "needs root (or passwordless sudo) for: $*"; fi; }

need_go() {
  command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || die "needs Go >= 1.24 on PATH to build kustomize and fetch the CRDs"
}

# --- kustomize -----------------------------------------------------------------------------------
if [ ! -x "$BIN/kustomize" ] || [ "$(cat "$TOOLS/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
  need_go
  log "kustomize $KUSTOMIZE_VERSION: building from its Go module"
  GOBIN="$BIN" GOFLAGS=-trimpath go install -ldflags='-s -w' "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  echo "$KUSTOMIZE_VERSION" >"$TOOLS/kustomize.version"
fi

# --- kubernetes-validate -------------------------------------------------------------------------
if [ "$(cat "$VENV/version" 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  log "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: installing from PyPI into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" 2>/dev/null || {
    # Debian splits venv out of python3.
    log "apt-get install python3-venv"
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  echo "$KUBERNETES_VALIDATE_VERSION" >"$VENV/version"
fi

# --- CRDs and KEDA scaler sources ----------------------------------------------------------------
stamp=$(printf '%s\n' "${CRD_SOURCES[@]}" "$KEDA_SCALERS" | sha256sum | cut -c1-16)
if [ "$(cat "$CRDS/stamp" 2>/dev/null)" != "$stamp" ]; then
  need_go
  rm -rf "$CRDS" && mkdir -p "$CRDS/keda-scalers"
  declare -A dirs=()
  module_dir() { # module@version -> its directory in the module cache (downloaded once)
    [ -n "${dirs[$1]:-}" ] || {
      log "go mod download $1"
      dirs[$1]=$(cd "$TOOLS" && GOFLAGS=-mod=mod go mod download -json "$1" | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')
      [ -n "${dirs[$1]}" ] || die "go mod download $1 gave no directory"
    }
  }
  for entry in "${CRD_SOURCES[@]}"; do
    read -r module file <<<"$entry"
    module_dir "$module"
    cp "${dirs[$module]}/$file" "$CRDS/$(basename "$file")"
  done
  read -r module files <<<"$KEDA_SCALERS"
  module_dir "$module"
  for file in $files; do cp "${dirs[$module]}/$file" "$CRDS/keda-scalers/"; done
  chmod -R u+w "$CRDS"
  printf '%s\n' "${CRD_SOURCES[@]}" "$KEDA_SCALERS" >"$CRDS/sources"
  echo "$stamp" >"$CRDS/stamp"
fi
