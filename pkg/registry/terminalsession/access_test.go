package terminalsession

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// grants is an authorizer that allows what it lists, as "verb resource" or
// "verb resource/subresource", for any name in the session's namespace.
type grants map[string]bool

func (g grants) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	r := a.GetResource()
	if a.GetSubresource() != "" {
		r += "/" + a.GetSubresource()
	}
	if a.GetNamespace() == "team-a" && g[a.GetVerb()+" "+r] {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func TestAuthorizeAttach(t *testing.T) {
	s := &terminal.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "s"},
		Spec:       terminal.TerminalSessionSpec{Target: terminal.TerminalTarget{Pod: "web"}},
		Status:     terminal.TerminalSessionStatus{Owner: &terminal.SessionOwner{Username: "alice", UID: "a-1"}},
	}
	alice := &user.DefaultInfo{Name: "alice", UID: "a-1"}
	exec := "create pods/exec"
	for _, tc := range []struct {
		name   string
		user   user.Info
		grants grants
		stdin  bool
		want   access
		err    string // in the 403's message
	}{
		{"owner with exec", alice, grants{exec: true}, true, accessWrite, ""},
		{"owner whose exec was revoked", alice, grants{}, true, accessNone, `cannot create pods/exec on pod "web"`},
		{"owner whose exec was revoked, watching", alice, grants{}, false, accessNone, `cannot create pods/exec on pod "web"`},
		{"owner without exec who may observe", alice, grants{"observe terminalsessions": true}, false, accessRead, ""},
		{"same name, other UID", &user.DefaultInfo{Name: "alice", UID: "a-2"}, grants{exec: true}, true, accessNone, "is not the owner"},
		{"joiner with exec", &user.DefaultInfo{Name: "bob"}, grants{"join terminalsessions": true, exec: true}, true, accessWrite, ""},
		{"joiner without exec", &user.DefaultInfo{Name: "bob"}, grants{"join terminalsessions": true, "observe terminalsessions": true}, true, accessNone,
			`cannot create pods/exec on pod "web" in namespace "team-a": typing into a terminal needs the same permission as kubectl exec (attach without stdin to watch)`},
		{"joiner without exec, watching", &user.DefaultInfo{Name: "bob"}, grants{"join terminalsessions": true, "observe terminalsessions": true}, false, accessRead, ""},
		{"observer typing", &user.DefaultInfo{Name: "carol"}, grants{"observe terminalsessions": true, exec: true}, true, accessNone, "may only observe"},
		{"observer watching", &user.DefaultInfo{Name: "carol"}, grants{"observe terminalsessions": true}, false, accessRead, ""},
		{"stranger with exec", &user.DefaultInfo{Name: "dave"}, grants{exec: true, "get terminalsessions": true}, false, accessNone, "is not the owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := authorizeAttach(context.Background(), authorizer.AuthorizerFunc(tc.grants.Authorize), tc.user, s, tc.stdin)
			if got != tc.want {
				t.Errorf("access %d, want %d", got, tc.want)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.err != "" && (!apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want a 403 containing %q", err, tc.err)
			}
		})
	}
}
