package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/test/framework"
)

// runPlugin starts the plugin under a real terminal (30x100) with the
// kubeconfig and args; the screen is what it shows, typeLine types a line.
func runPlugin(ctx context.Context, t *testing.T, kubeconfig string, args ...string) (*exec.Cmd, *os.File, *framework.Screen, func(string)) {
	t.Helper()
	bin := filepath.Join(env.root, "_output", "bin", "kubectl-terminal")
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	screen := &framework.Screen{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screen:\n%s", screen.String())
		}
	})
	typeLine := func(line string) {
		if _, err := ptmx.Write([]byte(line + "\r")); err != nil {
			t.Error(err)
		}
	}
	return cmd, ptmx, screen, typeLine
}

// The plugin under a real terminal: it opens a session at the terminal's
// size, types and reads through it, follows a resize, exits with the remote
// exit code, and closes the session it opened.
func TestPluginInteractive(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, ptmx, screen, typeLine := runPlugin(ctx, t, env.kubeconfig, "--context", "alice", "-n", "team-a", "shell-demo")
	// Typed before the shell is up: nothing is lost (the plugin attaches
	// only once the session runs, and the server queues early input).
	typeLine(`echo "size=$(stty size) plug-$((40+2))"`)
	eventually(t, 30*time.Second, "the command's output at the terminal's size", func(context.Context) (bool, error) {
		return strings.Contains(screen.String(), "size=30 100 plug-42"), nil
	})
	if err := pty.Setsize(ptmx, &pty.Winsize{Cols: 120, Rows: 40}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the resize", func(context.Context) (bool, error) {
		typeLine(`echo "now=$(stty size)"`)
		return strings.Contains(screen.String(), "now=40 120"), nil
	})
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	l, err := c.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, s := range l.Items {
		if strings.HasPrefix(s.Name, "shell-demo-") && s.Status.Phase == "Running" && s.Spec.Size != nil && s.Spec.Size.Cols == 100 {
			name = s.Name
		}
	}
	typeLine("exit 4")
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 4 {
		t.Fatalf("plugin ended with %v, want exit code 4", err)
	}
	if name == "" {
		t.Fatal("did not find the plugin's session")
	}
	eventually(t, 30*time.Second, "the plugin's session deleted", func(ctx context.Context) (bool, error) {
		_, err := c.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// Errors are one line, as kubectl prints them, with kubectl's exit code.
func TestPluginErrors(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(env.root, "_output", "bin", "kubectl-terminal")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--context", "alice", "-n", "team-b", "x"}, `Error from server (Forbidden)`},
		{[]string{"--context", "alice", "-n", "team-a", "no-such-pod"}, `The TerminalSession "no-such-pod-`},
		{[]string{"--context", "alice", "-n", "team-a", "close", "no-such-session"}, `Error from server (NotFound)`},
		{[]string{"--context", "viewer", "-n", "team-a", "replay", "no-such-session"}, `Error from server (Forbidden)`},
		{[]string{"--context", "alice", "-n", "team-a", "replay", "no-such-session"}, `Error from server (NotFound)`},
	} {
		cmd := exec.Command(bin, append([]string{"--kubeconfig", env.kubeconfig}, tc.args...)...)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 {
			t.Errorf("%v: %v, want exit code 1; output:\n%s", tc.args, err, out)
		}
		text := strings.TrimSpace(string(out))
		if !strings.HasPrefix(text, tc.want) || strings.Count(text, "\n") > 0 || strings.Contains(text, "goroutine") {
			t.Errorf("%v: output %q, want one line starting %q", tc.args, text, tc.want)
		}
	}
}

// deploy/NAME opens the session in a ready pod of the Deployment; --keep
// leaves it for a later attach and says how.
func TestPluginDeploymentKeep(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(env.root, "_output", "bin", "kubectl-terminal")
	cmd := exec.Command(bin, "--kubeconfig", env.kubeconfig, "--context", "alice", "-n", "team-a",
		"deploy/web", "--keep", "--", "sh", "-c", "exit 3")
	cmd.Stdin = strings.NewReader("")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 {
		t.Fatalf("plugin ended with %v, want exit code 3; stderr:\n%s", err, stderr.String())
	}
	// "Session NAME kept open after you leave: kubectl terminal attach NAME"
	fields := strings.Fields(stderr.String())
	if len(fields) < 2 || fields[0] != "Session" {
		t.Fatalf("stderr %q does not name the kept session", stderr.String())
	}
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	s, err := c.Get(context.Background(), fields[1], metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kept session: %v", err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), s.Name, metav1.DeleteOptions{}) })
	pod, err := kubeClient(t, "alice").CoreV1().Pods("team-a").Get(context.Background(), s.Spec.Target.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "ReplicaSet" || !strings.HasPrefix(pod.OwnerReferences[0].Name, "web-") {
		t.Errorf("session's pod %s is owned by %v, want a ReplicaSet of deployment web", pod.Name, pod.OwnerReferences)
	}
}

// ls lists sessions with owner, target and idle time; attach --read-only
// watches one; close deletes it, which ends the attach with a one-line
// reason.
func TestPluginListAttachClose(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(env.root, "_output", "bin", "kubectl-terminal")
	plugin := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", env.kubeconfig, "--context", "alice"}, args...)...)
	}
	ns := ownNamespace(t, "plugin-ls")
	out, err := plugin("--context", "admin", "-n", ns, "ls").CombinedOutput() // the last --context wins
	if err != nil || strings.TrimSpace(string(out)) != "No resources found in "+ns+" namespace." {
		t.Errorf("ls of an empty namespace: %v, %q", err, out)
	}

	created := runningSession(t, "plugin-ls")
	out, err = plugin("-n", "team-a", "ls").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "OWNER") || !strings.Contains(lines[0], "IDLE") {
		t.Errorf("ls header %q", lines[0])
	}
	var row string
	for _, l := range lines {
		if strings.HasPrefix(l, created.Name+" ") {
			row = l
		}
	}
	if f := strings.Fields(row); len(f) < 6 || f[1] != "shell-demo" || f[3] != "alice" || f[4] != "Running" {
		t.Errorf("ls row for %s: %q", created.Name, row)
	}

	watch := plugin("-n", "team-a", "attach", created.Name, "--read-only")
	watch.Stdin = strings.NewReader("")
	var screen, stderr framework.Screen
	watch.Stdout, watch.Stderr = &screen, &stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	waitViewers(t, 30*time.Second, "the read-only attach counted", "team-a", created.Name, 1)
	out, err = plugin("-n", "team-a", "close", created.Name).CombinedOutput()
	if want := "terminalsession.terminal.meshery.io/" + created.Name + " closed"; err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("close: %v, %q, want %q", err, out, want)
	}
	err = watch.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(strings.ToLower(stderr.String()), "deleted") ||
		strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 {
		t.Errorf("attach after close: %v, stderr %q, want exit code 1 and one line saying the session was deleted", err, stderr.String())
	}
}
