# apitoken-operator

IMG ?= apitoken-operator:dev
TOKENSERVICE_IMG ?= apitoken-tokenservice:dev
# VERSION is stamped into both binaries (--version) by LDFLAGS and the Dockerfile.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS ?= -X main.version=$(VERSION)
K8S_VERSION ?= 1.37.2
# CREDENTIALS_NAMESPACE is where make run reads TokenBackends' admin key Secrets.
CREDENTIALS_NAMESPACE ?= apitoken-system

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint

CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.1
GOLANGCI_LINT_VERSION ?= v2.15.0

# Test binaries (etcd, kube-apiserver, kube-controller-manager, kubectl) are built
# from the Go module proxy into a cache outside the repo; KUBEBUILDER_ASSETS wins.
ENVTEST_ASSETS = $(shell K8S_VERSION=$(K8S_VERSION) hack/k8s-binaries.sh)

# Fuzz targets, each with the number of inputs make fuzz tries (about 10 s each
# on 2 cores). A count, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can report its own deadline as a failure ("context deadline
# exceeded" with no failing input written; golang/go#75804, fixed in Go 1.27).
# FUZZTIME (a duration such as 1m, or a count such as 500000x) replaces every
# target's count, for a longer run.
FUZZTIME ?=
FUZZ_TARGETS = \
	./internal/tokenservice:FuzzCreateToken:100000 \
	./internal/tokenservice:FuzzPatchToken:100000 \
	./internal/tokenservice:FuzzVerify:100000 \
	./pkg/backend:FuzzDecodeProblem:20000 \
	./pkg/backend:FuzzDecodeResponses:20000 \
	./controllers:FuzzRenderSecret:8000 \
	./controllers:FuzzRenderTemplate:3000 \
	./controllers:FuzzResetDue:15000

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases
	@hack/chart-sync.sh

.PHONY: chart-sync
chart-sync: ## Copy the CRDs, the manager's RBAC rules, alerts, dashboard and admission policy from config/ into the chart.
	hack/chart-sync.sh

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale.
	@git diff --exit-code -- config/crd config/rbac api charts || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- charts/apitoken-operator/files)" || { git status --short -- charts/apitoken-operator/files; echo "the chart's copies of config/ are not committed: run 'make manifests' and commit"; exit 1; }

.PHONY: k8s-binaries
k8s-binaries: ## Build etcd, kube-apiserver, kube-controller-manager and kubectl into the cache.
	@K8S_VERSION=$(K8S_VERSION) hack/k8s-binaries.sh

.PHONY: hydra-binary
hydra-binary: ## Build Ory Hydra (pinned) into the cache, once (about 5 minutes the first time).
	@hack/hydra-binary.sh >/dev/null

.PHONY: test
test: manifests generate fmt vet hydra-binary ## Run every test: unit, conformance, envtest integration and end-to-end (tokenservice and Ory Hydra); prints the slowest packages.
	@mkdir -p tmp
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HYDRA_BINARY="$$(hack/hydra-binary.sh)" go test ./... -count=1 -timeout 30m 2>&1 | tee tmp/test.log
	@echo "slowest packages:"; awk '$$1 == "ok" || $$1 == "FAIL" { t = $$3; sub(/s$$/, "", t); if (t + 0 > 0) printf "%8.1fs  %s\n", t, $$2 }' tmp/test.log | sort -rn | head -6

CRASH_TRIALS ?= 300
CRASH_SEED ?= 0

.PHONY: test-install
test-install: ## Only the install tests: chart, dist/install.yaml, scoped install, alerts and dashboard.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./test/install -count=1 -v

.PHONY: crash-trials
crash-trials: hydra-binary ## The long randomized crash-consistency run, CRASH_TRIALS against tokenservice and as many against Ory Hydra (CRASH_SEED to replay).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HYDRA_BINARY="$$(hack/hydra-binary.sh)" go test ./test/reliability -run TestCrashConsistency -count=1 -timeout 60m -v \
		-trials $(CRASH_TRIALS) -seed $(CRASH_SEED) 2>&1 | grep --line-buffered -E "crash-consistency|crash points|transport faults|hostile tenant|trial [0-9]+:|^(ok|FAIL|---)"

# -fuzzminimizetime bounds the minimization of new interesting inputs: a long one
# can outlast a duration -fuzztime and fail the run with "context deadline exceeded".
.PHONY: fuzz
fuzz: ## Run each fuzz target for its count of inputs (FUZZ_TARGETS), or for FUZZTIME.
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; count=$${rest##*:}; \
		budget=$(or $(FUZZTIME),$${count}x); \
		echo "fuzz $$pkg $$fn ($$budget)"; go test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $$budget -fuzzminimizetime 1s || exit 1; done

BENCH_N ?= 2000
BENCH_IDLE ?= 100s
BENCH_RESYNC ?= 1m
BENCH_SECRETS ?= 10000
BENCH_QPS ?= -1
BENCH_SCALE_N ?= 10000
BENCH_HYDRA_N ?= 300
# Convergence pairs timed in turn, each operator run between two baseline runs
# (baseline, operator, baseline, ..., baseline); the median ratio has the target.
# Runs of fewer ApiTokens than N keep make bench within 12 minutes and make
# bench-scale within 20 (the operator then converges the rest up to N for the
# later phases); the output states the size.
BENCH_PAIRS ?= 3
BENCH_PAIR_N ?= 600
BENCH_SCALE_PAIR_N ?= 2000
# More arguments for make bench and bench-scale, e.g. BENCH_ARGS=-profile for the
# operator's, the plain client's and the API server's profiles (the CPU figures
# then include the profilers' cost), or -warm-up 0.
BENCH_ARGS ?=

.PHONY: bench
bench: hydra-binary ## Benchmark the operator binary (convergence, API/backend amplification, steady state, memory, latency; a Hydra backend first).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HYDRA_BINARY="$$(hack/hydra-binary.sh)" go test ./test/bench -run TestBench -count=1 -timeout 60m -v \
		-args -n $(BENCH_N) -idle $(BENCH_IDLE) -resync $(BENCH_RESYNC) -secrets $(BENCH_SECRETS) -qps $(BENCH_QPS) -pairs $(BENCH_PAIRS) -pair-n $(BENCH_PAIR_N) -hydra-n $(BENCH_HYDRA_N) -out $(CURDIR)/bench.json $(BENCH_ARGS)

.PHONY: bench-scale
bench-scale: ## The same benchmark at 10,000 ApiTokens (convergence runs of 2,000), every target enforced (about 17.5 minutes on a 2-core machine).
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./test/bench -run TestBench -count=1 -timeout 120m -v \
		-args -n $(BENCH_SCALE_N) -idle $(BENCH_IDLE) -resync $(BENCH_RESYNC) -secrets $(BENCH_SECRETS) -qps $(BENCH_QPS) -pairs $(BENCH_PAIRS) -pair-n $(BENCH_SCALE_PAIR_N) -out $(CURDIR)/bench-scale.json $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke: hydra-binary ## A short run of the benchmark harness (CI): figures printed, targets not enforced.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" HYDRA_BINARY="$$(hack/hydra-binary.sh)" go test ./test/bench -run TestBench -count=1 -timeout 20m -v \
		-args -n 100 -idle 20s -resync 10s -secrets 300 -cpu-window 20s -pairs 3 -warm-up 20 -profile -hydra-n 30 -enforce=false -out $(CURDIR)/bench.json

.PHONY: bench-tokenservice
bench-tokenservice: ## Benchmark tokenservice (creates/s, conditional GETs/s, resets/s) with the database on disk.
	go test ./internal/tokenservice -run '^$$' -bench BenchmarkTokenService -benchtime 5s

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the operator and tokenservice binaries.
	go build -ldflags "$(LDFLAGS)" -o bin/manager .
	go build -ldflags "$(LDFLAGS)" -o bin/tokenservice ./cmd/tokenservice

.PHONY: plugin
plugin: ## Build the kubectl plugin bin/kubectl-apitoken (version stamped); install: cp bin/kubectl-apitoken ~/.local/bin/
	go build -ldflags "$(LDFLAGS)" -o bin/kubectl-apitoken ./cmd/kubectl-apitoken

.PHONY: run
run: manifests generate ## Run the operator against the cluster of your kubeconfig (admin key Secrets from CREDENTIALS_NAMESPACE).
	go run . --credentials-namespace=$(CREDENTIALS_NAMESPACE) --metrics-bind-address=:8443 --health-probe-bind-address=:8081

.PHONY: dev
dev: ## Start a local control plane, tokenservice, Ory Hydra and the operator, apply the samples (and the Hydra ones).
	K8S_VERSION=$(K8S_VERSION) hack/dev.sh

.PHONY: docker-build
docker-build: ## Build the operator image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: docker-build-tokenservice
docker-build-tokenservice: ## Build the tokenservice image (needs a Docker engine).
	docker build --target tokenservice --build-arg VERSION=$(VERSION) -t $(TOKENSERVICE_IMG) .

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml (CRDs, RBAC, the operator with IMG) from config/default.
	KUSTOMIZE_BUILD="$(KUSTOMIZE) build" IMG=$(IMG) hack/build-installer.sh dist/install.yaml

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of your kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRDs.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator with config/default.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | kubectl apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator.
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

# go-install-tool installs a pinned tool into bin/ as <name>-<version>, linked from <name>.
define go-install-tool
@[ -f "$(1)-$(3)" ] || { \
set -e; \
echo "Installing $(2)@$(3)"; \
rm -f $(1) || true; \
GOBIN=$(LOCALBIN) go install $(2)@$(3); \
mv $(1) $(1)-$(3); \
}; \
ln -sf $$(basename $(1)-$(3)) $(1)
endef
