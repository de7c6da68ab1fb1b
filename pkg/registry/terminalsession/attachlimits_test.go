package terminalsession

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

func TestAttachCounter(t *testing.T) {
	c := newAttachCounter(AttachLimits{PerUser: 2, PerSession: 3})
	mustAcquire := func(user, session string) func() {
		t.Helper()
		release, err := c.acquire(user, types.UID("uid-"+session), session)
		if err != nil {
			t.Fatalf("%s on %s: %v", user, session, err)
		}
		return release
	}
	refused := func(user, session, want string) {
		t.Helper()
		_, err := c.acquire(user, types.UID("uid-"+session), session)
		if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s on %s: %v, want a 429 naming %s", user, session, err, want)
		}
	}
	r1 := mustAcquire("alice", "s1")
	mustAcquire("alice", "s2")
	refused("alice", "s3", "--max-attaches-per-user")
	mustAcquire("bob", "s1")
	mustAcquire("carol", "s1")
	refused("dave", "s1", "--max-viewers-per-session")
	r1()
	r1() // twice is once
	mustAcquire("alice", "s3")
	refused("alice", "s4", "--max-attaches-per-user")
}
