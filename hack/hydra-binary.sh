#!/usr/bin/env bash
# Builds Ory Hydra (Apache-2.0) from the Go module proxy at a pinned version into the
# same cache as the control plane binaries, and prints the binary's path.
#
# Why from source: this workplace cannot download release binaries. Hydra's go.mod
# needs one replace (its pop fork) that a throwaway module states; the sqlite build tag
# gives a single binary that also runs with DSN=memory.
#
# An existing HYDRA_BINARY that is executable is used as is.
set -euo pipefail

HYDRA_VERSION="${HYDRA_VERSION:-2.3.0}"
CACHE_DIR="${APITOKEN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/apitoken-operator}"
OUT="${CACHE_DIR}/hydra/v${HYDRA_VERSION}"

if [ -n "${HYDRA_BINARY:-}" ] && [ -x "${HYDRA_BINARY}" ]; then
  echo "${HYDRA_BINARY}"
  exit 0
fi
if [ -x "${OUT}/hydra" ]; then
  echo "${OUT}/hydra"
  exit 0
fi

mkdir -p "${OUT}"
# One build at a time (parallel test packages may each call this); the second
# waits, then finds the binary.
exec 9>"${OUT}/.lock"
flock 9
if [ -x "${OUT}/hydra" ]; then
  echo "${OUT}/hydra"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
echo "hydra-binary: building Ory Hydra v${HYDRA_VERSION} (about 5 minutes the first time on 2 cores)" >&2
(
  cd "${work}"
  export GOFLAGS="-mod=mod"
  go mod init tmp/hydra >/dev/null 2>&1
  go mod edit -replace github.com/gobuffalo/pop/v6=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
  go get -tool "github.com/ory/hydra/v2@v${HYDRA_VERSION}" >/dev/null 2>&1
  go build -tags sqlite -trimpath -ldflags='-s -w' -o "${OUT}/hydra.tmp" github.com/ory/hydra/v2
)
mv "${OUT}/hydra.tmp" "${OUT}/hydra"
echo "${OUT}/hydra"
