package bridge

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/meshery/terminal-apiserver/pkg/broker"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// benchOutput is 4 MiB of output that does not repeat within a stored
// message: colored `ls -l` lines with random names and sizes ("ls"), or
// random bytes in base64 ("base64"), as a process writes them with a
// terminal (CRLF line ends).
func benchOutput(kind string) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []byte
	for len(out) < 4<<20 {
		switch kind {
		case "ls":
			name := make([]byte, 4+rng.IntN(12))
			for i := range name {
				name[i] = byte('a' + rng.IntN(26))
			}
			color := []string{"0", "01;34", "01;32", "01;36"}[rng.IntN(4)]
			out = fmt.Appendf(out, "-rw-r--r--  1 root root %8d Nov %2d %02d:%02d \x1b[%sm%s\x1b[0m\r\n",
				rng.IntN(1<<24), 1+rng.IntN(30), rng.IntN(24), rng.IntN(60), color, name)
		default:
			raw := make([]byte, 57)
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			out = append(base64.StdEncoding.AppendEncode(out, raw), '\r', '\n')
		}
	}
	return out
}

// What recording costs per byte of output, storage included (an embedded
// JetStream, as make up runs it) until storage has it all: the shell's
// output path pays it. Output arrives in 4 KiB pieces, as a fast
// process's does; a bridge tick flushes every 256 pieces.
func BenchmarkRecorder(b *testing.B) {
	jwt := regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	for _, c := range []struct {
		kind   string
		redact []*regexp.Regexp
	}{{"ls", nil}, {"base64", nil}, {"ls", []*regexp.Regexp{jwt}}, {"base64", []*regexp.Regexp{jwt}}} {
		name := c.kind
		if c.redact != nil {
			name += "-redacted"
		}
		b.Run(name, func(b *testing.B) {
			out := benchOutput(c.kind)
			nb, err := broker.Start(context.Background(), broker.Config{DataDir: b.TempDir(), Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer nb.Close()
			t := Transcripts{Enabled: true, MaxBytes: 4 << 30, Retention: time.Hour, StorageBytes: 4 << 30, Redact: c.redact}
			if err := createTranscriptStream(context.Background(), nb.JetStream, t, 1); err != nil {
				b.Fatal(err)
			}
			const piece = 4 << 10
			b.SetBytes(piece)
			b.ResetTimer()
			r := newRecorder(nb.JetStream, wire.SubjectsFor("bench"), t, "ns", "name", time.Now(), transcript.Header{Version: 2, Width: 80, Height: 24})
			for i := range b.N {
				off := i * piece % (len(out) - piece)
				r.output(out[off : off+piece])
				if i%256 == 255 {
					r.flush()
				}
			}
			r.close() // until storage has answered for all of it
		})
	}
}
