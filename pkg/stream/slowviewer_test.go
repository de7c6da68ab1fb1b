package stream

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

	"github.com/meshery/terminal-apiserver/pkg/bridge"
	"github.com/meshery/terminal-apiserver/pkg/broker"
)

// relayOnNATS is a Relay on an in-process NATS with the bridge's IO stream.
func relayOnNATS(t *testing.T) *Relay {
	t.Helper()
	b, err := broker.Start(broker.Config{MemoryOnly: true, Name: "stream-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	_, err = b.JetStream.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:     bridge.IOStream,
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
	subj := bridge.SubjectsFor("stalled")
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
		m := &nats.Msg{Subject: subj.Out(), Data: data, Header: nats.Header{bridge.OffsetHeader: []string{strconv.Itoa(offset)}}}
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
