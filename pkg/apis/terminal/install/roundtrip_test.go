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

package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"

	terminalfuzzer "github.com/meshery/terminal-apiserver/pkg/apis/terminal/fuzzer"
)

// TestRoundTripTypes catches conversion and deep-copy code that drifted from the types:
// every fuzzed object must survive internal -> v1alpha1 -> JSON/CBOR -> internal unchanged.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, terminalfuzzer.Funcs)
}
