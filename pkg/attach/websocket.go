package attach

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Options are a viewer's requested streams, from the query (stdin, stdout,
// stderr, tty), and what its access allows.
type Options struct {
	Stdin, Stdout, Stderr, TTY bool
	// ReadOnly: the viewer may only watch (an observer). Its input is
	// refused and its resizes are dropped, whatever streams or channels
	// its client opens.
	ReadOnly bool
}

// ExitError carries a process's non-zero exit code to the final status.
type ExitError struct{ Code int32 }

func (e *ExitError) Error() string {
	return "command terminated with exit code " + strconv.Itoa(int(e.Code))
}

// Channels of the channel.k8s.io WebSocket protocols.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize

	// closeSignal opens a v5 frame that half-closes the channel after it.
	closeSignal = 255
)

// WebSocket subprotocols served, in order of preference: v5 (v4 plus
// half-closing stdin, what client-go's WebSocket executor asks for), v4,
// and v4's base64 text variant for browsers.
var wsProtocols = []string{"v5.channel.k8s.io", "v4.channel.k8s.io", "v4.base64.channel.k8s.io"}

// PingPeriod is how often attach pings a viewer's WebSocket, so proxies and
// load balancers that drop idle connections (often after 60 s) keep a quiet
// terminal open; browsers answer pings by themselves. A peer that sends
// nothing, not even a pong, for three periods is gone (a laptop closed, a
// cable pulled) and is let go.
const PingPeriod = 30 * time.Second

const (
	// controlWait bounds writing a ping or the closing frame.
	controlWait = 10 * time.Second
	// smallFrame: data shorter than this fits the connection's write
	// buffer (4 KiB by default) with its headers.
	smallFrame = 3 << 10
	// maxInputFrame bounds one frame from a viewer: a terminal's input
	// arrives a few bytes at a time, client-go sends at most 32 KiB of
	// stdin per frame (44 KiB in base64), and a larger paste must be sent
	// in several frames. A larger frame ends the connection.
	maxInputFrame = 64 << 10
)

// ServeWebSocket speaks the server side of pods/attach over WebSocket,
// pinging the peer every ping (see PingPeriod). Input, when opts.Stdin,
// goes to input frame by frame, from the goroutine reading the connection
// (no hand-off: keystrokes are latency). relay runs the viewer's output
// until ctx ends (the peer went away) or the session closes; its error
// becomes the final status on the error channel.
//
// The connection is gorilla/websocket rather than apimachinery's wsstream:
// wsstream cannot send pings alongside data (its connection offers no
// locked control frames), and a terminal that is quiet for a minute must
// survive proxies that close idle connections.
func ServeWebSocket(w http.ResponseWriter, req *http.Request, opts Options, ping time.Duration,
	input func([]byte) error, relay func(ctx context.Context, out io.Writer, resize <-chan wire.Size) error) {
	proto := ""
	for _, p := range wsProtocols {
		if slices.Contains(websocket.Subprotocols(req), p) {
			proto = p
			break
		}
	}
	if proto == "" {
		http.Error(w, fmt.Sprintf("none of the requested WebSocket subprotocols %q is supported; use one of %q",
			websocket.Subprotocols(req), wsProtocols), http.StatusBadRequest)
		return
	}
	up := websocket.Upgrader{
		Subprotocols: []string{proto},
		// As kube-apiserver's and the kubelet's streaming servers: the
		// request was authenticated and authorized before it got here.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	conn, err := up.Upgrade(w, req, nil)
	if err != nil {
		return // Upgrade has answered the request
	}
	defer conn.Close()
	c := &wsConn{conn: conn, ping: ping, base64: proto == "v4.base64.channel.k8s.io", v5: proto == "v5.channel.k8s.io"}

	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	if !opts.Stdin || opts.ReadOnly {
		input = nil
	}
	sizes := make(chan wire.Size, 1)
	mayResize := opts.TTY && !opts.ReadOnly
	if !mayResize {
		close(sizes)
	}
	go func() {
		defer cancel() // the peer is gone: so is the viewer
		c.read(input, mayResize, sizes)
	}()
	go c.keepalive(ctx)

	var out io.Writer = io.Discard
	if opts.Stdout {
		out = &wsChannel{c: c, num: chanStdout}
	}
	status := statusOf(relay(ctx, out, sizes))
	doc, _ := json.Marshal(status)
	_, _ = (&wsChannel{c: c, num: chanError}).Write(doc)
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(controlWait))
}

// wsConn multiplexes channels on one WebSocket.
type wsConn struct {
	conn   *websocket.Conn
	ping   time.Duration
	base64 bool // v4.base64: text frames, channel as a digit
	v5     bool // v5: the close signal
	mu     sync.Mutex
}

// read dispatches the peer's frames to stdin and, if resize, to sizes
// until it goes away or falls silent for three ping periods. Frames on
// other channels are dropped.
func (c *wsConn) read(stdin func([]byte) error, resize bool, sizes chan wire.Size) {
	c.conn.SetReadLimit(maxInputFrame)
	alive := func(string) error { return c.conn.SetReadDeadline(time.Now().Add(3 * c.ping)) }
	_ = alive("")
	c.conn.SetPongHandler(alive)
	if resize {
		defer close(sizes)
	}
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			break
		}
		_ = alive("")
		channel, payload, ok := c.decodeFrame(data)
		if !ok {
			continue
		}
		if channel == closeSignal {
			if len(payload) == 1 && payload[0] == chanStdin {
				stdin = nil // the viewer may still watch
			}
			continue
		}
		switch {
		case channel == chanStdin && stdin != nil:
			if len(payload) > 0 && stdin(payload) != nil {
				return // the session's input is gone
			}
		case channel == chanResize && resize:
			if sz, ok := parseResize(payload); ok {
				latest(sizes, sz)
			}
		}
	}
}

// decodeFrame splits a frame from the peer into its channel and payload:
// binary frames carry the channel as their first byte, v4.base64 text
// frames as a digit before base64. closeSignal comes only from v5. false
// for a frame that carries nothing to act on.
func (c *wsConn) decodeFrame(data []byte) (channel byte, payload []byte, ok bool) {
	if len(data) == 0 {
		return 0, nil, false
	}
	channel, payload = data[0], data[1:]
	if channel == closeSignal {
		return channel, payload, c.v5
	}
	if c.base64 {
		// A digit: anything else (e.g. '/', one below '0') would wrap
		// around to another channel, the close signal among them.
		if channel < '0' || channel > '9' {
			return 0, nil, false
		}
		channel -= '0'
		p, err := base64.StdEncoding.DecodeString(string(payload))
		if err != nil {
			return 0, nil, false // not base64: nothing to relay
		}
		payload = p
	}
	return channel, payload, true
}

// latest queues sz in place of any size not yet taken: only the last
// size matters.
func latest(sizes chan wire.Size, sz wire.Size) {
	for {
		select {
		case sizes <- sz:
			return
		default:
			select {
			case <-sizes:
			default:
			}
		}
	}
}

func (c *wsConn) keepalive(ctx context.Context) {
	t := time.NewTicker(c.ping)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(controlWait)) != nil {
				return
			}
		}
	}
}

// wsChannel writes one channel's frames.
type wsChannel struct {
	c   *wsConn
	num byte
}

func (w *wsChannel) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if w.c.base64 {
		frame := make([]byte, 1+base64.StdEncoding.EncodedLen(len(p)))
		frame[0] = '0' + w.num
		base64.StdEncoding.Encode(frame[1:], p)
		if err := w.c.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) < smallFrame {
		// Header and data in one write (one TLS record, one syscall):
		// WriteMessage below writes them apart. Echoes are small frames.
		wr, err := w.c.conn.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return 0, err
		}
		_, _ = wr.Write([]byte{w.num})
		_, _ = wr.Write(p)
		if err := wr.Close(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// One frame, written straight through (WriteMessage's fast path for
	// servers), rather than NextWriter's fragments of its buffer size.
	frame := make([]byte, 1+len(p))
	frame[0] = w.num
	copy(frame[1:], p)
	if err := w.c.conn.WriteMessage(websocket.BinaryMessage, frame); err != nil {
		return 0, err
	}
	return len(p), nil
}

// statusOf is the final status document of the v4/v5 protocols.
func statusOf(err error) metav1.Status {
	var exit *ExitError
	switch {
	case err == nil:
		return metav1.Status{Status: metav1.StatusSuccess}
	case errors.As(err, &exit):
		return metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode", Message: err.Error(),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: strconv.Itoa(int(exit.Code))}}}}
	}
	return metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Message: err.Error()}
}
