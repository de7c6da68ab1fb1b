/*
Copyright The Meshery Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	"fmt"
	"net/url"
	"strconv"

	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
)

// selectableFields are the field selector labels that list and watch requests for
// TerminalSessions accept. The registry's attribute function must return exactly
// these keys; a test there keeps the two in step.
var selectableFields = []string{
	"metadata.name",
	"metadata.namespace",
	"spec.target.pod",
	"spec.target.container",
	"status.phase",
	"status.owner.username",
}

// addFieldLabelConversionFuncs is needed because the API server rejects any field
// selector outside metadata unless the version's scheme declares the label.
func addFieldLabelConversionFuncs(scheme *runtime.Scheme) error {
	return scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind("TerminalSession"),
		func(label, value string) (string, string, error) {
			for _, f := range selectableFields {
				if label == f {
					return label, value, nil
				}
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		})
}

// Convert_url_Values_To_v1alpha1_TerminalSessionAttachOptions decodes the
// attach query as the generated conversion does, naming the parameter a
// malformed number was given for (the generated one says only what
// strconv said).
func Convert_url_Values_To_v1alpha1_TerminalSessionAttachOptions(in *url.Values, out *TerminalSessionAttachOptions, s conversion.Scope) error {
	if _, ok := (*in)["since"]; ok {
		switch v := in.Get("since"); v {
		case "": // since= is since=0
			values := url.Values{}
			for k, vs := range *in {
				if k != "since" {
					values[k] = vs
				}
			}
			in = &values
		default:
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("since: %q is not a byte count", v)
			}
		}
	}
	return autoConvert_url_Values_To_v1alpha1_TerminalSessionAttachOptions(in, out, s)
}
