package e2e

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A viewer that stops reading while the shell writes 64 MiB is
// disconnected by the server once its writes block for the stall timeout;
// the shell and a second viewer are not slowed, and the session goes on.
func TestAttachStalledViewer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	created := runningSession(t, "stalled")
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")

	// The stalled viewer: a WebSocket straight to kube-apiserver that
	// reads nothing until the end.
	stalled := dialAttach(ctx, t, "alice", "team-a", created.Name, "v4.channel.k8s.io", "stdout", "true", "tty", "true")
	defer stalled.Close()

	// The healthy viewer, typing.
	in, typeIn := io.Pipe()
	defer typeIn.Close()
	screen := framework.Screen{Tail: 4096}
	ended := attach(ctx, t, "alice", "team-a", created.Name, false, in, &screen)
	waitViewers(t, 30*time.Second, "both viewers in status", "team-a", created.Name, 2)
	const output = 64 << 20
	go func() {
		_, _ = typeIn.Write([]byte("head -c 67108864 /dev/zero | tr '\\0' x | fold -w 1024; echo stalled-$((6*7))\n"))
	}()
	eventually(t, 2*time.Minute, "the healthy viewer reads all 64 MiB", func(context.Context) (bool, error) {
		select {
		case err := <-ended:
			t.Fatalf("healthy viewer's attach ended: %v", err)
		default:
		}
		return strings.Contains(screen.String(), "stalled-42"), nil
	})
	if screen.Len() < output {
		t.Errorf("healthy viewer read %d bytes, want at least %d", screen.Len(), output)
	}

	// Still reading nothing, the stalled viewer is let go once a write to
	// it has blocked for the stall timeout (10 s): it leaves the count.
	waitViewers(t, time.Minute, "the stalled viewer let go", "team-a", created.Name, 1)
	// What its connection still holds drains, then it ends instead of
	// waiting for more.
	received := 0
	for {
		_ = stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, msg, err := stalled.ReadMessage()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("stalled viewer still connected after reading %d bytes", received)
			}
			t.Logf("stalled viewer disconnected after %d of %d+ bytes: %v", received, output, err)
			break
		}
		received += len(msg)
	}
	if received >= output {
		t.Errorf("stalled viewer received all %d bytes: it was never stalled", received)
	}
	s, err := c.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != v1alpha1.TerminalSessionRunning {
		t.Errorf("session %s (%s), want Running", s.Status.Phase, s.Status.Message)
	}
}
