// Package incluster tests terminal-apiserver as an operator installs it:
// artifacts/deploy/overlays/local applied to the local control plane's real
// node by hack/test-incluster.sh, which runs these tests and nothing else
// while the install holds the APIService. Every request goes through
// kube-apiserver's aggregation layer to the in-cluster replicas; NATS is the
// in-cluster three-server JetStream cluster.
package incluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/test/framework"
)

var env struct {
	kubeconfig string
	namespace  string // the install's
	// deployDir is the copy of artifacts/deploy that was applied, with
	// the self-signed overlay's generated/ (its CA signs NATS's and the
	// server's certificates).
	deployDir string
	// overlay is the kustomization applied (overlays/local in deployDir,
	// or one over it with INCLUSTER_SERVER_ARGS).
	overlay string
	caFile  string
	kubectl string
}

func TestMain(m *testing.M) {
	env.kubeconfig = os.Getenv("KUBECONFIG")
	env.namespace = os.Getenv("INCLUSTER_NAMESPACE")
	env.deployDir = os.Getenv("INCLUSTER_DEPLOY_DIR")
	env.caFile = filepath.Join(env.deployDir, "overlays", "self-signed", "generated", "ca.crt")
	env.overlay = os.Getenv("INCLUSTER_OVERLAY")
	env.kubectl = os.Getenv("INCLUSTER_KUBECTL")
	if env.kubeconfig == "" || env.namespace == "" || env.deployDir == "" || env.overlay == "" || env.kubectl == "" {
		fmt.Fprintln(os.Stderr, "incluster: KUBECONFIG, INCLUSTER_NAMESPACE, INCLUSTER_DEPLOY_DIR, INCLUSTER_OVERLAY and INCLUSTER_KUBECTL are unset; run through hack/test-incluster.sh")
		os.Exit(2)
	}
	os.Exit(m.Run())
}

func restConfig(t *testing.T, context string) *rest.Config {
	t.Helper()
	cfg, err := framework.RESTConfig(env.kubeconfig, context)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func kubeClient(t *testing.T, context string) *kubernetes.Clientset {
	t.Helper()
	return kubernetes.NewForConfigOrDie(restConfig(t, context))
}

// The two replicas of the deployment run the image make built, and the
// APIService sends the group to their Service, verifying their certificate.
func TestServedByTheDeployment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	d, err := admin.AppsV1().Deployments(env.namespace).Get(ctx, "terminal-apiserver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 || d.Status.UpdatedReplicas != 2 {
		t.Errorf("deployment terminal-apiserver: %d available, %d updated, want 2 of each", d.Status.AvailableReplicas, d.Status.UpdatedReplicas)
	}
	for _, p := range serverPods(ctx, t, admin) {
		if got := p.Spec.Containers[0].Image; got != "ghcr.io/meshery/terminal-apiserver:local" {
			t.Errorf("pod %s runs %s, want the image make built (ghcr.io/meshery/terminal-apiserver:local)", p.Name, got)
		}
		// Applied with NATS at once, the server waits for it
		// (--nats-start-timeout) rather than exit and be restarted.
		for _, c := range p.Status.ContainerStatuses {
			if c.RestartCount != 0 {
				t.Errorf("pod %s: container %s restarted %d times", p.Name, c.Name, c.RestartCount)
			}
		}
	}
	apiServices := dynamic.NewForConfigOrDie(restConfig(t, "admin")).Resource(schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"})
	as, err := apiServices.Get(ctx, "v1alpha1.terminal.meshery.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns, _, _ := unstructured.NestedString(as.Object, "spec", "service", "namespace")
	name, _, _ := unstructured.NestedString(as.Object, "spec", "service", "name")
	port, _, _ := unstructured.NestedInt64(as.Object, "spec", "service", "port")
	if ns != env.namespace || name != "terminal-apiserver" || port != 443 {
		t.Errorf("APIService's service %s/%s port %d, want %s/terminal-apiserver port 443", ns, name, port, env.namespace)
	}
	skip, _, _ := unstructured.NestedBool(as.Object, "spec", "insecureSkipTLSVerify")
	caBundle, _, _ := unstructured.NestedString(as.Object, "spec", "caBundle")
	if skip || caBundle == "" {
		t.Errorf("APIService does not verify the server's certificate (insecureSkipTLSVerify %v, caBundle %q)", skip, caBundle)
	}
}

// serverPods are the deployment's running pods, two of them.
func serverPods(ctx context.Context, t *testing.T, admin *kubernetes.Clientset) []corev1.Pod {
	t.Helper()
	return runningPods(ctx, t, admin, "app.kubernetes.io/name=terminal-apiserver", 2)
}

func runningPods(ctx context.Context, t *testing.T, admin *kubernetes.Clientset, selector string, want int) []corev1.Pod {
	t.Helper()
	list, err := admin.CoreV1().Pods(env.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var running []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) != want {
		t.Fatalf("%d running pods %s, want %d", len(running), selector, want)
	}
	return running
}

// NATS, as the server reaches it: every server of the three refuses a
// client without TLS and one without the password; with both, the three
// form one JetStream cluster (their routes found by DNS and authenticated
// by certificate), and the server's streams keep three replicas.
func TestNATSIsAClusterWithTLSAndAPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	creds, secure := natsCredentials(ctx, t, admin)
	for _, p := range runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3) {
		addr := net.JoinHostPort(p.Status.PodIP, "4222")
		t.Run(p.Name, func(t *testing.T) {
			refusesPlaintext(ctx, t, addr)
			if nc, err := nats.Connect("tls://"+addr, secure, nats.Timeout(5*time.Second)); err == nil {
				nc.Close()
				t.Error("a client without a password connected")
			} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("a client without a password: %v, want an authorization violation", err)
			}
			if nc, err := nats.Connect("tls://"+addr, secure, nats.UserInfo(creds.user, "not-"+creds.password), nats.Timeout(5*time.Second)); err == nil {
				nc.Close()
				t.Error("a client with a wrong password connected")
			}
			nc, err := nats.Connect("tls://"+addr, secure, creds.option(), nats.Timeout(5*time.Second))
			if err != nil {
				t.Fatalf("with TLS and the password: %v", err)
			}
			defer nc.Close()
			meta := jetStreamMeta(ctx, t, p.Status.PodIP)
			if meta.ClusterSize != 3 || meta.Leader == "" {
				t.Errorf("JetStream meta group seen by %s: size %d, leader %q; want 3 servers with a leader", p.Name, meta.ClusterSize, meta.Leader)
			}
		})
	}
	// The streams the servers made, each on all three NATS servers.
	js := natsConn(ctx, t, admin)
	streams := 0
	for info := range js.ListStreams(ctx).Info() {
		streams++
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			peers := 0
			if info.Cluster != nil {
				peers = len(info.Cluster.Replicas)
			}
			t.Errorf("stream %s: %d replicas configured, %d peers beside the leader; want 3 and 2", info.Config.Name, info.Config.Replicas, peers)
		}
	}
	if streams == 0 {
		t.Error("no JetStream streams: the server made none")
	}
}

// refusesPlaintext speaks NATS's protocol without TLS to addr: the server
// says it requires TLS and answers a plaintext CONNECT with an error or by
// closing, never with PONG. (nats.go would upgrade to TLS on its own.)
func refusesPlaintext(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(io.LimitReader(conn, 64<<10))
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("NATS INFO from %s: %v", addr, err)
	}
	if !strings.HasPrefix(info, "INFO ") || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("NATS at %s does not require TLS: %s", addr, info)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false,\"user\":\"terminal-apiserver\"}\r\nPING\r\n")); err != nil {
		return // closed: refused
	}
	if reply, _ := r.ReadString('\n'); strings.HasPrefix(reply, "PONG") {
		t.Errorf("NATS at %s answered a plaintext client: %q", addr, reply)
	}
}

// natsUser is a NATS user and password.
type natsUser struct{ user, password string }

func (u natsUser) option() nats.Option { return nats.UserInfo(u.user, u.password) }

// natsCredentials are the install's NATS user and password (the Secret
// nats-auth) and the TLS settings that verify its servers (the overlay's
// CA, and the name the server dials: the test dials pods' addresses).
func natsCredentials(ctx context.Context, t *testing.T, admin *kubernetes.Clientset) (natsUser, nats.Option) {
	t.Helper()
	secret, err := admin.CoreV1().Secrets(env.namespace).Get(ctx, "nats-auth", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(env.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", env.caFile)
	}
	return natsUser{user: strings.TrimSpace(string(secret.Data["user"])), password: strings.TrimSpace(string(secret.Data["password"]))},
		nats.Secure(&tls.Config{RootCAs: roots, ServerName: "nats." + env.namespace + ".svc", MinVersion: tls.VersionTLS12})
}

// natsConn connects to the install's NATS as the server does, through
// the first NATS pod's address; closed when the test ends.
func natsConn(ctx context.Context, t *testing.T, admin *kubernetes.Clientset) jetstream.JetStream {
	t.Helper()
	creds, secure := natsCredentials(ctx, t, admin)
	p := runningPods(ctx, t, admin, "app.kubernetes.io/name=nats", 3)[0]
	nc, err := nats.Connect("tls://"+net.JoinHostPort(p.Status.PodIP, "4222"), secure, creds.option())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

type metaCluster struct {
	Leader      string `json:"leader"`
	ClusterSize int    `json:"cluster_size"`
}

// jetStreamMeta is a NATS server's view of the JetStream meta group, from
// its monitoring port (/jsz).
func jetStreamMeta(ctx context.Context, t *testing.T, ip string) metaCluster {
	t.Helper()
	var meta metaCluster
	// The meta group elects its leader shortly after the servers route.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, "8222")+"/jsz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		var jsz struct {
			Meta *metaCluster `json:"meta_cluster"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&jsz); err != nil || jsz.Meta == nil {
			return false, nil
		}
		meta = *jsz.Meta
		return meta.Leader != "", nil
	})
	if err != nil {
		t.Logf("JetStream meta group of %s: %v", ip, err)
	}
	return meta
}

// Alice opens a session, types, reads and closes it, through kube-apiserver
// to the in-cluster replicas; one of them ran it and logged its close.
func TestAliceTypesThroughTheAggregationLayer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := openShell(ctx, t, "incluster")
	sh.run(t, "echo in-cluster-$((6*7))", "in-cluster-42")
	sh.typeLine("exit 3")
	select {
	case err := <-sh.done:
		var exitErr utilexec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
			t.Fatalf("attach ended with %v, want exit code 3; screen:\n%s", err, sh.screen.String())
		}
	case <-ctx.Done():
		t.Fatalf("attach did not end after exit; screen:\n%s", sh.screen.String())
	}
	closed, err := framework.WaitPhase(ctx, sh.client, "team-a", sh.name, v1alpha1.TerminalSessionClosed, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if closed.Status.Reason != v1alpha1.ReasonExited || closed.Status.ExitCode == nil || *closed.Status.ExitCode != 3 {
		t.Errorf("status %s, exit code %v, want Exited with 3", closed.Status.Reason, closed.Status.ExitCode)
	}
	if by := closedBy(ctx, t, kubeClient(t, "admin"), string(sh.uid)); len(by) != 1 {
		t.Errorf("replicas that logged the session's close: %v, want exactly one", by)
	}
}

// shell is one of alice's sessions on team-a/shell-demo with her attached
// through kube-apiserver (WebSocket, as kubectl). A replica that stops
// (TestRollingRestartDrainsSessions) cuts the attach streams it serves;
// the shell then attaches again, as kubectl terminal and the console do,
// and the output replays from the start.
type shell struct {
	t      *testing.T
	ctx    context.Context
	name   string
	uid    types.UID
	client clientset.Interface
	stdin  *io.PipeWriter
	screen *framework.Screen
	done   chan error
}

func openShell(ctx context.Context, t *testing.T, prefix string) *shell {
	t.Helper()
	alice := clientset.NewForConfigOrDie(restConfig(t, "alice"))
	sessions := alice.TerminalV1alpha1().TerminalSessions("team-a")
	created, err := sessions.Create(ctx, framework.NewSession("team-a", fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sessions.Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	if _, err := framework.WaitPhase(ctx, alice, "team-a", created.Name, v1alpha1.TerminalSessionRunning, time.Minute); err != nil {
		t.Fatal(err)
	}
	sh := &shell{t: t, ctx: ctx, name: created.Name, uid: created.UID, client: alice}
	sh.attach()
	return sh
}

// attach opens a new attach stream from the session's first byte.
func (sh *shell) attach() {
	sh.t.Helper()
	exec, err := framework.Executor(restConfig(sh.t, "alice"), framework.AttachURL(sh.client, "team-a", sh.name,
		&v1alpha1.TerminalSessionAttachOptions{Stdin: true, Stdout: true, TTY: true}), true)
	if err != nil {
		sh.t.Fatal(err)
	}
	stdin, typeIn := io.Pipe()
	sh.t.Cleanup(func() { typeIn.Close() })
	sh.stdin, sh.screen, sh.done = typeIn, &framework.Screen{}, make(chan error, 1)
	screen, done := sh.screen, sh.done
	go func() {
		done <- exec.StreamWithContext(sh.ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: screen, Tty: true})
	}()
}

// typeLine writes line from a goroutine: a pipe write blocks until the
// executor reads it, and an attach that failed must show its error.
func (sh *shell) typeLine(line string) {
	w := sh.stdin
	go func() { _, _ = w.Write([]byte(line + "\n")) }()
}

// run types cmd and waits for want on the screen, typing it again after
// a reattach.
func (sh *shell) run(t *testing.T, cmd, want string) {
	t.Helper()
	sh.until(t, want, 30*time.Second, func() { sh.typeLine(cmd) })
}

// waitScreen waits for want on the screen.
func (sh *shell) waitScreen(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	sh.until(t, want, timeout, func() {})
}

// until does act and waits for want on the screen; when the attach stream
// is cut meanwhile, it attaches again (at most twice) and acts again.
func (sh *shell) until(t *testing.T, want string, timeout time.Duration, act func()) {
	t.Helper()
	for cuts := 0; ; cuts++ {
		act()
		var cut error
		err := wait.PollUntilContextTimeout(sh.ctx, 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
			if strings.Contains(sh.screen.String(), want) {
				return true, nil
			}
			select {
			case cut = <-sh.done:
				return false, cut
			default:
				return false, nil
			}
		})
		if err == nil {
			return
		}
		if cut == nil || cuts == 2 {
			t.Fatalf("%q on the screen of %s: %v; screen:\n%s", want, sh.name, err, sh.screen.String())
		}
		t.Logf("the attach to %s was cut (%v): attaching again", sh.name, cut)
		sh.attach()
	}
}

// exit ends the shell with code and checks that the session says so (and
// the attach, unless it was cut).
func (sh *shell) exit(t *testing.T, code int) {
	t.Helper()
	var closed *v1alpha1.TerminalSession
	for try := 0; closed == nil; try++ {
		// A cut stream would swallow what is typed: attach again first.
		select {
		case cut := <-sh.done:
			t.Logf("the attach to %s was cut (%v): attaching again", sh.name, cut)
			sh.attach()
		default:
		}
		sh.typeLine(fmt.Sprintf("exit %d", code))
		s, err := framework.WaitPhase(sh.ctx, sh.client, "team-a", sh.name, v1alpha1.TerminalSessionClosed, 15*time.Second)
		switch {
		case err == nil:
			closed = s
		case try == 2:
			t.Fatal(err)
		}
	}
	if closed.Status.Reason != v1alpha1.ReasonExited || closed.Status.ExitCode == nil || int(*closed.Status.ExitCode) != code {
		t.Errorf("session %s: %s with exit code %v, want Exited with %d", sh.name, closed.Status.Reason, closed.Status.ExitCode, code)
	}
	select {
	case err := <-sh.done:
		// Exit code 0 is no error; a cut stream is not the shell's doing.
		var exitErr utilexec.ExitError
		if (code == 0 && err != nil) || (code != 0 && (!errors.As(err, &exitErr) || exitErr.ExitStatus() != code)) {
			t.Logf("the attach to %s ended with %v (cut?), not exit code %d", sh.name, err, code)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("attach to %s did not end after exit; screen:\n%s", sh.name, sh.screen.String())
	}
}

// closedBy names the server pods whose logs have the session's "Session
// closed" line, waiting for it for a while (it is written as the session's
// status is).
func closedBy(ctx context.Context, t *testing.T, admin *kubernetes.Clientset, uid string) []string {
	t.Helper()
	var by []string
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		by = nil
		for _, p := range serverPods(ctx, t, admin) {
			logs, err := admin.CoreV1().Pods(env.namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				return false, nil
			}
			for _, line := range strings.Split(string(logs), "\n") {
				var rec struct {
					Msg string `json:"msg"`
					UID string `json:"uid"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "Session closed" && rec.UID == uid {
					by = append(by, p.Name)
				}
			}
		}
		return len(by) > 0, nil
	})
	return by
}
