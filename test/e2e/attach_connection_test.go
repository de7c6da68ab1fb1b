package e2e

import (
	"context"
	"io"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/client-go/rest"

	"github.com/meshery/terminal-apiserver/test/framework"
)

// dialAttach opens a raw WebSocket to a session's attach subresource
// through kube-apiserver, as context, with the query params (key, value,
// ...): the client a browser or a UI back end would be.
func dialAttach(ctx context.Context, t *testing.T, context, ns, name, proto string, params ...string) *websocket.Conn {
	t.Helper()
	cfg := restConfig(t, context)
	tlsConfig, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Scheme = "wss"
	u.Path = "/apis/terminal.meshery.io/v1alpha1/namespaces/" + ns + "/terminalsessions/" + name + "/attach"
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	u.RawQuery = q.Encode()
	d := websocket.Dialer{TLSClientConfig: tlsConfig, Subprotocols: []string{proto}}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// An attach left idle past the request timeout (60 s) stays up, over SPDY
// and over WebSocket, where the server pings the viewer so that proxies
// which drop idle connections keep it too.
func TestAttachIdle(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	created := runningSession(t, "idle")

	in, typeIn := io.Pipe()
	defer typeIn.Close()
	var spdyScreen framework.Screen
	spdyEnded := attach(ctx, t, "alice", "team-a", created.Name, false, in, &spdyScreen)

	ws := dialAttach(ctx, t, "alice", "team-a", created.Name, "v4.channel.k8s.io", "stdout", "true", "tty", "true")
	var pings atomic.Int32
	ws.SetPingHandler(func(data string) error {
		pings.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	var wsScreen framework.Screen
	wsEnded := make(chan error, 1)
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				wsEnded <- err
				return
			}
			if len(msg) > 0 && msg[0] == 1 {
				_, _ = wsScreen.Write(msg[1:])
			}
		}
	}()

	idle := time.NewTimer(75 * time.Second)
	defer idle.Stop()
	select {
	case err := <-spdyEnded:
		t.Fatalf("idle SPDY attach ended: %v", err)
	case err := <-wsEnded:
		t.Fatalf("idle WebSocket attach ended: %v", err)
	case <-idle.C:
	}
	if n := pings.Load(); n < 2 {
		t.Errorf("the WebSocket viewer was pinged %d times in 75 s, want at least 2", n)
	}
	go func() { _, _ = typeIn.Write([]byte("echo awake-$((6*7))\n")) }()
	eventually(t, 30*time.Second, "output on both attaches after the idle time", func(context.Context) (bool, error) {
		return strings.Contains(spdyScreen.String(), "awake-42") && strings.Contains(wsScreen.String(), "awake-42"), nil
	})
}

// Viewers whose connections drop while the shell is quiet are no longer
// counted: the session's detach grace period can start.
func TestAttachViewerGone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	created := runningSession(t, "gone")

	viewers, drop := context.WithCancel(ctx)
	in, typeIn := io.Pipe()
	defer typeIn.Close()
	spdyEnded := attach(viewers, t, "alice", "team-a", created.Name, false, in, io.Discard)
	wsEnded := attach(viewers, t, "alice", "team-a", created.Name, true, nil, io.Discard)
	waitViewers(t, 30*time.Second, "two viewers in status", "team-a", created.Name, 2)
	drop()
	<-spdyEnded
	<-wsEnded
	waitViewers(t, 30*time.Second, "no viewers in status", "team-a", created.Name, 0)
}
