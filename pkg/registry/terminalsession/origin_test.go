package terminalsession

import (
	"net/http/httptest"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestCheckOrigin(t *testing.T) {
	allowed := []string{"http://localhost:8001", "https://console.example.com"}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, // kubectl, client-go
		{"http://localhost:8001", true},
		{"HTTPS://Console.Example.com", true},
		{"https://evil.example", false},
		{"http://localhost:8002", false},
		{"null", false}, // sandboxed frames, file: pages
		{"https://console.example.com.evil.example", false},
	} {
		req := httptest.NewRequest("GET", "/attach", nil)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		err := checkOrigin(req, allowed, "s")
		if (err == nil) != tc.ok || err != nil && !apierrors.IsForbidden(err) {
			t.Errorf("origin %q: %v, want allowed=%v (403 otherwise)", tc.origin, err, tc.ok)
		}
	}
}
