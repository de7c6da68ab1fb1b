package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  metav1.Status
		code    int32
		wantErr string
	}{
		{"success", metav1.Status{Status: metav1.StatusSuccess}, 0, ""},
		{"non-zero exit code", metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: "42"}}}}, 42, ""},
		// kwok wraps the process's error: the code is only in the message.
		{"exit status in the message", metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError,
			Message: "Internal error occurred: error executing command in container: cmd wait: sh -c exit 3: exit status 3"}, 3, ""},
		{"exec failure", metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError,
			Message: `executable file not found in $PATH: "nope"`}, 0, "executable file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, _ := json.Marshal(tc.status)
			code, err := exitStatus(doc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || code != tc.code {
				t.Fatalf("code %d err %v, want %d", code, err, tc.code)
			}
		})
	}
}

// kubelet plays the server side of the channel protocol: it records what
// arrives on stdin and resize, echoes stdin to stdout, and ends with the
// given status when stdin carries "exit".
type kubelet struct {
	mu      sync.Mutex
	headers http.Header
	stdin   bytes.Buffer
	resizes []string
	status  metav1.Status
}

func (k *kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.headers = r.Header.Clone()
	k.mu.Unlock()
	up := websocket.Upgrader{Subprotocols: []string{protoV5}}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.WriteMessage(websocket.BinaryMessage, append([]byte{chanStdout}, "$ "...))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil || len(msg) == 0 {
			return
		}
		k.mu.Lock()
		switch msg[0] {
		case chanStdin:
			k.stdin.Write(msg[1:])
		case chanResize:
			k.resizes = append(k.resizes, string(msg[1:]))
		}
		k.mu.Unlock()
		if msg[0] != chanStdin {
			continue
		}
		_ = conn.WriteMessage(websocket.BinaryMessage, append([]byte{chanStdout}, msg[1:]...))
		if bytes.Contains(msg[1:], []byte("exit")) {
			doc, _ := json.Marshal(k.status)
			_ = conn.WriteMessage(websocket.BinaryMessage, append([]byte{chanError}, doc...))
			_ = conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			return
		}
	}
}

func TestWebSocketStream(t *testing.T) {
	k := &kubelet{status: metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: "7"}}}}}
	srv := httptest.NewTLSServer(k)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns/pods/p/exec")
	cfg := &rest.Config{Host: srv.URL, BearerToken: "token", TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Impersonate: rest.ImpersonationConfig{UserName: "alice", Groups: []string{"team"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := openExec(ctx, cfg, nil, u, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Resize(wire.Size{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Write([]byte("echo hi\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Write([]byte("exit\n")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code, err := stream.Wait(&out)
	if err != nil || code != 7 {
		t.Fatalf("exit code %d err %v, want 7", code, err)
	}
	if out.String() != "$ echo hi\nexit\n" {
		t.Errorf("output %q", out.String())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stdin.String() != "echo hi\nexit\n" {
		t.Errorf("stdin %q", k.stdin.String())
	}
	if len(k.resizes) != 1 || k.resizes[0] != `{"Width":100,"Height":30}` {
		t.Errorf("resizes %q", k.resizes)
	}
	// The request carries the credentials and the impersonated identity.
	if got := k.headers.Get("Authorization"); got != "Bearer token" {
		t.Errorf("Authorization %q", got)
	}
	if got := k.headers.Get("Impersonate-User"); got != "alice" {
		t.Errorf("Impersonate-User %q", got)
	}
}

// A refused upgrade that is not an authorization decision falls back to
// SPDY; a 403 is reported as it is.
func TestOpenExecUpgradeRefused(t *testing.T) {
	for _, tc := range []struct {
		status int
		spdy   bool
	}{{http.StatusBadRequest, true}, {http.StatusForbidden, false}} {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"kind":"Status","status":"Failure","message":"pods \"p\" is forbidden: nope"}`))
		}))
		u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns/pods/p/exec")
		cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
		stream, err := openExec(context.Background(), cfg, nil, u, true)
		_, isSPDY := stream.(*spdyStream)
		if isSPDY != tc.spdy {
			t.Errorf("HTTP %d: stream %T err %v, want SPDY fallback %v", tc.status, stream, err, tc.spdy)
		}
		if !tc.spdy && (err == nil || !strings.Contains(err.Error(), "forbidden: nope")) {
			t.Errorf("HTTP %d: err %v, want the server's message", tc.status, err)
		}
		srv.Close()
	}
}
