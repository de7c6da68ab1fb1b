package bridge

import (
	"reflect"
	"testing"

	"k8s.io/client-go/rest"
)

func TestImpersonation(t *testing.T) {
	extra := map[string][]string{"authentication.kubernetes.io/credential-id": {"X509SHA256=ab"}}
	for _, tc := range []struct {
		name   string
		user   string
		groups []string
		want   rest.ImpersonationConfig
	}{
		{"a user, whole", "alice", []string{"devs", "system:authenticated"},
			rest.ImpersonationConfig{UserName: "alice", UID: "u-1", Groups: []string{"devs", "system:authenticated"}, Extra: extra}},
		{"never system:masters", "admin", []string{"system:masters", "system:authenticated"},
			rest.ImpersonationConfig{UserName: "admin", UID: "u-1", Groups: []string{"system:authenticated"}, Extra: extra}},
		{"a ServiceAccount by name only", "system:serviceaccount:ci:deployer", []string{"system:serviceaccounts", "system:masters"},
			rest.ImpersonationConfig{UserName: "system:serviceaccount:ci:deployer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Impersonation(tc.user, "u-1", tc.groups, extra); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
