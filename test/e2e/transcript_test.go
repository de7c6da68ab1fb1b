package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// storedTranscript reads a session's transcript as the server stored it.
func storedTranscript(ctx context.Context, t *testing.T, js jetstream.JetStream, subj wire.Subjects) []byte {
	t.Helper()
	c, err := js.OrderedConsumer(ctx, wire.TranscriptStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj.Cast()}})
	if err != nil {
		t.Fatal(err)
	}
	var cast bytes.Buffer
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			cast.Write(m.Data())
			n++
		}
		if n == 0 {
			return cast.Bytes()
		}
	}
}

// A session on the real node is recorded whole, with nobody attached, and
// Debian's asciinema plays the recording back byte for byte: `asciinema
// cat` prints exactly the output the session's viewers got.
func TestTranscriptPlaysInAsciinema(t *testing.T) {
	t.Parallel()
	asciinema, err := exec.LookPath("asciinema")
	if err != nil {
		t.Fatalf("Debian's asciinema is not installed (hack/e2e.sh installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := openShell(t, "team-a", "shell-demo", "")
	closed := watchClosed(t, sh.nc, sh.subj)
	sh.run(t, `printf 'colours: \033[31mred\033[0m, tab:\t, UTF-8: héllo ✓\n'; seq 1 300`, 30*time.Second)
	if err := sh.nc.Publish(sh.subj.In(), []byte("exit 0\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the session did not close after exit")
	}
	_, js := natsConn(t)
	cast := storedTranscript(ctx, t, js, sh.subj)
	file := filepath.Join(t.TempDir(), "session.cast")
	if err := os.WriteFile(file, cast, 0o600); err != nil {
		t.Fatal(err)
	}
	// asciinema cat reads keys from /dev/tty (and makes it raw, so the
	// bytes pass through unchanged): script(1) gives it one.
	played, err := exec.CommandContext(ctx, "script", "-qfec", asciinema+" cat "+file, "/dev/null").Output()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, cast)
	}
	if want := sh.scr.String(); string(played) != want {
		t.Fatalf("asciinema cat printed %d bytes, the session's output was %d:\nplayed %q\nwant   %q", len(played), len(want), played, want)
	}
}
