package incluster

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A rolling restart (kubectl rollout restart) with shells open: the old
// replicas drain (the local overlay gives them 30 s), new sessions go to
// the new replicas at once, an open shell keeps working until it exits,
// and the one still open at its replica's deadline is closed with the
// reason ServerShutdown after its viewer was told. Runs last: it replaces
// the deployment's pods.
func TestRollingRestartDrainsSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	js := natsConn(ctx, t, admin)
	leases, err := js.KeyValue(ctx, wire.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, p := range serverPods(ctx, t, admin) {
		old[p.Name] = true
	}
	exits, stays := openShell(ctx, t, "drain-exits"), openShell(ctx, t, "drain-stays")
	exits.run(t, "echo before-$((2*3))", "before-6")
	stays.run(t, "echo before-$((3*3))", "before-9")
	exitsPod, staysPod := runBy(ctx, t, leases, exits.uid), runBy(ctx, t, leases, stays.uid)
	if !old[exitsPod] || !old[staysPod] {
		t.Fatalf("sessions run by %s and %s, want replicas of %v", exitsPod, staysPod, old)
	}

	// kubectl rollout restart: a new template, so a new ReplicaSet.
	patch := `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"` + time.Now().Format(time.RFC3339Nano) + `"}}}}}`
	if _, err := admin.AppsV1().Deployments(env.namespace).Patch(ctx, "terminal-apiserver", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// The shell on a draining replica still works, and ends by itself.
	// (A stream served by a stopping replica may be cut: the shell then
	// attaches again, as kubectl terminal does.)
	waitDraining(ctx, t, admin, exitsPod)
	exits.waitScreen(t, "the server running this session is shutting down", 30*time.Second)
	exits.run(t, "echo draining-$((4*4))", "draining-16")
	exits.exit(t, 4)

	// Once no old replica is left to claim, a new session runs at once, on a new replica.
	drainBegan := map[string]time.Time{}
	for name := range old {
		drainBegan[name] = waitDraining(ctx, t, admin, name)
	}
	if drainBegan[staysPod].IsZero() {
		t.Fatalf("replica %s, which runs a session, is gone before its drain period ended", staysPod)
	}
	created := time.Now()
	after := openShell(ctx, t, "drain-after")
	if took := time.Since(created); took > 20*time.Second {
		t.Errorf("a session created during the drain took %s to attach", took.Round(time.Millisecond))
	}
	if pod := runBy(ctx, t, leases, after.uid); old[pod] {
		t.Errorf("a session created during the drain is run by %s, an old replica", pod)
	}
	after.run(t, "echo new-$((5*5))", "new-25")

	// The shell left open is closed at its replica's deadline, and said so first.
	stays.waitScreen(t, "the server running this session is shutting down", 30*time.Second)
	closed, err := framework.WaitPhase(ctx, stays.client, "team-a", stays.name, v1alpha1.TerminalSessionClosed, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if closed.Status.Reason != v1alpha1.ReasonServerShutdown {
		t.Errorf("the shell left open: %s (%s), want ServerShutdown", closed.Status.Reason, closed.Status.Message)
	}
	if open := closed.Status.ClosedAt.Sub(drainBegan[staysPod]); open < 28*time.Second {
		t.Errorf("the shell left open was closed %s after its replica began to drain, before its 30 s drain period", open.Round(time.Millisecond))
	}
	if !hasEvent(ctx, t, admin, closed, v1alpha1.ReasonServerShutdown) || !hasEvent(ctx, t, admin, closed, "Draining") {
		t.Error("no Draining and ServerShutdown Events for the shell left open")
	}
	after.exit(t, 0)

	// The rollout completes: two new replicas, the old ones gone.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := admin.CoreV1().Pods(env.namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=terminal-apiserver"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range list.Items {
			if old[p.Name] {
				return false, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == 2, nil
	})
	if err != nil {
		t.Fatalf("the rollout did not complete: %v", err)
	}
}

// runBy is the pod whose replica holds the session's lease: the holder is
// the replica's host name (its pod's name) and a random suffix.
func runBy(ctx context.Context, t *testing.T, leases jetstream.KeyValue, uid types.UID) string {
	t.Helper()
	e, err := leases.Get(ctx, string(uid))
	if err != nil {
		t.Fatalf("the lease of %s: %v", uid, err)
	}
	holder := string(e.Value())
	// uuid.NewUUID: 36 characters, after a '-'.
	if len(holder) < 38 {
		t.Fatalf("lease holder %q has no replica name", holder)
	}
	return holder[:len(holder)-37]
}

// waitDraining waits for the replica in pod name to log that it began to
// drain (its SIGTERM), and returns when it did (the log line's time); zero
// if the pod is gone, as a replica that runs no session goes at once.
func waitDraining(ctx context.Context, t *testing.T, admin *kubernetes.Clientset, name string) time.Time {
	t.Helper()
	var began time.Time
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		logs, err := admin.CoreV1().Pods(env.namespace).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if apierrors.IsNotFound(err) {
			if _, err := admin.CoreV1().Pods(env.namespace).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return true, nil
			}
		}
		if err != nil {
			return false, nil
		}
		for _, line := range strings.Split(string(logs), "\n") {
			var rec struct {
				TS  float64 `json:"ts"` // milliseconds since the epoch
				Msg string  `json:"msg"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "Draining before shutdown" {
				began = time.UnixMilli(int64(rec.TS))
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("replica %s did not begin to drain: %v", name, err)
	}
	return began
}

// hasEvent says whether the session has a Kubernetes Event with reason.
func hasEvent(ctx context.Context, t *testing.T, admin *kubernetes.Clientset, s *v1alpha1.TerminalSession, reason string) bool {
	t.Helper()
	found := false
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := admin.EventsV1().Events(s.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ev := range list.Items {
			if ev.Regarding.UID == s.UID && ev.Reason == reason && strings.TrimSpace(ev.Note) != "" {
				found = true
			}
		}
		return found, nil
	})
	return found
}
