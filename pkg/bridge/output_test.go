package bridge

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

type frames struct {
	mu     sync.Mutex
	seqs   []uint64
	data   [][]byte
	gate   chan struct{} // when set, each publish waits for it
	stored chan struct{} // when set, each frame is stored when it receives
}

func (f *frames) publish(_ context.Context, seq uint64, frame []byte) (func() error, error) {
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
