package incluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

// The NATS credentials rotated as docs/operations.md says
// (artifacts/operations/nats-auth.sh rotate) while a shell prints a
// numbered line ten times a second: every line arrives, in order, the
// session stays Running and the same shell answers afterwards, no pod
// restarts, and NATS then takes the new user's password and refuses the
// old one.
func TestNATSCredentialsRotatedWithoutCuttingShells(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	restarts := podRestarts(ctx, t, admin)
	old, secure := natsCredentials(ctx, t, admin)

	sh := openShell(ctx, t, "rotation")
	sh.run(t, "echo before-rotation-$((6*7))", "before-rotation-42")
	sh.typeLine("i=0; while [ $i -lt 100000 ]; do echo tick-$i; i=$((i+1)); sleep 0.1; done")
	sh.waitScreen(t, "tick-10\r\n", 30*time.Second)

	script := exec.CommandContext(ctx, filepath.Join("..", "..", "artifacts", "operations", "nats-auth.sh"), "rotate")
	script.Env = append(os.Environ(), "NAMESPACE="+env.namespace,
		fmt.Sprintf("KUBECTL=%s --kubeconfig %s --context admin", env.kubectl, env.kubeconfig))
	start := time.Now()
	out, err := script.CombinedOutput()
	if err != nil {
		t.Fatalf("nats-auth.sh rotate: %v\n%s", err, out)
	}
	t.Logf("nats-auth.sh rotate took %s:\n%s", time.Since(start).Round(time.Second), out)

	// The loop went on through every move: no line lost or out of order.
	last := sh.lastTick(t)
	sh.waitScreen(t, fmt.Sprintf("tick-%d\r\n", last+20), 30*time.Second)
	sh.typeLine("\x03") // ^C
	sh.checkTicks(t)

	sessions := sh.client.TerminalV1alpha1().TerminalSessions("team-a")
	if s, err := sessions.Get(ctx, sh.name, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if s.Status.Phase != v1alpha1.TerminalSessionRunning {
		t.Fatalf("after the rotation the session is %s (%s: %s)", s.Status.Phase, s.Status.Reason, s.Status.Message)
	}
	sh.run(t, "echo after-rotation-$((6*7))", "after-rotation-42")
	sh.exit(t, 0)
	for uid, n := range podRestarts(ctx, t, admin) {
		if want, ok := restarts[uid]; !ok || n != want {
			t.Errorf("pod %s is new or restarted during the rotation (restarts %d, before %d)", uid, n, want)
		}
	}

	rotated, _ := natsCredentials(ctx, t, admin)
	if rotated.user == old.user || rotated.password == old.password {
		t.Fatalf("the Secret still holds user %s or its password", old.user)
	}
	for _, p := range runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3) {
		addr := "tls://" + net.JoinHostPort(p.Status.PodIP, "4222")
		if nc, err := nats.Connect(addr, secure, old.option(), nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Errorf("%s still takes the old user %s", p.Name, old.user)
		} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s, the old user: %v, want an authorization violation", p.Name, err)
		}
		nc, err := nats.Connect(addr, secure, rotated.option(), nats.Timeout(5*time.Second))
		if err != nil {
			t.Errorf("%s refuses the new user %s: %v", p.Name, rotated.user, err)
			continue
		}
		nc.Close()
	}
}

// podRestarts counts the restarts of every container of the install's
// pods, by pod.
func podRestarts(ctx context.Context, t *testing.T, admin *kubernetes.Clientset) map[types.UID]int32 {
	t.Helper()
	pods, err := admin.CoreV1().Pods(env.namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restarts := map[types.UID]int32{}
	for _, p := range pods.Items {
		if p.Labels["app.kubernetes.io/name"] == "nats-box" {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			restarts[p.UID] += c.RestartCount
		}
	}
	return restarts
}

var tick = regexp.MustCompile(`tick-(\d+)\r\n`)

// lastTick is the number of the last line the loop printed.
func (sh *shell) lastTick(t *testing.T) int {
	t.Helper()
	m := tick.FindAllStringSubmatch(sh.screen.String(), -1)
	if len(m) == 0 {
		t.Fatal("no tick on the screen")
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// checkTicks checks that the loop's lines are all on the screen, in order.
func (sh *shell) checkTicks(t *testing.T) {
	t.Helper()
	// The command line's echo holds "tick-$i", which the pattern skips.
	m := tick.FindAllStringSubmatch(sh.screen.String(), -1)
	for i, line := range m {
		if line[1] != strconv.Itoa(i) {
			t.Fatalf("line %d of the loop is tick-%s: output was lost or reordered", i, line[1])
		}
	}
	t.Logf("%d lines, all in order", len(m))
}
