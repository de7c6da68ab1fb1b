package bridge

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

type frames struct {
	mu   sync.Mutex
	seqs []uint64
	data [][]byte
	gate chan struct{} // when set, each publish waits for it
}

func (f *frames) publish(_ context.Context, seq uint64, frame []byte) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seqs = append(f.seqs, seq)
	f.data = append(f.data, frame)
	return nil
}

func TestOutputKeepsCharactersWhole(t *testing.T) {
	f := &frames{}
	o := newOutput(context.Background(), f.publish, 7, 1<<20)
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
