package bridge

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/meshery/terminal-apiserver/pkg/broker"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// What recording costs per byte of output, storage included (an embedded
// JetStream, as make up runs it): the shell's output path pays it.
// Output arrives in 4 KiB pieces, as a fast process's does.
func BenchmarkRecorder(b *testing.B) {
	text := bytes.Repeat([]byte("drwxr-xr-x  2 root root 4096 Nov 29 12:00 \x1b[01;34mbin\x1b[0m\r\n"), 128)
	bulk := bytes.Repeat([]byte("x"), 4096)
	jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	for _, c := range []struct {
		name   string
		piece  []byte
		redact []*regexp.Regexp
	}{
		{"text", text[:4096], nil},
		{"bulk", bulk, nil},
		{"text-redacted", text[:4096], []*regexp.Regexp{jwt}},
		{"bulk-redacted", bulk, []*regexp.Regexp{jwt}},
	} {
		b.Run(c.name, func(b *testing.B) {
			nb, err := broker.Start(broker.Config{DataDir: b.TempDir(), Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer nb.Close()
			t := Transcripts{Enabled: true, MaxBytes: 4 << 30, Retention: time.Hour, StorageBytes: 4 << 30, Redact: c.redact}
			if err := createTranscriptStream(context.Background(), nb.JetStream, t, 1); err != nil {
				b.Fatal(err)
			}
			r := newRecorder(nb.JetStream, wire.SubjectsFor("bench"), t, "ns", "name", time.Now(), transcript.Header{Version: 2, Width: 80, Height: 24})
			b.SetBytes(int64(len(c.piece)))
			for i := 0; b.Loop(); i++ {
				r.output(c.piece)
				if i%256 == 255 {
					r.flush() // a bridge tick
				}
			}
			r.close()
		})
	}
}
