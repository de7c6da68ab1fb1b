package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// replica is a terminal-apiserver process the test owns, beside the one
// local-up registered, using the same cluster for authentication and
// authorization.
type replica struct {
	t       *testing.T
	name    string
	args    []string
	port    int
	cmd     *exec.Cmd
	logPath string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startReplica(t *testing.T, name string, extra ...string) *replica {
	t.Helper()
	kubeconfig := os.Getenv("TERMINAL_APISERVER_KUBECONFIG")
	if kubeconfig == "" {
		t.Fatal("TERMINAL_APISERVER_KUBECONFIG is unset")
	}
	dir := t.TempDir()
	r := &replica{t: t, name: name, port: freePort(t), logPath: filepath.Join(env.localDir, "logs", "e2e-"+name+".log")}
	r.args = append([]string{
		fmt.Sprintf("--secure-port=%d", r.port),
		"--bind-address=127.0.0.1",
		"--cert-dir=" + dir,
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
	}, extra...)
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) start() {
	t := r.t
	t.Helper()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(filepath.Join(env.root, "_output/bin/terminal-apiserver"), r.args...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	r.waitReady()
}

func (r *replica) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// config talks to the replica directly, as admin (a client certificate the
// replica verifies against the cluster's client CA).
func (r *replica) config() *rest.Config {
	cfg := rest.CopyConfig(restConfig(r.t, "admin"))
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", r.port)
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = nil, ""
	cfg.TLSClientConfig.Insecure = true // the replica's self-signed serving cert
	return cfg
}

func (r *replica) client() *clientset.Clientset {
	c, err := clientset.NewForConfig(r.config())
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// waitReady polls, on a fresh connection each time, until the replica
// serves an authenticated request. Until the replica has loaded the
// cluster's client CA it does not ask for client certificates, and an
// HTTP/2 connection opened then would stay anonymous: so neither /readyz nor
// a cached client-go transport will do.
func (r *replica) waitReady() {
	r.t.Helper()
	tlsCfg, err := rest.TLSConfigFor(r.config())
	if err != nil {
		r.t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions?limit=1", r.port)
	var last string
	defer func() {
		if r.t.Failed() {
			r.t.Logf("replica %s: last response: %s", r.name, last)
		}
	}()
	eventually(r.t, 60*time.Second, "replica "+r.name+" serving authenticated requests", func(ctx context.Context) (bool, error) {
		if r.cmd.ProcessState != nil {
			log, _ := os.ReadFile(r.logPath)
			return false, fmt.Errorf("replica %s exited:\n%s", r.name, tail(string(log), 30))
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		return resp.StatusCode == http.StatusOK, nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Two replicas on the same NATS see the same objects and each other's
// changes; objects survive a restart of the replica that embeds NATS.
func TestStorageSharedAndDurable(t *testing.T) {
	t.Parallel()
	natsPort := freePort(t)
	natsDir := t.TempDir()
	password := passwordFile(t)
	a := startReplica(t, "a", "--nats-data-dir="+natsDir, fmt.Sprintf("--nats-listen-address=127.0.0.1:%d", natsPort),
		"--nats-password-file="+password)
	b := startReplica(t, "b", fmt.Sprintf("--nats-url=nats://127.0.0.1:%d", natsPort), "--nats-password-file="+password)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "team-a"
	ca := a.client().TerminalV1alpha1().TerminalSessions(ns)
	cb := b.client().TerminalV1alpha1().TerminalSessions(ns)
	name := uniqueName("durable")

	w, err := cb.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created, err := ca.Create(ctx, framework.NewSession(ns, name, "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*v1alpha1.TerminalSession).Name != name {
			t.Fatalf("replica b watch: %s %v", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("replica b saw no ADDED event for an object created on replica a")
	}
	got, err := cb.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("replica b get: %v", err)
	}
	if got.ResourceVersion != created.ResourceVersion || got.UID != created.UID {
		t.Errorf("replicas disagree: a rv=%s uid=%s, b rv=%s uid=%s", created.ResourceVersion, created.UID, got.ResourceVersion, got.UID)
	}
	// A write on b with a's stale copy conflicts, whichever replica serves it.
	// (b's own write retries on conflict: the bridge writes the status as the
	// session starts.)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cb.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Labels["by"] = "b"
		_, err = cb.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stale := created.DeepCopy()
	stale.Labels["by"] = "a"
	if _, err := ca.Update(ctx, stale, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "the object has been modified") {
		t.Errorf("stale update on a after b's write: want 409, got %v", err)
	}

	// NATS is part of readiness.
	body, err := a.client().Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "true").DoRaw(ctx)
	if err != nil || !strings.Contains(string(body), "[+]nats ok") {
		t.Errorf("/readyz?verbose lacks the nats check: %v\n%s", err, body)
	}

	// Restart the replica that embeds NATS: the object is still there, on
	// both replicas (b reconnects by itself).
	a.stop()
	eventually(t, 30*time.Second, "replica b unready while NATS is down", func(ctx context.Context) (bool, error) {
		_, err := b.client().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err != nil, nil
	})
	a.start()
	eventually(t, 60*time.Second, "object after restart on both replicas", func(ctx context.Context) (bool, error) {
		for _, c := range []interface {
			Get(context.Context, string, metav1.GetOptions) (*v1alpha1.TerminalSession, error)
		}{ca, cb} {
			s, err := c.Get(ctx, name, metav1.GetOptions{})
			if err != nil || s.Labels["by"] != "b" {
				return false, nil
			}
		}
		return true, nil
	})
	if err := cb.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "deletion seen by replica a", func(ctx context.Context) (bool, error) {
		l, err := ca.List(ctx, metav1.ListOptions{})
		return err == nil && !containsName(l.Items, name), nil
	})
}

// startNATS runs a NATS server with JetStream in the test process: for the
// replicas it is an external server, which outlives any of them.
func startNATS(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	srv, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(srv.Shutdown)
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// A replica killed with kill -9 while running a session: another replica
// marks it Failed(BridgeLost) once the lease expires.
func TestBridgeLostWhenReplicaKilled(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	a := startReplica(t, "killed", "--nats-url="+url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := a.client().TerminalV1alpha1().TerminalSessions("team-a")
	created, err := ca.Create(ctx, framework.NewSession("team-a", uniqueName("lost"), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Only a runs yet, so a owns the session.
	eventually(t, 30*time.Second, "session running on replica a", func(ctx context.Context) (bool, error) {
		s, err := ca.Get(ctx, created.Name, metav1.GetOptions{})
		return err == nil && s.Status.Phase == v1alpha1.TerminalSessionRunning, nil
	})
	b := startReplica(t, "survivor", "--nats-url="+url)
	if err := a.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no lease release
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	a.cmd = nil
	killed := time.Now()
	cb := b.client().TerminalV1alpha1().TerminalSessions("team-a")
	var got *v1alpha1.TerminalSession
	eventually(t, 60*time.Second, "session marked BridgeLost by replica b", func(ctx context.Context) (bool, error) {
		s, err := cb.Get(ctx, created.Name, metav1.GetOptions{})
		got = s
		return err == nil && s.Status.Phase == v1alpha1.TerminalSessionFailed, nil
	})
	if got.Status.Reason != v1alpha1.ReasonBridgeLost {
		t.Errorf("reason %q message %q, want BridgeLost", got.Status.Reason, got.Status.Message)
	}
	recordFigure(t, "a replica killed (SIGKILL) while running a shell, another replica on the same NATS", "the other marked the session Failed as BridgeLost %s after the kill (lease 15 s)", time.Since(killed).Round(time.Second))
	_ = cb.Delete(ctx, created.Name, metav1.DeleteOptions{})
}

// One user's open sessions are capped; more get 429 naming the limit.
func TestSessionsPerUserLimit(t *testing.T) {
	t.Parallel()
	r := startReplica(t, "limited", "--nats-url="+startNATS(t), "--max-sessions-per-user=2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := r.client().TerminalV1alpha1().TerminalSessions("team-a")
	var names []string
	for i := range 2 {
		s, err := c.Create(ctx, framework.NewSession("team-a", uniqueName(fmt.Sprintf("limit%d", i)), "shell-demo"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, s.Name)
	}
	_, err := c.Create(ctx, framework.NewSession("team-a", uniqueName("limit-over"), "shell-demo"), metav1.CreateOptions{})
	if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), `user "admin" already has 2 open terminal sessions`) {
		t.Fatalf("third session: want 429 naming the limit, got %v", err)
	}
	// Closing one makes room.
	if err := c.Delete(ctx, names[0], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Create(ctx, framework.NewSession("team-a", uniqueName("limit-again"), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("after closing one: %v", err)
	}
	_ = c.Delete(ctx, s.Name, metav1.DeleteOptions{})
	_ = c.Delete(ctx, names[1], metav1.DeleteOptions{})
}
