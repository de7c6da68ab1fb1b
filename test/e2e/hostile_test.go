package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport/spdy"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// liveHeap is the replica's live heap after a forced garbage collection:
// what it holds, not what it has yet to free.
func (r *replica) liveHeap(t *testing.T) float64 {
	t.Helper()
	client, err := rest.HTTPClientFor(r.config())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) string {
		resp, err := client.Get(r.config().Host + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	get("/debug/pprof/heap?gc=1")
	for _, l := range strings.Split(get("/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatal("no go_memstats_heap_inuse_bytes in /metrics")
	return 0
}

// wsToReplica dials a session's attach on the replica directly, as admin.
func (r *replica) wsAttach(ctx context.Context, name string, q url.Values) (*websocket.Conn, *http.Response, error) {
	tlsConfig, err := rest.TLSConfigFor(r.config())
	if err != nil {
		return nil, nil, err
	}
	u := fmt.Sprintf("wss://127.0.0.1:%d/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/%s/attach?%s", r.port, name, q.Encode())
	return (&websocket.Dialer{TLSClientConfig: tlsConfig, Subprotocols: []string{"v5.channel.k8s.io"}}).DialContext(ctx, u, nil)
}

// Hostile input from a tenant stays bounded in bytes, and the replica's
// other sessions keep working: an endless resize message over SPDY, an
// oversized WebSocket frame, a flood typed into a process that does not
// read, and more attaches than one user may have. The live heap is read
// while each attack is still open.
func TestHostileInputsBounded(t *testing.T) {
	t.Parallel()
	r := startReplica(t, "hostile", "--nats-url="+startNATS(t), "--max-attaches-per-user=3")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := r.client().TerminalV1alpha1().TerminalSessions("team-a")
	open := func(prefix string, command ...string) *v1alpha1.TerminalSession {
		s := framework.NewSession("team-a", uniqueName(prefix), "shell-demo")
		s.Spec.Command = command
		created, err := c.Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) })
		if _, err := framework.WaitPhase(ctx, r.client(), "team-a", created.Name, v1alpha1.TerminalSessionRunning, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return created
	}
	victim := open("victim")
	stuck := open("stuck", "sleep", "600") // reads no input
	base := r.liveHeap(t)
	const budget = 48 << 20 // what the attacks may add to the live heap, together

	t.Run("endless resize message", func(t *testing.T) {
		tr, up, err := spdy.RoundTripperFor(r.config())
		if err != nil {
			t.Fatal(err)
		}
		u := fmt.Sprintf("https://127.0.0.1:%d/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions/%s/attach?stdout=true&tty=true", r.port, victim.Name)
		req, _ := http.NewRequestWithContext(ctx, "POST", u, nil)
		conn, _, err := spdy.Negotiate(up, &http.Client{Transport: tr}, req, "v4.channel.k8s.io")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var resize io.Writer
		for _, typ := range []string{"error", "stdout", "resize"} {
			h := http.Header{}
			h.Set("streamType", typ)
			s, err := conn.CreateStream(h)
			if err != nil {
				t.Fatal(err)
			}
			if typ == "resize" {
				resize = s
			}
		}
		_, _ = io.WriteString(resize, `{"Width":`)
		spaces := bytes.Repeat([]byte(" "), 64<<10)
		written := 0
		for written < 256<<20 {
			n, err := resize.Write(spaces)
			written += n
			if err != nil {
				break
			}
			select {
			case <-conn.CloseChan():
			default:
				continue
			}
			break
		}
		if heap := r.liveHeap(t); heap-base > budget {
			t.Errorf("live heap grew by %.0f MiB during an endless resize message", (heap-base)/(1<<20))
		}
		if written >= 256<<20 {
			t.Errorf("the server read all of a 256 MiB resize message")
		}
	})

	t.Run("oversized WebSocket frame", func(t *testing.T) {
		ws, resp, err := r.wsAttach(ctx, victim.Name, url.Values{"stdout": {"true"}, "stdin": {"true"}, "tty": {"true"}})
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.BinaryMessage, append([]byte{0}, make([]byte, 8<<20)...)); err != nil {
			return // cut off while writing: bounded too
		}
		_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				if strings.Contains(err.Error(), "timeout") {
					t.Fatal("the connection stayed open after an 8 MiB frame")
				}
				return
			}
		}
	})

	t.Run("input flood into a process that reads none", func(t *testing.T) {
		ws, resp, err := r.wsAttach(ctx, stuck.Name, url.Values{"stdout": {"true"}, "stdin": {"true"}, "tty": {"true"}})
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		defer ws.Close()
		// Read what comes back (the terminal rings its bell for every byte
		// it has no room for): a viewer that stops reading is let go.
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		chunk := append([]byte{0}, bytes.Repeat([]byte("y"), 60<<10)...)
		for range (128 << 20) / (60 << 10) {
			if err := ws.WriteMessage(websocket.BinaryMessage, chunk); err != nil {
				t.Fatal(err)
			}
		}
		if heap := r.liveHeap(t); heap-base > budget {
			t.Errorf("live heap grew by %.0f MiB after 128 MiB typed into a process that reads nothing", (heap-base)/(1<<20))
		}
	})

	t.Run("attaches beyond the per-user limit", func(t *testing.T) {
		// The attacks above closed their connections; the replica releases
		// their attach slots when it notices, which takes a moment. Until
		// then a third attach is refused too, so retry all three together.
		var held []*websocket.Conn
		defer func() {
			for _, ws := range held {
				ws.Close()
			}
		}()
		eventually(t, 30*time.Second, "three attaches once the earlier ones are released", func(ctx context.Context) (bool, error) {
			for len(held) < 3 {
				ws, resp, err := r.wsAttach(ctx, victim.Name, url.Values{"stdout": {"true"}, "tty": {"true"}})
				if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
					return false, nil
				}
				if err != nil {
					return false, fmt.Errorf("attach %d: %w (%v)", len(held)+1, err, resp)
				}
				held = append(held, ws)
			}
			return true, nil
		})
		_, resp, err := r.wsAttach(ctx, victim.Name, url.Values{"stdout": {"true"}, "tty": {"true"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("a fourth attach: %v (%v), want 429", err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "--max-attaches-per-user") {
			t.Errorf("the 429 %q does not name the limit", body)
		}
	})

	t.Run("the other session still works", func(t *testing.T) {
		eventually(t, 30*time.Second, "an attach once the others closed", func(ctx context.Context) (bool, error) {
			ws, _, err := r.wsAttach(ctx, victim.Name, url.Values{"stdout": {"true"}, "stdin": {"true"}, "tty": {"true"}})
			if err != nil {
				return false, nil
			}
			defer ws.Close()
			if err := ws.WriteMessage(websocket.BinaryMessage, []byte("\x00echo alive-$((40+2))\n")); err != nil {
				return false, err
			}
			var screen strings.Builder
			_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
			for !strings.Contains(screen.String(), "alive-42") {
				_, msg, err := ws.ReadMessage()
				if err != nil {
					return false, fmt.Errorf("read: %w; screen: %q", err, screen.String())
				}
				if len(msg) > 0 && msg[0] == 1 {
					screen.Write(msg[1:])
				}
			}
			return true, nil
		})
		if _, err := c.Get(ctx, victim.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			t.Fatal("the victim session is gone")
		}
	})
}

// An object above the size the server stores is refused with 413, before
// it reaches NATS (whose default maximum payload is 1 MiB).
func TestObjectTooLarge(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := framework.NewSession("team-a", uniqueName("huge"), "shell-demo")
	// Annotations stop at 256 KiB; a command's arguments are what is left.
	for range 11 {
		s.Spec.Command = append(s.Spec.Command, strings.Repeat("x", 100<<10))
	}
	_, err := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a").Create(ctx, s, metav1.CreateOptions{})
	if !apierrors.IsRequestEntityTooLargeError(err) || !strings.Contains(err.Error(), "bytes this server stores per object") {
		t.Fatalf("a 1.1 MB session: %v, want 413 naming the limit", err)
	}
}

// A namespace that holds sessions finishes deleting: kube-controller-
// manager's namespace controller (a client that prefers protobuf) lists and
// deletes them.
func TestNamespaceWithSessionsDeletes(t *testing.T) {
	t.Parallel()
	ns, s, _ := sharedSession(t, "ns-delete")
	admin := kubeClient(t, "admin")
	if err := admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "namespace "+ns+" gone, session "+s.Name+" with it", func(ctx context.Context) (bool, error) {
		_, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
