package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// transcript is a session's transcript as stored: its lines.
func (h *harness) transcript(uid types.UID) []string {
	h.t.Helper()
	all := h.stored(wire.TranscriptStream, wire.SubjectsFor(string(uid)).Cast())
	return strings.Split(strings.TrimSuffix(all, "\n"), "\n")
}

// stored is what stream holds on subject so far, its messages end to end.
func (h *harness) stored(stream, subject string) string {
	h.t.Helper()
	c, err := h.nats.JetStream.OrderedConsumer(h.ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		h.t.Fatal(err)
	}
	var all bytes.Buffer
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			all.Write(m.Data())
			n++
		}
		if n == 0 {
			return all.String()
		}
	}
}

func recordTranscripts(input bool, max int64) func(*Config) {
	return func(c *Config) {
		c.Transcripts = Transcripts{Enabled: true, Input: input, MaxBytes: max, Retention: time.Hour, StorageBytes: 64 << 20}
	}
}

// A session's transcript is stored complete when its process exits, with
// nobody attached: the header (size, command, TERM), its output in order,
// its resizes, and no input unless asked for.
func TestTranscriptRecordsASession(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", recordTranscripts(false, 1<<20))
	created, f := h.running("recorded", func(s *v1alpha1.TerminalSession) {
		s.Spec.Size = &v1alpha1.TerminalSize{Cols: 100, Rows: 30}
	})
	if err := h.nats.Conn.Publish(wire.SubjectsFor(string(created.UID)).In(), []byte("secret\r")); err != nil {
		t.Fatal(err)
	}
	h.eventually("the input typed", func() bool { return f.typed() == "secret\r" })
	// A character split across two writes is recorded whole.
	f.out <- []byte("h\xc3")
	f.out <- []byte("\xa9llo\r\n")
	f.exit <- 0
	h.waitPhase("recorded", v1alpha1.TerminalSessionClosed)

	lines := h.transcript(created.UID)
	var hdr struct {
		Version, Width, Height int
		Command                string
		Env                    map[string]string
	}
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	if hdr.Version != 2 || hdr.Width != 100 || hdr.Height != 30 || hdr.Command == "" || hdr.Env["TERM"] != "xterm" {
		t.Errorf("header %+v", hdr)
	}
	var output strings.Builder
	last := -1.0
	for _, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event %q: %v", l, err)
		}
		if at := ev[0].(float64); at < last {
			t.Errorf("event %q before the one ahead of it", l)
		} else {
			last = at
		}
		switch ev[1] {
		case "o":
			output.WriteString(ev[2].(string))
		case "i":
			t.Errorf("input recorded without being asked for: %q", l)
		}
	}
	want := "héllo\r\n"
	if f.prompt {
		want = fakePrompt + want
	}
	if output.String() != want {
		t.Errorf("recorded output %q, want %q", output.String(), want)
	}
}

// Input is recorded when asked for; past its limit a transcript ends with
// a marker, and the session goes on.
func TestTranscriptInputAndLimit(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", recordTranscripts(true, 4096))
	created, f := h.running("limited", nil)
	if err := h.nats.Conn.Publish(wire.SubjectsFor(string(created.UID)).In(), []byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	h.eventually("the input typed", func() bool { return f.typed() == "ls\r" })
	for range 10 {
		f.out <- bytes.Repeat([]byte("x"), 1000)
	}
	f.out <- []byte("still running\r\n")
	f.exit <- 0
	h.waitPhase("limited", v1alpha1.TerminalSessionClosed)
	lines := h.transcript(created.UID)
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, `"i", "ls\r"`) {
		t.Errorf("no input event for ls: %s", text)
	}
	if size := len(text) + 1; size > 4096+200 {
		t.Errorf("transcript of %d bytes, limit 4096", size)
	}
	if !strings.Contains(lines[len(lines)-1], `"m", "transcript cut`) {
		t.Errorf("the transcript does not end with the cut marker: %q", lines[len(lines)-1])
	}
}

// transcriptOutput is what the session's process wrote, from its
// transcript's output events, after the fake shell's prompt.
func (h *harness) transcriptOutput(uid types.UID) string {
	h.t.Helper()
	var output strings.Builder
	for _, l := range h.transcript(uid)[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			h.t.Fatalf("event %q: %v", l, err)
		}
		if ev[1] == "o" {
			output.WriteString(ev[2].(string))
		}
	}
	return strings.TrimPrefix(output.String(), fakePrompt)
}

// lossyJetStream loses transcript messages' answers as a NATS connection
// that drops does: every third message is stored but its answer lost,
// every fifth neither stored nor answered. (Output frames, which go through
// the same, have tests of their own.)
type lossyJetStream struct {
	jetstream.JetStream
	calls atomic.Int64
}

type lostAnswer struct{ msg *nats.Msg }

func (l lostAnswer) Ok() <-chan *jetstream.PubAck { return nil }
func (l lostAnswer) Err() <-chan error {
	ch := make(chan error, 1)
	ch <- nats.ErrDisconnected
	return ch
}
func (l lostAnswer) Msg() *nats.Msg { return l.msg }

func (l *lossyJetStream) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if !strings.HasSuffix(msg.Subject, "."+string(wire.KindCast)) {
		return l.JetStream.PublishMsgAsync(msg, opts...)
	}
	switch n := l.calls.Add(1); {
	case n%5 == 0:
		return lostAnswer{msg}, nil
	case n%3 == 0:
		ack, err := l.JetStream.PublishMsgAsync(msg, opts...)
		if err != nil {
			return nil, err
		}
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			return nil, err
		}
		return lostAnswer{msg}, nil
	}
	return l.JetStream.PublishMsgAsync(msg, opts...)
}

// A transcript outlives lost answers (a NATS server's restart, a move to
// new credentials): the messages whose answer was lost are sent again, in
// order, and JetStream drops the copies of those it had stored
// (Nats-Msg-Id): every line is in the transcript, once, in order.
func TestTranscriptSurvivesLostAnswers(t *testing.T) {
	h := newHarness(t)
	h.prepare = func(b *Bridge) { b.js = &lossyJetStream{JetStream: b.js} }
	h.startBridge("replica", recordTranscripts(false, 64<<20))
	created, f := h.running("lossy", nil)
	n := 0
	for written := 0; written < 2<<20; {
		var piece strings.Builder
		for piece.Len() < 16<<10 {
			fmt.Fprintf(&piece, "line-%d\r\n", n)
			n++
		}
		f.write(t, []byte(piece.String()))
		written += piece.Len()
	}
	f.exit <- 0
	h.waitPhase("lossy", v1alpha1.TerminalSessionClosed)

	got := h.transcriptOutput(created.UID)
	next := 0
	for _, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
		if line != fmt.Sprintf("line-%d", next) {
			t.Fatalf("after line-%d the transcript has %q: lost, doubled or out of order", next-1, line)
		}
		next++
	}
	if next != n {
		t.Fatalf("the transcript has %d of the %d lines", next, n)
	}
}

// leaderlessJetStream answers every transcript message at once with no
// stream response while down is set: the stream has no leader (an election,
// or no quorum), as a NATS cluster that lost nodes answers.
type leaderlessJetStream struct {
	jetstream.JetStream
	down    atomic.Bool
	refused atomic.Int64
	asked   atomic.Int64 // stream lookups while down
}

// Stream is where a lookup would wait out its timeout while the stream
// has no leader.
func (l *leaderlessJetStream) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if l.down.Load() {
		l.asked.Add(1)
	}
	return l.JetStream.Stream(ctx, name)
}

type refusedAnswer struct {
	msg *nats.Msg
	err error
}

func (a refusedAnswer) Ok() <-chan *jetstream.PubAck { return nil }
func (a refusedAnswer) Err() <-chan error {
	ch := make(chan error, 1)
	ch <- a.err
	return ch
}
func (a refusedAnswer) Msg() *nats.Msg { return a.msg }

func (l *leaderlessJetStream) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if l.down.Load() && strings.HasSuffix(msg.Subject, "."+string(wire.KindCast)) {
		l.refused.Add(1)
		return refusedAnswer{msg, jetstream.ErrNoStreamResponse}, nil
	}
	return l.JetStream.PublishMsgAsync(msg, opts...)
}

// A transcript outlives its stream's leader election: what is recorded
// while the stream refuses it is kept and stored once it has a leader
// again, however many times it was refused meanwhile, without waiting on
// lookups of what the stream holds.
func TestTranscriptWaitsOutALeaderlessStream(t *testing.T) {
	h := newHarness(t)
	js := &leaderlessJetStream{}
	h.prepare = func(b *Bridge) { js.JetStream = b.js; b.js = js }
	b, _ := h.startBridge("replica", recordTranscripts(false, 64<<20))
	created, f := h.running("leaderless", nil)
	js.down.Store(true)
	// Down until messages were refused many times over: each flush (the
	// bridge's tick, once a second; here at once) sends what waits again.
	lines := 0
	for js.refused.Load() < 20 {
		f.write(t, []byte(fmt.Sprintf("line-%d\r\n", lines)))
		lines++
		if lines > 1000 {
			t.Fatal("the transcript sends nothing while its stream has no leader")
		}
		for _, s := range b.sessions() {
			s.mu.Lock()
			rec := s.rec
			s.mu.Unlock()
			rec.flush()
		}
	}
	js.down.Store(false)
	// Refused means not stored: nothing to ask the stream (which, without
	// a leader, answers lookups with a timeout, the output path waiting).
	if n := js.asked.Load(); n > 0 {
		t.Errorf("the stream was asked what it holds %d times while it refused messages", n)
	}
	for end := lines + 20; lines < end; lines++ {
		f.write(t, []byte(fmt.Sprintf("line-%d\r\n", lines)))
	}
	f.exit <- 0
	h.waitPhase("leaderless", v1alpha1.TerminalSessionClosed)

	got := h.transcriptOutput(created.UID)
	want := ""
	for i := range lines {
		want += fmt.Sprintf("line-%d\r\n", i)
	}
	if got != want {
		t.Fatalf("the transcript's output:\n%q\nwant every line once, in order", got)
	}
}
