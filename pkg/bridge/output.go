package bridge

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"
)

// output turns a process's writes into numbered frames. It adds no delay of
// its own: a frame leaves as soon as the previous one is published, and
// whatever arrived meanwhile (up to maxFrame bytes) is coalesced into the
// next. A frame never ends inside a multi-byte UTF-8 character; an
// incomplete tail waits for the rest, or at most tailWait.
//
// The publishing goroutine runs only while there is output to publish, so
// an idle session costs no goroutine here.
type output struct {
	ctx context.Context
	// publish sends a frame (the offset-th byte of the output on) and
	// returns a function that waits until it is stored. Up to window
	// frames are in flight at once: the next is sent while earlier ones
	// are being stored, in order.
	publish  func(ctx context.Context, seq, offset uint64, frame []byte) (stored func() error, err error)
	window   int
	maxFrame int
	maxBuf   int
	tailWait time.Duration
	// retryable says whether a frame whose publishing failed with this
	// error may not have been stored but could be if sent again (the
	// connection dropped, and its answer with it). Such frames are sent
	// again after retryWait (doubling up to retryMost each time), for up
	// to retryFor.
	retryable func(error) bool
	retryFor  time.Duration
	retryWait time.Duration
	// connected says whether sending again can reach storage now (nil:
	// always): frames are not sent again into a connection's reconnect
	// buffer, each attempt adding copies.
	connected func() bool
	// ended closes when the session has ended: from then on its last
	// frames are tried for retryAfterEnd at most, so that a replica that
	// stops is not held up.
	ended         <-chan struct{}
	retryAfterEnd time.Duration

	mu       sync.Mutex
	changed  *sync.Cond    // buf shrank, or the drainer stopped
	more     chan struct{} // data arrived (wakes a drainer waiting on a tail)
	buf      []byte        // pending output is buf[off:]
	off      int
	draining bool
	closed   bool
	err      error
	seq      uint64
	// framed counts the bytes taken into frames: the next frame's offset.
	framed uint64
	// written counts the bytes written: the offset of the next Write.
	written uint64
	// live receives each Write at once, before it is framed and published
	// (the local fast path to viewers, see Bridge.Follow), with its offset;
	// it must copy what it keeps. nil for none.
	live func(offset uint64, p []byte)
}

var errOutputClosed = errors.New("output closed")

func newOutput(ctx context.Context, publish func(ctx context.Context, seq, offset uint64, frame []byte) (func() error, error), maxFrame, maxBuf int) *output {
	o := &output{
		ctx:      ctx,
		publish:  publish,
		window:   8,
		maxFrame: maxFrame,
		maxBuf:   maxBuf,
		tailWait: 20 * time.Millisecond,
		more:     make(chan struct{}, 1),

		retryable:     func(error) bool { return false },
		retryWait:     50 * time.Millisecond,
		retryAfterEnd: 10 * time.Second,
	}
	o.changed = sync.NewCond(&o.mu)
	return o
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
	for o.pending() >= o.maxBuf && o.err == nil && !o.closed {
		o.changed.Wait()
	}
	switch {
	case o.err != nil:
		return 0, o.err
	case o.closed:
		return 0, errOutputClosed
	}
	if o.off > 0 && len(o.buf)+len(p) > cap(o.buf) {
		// Reuse the room before off rather than grow.
		o.buf = o.buf[:copy(o.buf, o.buf[o.off:])]
		o.off = 0
	}
	o.buf = append(o.buf, p...)
	if !o.draining {
		o.draining = true
		go o.drain()
	} else {
		signal(o.more)
	}
	// Live viewers last: the goroutine readied last runs next on this
	// thread, and a viewer's echo should not wait behind a publish.
	if o.live != nil {
		o.live(o.written, p)
	}
	o.written += uint64(len(p))
	return len(p), nil
}

// close flushes what is buffered and returns once it is published (or
// publishing failed).
func (o *output) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	signal(o.more)
	o.changed.Broadcast()
	for o.draining {
		o.changed.Wait()
	}
	return o.err
}

// flight is a frame published and not yet known to be stored.
type flight struct {
	seq, offset uint64
	frame       []byte
	stored      func() error
}

// retryMost is the longest wait between attempts to publish frames again.
const retryMost = 2 * time.Second

// drain publishes frames until the buffer is empty and every frame is
// stored.
func (o *output) drain() {
	var tailDeadline time.Time
	var inflight []flight
	fail := func(err error) {
		o.mu.Lock()
		o.err = err
		o.buf, o.off = nil, 0
		o.draining = false
		o.changed.Broadcast()
		o.mu.Unlock()
	}
	for {
		o.mu.Lock()
		force := o.closed || !tailDeadline.IsZero() && !time.Now().Before(tailDeadline)
		frame := o.take(force)
		if frame == nil && o.pending() == 0 && len(inflight) > 0 {
			// Nothing new: let what is in flight land, then look again.
			o.mu.Unlock()
			for len(inflight) > 0 {
				var err error
				if inflight, err = o.land(inflight); err != nil {
					fail(err)
					return
				}
			}
			continue
		}
		if frame == nil {
			if o.pending() == 0 {
				// Let a burst's buffer go: idle sessions keep none.
				if cap(o.buf) > 4<<10 {
					o.buf, o.off = nil, 0
				}
				o.draining = false
				o.changed.Broadcast()
				o.mu.Unlock()
				return
			}
			// Only the first bytes of a character: wait for the rest.
			if tailDeadline.IsZero() {
				tailDeadline = time.Now().Add(o.tailWait)
			}
			o.mu.Unlock()
			t := time.NewTimer(time.Until(tailDeadline))
			select {
			case <-o.more:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		tailDeadline = time.Time{}
		o.seq++
		f := flight{seq: o.seq, offset: o.framed, frame: frame}
		o.framed += uint64(len(frame))
		o.changed.Broadcast() // room for a blocked writer
		o.mu.Unlock()
		if len(inflight) >= o.window {
			var err error
			if inflight, err = o.land(inflight); err != nil {
				fail(err)
				return
			}
		}
		var err error
		if f.stored, err = o.publish(o.ctx, f.seq, f.offset, f.frame); err != nil {
			if !o.retryable(err) {
				fail(err)
				return
			}
			f.stored = failed(err) // sent again by land
		}
		inflight = append(inflight, f)
	}
}

// land waits until the oldest frame in flight is stored and returns the
// rest. If it may have been lost (retryable), it publishes it again with
// every frame after it, in order, until it is stored or retryFor has
// passed: nothing after a lost frame may get ahead of it, and viewers skip
// the copies of frames that had been stored (they go by offset).
func (o *output) land(inflight []flight) ([]flight, error) {
	var first time.Time
	wait := o.retryWait
	for {
		err := inflight[0].stored()
		if err == nil {
			return inflight[1:], nil
		}
		if !o.retryable(err) {
			return nil, err
		}
		if first.IsZero() {
			first = time.Now()
		}
		for {
			if o.givenUp(first) {
				return nil, err
			}
			t := time.NewTimer(wait)
			select {
			case <-o.ctx.Done():
				t.Stop()
				return nil, o.ctx.Err()
			case <-t.C:
			}
			wait = min(2*wait, retryMost)
			if o.connected == nil || o.connected() {
				break
			}
		}
		for i := range inflight {
			f := &inflight[i]
			if f.stored, err = o.publish(o.ctx, f.seq, f.offset, f.frame); err != nil {
				if !o.retryable(err) {
					return nil, err
				}
				for j := i; j < len(inflight); j++ {
					inflight[j].stored = failed(err)
				}
				break
			}
		}
	}
}

// givenUp says whether frames failing since first are not to be sent again.
func (o *output) givenUp(first time.Time) bool {
	since := time.Since(first)
	if since > o.retryFor {
		return true
	}
	select {
	case <-o.ended:
		return since > o.retryAfterEnd
	default:
		return false
	}
}

func failed(err error) func() error { return func() error { return err } }

func (o *output) pending() int { return len(o.buf) - o.off }

// take removes the next frame from buf (caller holds mu). Unless force, it
// keeps back an incomplete UTF-8 sequence at the end of what is buffered;
// a frame that maxFrame cuts short ends on a character boundary either way.
func (o *output) take(force bool) []byte {
	data := o.buf[o.off:]
	n := min(len(data), o.maxFrame)
	if n == 0 {
		return nil
	}
	// Forcing is for an incomplete tail, the end of what is buffered: a
	// frame cut short by maxFrame still ends on a character boundary.
	if cut := utf8Cut(data[:n]); !force || n < len(data) {
		if cut == 0 && force {
			cut = n // not UTF-8, or a frame smaller than a character
		}
		n = cut
	}
	if n == 0 {
		return nil
	}
	frame := make([]byte, n)
	copy(frame, data[:n])
	o.off += n
	if o.off == len(o.buf) {
		o.buf, o.off = o.buf[:0], 0
	}
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
