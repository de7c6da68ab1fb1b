package framework

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Screen is a terminal's output as a client sees it, safe to write from
// one goroutine and read from another. It keeps everything, or with Tail
// set only the last Tail bytes (for output too large to keep); Len counts
// every byte written either way.
type Screen struct {
	Tail int

	mu   sync.Mutex
	n    int
	text []byte
}

func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(p)
	s.text = append(s.text, p...)
	if s.Tail > 0 && len(s.text) > s.Tail {
		s.text = append(s.text[:0], s.text[len(s.text)-s.Tail:]...)
	}
	return len(p), nil
}

// String is what the screen holds.
func (s *Screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.text)
}

// Len is how many bytes were written.
func (s *Screen) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// FrameScreen is a session's output read from its NATS output subject, from
// the first frame the IO stream keeps, checking that frames arrive in
// sequence.
type FrameScreen struct {
	Screen

	mu  sync.Mutex
	seq uint64
	err error
}

// WatchFrames follows the output subject of subj until stop is called. Its
// strict order holds while the bridge's NATS connection never drops (a
// dropped one may leave copies in the stream: docs/wire.md).
func WatchFrames(ctx context.Context, js jetstream.JetStream, subj wire.Subjects) (s *FrameScreen, stop func(), err error) {
	cons, err := js.OrderedConsumer(ctx, wire.IOStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj.Out()}})
	if err != nil {
		return nil, nil, err
	}
	s = &FrameScreen{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		seq, _ := strconv.ParseUint(m.Headers().Get(wire.SeqHeader), 10, 64)
		if seq != s.seq+1 && s.err == nil {
			s.err = fmt.Errorf("frame %d after %d", seq, s.seq)
		}
		s.seq = seq
		_, _ = s.Screen.Write(m.Data())
	})
	if err != nil {
		return nil, nil, err
	}
	return s, cc.Stop, nil
}

// Err is the first frame out of sequence, if any.
func (s *FrameScreen) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
