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
	"k8s.io/apimachinery/pkg/runtime"
)

// Defaults for the initial terminal size: the VT100's 80x24, which terminal programs
// still assume when nothing tells them better.
const (
	DefaultCols int32 = 80
	DefaultRows int32 = 24
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_TerminalSessionSpec fills in the fields whose defaults do not depend on the
// server's configuration. The container, command and timeouts are left empty on purpose:
// their defaults are facts about the pod and server flags, which the server resolves when
// it opens the session, rather than values frozen into every stored object.
func SetDefaults_TerminalSessionSpec(obj *TerminalSessionSpec) {
	if obj.TTY == nil {
		tty := true
		obj.TTY = &tty
	}
	if obj.Size == nil {
		obj.Size = &TerminalSize{}
	}
	// A size with only one dimension set is defaulted per dimension, so that
	// {cols: 120} means 120x24 rather than being rejected for rows: 0.
	if obj.Size.Cols == 0 {
		obj.Size.Cols = DefaultCols
	}
	if obj.Size.Rows == 0 {
		obj.Size.Rows = DefaultRows
	}
}
