package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// The process's exit closes the session with its exit code: a command that
// exits by itself, and a shell told to exit.
func TestBridgeExitCode(t *testing.T) {
	t.Parallel()
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		s := framework.NewSession("team-a", uniqueName("exit"), "shell-demo")
		s.Spec.Command = []string{"sh", "-c", "echo bye; exit 3"}
		created := createSession(t, "alice", s)
		closed := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
		if closed.Status.Reason != v1alpha1.ReasonExited || closed.Status.ExitCode == nil || *closed.Status.ExitCode != 3 {
			t.Errorf("reason %q exitCode %v message %q, want Exited with code 3", closed.Status.Reason, closed.Status.ExitCode, closed.Status.Message)
		}
	})
	t.Run("shell", func(t *testing.T) {
		t.Parallel()
		sh := openShell(t, "team-a", "shell-demo", "")
		ctl := watchClosed(t, sh.nc, sh.subj)
		if err := sh.nc.Publish(sh.subj.In(), []byte("exit 5\n")); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-ctl:
			if ev.Reason != v1alpha1.ReasonExited || ev.ExitCode == nil || *ev.ExitCode != 5 {
				t.Errorf("closed event %+v, want Exited with code 5", ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no closed event after exit 5")
		}
	})
}

// A session with no viewer for its detach grace period closes as Detached;
// one whose viewer keeps announcing itself stays open, and status.viewers
// counts it.
func TestBridgeDetachGracePeriod(t *testing.T) {
	t.Parallel()
	const grace = 3 * time.Second
	open := func(t *testing.T) (*v1alpha1.TerminalSession, wire.Subjects) {
		s := framework.NewSession("team-a", uniqueName("detach"), "shell-demo")
		s.Spec.DetachGracePeriod = &metav1.Duration{Duration: grace}
		created := createSession(t, "alice", s)
		return created, wire.SubjectsFor(string(created.UID))
	}
	t.Run("never attached", func(t *testing.T) {
		t.Parallel()
		s, _ := open(t)
		closed := waitPhase(t, "team-a", s.Name, v1alpha1.TerminalSessionClosed)
		if closed.Status.Reason != v1alpha1.ReasonDetached {
			t.Errorf("reason %q message %q, want Detached", closed.Status.Reason, closed.Status.Message)
		}
		if open := closed.Status.ClosedAt.Sub(closed.Status.StartedAt.Time); open < grace-time.Second {
			t.Errorf("closed %s after starting, before its grace period of %s", open, grace)
		}
	})
	t.Run("viewer attached then detached", func(t *testing.T) {
		t.Parallel()
		nc, _ := natsConn(t)
		s, subj := open(t)
		announce := func(state wire.PresenceState) {
			data, _ := json.Marshal(wire.Presence{ID: "e2e-" + s.Name, State: state, User: "alice"})
			if err := nc.Publish(subj.Viewers(), data); err != nil {
				t.Fatal(err)
			}
		}
		waitPhase(t, "team-a", s.Name, v1alpha1.TerminalSessionRunning)
		announce(wire.Attached)
		// Attached for three grace periods, announcing itself every second.
		c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
		sawViewer := false
		for deadline := time.Now().Add(3 * grace); time.Now().Before(deadline); time.Sleep(time.Second) {
			announce(wire.Attached)
			cur, err := c.Get(context.Background(), s.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cur.Status.Phase != v1alpha1.TerminalSessionRunning {
				t.Fatalf("session %s (%s: %s) while a viewer was attached", cur.Status.Phase, cur.Status.Reason, cur.Status.Message)
			}
			sawViewer = sawViewer || cur.Status.Viewers == 1
		}
		if !sawViewer {
			t.Error("status.viewers never showed the attached viewer")
		}
		announce(wire.Detached)
		detached := time.Now()
		closed := waitPhase(t, "team-a", s.Name, v1alpha1.TerminalSessionClosed)
		if closed.Status.Reason != v1alpha1.ReasonDetached {
			t.Errorf("reason %q message %q, want Detached", closed.Status.Reason, closed.Status.Message)
		}
		if d := closed.Status.ClosedAt.Sub(detached); d < grace-time.Second {
			t.Errorf("closed %s after the viewer detached, before the grace period of %s", d, grace)
		}
	})
}
