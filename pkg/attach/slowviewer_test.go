package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/broker"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// relayOnNATS is a Relay on an in-process NATS with the bridge's IO stream.
func relayOnNATS(t *testing.T) *Relay {
	t.Helper()
	b, err := broker.Start(context.Background(), broker.Config{MemoryOnly: true, Name: "stream-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	_, err = b.JetStream.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:     wire.IOStream,
		Subjects: []string{"terminal.*.out", "terminal.*.ctl"},
		Storage:  jetstream.MemoryStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &Relay{Conn: b.Conn, JetStream: b.JetStream, StallTimeout: 200 * time.Millisecond}
}

// stalledConn is a viewer's connection that stopped reading: every write
// blocks until the connection is closed.
type stalledConn struct {
	once   sync.Once
	closed chan struct{}
}

func (s *stalledConn) Write([]byte) (int, error) {
	<-s.closed
	return 0, errors.New("write on closed connection")
}

func (s *stalledConn) abort() { s.once.Do(func() { close(s.closed) }) }

// A viewer that stops reading is let go (its connection aborted) once a
// write to it has blocked for the stall timeout, while a slow viewer of the
// same session gets every frame.
func TestRelayLetsStalledViewerGo(t *testing.T) {
	r := relayOnNATS(t)
	subj := wire.SubjectsFor("stalled")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stalled := &stalledConn{closed: make(chan struct{})}
	stalledDone := make(chan error, 1)
	go func() {
		_, err := r.Serve(ctx, subj, Viewer{User: "slow", Out: stalled, Abort: stalled.abort})
		stalledDone <- err
	}()
	// A slow viewer that keeps reading (each write takes a while) is not
	// let go, whatever the burst.
	healthy := syncWriter{delay: time.Millisecond}
	healthyDone := make(chan error, 1)
	go func() {
		_, err := r.Serve(ctx, subj, Viewer{User: "fast", Out: &healthy})
		healthyDone <- err
	}()

	const frames = 1024
	var want bytes.Buffer
	offset := 0
	for i := range frames {
		data := fmt.Appendf(nil, "frame %04d\n", i)
		want.Write(data)
		m := &nats.Msg{Subject: subj.Out(), Data: data, Header: nats.Header{wire.OffsetHeader: []string{strconv.Itoa(offset)}}}
		offset += len(data)
		if _, err := r.JetStream.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-stalledDone:
		if !errors.Is(err, ErrSlowViewer) {
			t.Fatalf("stalled viewer ended with %v, want %v", err, ErrSlowViewer)
		}
	case <-ctx.Done():
		t.Fatal("the stalled viewer was never let go")
	}
	for !bytes.Equal(healthy.Bytes(), want.Bytes()) {
		select {
		case err := <-healthyDone:
			t.Fatalf("healthy viewer ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("healthy viewer got %d of %d bytes", len(healthy.Bytes()), want.Len())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type syncWriter struct {
	delay time.Duration
	mu    sync.Mutex
	b     bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// gatedWriter blocks writes until its gate opens; entered closes at the
// first write.
type gatedWriter struct {
	gate    <-chan struct{}
	entered chan struct{}
	once    sync.Once
	syncWriter
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.gate
	return g.syncWriter.Write(p)
}

// A slow viewer that falls further behind than the scrollback keeps gets a
// line saying how much output is gone, then what is kept.
func TestRelaySlowViewerPastScrollback(t *testing.T) {
	r := relayOnNATS(t)
	r.StallTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A scrollback of 8 frames.
	if _, err := r.JetStream.UpdateStream(ctx, jetstream.StreamConfig{
		Name: wire.IOStream, Subjects: []string{"terminal.*.out", "terminal.*.ctl"},
		Storage: jetstream.MemoryStorage, MaxMsgsPerSubject: 8,
	}); err != nil {
		t.Fatal(err)
	}
	subj := wire.SubjectsFor("behind")
	gate := make(chan struct{})
	slow := &gatedWriter{gate: gate, entered: make(chan struct{})}
	go func() { _, _ = r.Serve(ctx, subj, Viewer{User: "slow", Out: slow}) }()

	// Frames of 32 KiB: more than the consumer fetches ahead (1 MiB).
	frame := func(i int) []byte {
		return append(fmt.Appendf(nil, "frame %04d\n", i), bytes.Repeat([]byte{'.'}, 32<<10)...)
	}
	publish := func(i, offset int) int {
		data := frame(i)
		m := &nats.Msg{Subject: subj.Out(), Data: data, Header: nats.Header{wire.OffsetHeader: []string{strconv.Itoa(offset)}}}
		if _, err := r.JetStream.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		return offset + len(data)
	}
	// The viewer takes frame 0 and blocks writing it; frames 1..99 follow,
	// of which the stream keeps the last 8, and the viewer's consumer may
	// hold a few it fetched before they went.
	offset := publish(0, 0)
	select {
	case <-slow.entered:
	case <-ctx.Done():
		t.Fatal("the viewer never wrote frame 0")
	}
	for i := 1; i < 100; i++ {
		offset = publish(i, offset)
	}
	close(gate)
	last := frame(99)
	for !bytes.HasSuffix(slow.Bytes(), last) {
		select {
		case <-ctx.Done():
			t.Fatalf("viewer got %d bytes, not up to frame 99", len(slow.Bytes()))
		case <-time.After(10 * time.Millisecond):
		}
	}
	got := slow.Bytes()
	kept := bytes.Join([][]byte{frame(92), frame(93), frame(94), frame(95), frame(96), frame(97), frame(98), frame(99)}, nil)
	if !bytes.HasPrefix(got, frame(0)) || !bytes.Contains(got, []byte("bytes of output are no longer kept]")) || !bytes.HasSuffix(got, kept) {
		t.Errorf("viewer got %d bytes: frame 0, then the notice of lost output, then the 8 frames kept expected", len(got))
	}
}
