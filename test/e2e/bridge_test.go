package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// natsConn connects to the local server's NATS until the test ends.
func natsConn(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := framework.NATS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

// watchScreen follows the session's output on NATS until the test ends.
func watchScreen(t *testing.T, js jetstream.JetStream, subj wire.Subjects) *framework.FrameScreen {
	t.Helper()
	s, stop, err := framework.WatchFrames(context.Background(), js, subj)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s
}

// waitPhase waits up to 30 s for the session to be in phase.
func waitPhase(t *testing.T, ns, name string, phase v1alpha1.TerminalSessionPhase) *v1alpha1.TerminalSession {
	t.Helper()
	s, err := framework.WaitPhase(context.Background(), terminalClient(t, "alice"), ns, name, phase, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A session opens a real shell in the pod; its bytes flow through NATS; the
// process's exit closes it with the exit code.
func TestBridgeShellRoundTrip(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, js := natsConn(t)
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	name := uniqueName("shell")
	s := framework.NewSession("team-a", name, "shell-demo")
	s.Spec.Size = &v1alpha1.TerminalSize{Cols: 100, Rows: 30}
	created := createSession(t, "alice", s)
	subj := wire.SubjectsFor(string(created.UID))
	scr := watchScreen(t, js, subj)
	defer func() {
		if t.Failed() {
			t.Logf("screen:\n%s", scr.String())
		}
	}()

	running := waitPhase(t, "team-a", name, v1alpha1.TerminalSessionRunning)
	if running.Status.StartedAt == nil {
		t.Error("status.startedAt not set")
	}
	// The initial size is applied before the first byte; bash is found.
	if err := nc.Publish(subj.In(), []byte("echo size=$(stty size) shell=$0 marker=$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "command output on the output subject", func(context.Context) (bool, error) {
		return strings.Contains(scr.String(), "size=30 100 shell=bash marker=42"), nil
	})
	// Resize through NATS.
	data, _ := json.Marshal(wire.Size{Cols: 132, Rows: 43})
	if err := nc.Publish(subj.Resize(), data); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "resized terminal", func(ctx context.Context) (bool, error) {
		if err := nc.Publish(subj.In(), []byte("echo now=$(stty size)\n")); err != nil {
			return false, err
		}
		return strings.Contains(scr.String(), "now=43 132"), nil
	})
	// Deleting the session ends the exec at once. (The exec's stream, that
	// is: neither a real kubelet nor kwok kills the process when its stream
	// ends; deleting the pod does. docs/local-node.md.)
	closedEvents := watchClosed(t, nc, subj)
	start := time.Now()
	if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-closedEvents:
		if ev.Reason != v1alpha1.ReasonDeleted {
			t.Errorf("closed event reason %q, want Deleted", ev.Reason)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("exec ended %s after the delete, want within 1s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no closed event after delete")
	}
	if scr.Err() != nil {
		t.Errorf("output frames: %v", scr.Err())
	}
}

// Each timeout closes the session with its own reason.
func TestBridgeTimeouts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reason string
		spec         func(*v1alpha1.TerminalSessionSpec)
	}{
		{"idle", v1alpha1.ReasonIdleTimeout, func(s *v1alpha1.TerminalSessionSpec) { s.IdleTimeout = &metav1.Duration{Duration: 2 * time.Second} }},
		{"max-duration", v1alpha1.ReasonMaxDuration, func(s *v1alpha1.TerminalSessionSpec) { s.MaxDuration = &metav1.Duration{Duration: 3 * time.Second} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := framework.NewSession("team-a", uniqueName(tc.name), "shell-demo")
			tc.spec(&s.Spec)
			created := createSession(t, "alice", s)
			closed := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
			if closed.Status.Reason != tc.reason || closed.Status.ClosedAt == nil || closed.Status.Message == "" {
				t.Errorf("closed: reason %q closedAt %v message %q, want reason %s", closed.Status.Reason, closed.Status.ClosedAt, closed.Status.Message, tc.reason)
			}
		})
	}
}

// Deleting the target pod closes the session as TargetGone.
func TestBridgeTargetGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kube := kubeClient(t, "alice")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: uniqueName("target"), Namespace: "team-a"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{framework.SleepingContainer("shell")},
		},
	}
	if _, err := kube.CoreV1().Pods("team-a").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Pods("team-a").Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
	})
	eventually(t, 60*time.Second, "pod running", func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods("team-a").Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	created, err := c.Create(ctx, framework.NewSession("team-a", uniqueName("gone"), pod.Name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
	waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionRunning)
	zero := int64(0)
	if err := kube.CoreV1().Pods("team-a").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	closed := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
	if closed.Status.Reason != v1alpha1.ReasonTargetGone {
		t.Errorf("reason %q message %q, want TargetGone", closed.Status.Reason, closed.Status.Message)
	}
	// Both ends are Kubernetes Events on the session, as kubectl shows them.
	eventually(t, 30*time.Second, "Started and TargetGone events", func(ctx context.Context) (bool, error) {
		out := kubectl(t, "alice", "", "-n", "team-a", "events", "--for", "terminalsession.terminal.meshery.io/"+created.Name)
		return strings.Contains(out.stdout, "Started") && strings.Contains(out.stdout, "TargetGone") &&
			strings.Contains(out.stdout, "as alice"), nil
	})
}

// A closed session is deleted once its ttlAfterClosed has passed.
func TestBridgeTTLAfterClosed(t *testing.T) {
	t.Parallel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	s := framework.NewSession("team-a", uniqueName("ttl"), "shell-demo")
	s.Spec.IdleTimeout = &metav1.Duration{Duration: time.Second}
	s.Spec.TTLAfterClosed = &metav1.Duration{Duration: 2 * time.Second}
	created := createSession(t, "alice", s)
	closed := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
	eventually(t, 30*time.Second, "closed session garbage-collected", func(ctx context.Context) (bool, error) {
		_, err := c.Get(ctx, created.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if gone := time.Since(closed.Status.ClosedAt.Time); gone < 2*time.Second {
		t.Errorf("deleted %s after closing, before its ttlAfterClosed of 2s", gone)
	}
}
