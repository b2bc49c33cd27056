#!/usr/bin/env bash
# make build-installer: writes the release manifest (kubebuilder v4's
# dist/install.yaml: CRDs, RBAC, namespace and the operator) from config/default
# with the operator image IMG, without editing config/.
#   hack/build-installer.sh [OUT]     (default dist/install.yaml)
# IMG (default apitoken-operator:dev) may be name, name:tag or name@sha256:...
# KUSTOMIZE_BUILD is the build command (default bin/kustomize build; the tests
# use "kubectl kustomize").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${root}/dist/install.yaml}"
img="${IMG:-apitoken-operator:dev}"
build="${KUSTOMIZE_BUILD:-${root}/bin/kustomize build}"

case "${img}" in
*@*) name="${img%@*}" ref="digest: ${img#*@}" ;;
*)
	last="${img##*/}"
	if [[ "${last}" == *:* ]]; then name="${img%:*}" ref="newTag: ${img##*:}"; else name="${img}" ref="newTag: latest"; fi
	;;
esac

# kustomize takes a base only by a relative path: the overlay lives in the repo
# for the moment of the build.
tmp="$(mktemp -d "${root}/.build-installer.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
cat >"${tmp}/kustomization.yaml" <<YAML
resources:
- ../config/default
images:
- name: apitoken-operator
  newName: ${name}
  ${ref}
YAML
mkdir -p "$(dirname "${out}")"
${build} "${tmp}" >"${out}.tmp"
mv "${out}.tmp" "${out}"
echo "wrote ${out} (image ${img})"
