package bridge

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

type frames struct {
	mu     sync.Mutex
	seqs   []uint64
	data   [][]byte
	gate   chan struct{} // when set, each publish waits for it
	stored chan struct{} // when set, each frame is stored when it receives
}

func (f *frames) publish(_ context.Context, seq, _ uint64, frame []byte) (func() error, error) {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seqs = append(f.seqs, seq)
	f.data = append(f.data, frame)
	if f.stored != nil {
		return func() error { <-f.stored; return nil }, nil
	}
	return func() error { return nil }, nil
}

func (f *frames) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data)
}

func TestOutputKeepsCharactersWhole(t *testing.T) {
	f := &frames{}
	o := newOutput(context.Background(), f.publish, 7, 1<<20)
	// An incomplete tail is forced out after tailWait by design; here the
	// rest always follows, so never force it: the scheduler must not
	// decide the outcome (with 20 ms it did, about once in 100 runs).
	o.tailWait = time.Hour
	text := strings.Repeat("héllo wörld ✓ 日本語 ", 50)
	// Write in 3-byte pieces: most cut a character in two.
	for b := []byte(text); len(b) > 0; {
		n := min(3, len(b))
		if _, err := o.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	o.close()
	var all bytes.Buffer
	for i, fr := range f.data {
		if !utf8.Valid(fr) {
			t.Fatalf("frame %d splits a character: %q", i, fr)
		}
		if len(fr) > 7 {
			t.Fatalf("frame %d has %d bytes, max 7", i, len(fr))
		}
		if f.seqs[i] != uint64(i+1) {
			t.Fatalf("frame %d has seq %d", i, f.seqs[i])
		}
		all.Write(fr)
	}
	if all.String() != text {
		t.Fatal("frames do not add up to the output")
	}
}

// Writes that arrive while a frame is being published go out together.
func TestOutputCoalescesWhileBusy(t *testing.T) {
	f := &frames{gate: make(chan struct{})}
	o := newOutput(context.Background(), f.publish, 1<<15, 1<<20)
	o.Write([]byte("a")) // first frame, now blocked in publish
	for range 100 {
		o.Write([]byte("b"))
	}
	close(f.gate)
	o.close()
	if len(f.data) > 3 {
		t.Errorf("101 small writes while busy became %d frames", len(f.data))
	}
	var all bytes.Buffer
	for _, fr := range f.data {
		all.Write(fr)
	}
	if all.String() != "a"+strings.Repeat("b", 100) {
		t.Errorf("output %q", all.String())
	}
}

func TestOutputFlushesIncompleteTail(t *testing.T) {
	f := &frames{}
	o := newOutput(context.Background(), f.publish, 1024, 1<<20)
	o.Write([]byte{'x', 0xe6}) // 'x' and the first byte of a 3-byte character
	o.close()
	var all []byte
	for _, fr := range f.data {
		all = append(all, fr...)
	}
	if !bytes.Equal(all, []byte{'x', 0xe6}) {
		t.Errorf("output %q", all)
	}
}

// At most window frames wait to be stored; close returns once all are.
func TestOutputBoundsFramesInFlight(t *testing.T) {
	f := &frames{stored: make(chan struct{})}
	o := newOutput(context.Background(), f.publish, 1, 1<<20)
	if _, err := o.Write([]byte(strings.Repeat("x", 3*o.window))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.count() < o.window && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// One more is sent only once the oldest is stored.
	time.Sleep(50 * time.Millisecond)
	if n := f.count(); n != o.window {
		t.Fatalf("%d frames sent with none stored, want the window of %d", n, o.window)
	}
	closed := make(chan error)
	go func() { closed <- o.close() }()
	for range 3 * o.window {
		select {
		case err := <-closed:
			t.Fatalf("close returned (%v) before every frame was stored", err)
		case f.stored <- struct{}{}:
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := f.count(); n != 3*o.window {
		t.Fatalf("%d frames, want %d", n, 3*o.window)
	}
}

var errLost = errors.New("connection lost, and the answer with it")

// lossy publishes frames and loses every third answer (and, with
// notStored, the frame too), as a NATS connection that drops does.
type lossy struct {
	mu        sync.Mutex
	calls     int
	notStored bool
	stored    []flight // what storage holds, in its order
	retried   int
}

func (l *lossy) publish(_ context.Context, seq, offset uint64, frame []byte) (func() error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	lost := l.calls%3 == 0
	if !lost || !l.notStored {
		l.stored = append(l.stored, flight{seq: seq, offset: offset, frame: frame})
	}
	if lost {
		return failed(errLost), nil
	}
	return func() error { return nil }, nil
}

// A frame whose answer is lost with the connection is sent again, and
// every frame after it, in order. Frames sent behind a lost one may be
// stored before it is sent again, but never more than the window of them:
// a viewer that holds that many (package attach, the resumer) reads
// exactly the output, whether the lost frames were stored or not.
func TestOutputSendsAgainWhatALostConnectionMayNotHaveStored(t *testing.T) {
	for _, notStored := range []bool{false, true} {
		l := &lossy{notStored: notStored}
		o := newOutput(context.Background(), l.publish, 5, 1<<20)
		o.retryable = func(err error) bool { return errors.Is(err, errLost) }
		o.retryFor, o.retryWait = time.Minute, time.Millisecond
		var written bytes.Buffer
		for i := range 200 {
			p := []byte(strings.Repeat(string(rune('a'+i%26)), i%11+1))
			written.Write(p)
			if _, err := o.Write(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.close(); err != nil {
			t.Fatalf("notStored=%v: %v", notStored, err)
		}
		var r offsetReader
		for _, f := range l.stored {
			r.add(f.offset, f.frame)
			if len(r.held) > o.window {
				t.Fatalf("notStored=%v: %d frames stored ahead of a lost one, more than the window of %d", notStored, len(r.held), o.window)
			}
		}
		if read := r.read; !bytes.Equal(read, written.Bytes()) {
			t.Fatalf("notStored=%v: viewers read %d bytes, want the %d written", notStored, len(read), written.Len())
		}
		if l.calls <= len(l.stored) && notStored {
			t.Fatalf("nothing was sent again")
		}
	}
}

// A frame that cannot be stored within retryFor fails the output, which
// then refuses writes rather than block the process forever.
func TestOutputGivesUpAfterRetryFor(t *testing.T) {
	o := newOutput(context.Background(), func(context.Context, uint64, uint64, []byte) (func() error, error) {
		return failed(errLost), nil
	}, 5, 1<<20)
	o.retryable = func(err error) bool { return errors.Is(err, errLost) }
	o.retryFor = 200 * time.Millisecond
	if _, err := o.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := o.close(); !errors.Is(err, errLost) {
		t.Fatalf("close: %v, want the publish error", err)
	}
	if _, err := o.Write([]byte("more")); err == nil {
		t.Fatal("a write after the output failed succeeded")
	}
}

// Frames are not sent again while the connection is down (each attempt
// would add copies to its reconnect buffer), and once the session has
// ended its last frames are tried for retryAfterEnd only, so that a
// stopping replica is not held up for retryFor.
func TestOutputSendsAgainOnlyWhenConnectedAndBriefly(t *testing.T) {
	var calls atomic.Int32
	var up atomic.Bool
	o := newOutput(context.Background(), func(context.Context, uint64, uint64, []byte) (func() error, error) {
		calls.Add(1)
		return failed(errLost), nil
	}, 5, 1<<20)
	o.retryable = func(err error) bool { return errors.Is(err, errLost) }
	o.retryFor, o.retryWait = time.Hour, time.Millisecond
	o.connected = up.Load
	ended := make(chan struct{})
	o.ended, o.retryAfterEnd = ended, 300*time.Millisecond
	if _, err := o.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // what is under test is that nothing happens while down
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d publishes while the connection was down, want the first alone", n)
	}
	up.Store(true)
	close(ended)
	start := time.Now()
	if err := o.close(); !errors.Is(err, errLost) {
		t.Fatalf("close: %v, want the publish error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close took %s after the session ended, retryAfterEnd being 300ms", d)
	}
	if calls.Load() < 2 {
		t.Error("nothing was sent again once connected")
	}
}

// Viewers hold frames stored ahead of one sent again for longer than the
// bridge takes to send it again: its wait for an answer, then its longest
// back-off.
func TestViewersWaitLongerThanFramesAreSentAgain(t *testing.T) {
	if resend := wire.FrameAckWait + retryMost; wire.FrameReorderWait <= resend+time.Second {
		t.Fatalf("viewers hold frames for %s; a frame is sent again within %s", wire.FrameReorderWait, resend)
	}
}

// offsetReader reads frames as a viewer does (package attach): by offset,
// holding those stored ahead of what it has, skipping copies.
type offsetReader struct {
	read []byte
	held map[uint64][]byte
}

func (r *offsetReader) add(offset uint64, frame []byte) {
	if r.held == nil {
		r.held = map[uint64][]byte{}
	}
	r.held[offset] = frame
	for progress := true; progress; {
		progress = false
		for off, data := range r.held {
			if off > uint64(len(r.read)) {
				continue
			}
			if end := off + uint64(len(data)); end > uint64(len(r.read)) {
				r.read = append(r.read, data[uint64(len(r.read))-off:]...)
			}
			delete(r.held, off)
			progress = true
		}
	}
}
