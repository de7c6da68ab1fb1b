package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// leases claims and renews session ownership in a JetStream KV bucket.
type leases struct {
	kv       jetstream.KeyValue
	holder   string
	duration time.Duration
}

func openLeases(ctx context.Context, js jetstream.JetStream, holder string, duration time.Duration, replicas int) (*leases, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      wire.LeaseBucket,
		Description: "terminal-apiserver: which replica runs each session's exec",
		TTL:         duration,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return &leases{kv: kv, holder: holder, duration: duration}, nil
}

// claim takes the session's lease; false if another replica holds it.
func (l *leases) claim(ctx context.Context, uid string) (uint64, bool, error) {
	rev, err := l.kv.Create(ctx, uid, []byte(l.holder))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("claim session %s: %w", uid, err)
	}
	return rev, true, nil
}

// renew extends the lease at rev, waiting up to timeout. An error means it
// was lost, or that no answer came (holds tells which).
func (l *leases) renew(ctx context.Context, timeout time.Duration, uid string, rev uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return l.kv.Update(ctx, uid, []byte(l.holder), rev)
}

// holds says whether this replica holds the session's lease, and at which
// revision; an error when NATS did not say within timeout.
func (l *leases) holds(ctx context.Context, timeout time.Duration, uid string) (bool, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e, err := l.kv.Get(ctx, uid)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, 0, nil
	case err != nil:
		return false, 0, err
	}
	return string(e.Value()) == l.holder, e.Revision(), nil
}

func (l *leases) release(ctx context.Context, uid string, rev uint64) {
	_ = l.kv.Delete(ctx, uid, jetstream.LastRevision(rev))
}

// held reports whether any replica holds the session's lease.
func (l *leases) held(ctx context.Context, uid string) (bool, error) {
	_, err := l.kv.Get(ctx, uid)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}
