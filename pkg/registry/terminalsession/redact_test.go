package terminalsession

import (
	"context"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

func TestRedactOwner(t *testing.T) {
	session := func() *terminal.TerminalSession {
		return &terminal.TerminalSession{Status: terminal.TerminalSessionStatus{Owner: &terminal.SessionOwner{
			Username: "alice", UID: "a-1", Groups: []string{"devs"},
			Extra: map[string][]string{"authentication.kubernetes.io/credential-id": {"X509SHA256=ab"}}}}}
	}
	as := func(u user.Info) context.Context { return genericapirequest.WithUser(context.Background(), u) }
	loopback := &user.DefaultInfo{Name: user.APIServerUser, Groups: []string{user.SystemPrivilegedGroup}}

	stored := session()
	got := redact(as(&user.DefaultInfo{Name: "alice", Groups: []string{"devs"}}), stored).(*terminal.TerminalSession)
	if o := got.Status.Owner; o.Username != "alice" || o.UID != "a-1" || o.Groups != nil || o.Extra != nil {
		t.Errorf("the owner herself sees %+v, want username and UID only", o)
	}
	if len(stored.Status.Owner.Groups) != 1 {
		t.Error("redacting changed the object it was given")
	}
	for name, u := range map[string]user.Info{
		"a cluster admin":               &user.DefaultInfo{Name: "admin", Groups: []string{user.SystemPrivilegedGroup}},
		"someone named like the server": &user.DefaultInfo{Name: user.APIServerUser},
	} {
		if got := redact(as(u), session()).(*terminal.TerminalSession); got.Status.Owner.Groups != nil {
			t.Errorf("%s sees the owner's groups", name)
		}
	}
	if got := redact(as(loopback), session()).(*terminal.TerminalSession); len(got.Status.Owner.Groups) != 1 || len(got.Status.Owner.Extra) != 1 {
		t.Error("the server's own loopback identity does not see the whole owner")
	}
	list := &terminal.TerminalSessionList{Items: []terminal.TerminalSession{*session(), {}}}
	redact(as(&user.DefaultInfo{Name: "bob"}), list)
	if list.Items[0].Status.Owner.Groups != nil || list.Items[0].Status.Owner.Username != "alice" {
		t.Errorf("list item owner %+v", list.Items[0].Status.Owner)
	}
}
