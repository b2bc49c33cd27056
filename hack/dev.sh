#!/usr/bin/env bash
# make dev: builds what is missing, then runs cmd/devcluster (control plane,
# tokenservice, Ory Hydra, operator, samples) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
assets="$(hack/k8s-binaries.sh)"
# Hydra at the pinned version: built once into the cache (about 5 minutes the
# first time), or HYDRA_BINARY when it is set.
hydra="$(hack/hydra-binary.sh | tail -n 1)"
echo "building bin/manager, bin/tokenservice, bin/devcluster"
go build -o bin/manager .
go build -o bin/tokenservice ./cmd/tokenservice
go build -o bin/devcluster ./cmd/devcluster
KUBEBUILDER_ASSETS="${assets}" HYDRA_BINARY="${hydra}" exec bin/devcluster --dir .dev "$@"
