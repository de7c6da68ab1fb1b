package bridge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// subscribe routes the session's input, resize and viewer subjects to the
// bridge's router.
func (s *session) subscribe() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, subj := range []string{s.subj.In(), s.subj.Resize(), s.subj.Viewers()} {
		sub, err := s.b.cfg.Conn.ChanSubscribe(subj, s.b.msgs)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// route hands each message on a session subject to its session.
func (b *Bridge) route(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-b.msgs:
			b.deliver(m)
		}
	}
}

func (b *Bridge) deliver(m *nats.Msg) {
	subj, kind, ok := wire.Parse(m.Subject)
	if !ok {
		return
	}
	b.mu.Lock()
	s := b.running[types.UID(subj.UID())]
	b.mu.Unlock()
	if s == nil {
		return
	}
	switch kind {
	case wire.KindIn:
		s.queueInput(m.Data)
	case wire.KindResize:
		var sz wire.Size
		if json.Unmarshal(m.Data, &sz) == nil && sz.Cols > 0 && sz.Rows > 0 {
			s.resized(sz)
		}
	case wire.KindViewers:
		var p wire.Presence
		if json.Unmarshal(m.Data, &p) == nil {
			s.presence(p)
		}
	}
}
