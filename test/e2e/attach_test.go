package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// createSession creates s as context and deletes it when the test ends.
func createSession(t *testing.T, as string, s *v1alpha1.TerminalSession) *v1alpha1.TerminalSession {
	t.Helper()
	c := terminalClient(t, as).TerminalV1alpha1().TerminalSessions(s.Namespace)
	created, err := c.Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
	return created
}

// waitViewers waits until the session's status counts n viewers.
func waitViewers(t *testing.T, timeout time.Duration, what, ns, name string, n int32) {
	t.Helper()
	c := terminalClient(t, "admin").TerminalV1alpha1().TerminalSessions(ns)
	eventually(t, timeout, what, func(ctx context.Context) (bool, error) {
		s, err := c.Get(ctx, name, metav1.GetOptions{})
		return err == nil && s.Status.Viewers == n, nil
	})
}

// runningSession creates a session of alice's on team-a/shell-demo and
// waits until it runs.
func runningSession(t *testing.T, prefix string) *v1alpha1.TerminalSession {
	t.Helper()
	created := createSession(t, "alice", framework.NewSession("team-a", uniqueName(prefix), "shell-demo"))
	waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionRunning)
	return created
}

func attachURL(t *testing.T, context, ns, name string) *url.URL {
	return framework.AttachURL(terminalClient(t, context), ns, name,
		&v1alpha1.TerminalSessionAttachOptions{Stdin: true, Stdout: true, TTY: true})
}

// Unmodified client-go executors attach through kube-apiserver (the
// aggregation layer): the owner types, reads the output, and gets the
// process's exit code.
func TestAttachProtocols(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		exec func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error)
	}{
		{"spdy", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewSPDYExecutor(cfg, "POST", u)
		}},
		{"websocket", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			created := createSession(t, "alice", framework.NewSession("team-a", uniqueName("attach-"+tc.name), "shell-demo"))
			exec, err := tc.exec(restConfig(t, "alice"), attachURL(t, "alice", "team-a", created.Name))
			if err != nil {
				t.Fatal(err)
			}
			stdin, typeIn := io.Pipe()
			defer typeIn.Close()
			var screen framework.Screen
			done := make(chan error, 1)
			go func() {
				done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &screen, Tty: true})
			}()
			// A pipe write blocks until the executor reads it: type from a
			// goroutine, so an attach that fails shows its error.
			typed := make(chan error, 2)
			go func() {
				_, err := typeIn.Write([]byte("echo attached-$((6*7))\n"))
				typed <- err
			}()
			eventually(t, 30*time.Second, "command output through attach", func(context.Context) (bool, error) {
				select {
				case err := <-done:
					t.Fatalf("attach ended early: %v", err)
				default:
				}
				return strings.Contains(screen.String(), "attached-42"), nil
			})
			go func() {
				_, err := typeIn.Write([]byte("exit 7\n"))
				typed <- err
			}()
			select {
			case err := <-done:
				var exitErr utilexec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 7 {
					t.Fatalf("attach ended with %v, want exit code 7; screen:\n%s", err, screen.String())
				}
			case <-ctx.Done():
				t.Fatalf("attach did not end after exit; screen:\n%s", screen.String())
			}
			closed := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
			if closed.Status.ExitCode == nil || *closed.Status.ExitCode != 7 {
				t.Errorf("status.exitCode %v, want 7", closed.Status.ExitCode)
			}
		})
	}
}

// attach runs an attach as context with the given streams until it ends;
// the result arrives on the returned channel. set adjusts the options
// (since, uid).
func attach(ctx context.Context, t *testing.T, context, ns, name string, websocket bool, stdin io.Reader, stdout io.Writer, set ...func(*v1alpha1.TerminalSessionAttachOptions)) <-chan error {
	t.Helper()
	o := &v1alpha1.TerminalSessionAttachOptions{Stdin: stdin != nil, Stdout: true, TTY: true}
	for _, f := range set {
		f(o)
	}
	exec, err := framework.Executor(restConfig(t, context), framework.AttachURL(terminalClient(t, context), ns, name, o), websocket)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Tty: true})
	}()
	return done
}

// Only the owner may attach without a grant: a user whom RBAC lets reach
// the attach subresource, but who holds neither join nor observe, is
// refused by the session itself.
func TestAttachOwnerOnly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	name := uniqueName("attach-only")
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-b"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions/attach"}, Verbs: []string{"create", "get"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-b"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}}}
	if _, err := admin.RbacV1().Roles("team-b").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.RbacV1().Roles("team-b").Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := admin.RbacV1().RoleBindings("team-b").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().RoleBindings("team-b").Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	c := terminalClient(t, "bob").TerminalV1alpha1().TerminalSessions("team-b")
	created, err := c.Create(ctx, framework.NewSession("team-b", name, runningPod(t, "team-b", "api")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
	eventually(t, 30*time.Second, "bob's session running", func(ctx context.Context) (bool, error) {
		s, err := c.Get(ctx, created.Name, metav1.GetOptions{})
		return err == nil && s.Status.Phase == v1alpha1.TerminalSessionRunning, nil
	})
	var err2 error
	eventually(t, 30*time.Second, "alice refused by the session, not by RBAC", func(context.Context) (bool, error) {
		err2 = <-attach(ctx, t, "alice", "team-b", created.Name, false, strings.NewReader(""), io.Discard)
		return err2 != nil && strings.Contains(err2.Error(), "is not the owner of the session"), nil
	})
}

// A session shared on purpose: the owner, a joiner (join: read-write) and
// an observer (observe: read-only) attach at once, over SPDY and
// WebSocket, and all see the same terminal; the observer's input is
// refused; the process's exit ends every attach with its code.
func TestAttachSharing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	ns := ownNamespace(t, "shared")
	for user, role := range map[string]string{"alice": "edit", "viewer": "terminal-sessions-join", "bob": "terminal-sessions-observe"} {
		b := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Typing as a joiner takes pods/exec of one's own, as kubectl exec would.
	bind(t, ns, "viewer", execRole(t))
	pod := podWith(ns, "target", "main")
	createPod(t, pod)
	waitPodRunning(t, ns, pod.Name)

	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns)
	var created *v1alpha1.TerminalSession
	eventually(t, 30*time.Second, "alice opens a session (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		var err error
		created, err = c.Create(ctx, framework.NewSession(ns, uniqueName("shared"), pod.Name), metav1.CreateOptions{})
		return err == nil, nil
	})
	waitPhase(t, ns, created.Name, v1alpha1.TerminalSessionRunning)

	// The observer may not type: refused at once, not dropped.
	err := <-attach(ctx, t, "bob", ns, created.Name, false, strings.NewReader("echo sneaky\n"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "may only observe this session") {
		t.Fatalf("observer attached with stdin: %v", err)
	}

	ownerIn, ownerType := io.Pipe()
	joinerIn, joinerType := io.Pipe()
	defer ownerType.Close()
	defer joinerType.Close()
	var owner, joiner, observer framework.Screen
	ends := map[string]<-chan error{
		"owner (SPDY)":         attach(ctx, t, "alice", ns, created.Name, false, ownerIn, &owner),
		"joiner (WebSocket)":   attach(ctx, t, "viewer", ns, created.Name, true, joinerIn, &joiner),
		"observer (WebSocket)": attach(ctx, t, "bob", ns, created.Name, true, nil, &observer),
	}
	screens := map[string]*framework.Screen{"owner (SPDY)": &owner, "joiner (WebSocket)": &joiner, "observer (WebSocket)": &observer}
	typeInto := func(w io.Writer, line string) {
		go func() { _, _ = w.Write([]byte(line)) }()
	}
	// Everyone is attached once the session counts three viewers.
	waitViewers(t, 30*time.Second, "three viewers in status", ns, created.Name, 3)
	typeInto(joinerType, "echo joined-$((2*21))\n")
	for who, scr := range screens {
		eventually(t, 30*time.Second, who+" sees the joiner's command", func(context.Context) (bool, error) {
			return strings.Contains(scr.String(), "joined-42"), nil
		})
	}
	// A late viewer gets the scrollback first: the command it missed.
	var late framework.Screen
	ends["late observer (SPDY)"] = attach(ctx, t, "bob", ns, created.Name, false, nil, &late)
	eventually(t, 30*time.Second, "the late viewer sees the scrollback", func(context.Context) (bool, error) {
		return strings.Contains(late.String(), "joined-42"), nil
	})
	typeInto(ownerType, "exit 3\n")
	for who, end := range ends {
		select {
		case err := <-end:
			var exitErr utilexec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
				t.Errorf("%s: attach ended with %v, want exit code 3", who, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: attach did not end after exit", who)
		}
	}
}

// A viewer whose connection drops reattaches with the byte count it has
// (since=N): what it missed arrives, nothing twice, and the session stayed
// open.
func TestAttachReconnect(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, js := natsConn(t)
	created := createSession(t, "alice", framework.NewSession("team-a", uniqueName("reconnect"), "shell-demo"))
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	subj := wire.SubjectsFor(string(created.UID))
	full := watchScreen(t, js, subj) // the whole output, from NATS

	first, drop := context.WithCancel(ctx)
	in, typeIn := io.Pipe()
	var before framework.Screen
	ended := attach(first, t, "alice", "team-a", created.Name, true, in, &before)
	go func() { _, _ = typeIn.Write([]byte("echo first-$((40+2))\n")) }()
	eventually(t, 30*time.Second, "first command's output", func(context.Context) (bool, error) {
		return strings.Contains(before.String(), "first-42"), nil
	})
	drop() // the connection drops
	<-ended
	typeIn.Close()
	seen := before.String()

	// Meanwhile the shell goes on.
	if err := nc.Publish(subj.In(), []byte("echo second-$((40+3))\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "second command's output in NATS", func(context.Context) (bool, error) {
		return strings.Contains(full.String(), "second-43"), nil
	})
	var after framework.Screen
	attach(ctx, t, "alice", "team-a", created.Name, false, nil, &after,
		func(o *v1alpha1.TerminalSessionAttachOptions) { o.Since = int64(len(seen)) })
	eventually(t, 30*time.Second, "the missed output after reattaching", func(context.Context) (bool, error) {
		return strings.Contains(after.String(), "second-43"), nil
	})
	joined, whole := seen+after.String(), full.String()
	if !strings.HasPrefix(whole, joined) && !strings.HasPrefix(joined, whole) {
		t.Errorf("before + after the reconnect is not the session's output:\nbefore: %q\nafter:  %q\nwhole:  %q", seen, after.String(), whole)
	}
	s, err := c.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Status.Phase != v1alpha1.TerminalSessionRunning {
		t.Errorf("session %s after the reconnect (%s), want Running", s.Status.Phase, s.Status.Message)
	}
}

// A browser's view: a WebSocket through `kubectl proxy` (no client
// certificate of its own), speaking v4.base64.channel.k8s.io text frames.
func TestAttachBrowserThroughProxy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created := runningSession(t, "browser")

	proxy := exec.CommandContext(ctx, "kubectl", "--kubeconfig", env.kubeconfig, "--context", "alice", "proxy", "--port=0")
	out, err := proxy.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Process.Kill(); _ = proxy.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n') // "Starting to serve on 127.0.0.1:PORT"
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(line[strings.LastIndex(line, " ")+1:])

	u := fmt.Sprintf("ws://%s/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/%s/attach?stdin=true&stdout=true&tty=true", addr, created.Name)
	d := websocket.Dialer{Subprotocols: []string{"v4.base64.channel.k8s.io"}}
	// A page on another site: the browser sends its Origin, and the attach
	// is refused (kubectl proxy itself would let it through).
	_, resp, err := d.DialContext(ctx, u, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("attach from a foreign origin through kubectl proxy: %v (%v), want 403", err, resp)
	}
	if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "--allowed-origins") {
		t.Errorf("the refusal %q does not say how to allow an origin", body)
	}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	defer ws.Close()
	if ws.Subprotocol() != "v4.base64.channel.k8s.io" {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	// Channel digit, then base64: "0" is stdin, "1" stdout.
	cmd := base64.StdEncoding.EncodeToString([]byte("echo browser-$((40+2))\r"))
	if err := ws.WriteMessage(websocket.TextMessage, []byte("0"+cmd)); err != nil {
		t.Fatal(err)
	}
	var screen strings.Builder
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for !strings.Contains(screen.String(), "browser-42") {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v; screen:\n%s", err, screen.String())
		}
		if len(msg) > 1 && msg[0] == '1' {
			data, err := base64.StdEncoding.DecodeString(string(msg[1:]))
			if err != nil {
				t.Fatalf("stdout frame %q: %v", msg, err)
			}
			screen.Write(data)
		}
	}
}
