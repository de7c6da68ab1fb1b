package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// transcriptRequest is GET .../terminalsessions/NAME/transcript as user.
func transcriptRequest(t *testing.T, user, ns, name string, params ...string) transcriptReq {
	t.Helper()
	// kubernetes' client decodes the Status of a refusal (the typed
	// clientset's REST client knows only this group's kinds).
	req := kubeClient(t, user).Discovery().RESTClient().Get().
		AbsPath("/apis/terminal.meshery.io/v1alpha1/namespaces", ns, "terminalsessions", name, "transcript")
	for i := 0; i+1 < len(params); i += 2 {
		req = req.Param(params[i], params[i+1])
	}
	return transcriptReq{req}
}

// exitShell types exit into the shell and waits for its session's close.
func exitShell(ctx context.Context, t *testing.T, sh *shell, closed <-chan wire.Event) {
	t.Helper()
	if err := sh.nc.Publish(sh.subj.In(), []byte("exit 0\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the session did not close after exit")
	}
}

// transcriptReq reads a transcript, or says why not: the Status of a
// refusal is decoded into the error (Result.Error does; Raw does not).
type transcriptReq struct{ *rest.Request }

func (r transcriptReq) read(ctx context.Context) ([]byte, error) {
	res := r.Do(ctx)
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

// play prints a transcript as Debian's asciinema does: `asciinema cat`.
func play(ctx context.Context, t *testing.T, cast []byte) string {
	t.Helper()
	asciinema, err := exec.LookPath("asciinema")
	if err != nil {
		t.Fatalf("Debian's asciinema is not installed (hack/e2e.sh installs it): %v", err)
	}
	file := filepath.Join(t.TempDir(), "session.cast")
	if err := os.WriteFile(file, cast, 0o600); err != nil {
		t.Fatal(err)
	}
	// asciinema cat reads keys from /dev/tty (and makes it raw, so the
	// bytes pass through unchanged): script(1) gives it one.
	played, err := exec.CommandContext(ctx, "script", "-qfec", asciinema+" cat "+file, "/dev/null").Output()
	if err != nil {
		t.Fatalf("asciinema cat: %v\n%s", err, cast)
	}
	return string(played)
}

// A session on the real node is recorded whole, with nobody attached; its
// owner reads the transcript through the transcript subresource, and
// Debian's asciinema plays it back byte for byte: `asciinema cat` prints
// exactly the output the session's viewers got.
func TestTranscriptPlaysInAsciinema(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := openShell(t, "team-a", "shell-demo", "")
	closed := watchClosed(t, sh.nc, sh.subj)
	sh.run(t, `printf 'colours: \033[31mred\033[0m, tab:\t, UTF-8: héllo ✓\n'; seq 1 300`, 30*time.Second)
	exitShell(ctx, t, sh, closed)
	name := sh.name
	res := transcriptRequest(t, "alice", "team-a", name).Do(ctx)
	cast, err := res.Raw()
	if err != nil {
		t.Fatalf("alice reading her session's transcript: %v", err)
	}
	var contentType string
	res.ContentType(&contentType)
	if contentType != "application/x-asciicast" {
		t.Errorf("Content-Type %q, want application/x-asciicast", contentType)
	}
	if played, want := play(ctx, t, cast), sh.scr.String(); played != want {
		t.Fatalf("asciinema cat printed %d bytes, the session's output was %d:\nplayed %q\nwant   %q", len(played), len(want), played, want)
	}
	// And `kubectl terminal replay` plays the same bytes.
	replay := exec.CommandContext(ctx, filepath.Join(env.root, "_output", "bin", "kubectl-terminal"),
		"--kubeconfig", env.kubeconfig, "--context", "alice", "-n", "team-a", "replay", name, "--speed", "1000")
	replayed, err := replay.Output()
	if err != nil {
		t.Fatalf("kubectl terminal replay: %v", err)
	}
	if want := sh.scr.String(); string(replayed) != want {
		t.Fatalf("kubectl terminal replay printed %d bytes, the session's output was %d:\nplayed %q\nwant   %q", len(replayed), len(want), replayed, want)
	}
}

// Who may read a transcript: its owner; another user only with the replay
// verb (not in edit or view); a deleted session's by UID, with replay,
// and only in its own namespace and under its own name.
func TestTranscriptAccess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := ownNamespace(t, "transcripts")
	bind(t, ns, "alice", "edit")
	bind(t, ns, "bob", "edit")
	bind(t, ns, "viewer", "view")
	pod := podWith(ns, "target", "main")
	createPod(t, pod)
	waitPodRunning(t, ns, pod.Name)
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns)
	var s *v1alpha1.TerminalSession
	eventually(t, 30*time.Second, "alice opens a session (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		var err error
		s, err = c.Create(ctx, framework.NewSession(ns, uniqueName("recorded"), pod.Name), metav1.CreateOptions{})
		return err == nil, nil
	})
	waitPhase(t, ns, s.Name, v1alpha1.TerminalSessionRunning)

	// Followed while it runs: what is typed next arrives, and the stream
	// ends when the session does.
	stream, err := transcriptRequest(t, "alice", ns, s.Name, "follow", "true").Stream(ctx)
	if err != nil {
		t.Fatalf("following the transcript: %v", err)
	}
	defer stream.Close()
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stream)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	in, typeIn := io.Pipe()
	done := attach(ctx, t, "alice", ns, s.Name, true, in, io.Discard)
	id := marker()
	if _, err := io.WriteString(typeIn, "echo followed-"+id+"; exit 0\r"); err != nil {
		t.Fatal(err)
	}
	seen := false
	followed := time.Now()
	for l := range lines {
		seen = seen || strings.Contains(l, "followed-"+id+"\\r\\n")
	}
	if !seen {
		t.Error("the followed transcript ended without the command's output")
	}
	t.Logf("the followed transcript ended %s after the command was typed", time.Since(followed).Round(time.Millisecond))
	<-done
	typeIn.Close()

	// What a web page could try through `kubectl proxy`: a WebSocket
	// (readable from any origin), or a GET from an origin not allowed.
	cfg := restConfig(t, "alice")
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for what, h := range map[string]http.Header{
		"a WebSocket upgrade":    {"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}},
		"a page of another site": {"Origin": {"https://evil.example"}},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/apis/terminal.meshery.io/v1alpha1/namespaces/"+ns+"/terminalsessions/"+s.Name+"/transcript", nil)
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "followed-"+id) {
			t.Errorf("%s reading the transcript: %d %s, want it refused", what, resp.StatusCode, body)
		}
	}

	for user, want := range map[string]string{
		"viewer": "terminalsessions/transcript", // view has no transcript subresource at all
		"bob":    `"replay" verb`,               // edit reads only one's own
	} {
		_, err := transcriptRequest(t, user, ns, s.Name).read(ctx)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s reading alice's transcript: %v, want 403 naming %s", user, err, want)
		}
	}
	revoke := bind(t, ns, "bob", "terminal-sessions-replay")
	eventually(t, 30*time.Second, "bob reads alice's transcript with the replay grant", func(ctx context.Context) (bool, error) {
		_, err := transcriptRequest(t, "bob", ns, s.Name).read(ctx)
		return err == nil, nil
	})

	// Deleted: gone by name; by UID, for whoever holds replay.
	if err := c.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the session deleted", func(ctx context.Context) (bool, error) {
		_, err := c.Get(ctx, s.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if _, err := transcriptRequest(t, "bob", ns, s.Name).read(ctx); !apierrors.IsNotFound(err) {
		t.Errorf("a deleted session's transcript by name: %v, want 404", err)
	}
	if cast, err := transcriptRequest(t, "bob", ns, s.Name, "uid", string(s.UID)).read(ctx); err != nil || !strings.Contains(string(cast), "followed-"+id) {
		t.Errorf("bob (replay) reading the deleted session's transcript by UID: %v", err)
	}
	if _, err := transcriptRequest(t, "alice", ns, s.Name, "uid", string(s.UID)).read(ctx); !apierrors.IsForbidden(err) {
		t.Errorf("alice (no replay) reading her deleted session's transcript by UID: %v, want 403", err)
	}
	if _, err := transcriptRequest(t, "admin", "team-a", s.Name, "uid", string(s.UID)).read(ctx); !apierrors.IsNotFound(err) {
		t.Errorf("the transcript by UID from another namespace: %v, want 404", err)
	}
	if _, err := transcriptRequest(t, "admin", ns, "another-name", "uid", string(s.UID)).read(ctx); !apierrors.IsNotFound(err) {
		t.Errorf("the transcript by UID under another name: %v, want 404", err)
	}
	if _, err := transcriptRequest(t, "admin", ns, s.Name, "uid", "terminal.>").read(ctx); !apierrors.IsBadRequest(err) {
		t.Errorf("a uid that is not one: %v, want 400", err)
	}
	revoke()
}

// A token the shell prints in two pieces, across two output frames, is
// masked in the transcript and shown whole in the live output (the local
// server redacts JSON Web Tokens: hack/local-up.sh).
func TestTranscriptRedactsSecrets(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := openShell(t, "team-a", "shell-demo", "")
	closed := watchClosed(t, sh.nc, sh.subj)
	first, second := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi", "OiJ4In0.c2lnbmF0dXJl"
	token := first + second
	// The pause puts the two halves in two frames (a frame leaves when
	// output pauses for 20 ms). The command line, which the terminal
	// echoes, holds the token's parts but never a half of it whole.
	sh.run(t, `h=eyJhbGciOiJIUzI1NiJ9 p=eyJzdWIi x=OiJ4In0 y=c2lnbmF0dXJl; printf "token: $h.$p"; sleep 0.3; printf "$x.$y end\n"`, 30*time.Second)
	if !strings.Contains(sh.scr.String(), "token: "+token+" end") {
		t.Fatalf("the live output lacks the token: %q", sh.scr.String())
	}
	exitShell(ctx, t, sh, closed)
	cast, err := transcriptRequest(t, "alice", "team-a", sh.name).read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	played := play(ctx, t, cast)
	if strings.Contains(string(cast), first) || strings.Contains(string(cast), second) || strings.Contains(played, first) || strings.Contains(played, second) {
		t.Fatalf("the transcript holds the token:\n%s", cast)
	}
	if !strings.Contains(played, "token: "+strings.Repeat("*", len(token))+" end") {
		t.Fatalf("the transcript does not show the token masked:\n%q", played)
	}
}
