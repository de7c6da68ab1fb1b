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

// Package fuzzer fills TerminalSessions with random but round-trippable values for the
// serialization tests.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// Funcs returns the fuzzer functions for the terminal API group.
var Funcs = func(codecs runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(s *terminal.TerminalSessionSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			// Decoding applies the v1alpha1 defaults, so a fuzzed object must already
			// hold them or the round trip would (correctly) change it.
			if s.TTY == nil {
				tty := c.Bool()
				s.TTY = &tty
			}
			if s.Size == nil {
				s.Size = &terminal.TerminalSize{}
			}
			if s.Size.Cols == 0 {
				s.Size.Cols = 80
			}
			if s.Size.Rows == 0 {
				s.Size.Rows = 24
			}
		},
	}
}
