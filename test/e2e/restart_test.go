package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// kill ends the replica's process with SIGKILL: nothing of its own
// shutdown runs.
func (r *replica) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// terminal-apiserver on its embedded NATS, restarted while shells run, as
// a single-replica install is: the session objects survive, and no shell
// that ran is left Running with nobody behind it. Stopped (SIGINT, as
// SIGTERM, with --shutdown-drain-timeout=0), it closes them as
// ServerShutdown before it exits; killed (SIGKILL), it cannot, and once it
// is back their leases lapse and it marks them Failed as BridgeLost.
func TestEmbeddedServerRestartReportsRunningShells(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := startReplica(t, "restart", "--nats-data-dir="+t.TempDir(), "--shutdown-drain-timeout=0")
	c := r.client()
	open := func(prefix string) string {
		t.Helper()
		s, err := c.TerminalV1alpha1().TerminalSessions("team-a").Create(ctx, framework.NewSession("team-a", uniqueName(prefix), "shell-demo"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := framework.WaitPhase(ctx, c, "team-a", s.Name, v1alpha1.TerminalSessionRunning, time.Minute); err != nil {
			t.Fatal(err)
		}
		return s.Name
	}
	reason := func(name string, phase v1alpha1.TerminalSessionPhase, timeout time.Duration) *v1alpha1.TerminalSession {
		t.Helper()
		s, err := framework.WaitPhase(ctx, c, "team-a", name, phase, timeout)
		if err != nil {
			t.Fatalf("session %s: %v", name, err)
		}
		return s
	}

	stopped := open("stopped")
	r.stop()
	r.start()
	if s := reason(stopped, v1alpha1.TerminalSessionClosed, time.Minute); s.Status.Reason != v1alpha1.ReasonServerShutdown {
		t.Errorf("a shell running when the server stopped: %s, %s (%s), want ServerShutdown", s.Status.Phase, s.Status.Reason, s.Status.Message)
	} else {
		recordFigure(t, "a single replica on its embedded NATS stopped (SIGTERM) and started again", "its shell closed as ServerShutdown before the exit; the session object survived")
	}

	killed := open("killed")
	r.kill()
	at := time.Now()
	r.start()
	s := reason(killed, v1alpha1.TerminalSessionFailed, 2*time.Minute)
	if s.Status.Reason != v1alpha1.ReasonBridgeLost {
		t.Errorf("a shell running when the server was killed: %s (%s), want BridgeLost", s.Status.Reason, s.Status.Message)
	}
	recordFigure(t, "a single replica on its embedded NATS killed (SIGKILL) and started again", "its shell reported Failed as BridgeLost %s after the kill (lease 15 s); the session objects survived", time.Since(at).Round(time.Second))
	// Both objects survived both restarts.
	if _, err := c.TerminalV1alpha1().TerminalSessions("team-a").Get(ctx, stopped, metav1.GetOptions{}); err != nil {
		t.Errorf("the session closed at the first restart: %v", err)
	}
}
