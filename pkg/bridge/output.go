package bridge

import (
	"context"
	"sync"
	"time"
	"unicode/utf8"
)

// output turns a process's writes into numbered frames. It adds no delay of
// its own: a frame leaves as soon as the previous one is published, and
// whatever arrived meanwhile (up to maxFrame bytes) is coalesced into the
// next. A frame never ends inside a multi-byte UTF-8 character; an
// incomplete tail waits for the rest, or at most tailWait.
type output struct {
	publish  func(ctx context.Context, seq uint64, frame []byte) error
	maxFrame int
	maxBuf   int
	tailWait time.Duration

	mu      sync.Mutex
	buf     []byte
	closed  bool
	err     error
	ready   chan struct{} // data arrived
	drained chan struct{} // space freed
	done    chan struct{}
	seq     uint64
}

func newOutput(publish func(ctx context.Context, seq uint64, frame []byte) error, maxFrame, maxBuf int) *output {
	return &output{
		publish:  publish,
		maxFrame: maxFrame,
		maxBuf:   maxBuf,
		tailWait: 20 * time.Millisecond,
		ready:    make(chan struct{}, 1),
		drained:  make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Write buffers p. It blocks while maxBuf bytes await publishing, which slows
// the process rather than growing memory when NATS is slow.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.buf) >= o.maxBuf && o.err == nil && !o.closed {
		o.mu.Unlock()
		<-o.drained
		o.mu.Lock()
	}
	if o.err != nil {
		return 0, o.err
	}
	o.buf = append(o.buf, p...)
	signal(o.ready)
	return len(p), nil
}

// close flushes what is buffered and stops run.
func (o *output) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	signal(o.ready)
	<-o.done
}

// run publishes frames until close; it returns the first publish error.
func (o *output) run(ctx context.Context) error {
	defer close(o.done)
	var tail *time.Timer
	var tailC <-chan time.Time
	for {
		o.mu.Lock()
		closed := o.closed
		frame := o.take(closed || tailC == nil && tail != nil)
		o.mu.Unlock()
		if len(frame) > 0 {
			if tail != nil {
				tail.Stop()
				tail, tailC = nil, nil
			}
			o.seq++
			if err := o.publish(ctx, o.seq, frame); err != nil {
				o.mu.Lock()
				o.err = err
				o.mu.Unlock()
				signal(o.drained)
				return err
			}
			signal(o.drained)
			continue
		}
		if closed {
			return nil
		}
		o.mu.Lock()
		pendingTail := len(o.buf) > 0
		o.mu.Unlock()
		if pendingTail && tail == nil {
			tail = time.NewTimer(o.tailWait)
			tailC = tail.C
		}
		select {
		case <-o.ready:
		case <-tailC:
			tailC = nil // next take may cut the incomplete tail
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take removes the next frame from buf (caller holds mu). Unless force, it
// keeps back an incomplete UTF-8 sequence at the end.
func (o *output) take(force bool) []byte {
	n := min(len(o.buf), o.maxFrame)
	if n == 0 {
		return nil
	}
	if !force {
		n = utf8Cut(o.buf[:n])
	}
	if n == 0 {
		return nil
	}
	frame := make([]byte, n)
	copy(frame, o.buf[:n])
	o.buf = append(o.buf[:0], o.buf[n:]...)
	return frame
}

// utf8Cut returns how much of b can be sent without splitting a character:
// all of it unless it ends in the first bytes of a multi-byte sequence.
func utf8Cut(b []byte) int {
	// Look back at most 3 bytes for the start of the last character.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if utf8.FullRune(b[i:]) {
				return len(b)
			}
			return i
		}
	}
	return len(b) // not UTF-8: send as is
}
