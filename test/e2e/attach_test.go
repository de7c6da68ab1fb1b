package e2e

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

// syncBuffer is the terminal as the attached client sees it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func attachURL(t *testing.T, context, ns, name string) *url.URL {
	return terminalClient(t, context).TerminalV1alpha1().RESTClient().Post().Namespace(ns).
		Resource("terminalsessions").Name(name).SubResource("attach").
		Param("stdin", "true").Param("stdout", "true").Param("tty", "true").URL()
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
			c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
			created, err := c.Create(ctx, newSession("team-a", uniqueName("attach-"+tc.name), "shell-demo"), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
			exec, err := tc.exec(restConfig(t, "alice"), attachURL(t, "alice", "team-a", created.Name))
			if err != nil {
				t.Fatal(err)
			}
			stdin, typeIn := io.Pipe()
			defer typeIn.Close()
			var screen syncBuffer
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

// Only the owner may attach: cluster-admin, whom RBAC allows everything,
// is refused by the session itself.
func TestAttachOwnerOnly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	created, err := c.Create(ctx, newSession("team-a", uniqueName("attach-owner"), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
	waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionRunning)
	exec, err := remotecommand.NewSPDYExecutor(restConfig(t, "admin"), "POST", attachURL(t, "admin", "team-a", created.Name))
	if err != nil {
		t.Fatal(err)
	}
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(""), Stdout: io.Discard, Tty: true})
	if err == nil || !strings.Contains(err.Error(), "only its owner may attach") {
		t.Fatalf("admin attached to alice's session: %v", err)
	}
}
