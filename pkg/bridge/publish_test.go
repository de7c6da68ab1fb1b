package bridge

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// What a process writes is published to the session's output subject as
// frames of at most wire.MaxFrame bytes, numbered by Terminal-Seq, each
// saying its byte offset in Terminal-Offset, never cut inside a UTF-8
// character, and together exactly what was written. A local follower gets
// the same frames.
func TestOutputPublishedInFrames(t *testing.T) {
	h := newHarness(t)
	b, _ := h.startBridge("replica", nil)
	created, f := h.running("output", nil)
	subj := wire.SubjectsFor(string(created.UID))
	local := make(chan wire.Frame, 1024)
	stop, ok := b.Follow(subj, local)
	if !ok {
		t.Fatal("no local follow for a session this replica runs")
	}
	defer stop()

	// Pieces of random size, whole characters each (a character cut
	// between two writes is forced out after a delay, by design; that is
	// the output tests' business).
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab€日本語🙂\n\x1b[0m")
	var written bytes.Buffer
	written.WriteString(fakePrompt)
	for written.Len() < 200<<10 {
		var piece []byte
		for range rng.IntN(3000) + 1 {
			piece = utf8.AppendRune(piece, alphabet[rng.IntN(len(alphabet))])
		}
		written.Write(piece)
		f.write(t, piece)
	}

	c, err := h.nats.JetStream.OrderedConsumer(h.ctx, wire.IOStream,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj.Out()}})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	lastSeq := uint64(0)
	for got.Len() < written.Len() {
		m, err := c.Next()
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got.Len(), written.Len(), err)
		}
		data := m.Data()
		seq, err := strconv.ParseUint(m.Headers().Get(wire.SeqHeader), 10, 64)
		if err != nil || seq <= lastSeq {
			t.Fatalf("frame at %d: %s %q after %d", got.Len(), wire.SeqHeader, m.Headers().Get(wire.SeqHeader), lastSeq)
		}
		lastSeq = seq
		if off := m.Headers().Get(wire.OffsetHeader); off != strconv.Itoa(got.Len()) {
			t.Fatalf("frame at %d says %s %s", got.Len(), wire.OffsetHeader, off)
		}
		if len(data) > wire.MaxFrame || len(data) == 0 {
			t.Fatalf("frame at %d has %d bytes (at most %d)", got.Len(), len(data), wire.MaxFrame)
		}
		if !utf8.Valid(data) {
			t.Fatalf("frame at %d cut inside a character: ...%q", got.Len(), data[max(0, len(data)-4):])
		}
		got.Write(data)
	}
	if !bytes.Equal(got.Bytes(), written.Bytes()) {
		t.Fatal("the published output differs from what the process wrote")
	}

	// The follower came after the prompt: it gets everything from where it
	// joined.
	var followed bytes.Buffer
	start := -1
	for start < 0 || start+followed.Len() < written.Len() {
		fr := <-local
		if start < 0 {
			start = int(fr.Offset)
		}
		if fr.Offset != uint64(start+followed.Len()) {
			t.Fatalf("local frame at offset %d, want %d", fr.Offset, start+followed.Len())
		}
		followed.Write(fr.Data)
	}
	if !bytes.Equal(followed.Bytes(), written.Bytes()[start:]) {
		t.Fatal("the local follower's output differs from what the process wrote")
	}
}

// A NATS connection that drops while output is in flight (a NATS server's
// restart, a move to another one, a rotated password) loses the answers
// to the frames sent on it: they are sent again, the session keeps
// running, and a viewer that goes by offset (holding frames stored ahead
// of one sent again) reads exactly what the process wrote.
func TestOutputSurvivesNATSReconnects(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	created, f := h.running("reconnects", nil)
	subj := wire.SubjectsFor(string(created.UID))

	var written bytes.Buffer
	written.WriteString(fakePrompt)
	piece := bytes.Repeat([]byte("0123456789abcdef"), 2<<10) // 32 KiB
	reconnects := 0
	for i := 0; written.Len() < 4<<20; i++ {
		p := append([]byte(strconv.Itoa(i)+":"), piece...)
		written.Write(p)
		f.write(t, p)
		if i%8 == 7 {
			if err := h.nats.Conn.ForceReconnect(); err != nil {
				t.Fatal(err)
			}
			reconnects++
		}
	}

	c, err := h.nats.JetStream.OrderedConsumer(h.ctx, wire.IOStream,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj.Out()}})
	if err != nil {
		t.Fatal(err)
	}
	var r offsetReader
	mostHeld := 0
	for len(r.read) < written.Len() {
		m, err := c.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatalf("after %d of %d bytes (%d held): %v", len(r.read), written.Len(), len(r.held), err)
		}
		off, err := strconv.ParseUint(m.Headers().Get(wire.OffsetHeader), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		r.add(off, m.Data())
		mostHeld = max(mostHeld, len(r.held))
	}
	if !bytes.Equal(r.read, written.Bytes()) {
		t.Fatal("the stored output differs from what the process wrote")
	}
	if mostHeld > 16 {
		t.Errorf("%d frames were stored ahead of one sent again; viewers hold at most 16", mostHeld)
	}
	if f.isClosed() {
		t.Fatal("the session's process was closed")
	}
	if p := h.get("reconnects").Status.Phase; p != v1alpha1.TerminalSessionRunning {
		t.Fatalf("after %d reconnects the session is %s", reconnects, p)
	}
	t.Logf("%d reconnects; at most %d frames stored ahead of one sent again", reconnects, mostHeld)
}
