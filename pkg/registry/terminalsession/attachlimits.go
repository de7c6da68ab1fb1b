package terminalsession

import (
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// AttachLimits bound the attaches one replica serves at once: each holds a
// connection, a JetStream consumer and up to a MiB of output fetched ahead,
// so without a bound one user could exhaust the replica for everyone.
type AttachLimits struct {
	// PerUser: attaches one user may have (0: no limit).
	PerUser int
	// PerSession: attaches to one session (0: no limit).
	PerSession int
}

// attachCounter counts a replica's open attaches.
type attachCounter struct {
	limits AttachLimits

	mu        sync.Mutex
	byUser    map[string]int
	bySession map[types.UID]int
}

func newAttachCounter(l AttachLimits) *attachCounter {
	return &attachCounter{limits: l, byUser: map[string]int{}, bySession: map[types.UID]int{}}
}

// acquire counts one more attach of user to session, or refuses it with a
// 429 saying which limit it met. release must be called once it ends.
func (c *attachCounter) acquire(user string, session types.UID, name string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byUser[user]; c.limits.PerUser > 0 && n >= c.limits.PerUser {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("user %q already has %d attaches open on this server, "+
			"the most one user may have (terminal-apiserver --max-attaches-per-user); close one first", user, n), 1)
	}
	if n := c.bySession[session]; c.limits.PerSession > 0 && n >= c.limits.PerSession {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("session %q already has %d viewers on this server, "+
			"the most one session may have (terminal-apiserver --max-viewers-per-session)", name, n), 1)
	}
	c.byUser[user]++
	c.bySession[session]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.byUser[user]--; c.byUser[user] <= 0 {
				delete(c.byUser, user)
			}
			if c.bySession[session]--; c.bySession[session] <= 0 {
				delete(c.bySession, session)
			}
		})
	}, nil
}
