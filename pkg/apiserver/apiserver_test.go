package apiserver

import (
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// Every request to the attach subresource is authorized as create,
// whatever its method: a WebSocket upgrade is a GET, and get is a verb
// read-only roles hold. Nothing else changes verb.
func TestAttachAsCreate(t *testing.T) {
	r := WithAttachAsCreate(&apirequest.RequestInfoFactory{
		APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")})
	base := "/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions"
	for _, tc := range []struct{ method, path, verb string }{
		{"GET", base + "/s/attach?stdin=true", "create"},
		{"POST", base + "/s/attach", "create"},
		{"GET", base + "/s", "get"},
		{"GET", base, "list"},
		{"GET", base + "/s/status", "get"},
		{"PUT", base + "/s/status", "update"},
		{"GET", "/api/v1/namespaces/team-a/pods/p/attach", "get"},
		{"GET", "/apis/other.example.com/v1/namespaces/team-a/terminalsessions/s/attach", "get"},
	} {
		info, err := r.NewRequestInfo(httptest.NewRequest(tc.method, tc.path, nil))
		if err != nil {
			t.Fatal(err)
		}
		if info.Verb != tc.verb {
			t.Errorf("%s %s: verb %q, want %q", tc.method, tc.path, info.Verb, tc.verb)
		}
	}
}
