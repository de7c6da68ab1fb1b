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

# Fails when the generated code under pkg/ is not what hack/update-codegen.sh
# would produce from the current types.
#
# It regenerates into a scratch copy of the module rather than in place, so it
# never rewrites files in the working tree (others may be editing them) and a
# failed run leaves nothing half-generated behind.

set -o errexit
set -o nounset
set -o pipefail

SCRIPT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# The only inputs the generators read: the module definition, the API types, the
# previously generated code (so deleted outputs show up as a diff), and hack/.
GENERATED_DIRS=(pkg/apis pkg/generated)

TMP_ROOT="$(mktemp -d -t verify-codegen.XXXXXX)"
cleanup() {
    rm -rf "${TMP_ROOT}"
}
trap cleanup EXIT

cp "${SCRIPT_ROOT}/go.mod" "${SCRIPT_ROOT}/go.sum" "${TMP_ROOT}/"
mkdir -p "${TMP_ROOT}/hack" "${TMP_ROOT}/pkg"
cp "${SCRIPT_ROOT}/hack/update-codegen.sh" \
   "${SCRIPT_ROOT}/hack/boilerplate.go.txt" \
   "${SCRIPT_ROOT}/hack/api-rule-violations.list" \
   "${TMP_ROOT}/hack/"
for dir in "${GENERATED_DIRS[@]}"; do
    if [[ -d "${SCRIPT_ROOT}/${dir}" ]]; then
        cp -a "${SCRIPT_ROOT}/${dir}" "${TMP_ROOT}/${dir}"
    fi
done

# Share the generator binaries with the real tree so a verify after an update
# does not rebuild them.
export GOBIN="${GOBIN:-${SCRIPT_ROOT}/_output/codegen/bin}"

"${TMP_ROOT}/hack/update-codegen.sh"

ret=0
for dir in "${GENERATED_DIRS[@]}"; do
    diff -Naupr "${SCRIPT_ROOT}/${dir}" "${TMP_ROOT}/${dir}" || ret=1
done
diff -Nu "${SCRIPT_ROOT}/hack/api-rule-violations.list" "${TMP_ROOT}/hack/api-rule-violations.list" || ret=1

if [[ ${ret} -eq 0 ]]; then
    echo "Generated code is up to date."
else
    echo "Generated code is out of date. Run hack/update-codegen.sh and commit the result." >&2
fi
exit ${ret}
