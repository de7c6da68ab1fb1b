package bridge

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// A viewer served by the replica that runs its session skips NATS: its
// input goes straight to the session's input queue and its live output
// comes straight from the session's publisher. Each NATS traversal costs
// several goroutine hand-offs (client flusher, server read and write loops,
// subscriber read loop), and a keystroke's echo makes two of them. NATS
// remains the record: output is published to JetStream all the same, and
// viewers elsewhere use it.

// local returns the running session with subjects subj, nil if this
// replica does not run it.
func (b *Bridge) local(subj wire.Subjects) *session {
	if b == nil {
		return nil
	}
	uid := subj.UID()
	if uid == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running[types.UID(uid)]
}

// Type queues input for the session if this replica runs it; false means
// publish it on the session's input subject instead.
func (b *Bridge) Type(subj wire.Subjects, p []byte) bool {
	s := b.local(subj)
	if s == nil {
		return false
	}
	s.writeInputNow(p)
	return true
}

// Resize sets the session's terminal size if this replica runs it; false
// means publish it on the session's resize subject instead.
func (b *Bridge) Resize(subj wire.Subjects, sz wire.Size) bool {
	s := b.local(subj)
	if s == nil || sz.Cols == 0 || sz.Rows == 0 {
		return s != nil
	}
	s.resized(sz)
	return true
}

// Follow sends the session's output frames to ch as they are published, if
// this replica runs it, until stop is called. A frame that does not fit in
// ch is skipped, never waited for: the follower has JetStream for the
// complete output, and this is only its fast path.
func (b *Bridge) Follow(subj wire.Subjects, ch chan<- wire.Frame) (stop func(), ok bool) {
	s := b.local(subj)
	if s == nil {
		return nil, false
	}
	return s.followers.add(ch), true
}

// followers are the channels a session's frames are copied to.
type followers struct {
	mu  sync.Mutex
	chs map[chan<- wire.Frame]struct{}
}

func (f *followers) add(ch chan<- wire.Frame) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.chs == nil {
		f.chs = map[chan<- wire.Frame]struct{}{}
	}
	f.chs[ch] = struct{}{}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.chs, ch)
	}
}

// send copies p, output from byte offset on, to the followers; with none
// (most sessions, most of the time) it costs a lock and no copy.
func (f *followers) send(offset uint64, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.chs) == 0 {
		return
	}
	fr := wire.Frame{Offset: offset, Data: append([]byte(nil), p...)}
	for ch := range f.chs {
		select {
		case ch <- fr:
		default:
		}
	}
}
