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

package v1alpha1_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/install"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

func TestDefaults(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)

	cases := []struct {
		name string
		in   v1alpha1.TerminalSessionSpec
		want v1alpha1.TerminalSessionSpec
	}{{
		name: "empty spec gets a tty of 80x24",
		in:   v1alpha1.TerminalSessionSpec{},
		want: v1alpha1.TerminalSessionSpec{TTY: ptr.To(true), Size: &v1alpha1.TerminalSize{Cols: 80, Rows: 24}},
	}, {
		name: "explicit false tty is kept",
		in:   v1alpha1.TerminalSessionSpec{TTY: ptr.To(false)},
		want: v1alpha1.TerminalSessionSpec{TTY: ptr.To(false), Size: &v1alpha1.TerminalSize{Cols: 80, Rows: 24}},
	}, {
		name: "a missing dimension is defaulted alone",
		in:   v1alpha1.TerminalSessionSpec{Size: &v1alpha1.TerminalSize{Cols: 132}},
		want: v1alpha1.TerminalSessionSpec{TTY: ptr.To(true), Size: &v1alpha1.TerminalSize{Cols: 132, Rows: 24}},
	}, {
		name: "out-of-range sizes are left for validation",
		in:   v1alpha1.TerminalSessionSpec{Size: &v1alpha1.TerminalSize{Cols: -1, Rows: 20000}},
		want: v1alpha1.TerminalSessionSpec{TTY: ptr.To(true), Size: &v1alpha1.TerminalSize{Cols: -1, Rows: 20000}},
	}, {
		name: "server-resolved fields stay empty",
		in:   v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: "p"}},
		want: v1alpha1.TerminalSessionSpec{
			Target: v1alpha1.TerminalTarget{Pod: "p"},
			TTY:    ptr.To(true),
			Size:   &v1alpha1.TerminalSize{Cols: 80, Rows: 24},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := &v1alpha1.TerminalSession{Spec: tc.in}
			scheme.Default(obj)
			if !equality.Semantic.DeepEqual(obj.Spec, tc.want) {
				t.Errorf("defaulted spec = %+v, want %+v", obj.Spec, tc.want)
			}
		})
	}
}

func TestFieldLabelConversion(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	gvk := v1alpha1.SchemeGroupVersion.WithKind("TerminalSession")

	for _, label := range []string{"metadata.name", "spec.target.pod", "status.owner.username"} {
		if _, _, err := scheme.ConvertFieldLabel(gvk, label, "x"); err != nil {
			t.Errorf("field label %q: %v", label, err)
		}
	}
	if _, _, err := scheme.ConvertFieldLabel(gvk, "spec.command", "sh"); err == nil {
		t.Error("field label spec.command was accepted; only indexed-looking, low-cardinality fields should be")
	}
}
