#!/usr/bin/env bash
# make chart-sync (run by make manifests): copies what is generated or kept in
# config/ into charts/apitoken-operator/files/, verbatim, so that the chart and
# the kustomize install cannot drift. The chart's templates read these files;
# make verify fails when a copy differs from config/.
#   config/crd/bases/*.yaml       -> files/crds/
#   config/rbac/role.yaml         -> files/rbac/role.yaml (the manager's ClusterRole rules)
#   config/prometheus/rules.yaml  -> files/prometheus/rules.yaml (the PrometheusRule)
#   config/prometheus/dashboard.json -> files/prometheus/dashboard.json
#   config/admission/*.yaml       -> files/admission/ (the ValidatingAdmissionPolicy, when it exists)
set -euo pipefail
cd "$(dirname "$0")/.."
files=charts/apitoken-operator/files

sync_dir() { # sync_dir SRC_DIR DEST_DIR: DEST holds exactly SRC's *.yaml (kustomization.yaml excepted)
	local src=$1 dest=$2
	mkdir -p "$dest"
	find "$dest" -maxdepth 1 -name '*.yaml' -delete
	[ -d "$src" ] || return 0
	for f in "$src"/*.yaml; do
		[ -e "$f" ] || continue
		[ "$(basename "$f")" = kustomization.yaml ] && continue
		cp "$f" "$dest/"
	done
}

sync_dir config/crd/bases "$files/crds"
sync_dir config/admission "$files/admission"
mkdir -p "$files/rbac" "$files/prometheus"
cp config/rbac/role.yaml "$files/rbac/role.yaml"
cp config/prometheus/rules.yaml "$files/prometheus/rules.yaml"
cp config/prometheus/dashboard.json "$files/prometheus/dashboard.json"
