#!/usr/bin/env bash

# Copyright The Meshery Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# Regenerates deepcopy, defaulter, conversion, OpenAPI and client code from the
# types under pkg/apis, using the k8s.io/code-generator version pinned in go.mod.
#
# Environment:
#   CODEGEN_PKG  code-generator checkout to use instead of the pinned module.
#   GOBIN        where to install the generators; defaults to _output/codegen/bin
#                so the pinned generators never clash with others on PATH.

set -o errexit
set -o nounset
set -o pipefail

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${SCRIPT_ROOT}"

THIS_PKG="$(go list -m)"

if [[ -z "${CODEGEN_PKG:-}" ]]; then
    # go list -m prints an empty Dir until the module is in the cache.
    go mod download k8s.io/code-generator
    CODEGEN_PKG="$(go list -m -f '{{.Dir}}' k8s.io/code-generator)"
fi

export GOBIN="${GOBIN:-${SCRIPT_ROOT}/_output/codegen/bin}"
mkdir -p "${GOBIN}"

# shellcheck source=/dev/null
source "${CODEGEN_PKG}/kube_codegen.sh"

BOILERPLATE="${SCRIPT_ROOT}/hack/boilerplate.go.txt"

kube::codegen::gen_helpers \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/pkg/apis"

# kube_codegen.sh always feeds openapi-gen the metav1, runtime, version and
# resource packages, so the definitions the server's OpenAPI needs for
# ObjectMeta, Status, Condition and friends are generated alongside ours.
# The checked-in API rule violations list holds only apimachinery's own,
# long-standing exceptions; a violation in our types adds a line, which fails
# this script instead of scrolling past. Fix the type rather than the list
# (UPDATE_API_KNOWN_VIOLATIONS=true rewrites it, for new upstream entries).
report_filename="${SCRIPT_ROOT}/hack/api-rule-violations.list"
update_report=""
if [[ "${UPDATE_API_KNOWN_VIOLATIONS:-}" == "true" ]]; then
    update_report="--update-report"
fi

kube::codegen::gen_openapi \
    --output-dir "${SCRIPT_ROOT}/pkg/generated/openapi" \
    --output-pkg "${THIS_PKG}/pkg/generated/openapi" \
    --report-filename "${report_filename}" \
    --output-model-name-file "zz_generated.model_name.go" \
    ${update_report:+"${update_report}"} \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/pkg/apis"

kube::codegen::gen_client \
    --with-watch \
    --output-dir "${SCRIPT_ROOT}/pkg/generated" \
    --output-pkg "${THIS_PKG}/pkg/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${SCRIPT_ROOT}/pkg/apis"
