package bridge

import (
	"bytes"
	"context"
	"testing"
)

// Output written in pieces of any size comes out as frames of at most
// maxFrame bytes, numbered 1, 2, 3, ..., that add up to exactly what was
// written.
func FuzzOutputFraming(f *testing.F) {
	f.Add([]byte("hello, world\r\n"), uint8(3), uint8(7))
	f.Add([]byte("héllo wörld ✓ 日本語"), uint8(1), uint8(4))
	f.Add([]byte{0xe6, 0x97, 0xa5, 0xff, 0xfe, 0xe6}, uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, piece, frameSize uint8) {
		maxFrame := int(frameSize%64) + 4 // a UTF-8 character always fits
		fr := &frames{}
		o := newOutput(context.Background(), fr.publish, maxFrame, 1<<20)
		// Force incomplete tails out at once: what is checked holds either
		// way, and an input full of broken characters would otherwise wait
		// 20 ms for each.
		o.tailWait = 0
		step := int(piece%16) + 1
		for b := data; len(b) > 0; {
			n := min(step, len(b))
			if _, err := o.Write(b[:n]); err != nil {
				t.Fatal(err)
			}
			b = b[n:]
		}
		if err := o.close(); err != nil {
			t.Fatal(err)
		}
		var all bytes.Buffer
		for i, d := range fr.data {
			if len(d) == 0 || len(d) > maxFrame {
				t.Fatalf("frame %d has %d bytes (max %d)", i, len(d), maxFrame)
			}
			if fr.seqs[i] != uint64(i+1) {
				t.Fatalf("frame %d numbered %d", i, fr.seqs[i])
			}
			all.Write(d)
		}
		if !bytes.Equal(all.Bytes(), data) {
			t.Fatalf("frames add up to %q, want %q", all.Bytes(), data)
		}
	})
}
