#!/usr/bin/env bash
# make dev: builds what is missing, then runs cmd/devcluster (control plane,
# tokenservice, operator, samples) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
assets="$(hack/k8s-binaries.sh)"
echo "building bin/manager, bin/tokenservice, bin/devcluster"
go build -o bin/manager .
go build -o bin/tokenservice ./cmd/tokenservice
go build -o bin/devcluster ./cmd/devcluster
KUBEBUILDER_ASSETS="${assets}" exec bin/devcluster --dir .dev "$@"
