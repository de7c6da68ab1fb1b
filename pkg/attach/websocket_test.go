package attach

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// echoServer serves a relay that answers each input with "got:INPUT" and
// each resize with "size:COLSxROWS", and exits with code 3 at a resize to
// 0x0.
func echoServer(t *testing.T, ping time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		lines := make(chan string, 16)
		ServeWebSocket(w, req, Options{Stdin: true, Stdout: true, TTY: true}, ping,
			func(p []byte) error { lines <- string(p); return nil },
			func(ctx context.Context, out io.Writer, resize <-chan wire.Size) error {
				for {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case sz := <-resize:
						if sz.Cols == 0 && sz.Rows == 0 {
							return &ExitError{Code: 3}
						}
						fmt.Fprintf(out, "size:%dx%d", sz.Cols, sz.Rows)
					case l := <-lines:
						fmt.Fprintf(out, "got:%s", l)
					}
				}
			})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dial(t *testing.T, url, proto string) *websocket.Conn {
	t.Helper()
	c, resp, err := (&websocket.Dialer{Subprotocols: []string{proto}}).Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", proto, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	if c.Subprotocol() != proto {
		t.Fatalf("subprotocol %q, want %q", c.Subprotocol(), proto)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}

func expect(t *testing.T, c *websocket.Conn, want []byte) {
	t.Helper()
	_, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v, want %q", err, want)
	}
	if string(got) != string(want) {
		t.Fatalf("got frame %q, want %q", got, want)
	}
}

func expectExit3(t *testing.T, c *websocket.Conn, decode func([]byte) []byte) {
	t.Helper()
	_, frame, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var st metav1.Status
	if err := json.Unmarshal(decode(frame), &st); err != nil {
		t.Fatalf("status frame %q: %v", frame, err)
	}
	if st.Reason != "NonZeroExitCode" || st.Details == nil || st.Details.Causes[0].Message != "3" {
		t.Fatalf("status %+v, want exit code 3", st)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after the status: %v, want a normal close", err)
	}
}

// v5: binary frames with the channel first; the close signal ends stdin.
func TestWebSocketV5(t *testing.T) {
	c := dial(t, echoServer(t, time.Minute), "v5.channel.k8s.io")
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("\x00hi")); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte("\x01got:hi"))
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(`{"Width":120,"Height":40}`)); err != nil {
		t.Fatal(err) // no channel byte: '{' is not a channel, ignored
	}
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("\x04"+`{"Width":120,"Height":40}`)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte("\x01size:120x40"))
	// After the close signal, input is ignored: the next frame answers
	// the resize after it.
	for _, frame := range []string{string([]byte{closeSignal, chanStdin}), "\x00late", "\x04" + `{"Width":81,"Height":25}`} {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, c, []byte("\x01size:81x25"))
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("\x04"+`{"Width":0,"Height":0}`)); err != nil {
		t.Fatal(err)
	}
	expectExit3(t, c, func(f []byte) []byte {
		if f[0] != chanError {
			t.Fatalf("frame on channel %d, want the error channel", f[0])
		}
		return f[1:]
	})
}

// v4.base64: text frames, the channel as a digit, the data in base64.
func TestWebSocketBase64(t *testing.T) {
	c := dial(t, echoServer(t, time.Minute), "v4.base64.channel.k8s.io")
	b64 := base64.StdEncoding.EncodeToString
	if err := c.WriteMessage(websocket.TextMessage, []byte("0"+b64([]byte("ls\r")))); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte("1"+b64([]byte("got:ls\r"))))
	// v4 has no close signal: the peer leaving ends the viewer.
	if err := c.WriteMessage(websocket.TextMessage, []byte("4"+b64([]byte(`{"Width":80,"Height":24}`)))); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte("1"+b64([]byte("size:80x24"))))
}

// A quiet connection is pinged, and a peer that stops answering is let go.
func TestWebSocketPings(t *testing.T) {
	c := dial(t, echoServer(t, 20*time.Millisecond), "v4.channel.k8s.io")
	pinged := make(chan struct{}, 1)
	c.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil // and no pong: this peer has stopped answering
	})
	// ReadMessage runs the ping handler; the server ends the viewer after
	// three periods without a pong, which arrives as its final status.
	_, frame, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	select {
	case <-pinged:
	default:
		t.Fatal("no ping before the server gave up on the peer")
	}
	if frame[0] != chanError || !strings.Contains(string(frame), "context canceled") {
		t.Fatalf("frame %q, want the final status", frame)
	}
}

func TestWebSocketUnknownProtocol(t *testing.T) {
	_, resp, err := (&websocket.Dialer{Subprotocols: []string{"v3.channel.k8s.io"}}).Dial(echoServer(t, time.Minute), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("dial with an unknown subprotocol: %v (%v), want 400", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "v5.channel.k8s.io") {
		t.Errorf("the refusal %q does not name the supported subprotocols", body)
	}
}

// An observer's input and resize frames reach nothing, on every protocol,
// whatever channels its client writes to.
func TestWebSocketObserver(t *testing.T) {
	for _, proto := range wsProtocols {
		t.Run(proto, func(t *testing.T) {
			var typed, resized atomic.Int32
			done := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				defer close(done)
				ServeWebSocket(w, req, Options{Stdin: true, Stdout: true, TTY: true, ReadOnly: true}, time.Minute,
					func([]byte) error { typed.Add(1); return nil },
					func(ctx context.Context, out io.Writer, resize <-chan wire.Size) error {
						fmt.Fprint(out, "ready")
						for range resize {
							resized.Add(1)
						}
						<-ctx.Done()
						return nil
					})
			}))
			defer srv.Close()
			c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), proto)
			frame := func(ch byte, p string) []byte {
				if proto == "v4.base64.channel.k8s.io" {
					return []byte(string('0'+ch) + base64.StdEncoding.EncodeToString([]byte(p)))
				}
				return append([]byte{ch}, p...)
			}
			typ := websocket.BinaryMessage
			if proto == "v4.base64.channel.k8s.io" {
				typ = websocket.TextMessage
			}
			if _, _, err := c.ReadMessage(); err != nil { // "ready"
				t.Fatal(err)
			}
			for _, f := range [][]byte{frame(chanStdin, "touch /tmp/pwned\n"), frame(chanResize, `{"Width":10,"Height":5}`)} {
				if err := c.WriteMessage(typ, f); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the viewer did not end with its connection")
			}
			if typed.Load() != 0 || resized.Load() != 0 {
				t.Fatalf("an observer's frames got through: %d inputs, %d sizes", typed.Load(), resized.Load())
			}
		})
	}
}

// A frame larger than a terminal needs ends the viewer's connection before
// it is read into memory.
func TestWebSocketFrameBound(t *testing.T) {
	c := dial(t, echoServer(t, time.Minute), "v5.channel.k8s.io")
	big := append([]byte{chanStdin}, make([]byte, maxInputFrame+1)...)
	if err := c.WriteMessage(websocket.BinaryMessage, big); err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue // the final status
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) && !strings.Contains(err.Error(), "close") &&
			!strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
			t.Fatalf("after an oversized frame: %v, want the connection closed", err)
		}
		return
	}
}
