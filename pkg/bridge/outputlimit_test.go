package bridge

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/client-go/rest"

	"github.com/meshery/terminal-apiserver/pkg/broker"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// A flood of terminal output fills only the IO stream, whose size is
// reserved: with JetStream's storage twice over, lease and object writes
// still succeed, and the oldest output is what goes.
func TestOutputFloodLeavesRoomForObjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := broker.Start(context.Background(), broker.Config{DataDir: t.TempDir(), MaxStore: 32 << 20, Name: "bridge-flood-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	br, err := New(ctx, Config{Conn: b.Conn, JetStream: b.JetStream, KubeConfig: &rest.Config{Host: "https://127.0.0.1:1"},
		Holder: "test", OutputBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	objects, err := b.JetStream.CreateStream(ctx, jetstream.StreamConfig{Name: "OBJECTS", Subjects: []string{"objects.>"},
		Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	frame := bytes.Repeat([]byte("x"), maxFrame)
	for i := range (64 << 20) / maxFrame { // twice JetStream's whole storage
		if _, err := b.JetStream.Publish(ctx, fmt.Sprintf("terminal.flood%d.out", i%8), frame); err != nil {
			t.Fatalf("output frame %d: %v", i, err)
		}
	}
	io, err := b.JetStream.Stream(ctx, wire.IOStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := io.CachedInfo().State.Bytes; got > 8<<20 {
		t.Errorf("the IO stream holds %d bytes, more than its 8 MiB", got)
	}
	if _, ok, err := br.leases.claim(ctx, "after-the-flood"); err != nil || !ok {
		t.Fatalf("lease after the flood: %v (claimed %v)", err, ok)
	}
	for i := range 16 {
		if _, err := b.JetStream.Publish(ctx, fmt.Sprintf("objects.o%d", i), bytes.Repeat([]byte("o"), 64<<10)); err != nil {
			t.Fatalf("object write %d after the flood: %v", i, err)
		}
	}
	if info, err := objects.Info(ctx); err != nil || info.State.Msgs != 16 {
		t.Fatalf("objects stream: %v, %+v", err, info)
	}
}
