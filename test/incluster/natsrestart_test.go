package incluster

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

// NATS upgraded as docs/operations.md says (a rolling restart of its
// StatefulSet: each server enters lame-duck mode, then restarts, one at a
// time) while a shell prints a numbered line ten times a second: every line
// arrives, in order, the session stays Running and answers afterwards, and
// every stream is back on three servers.
func TestNATSRollingRestartKeepsShells(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	before := map[string]bool{}
	for _, p := range runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3) {
		before[string(p.UID)] = true
	}

	sh := openShell(ctx, t, "nats-restart")
	sh.run(t, "echo before-restart-$((6*7))", "before-restart-42")
	sh.typeLine("i=0; while [ $i -lt 100000 ]; do echo tick-$i; i=$((i+1)); sleep 0.1; done")
	sh.waitScreen(t, "tick-10\r\n", 30*time.Second)

	start := time.Now()
	for _, args := range [][]string{
		{"rollout", "restart", "statefulset/nats"},
		{"rollout", "status", "statefulset/nats", "--timeout=8m"},
	} {
		cmd := exec.CommandContext(ctx, env.kubectl, append([]string{"--kubeconfig", env.kubeconfig, "--context", "admin", "-n", env.namespace}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	t.Logf("the rolling restart of NATS took %s", time.Since(start).Round(time.Second))
	for _, p := range runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3) {
		if before[string(p.UID)] {
			t.Fatalf("NATS pod %s was not restarted", p.Name)
		}
	}

	last := sh.lastTick(t)
	sh.waitScreen(t, fmt.Sprintf("tick-%d\r\n", last+20), 30*time.Second)
	sh.typeLine("\x03") // ^C
	sh.checkTicks(t)
	s, err := sh.client.TerminalV1alpha1().TerminalSessions("team-a").Get(ctx, sh.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != v1alpha1.TerminalSessionRunning {
		t.Fatalf("after NATS's restart the session is %s (%s: %s)", s.Status.Phase, s.Status.Reason, s.Status.Message)
	}
	sh.run(t, "echo after-restart-$((6*7))", "after-restart-42")
	sh.exit(t, 0)

	// Every stream has its three servers again, the two followers current.
	js := natsConn(ctx, t, admin)
	for info := range js.ListStreams(ctx).Info() {
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Errorf("stream %s after the restart: %+v, want a leader and two replicas", info.Config.Name, info.Cluster)
			continue
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				t.Errorf("stream %s: replica %s is not current", info.Config.Name, r.Name)
			}
		}
	}
}
