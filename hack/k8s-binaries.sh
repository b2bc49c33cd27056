#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kubectl)
# from the Go module proxy at pinned versions, into a cache outside the repository, and
# prints the directory that holds them (use it as KUBEBUILDER_ASSETS).
#
# Why from source: this workplace cannot download release binaries, and setup-envtest
# fetches from a bucket. The Go module proxy serves k8s.io/kubernetes, whose go.mod
# replaces the staging modules with ./staging/...; a throwaway module pins them instead.
#
# An existing KUBEBUILDER_ASSETS that already holds the binaries is used as is.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.0}"
CACHE_DIR="${APITOKEN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/apitoken-operator}"
OUT="${CACHE_DIR}/k8s/v${K8S_VERSION}"
BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)

have_all() {
  local dir=$1
  for b in "${BINARIES[@]}"; do [ -x "${dir}/${b}" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "${KUBEBUILDER_ASSETS}"; then
  echo "${KUBEBUILDER_ASSETS}"
  exit 0
fi
if have_all "${OUT}"; then
  echo "${OUT}"
  exit 0
fi

mkdir -p "${OUT}"
# One build at a time: test packages run in parallel each call this script when
# KUBEBUILDER_ASSETS is unset, and two builds into the same .tmp files fail. The
# second waits for the lock, then finds what the first built.
exec 9>"${OUT}/.lock"
flock 9
if have_all "${OUT}"; then
  echo "${OUT}"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export GOFLAGS="-mod=mod" CGO_ENABLED=0

log() { echo "k8s-binaries: $*" >&2; }

if [ ! -x "${OUT}/etcd" ]; then
  log "building etcd v${ETCD_VERSION} (a minute or two)"
  mkdir -p "${work}/etcd"
  (
    cd "${work}/etcd"
    go mod init tmp/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >/dev/null 2>&1
    go build -trimpath -ldflags='-s -w' -o "${OUT}/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "${OUT}/etcd.tmp" "${OUT}/etcd"
fi

need_k8s=0
for b in kube-apiserver kube-controller-manager kubectl; do [ -x "${OUT}/${b}" ] || need_k8s=1; done
if [ "${need_k8s}" = 1 ]; then
  log "building Kubernetes v${K8S_VERSION} binaries (about 10 minutes the first time on 2 cores)"
  mkdir -p "${work}/k8s"
  cd "${work}/k8s"
  go mod init tmp/k8s >/dev/null 2>&1
  modfile="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  staging_version="v0.${K8S_VERSION#1.}"
  {
    echo "require k8s.io/kubernetes v${K8S_VERSION}"
    grep -E '^\s*k8s.io/[^ ]+ => ./staging/' "${modfile}" | awk -v v="${staging_version}" '{print "replace " $1 " => " $1 " " v}'
  } >>go.mod

  for b in kube-apiserver kube-controller-manager kubectl; do
    [ -x "${OUT}/${b}" ] && continue
    log "  ${b}"
    go build -trimpath -ldflags='-s -w' -o "${OUT}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}"
    mv "${OUT}/${b}.tmp" "${OUT}/${b}"
  done
fi
echo "${OUT}"
