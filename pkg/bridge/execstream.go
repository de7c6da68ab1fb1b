package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// execStream is one running pods/exec: the process's stdin and terminal size
// in, its output and exit status out.
type execStream interface {
	// Write sends p to the process's stdin. It may block while the process
	// is not reading.
	Write(p []byte) (int, error)
	// Resize sets the terminal size.
	Resize(wire.Size) error
	// Wait copies the process's output (stdout and stderr) to out until the
	// process ends, and returns its exit code, or an error if the stream
	// broke or the exec failed.
	Wait(out io.Writer) (int32, error)
	// Ping checks that the connection is alive (and keeps proxies from
	// dropping an idle one).
	Ping() error
	// Close ends the stream; Wait returns.
	Close() error
}

// Channel numbers of the v4/v5.channel.k8s.io WebSocket protocols: the first
// byte of every binary message says which stream the rest belongs to.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanError  = 3
	chanResize = 4

	protoV5 = "v5.channel.k8s.io"
	protoV4 = "v4.channel.k8s.io"

	// readIdle is how long a connection may stay silent (no data, no pong)
	// before it is taken for dead; pings go out more often than that.
	readIdle = 90 * time.Second
	// maxStatus bounds the error channel's status document.
	maxStatus = 64 << 10
)

// Buffers shared by every session: an idle session holds none. client-go's
// own WebSocket executor keeps ~160 KiB per stream (two 33 KiB connection
// buffers and a 32 KiB copy buffer per direction), which would make memory,
// not CPU, the limit on open sessions.
var (
	writeBufferPool = &sync.Pool{}
	readBuffers     = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

// tlsConfigs shares one TLS configuration among all execs: impersonation
// travels in headers, so every exec uses the server's own TLS identity, and
// a configuration per connection would hold its own parsed CA pool and
// client certificate. It is rebuilt every minute to pick up rotated files.
// TLS sessions are resumed, so connections also share the peer's
// certificates and skip the handshake's signatures.
type tlsConfigs struct {
	mu    sync.Mutex
	conf  *tls.Config
	built time.Time
	cache tls.ClientSessionCache
}

func newTLSConfigs() *tlsConfigs {
	return &tlsConfigs{cache: tls.NewLRUClientSessionCache(256)}
}

// get is the TLS configuration for cfg, which must differ from the
// first caller's only in impersonation. A nil receiver builds a fresh one.
func (t *tlsConfigs) get(cfg *rest.Config) (*tls.Config, error) {
	if t == nil {
		return rest.TLSConfigFor(cfg)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conf != nil && time.Since(t.built) < time.Minute {
		return t.conf, nil
	}
	conf, err := rest.TLSConfigFor(cfg)
	if err != nil || conf == nil {
		return conf, err
	}
	conf.ClientSessionCache = t.cache
	t.conf, t.built = conf, time.Now()
	return conf, nil
}

// wsStream speaks the client side of the pods/exec WebSocket protocol
// (v5.channel.k8s.io, else v4) on one connection, without goroutines of
// its own: Wait runs in the caller's.
type wsStream struct {
	conn *websocket.Conn
	wmu  sync.Mutex // one writer at a time (stdin and resize)
}

// upgradeError means the server refused the WebSocket upgrade: a client
// should try SPDY.
type upgradeError struct {
	status int
	err    error
}

func (e *upgradeError) Error() string {
	return fmt.Sprintf("websocket upgrade refused (HTTP %d): %v", e.status, e.err)
}
func (e *upgradeError) Unwrap() error { return e.err }

// dialWebSocket opens the exec at u (a pods/exec URL) with cfg's
// credentials and impersonation.
func dialWebSocket(ctx context.Context, cfg *rest.Config, tlsConfs *tlsConfigs, u *url.URL) (*wsStream, error) {
	tlsConf, err := tlsConfs.get(cfg)
	if err != nil {
		return nil, err
	}
	d := &dialer{ws: websocket.Dialer{
		Proxy:           cfg.Proxy,
		TLSClientConfig: tlsConf,
		Subprotocols:    []string{protoV5, protoV4},
		// wire.Frame headers are read through this buffer; payloads of any
		// size go straight to the caller's (pooled) buffer.
		ReadBufferSize:   1 << 10,
		WriteBufferSize:  32<<10 + 1,
		WriteBufferPool:  writeBufferPool,
		HandshakeTimeout: 30 * time.Second,
	}}
	if d.ws.Proxy == nil {
		d.ws.Proxy = http.ProxyFromEnvironment
	}
	// The wrappers add the bearer token, impersonation and user-agent
	// headers, exactly as for any other request of cfg's.
	rt, err := rest.HTTPWrappersForConfig(cfg, d)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	conn := d.conn
	if p := conn.Subprotocol(); p != protoV5 && p != protoV4 {
		conn.Close()
		return nil, &upgradeError{status: http.StatusSwitchingProtocols, err: fmt.Errorf("server chose subprotocol %q", p)}
	}
	conn.SetReadLimit(1 << 20)
	_ = conn.SetReadDeadline(time.Now().Add(readIdle))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(readIdle)) })
	return &wsStream{conn: conn}, nil
}

// dialer is the innermost RoundTripper: it performs the WebSocket
// handshake with the headers the wrappers set.
type dialer struct {
	ws   websocket.Dialer
	conn *websocket.Conn
}

func (d *dialer) RoundTrip(req *http.Request) (*http.Response, error) {
	u := *req.URL
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	}
	conn, resp, err := d.ws.DialContext(req.Context(), u.String(), req.Header)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			_ = resp.Body.Close()
			return nil, &upgradeError{status: resp.StatusCode, err: statusMessage(resp.Status, body)}
		}
		return nil, err
	}
	d.conn = conn
	return resp, nil
}

// statusMessage is the message of a metav1.Status body, else the body.
func statusMessage(status string, body []byte) error {
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return errors.New(st.Message)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		return fmt.Errorf("%s: %s", status, bytes.TrimSpace(body))
	}
	return errors.New(status)
}

func (w *wsStream) send(channel byte, p []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	wr, err := w.conn.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := wr.Write([]byte{channel}); err != nil {
		return err
	}
	if _, err := wr.Write(p); err != nil {
		return err
	}
	return wr.Close()
}

func (w *wsStream) Write(p []byte) (int, error) {
	if err := w.send(chanStdin, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsStream) Resize(sz wire.Size) error {
	data, err := json.Marshal(remotecommand.TerminalSize{Width: sz.Cols, Height: sz.Rows})
	if err != nil {
		return err
	}
	return w.send(chanResize, data)
}

func (w *wsStream) Ping() error {
	return w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
}

func (w *wsStream) Close() error { return w.conn.Close() }

func (w *wsStream) Wait(out io.Writer) (int32, error) {
	var status []byte
	for {
		typ, r, err := w.conn.NextReader()
		if err != nil {
			if status != nil {
				return exitStatus(status)
			}
			return 0, fmt.Errorf("exec stream ended without an exit status: %w", err)
		}
		_ = w.conn.SetReadDeadline(time.Now().Add(readIdle))
		if typ != websocket.BinaryMessage {
			continue
		}
		var id [1]byte
		if _, err := io.ReadFull(r, id[:]); err != nil {
			continue // an empty message: nothing to route
		}
		switch id[0] {
		case chanStdout, chanStderr:
			if err := copyPooled(out, r); err != nil {
				return 0, err
			}
		case chanError:
			b, _ := io.ReadAll(io.LimitReader(r, maxStatus))
			status = append(status, b...)
		}
	}
}

// copyPooled copies r to out through a shared buffer.
func copyPooled(out io.Writer, r io.Reader) error {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	for {
		n, err := r.Read(*bp)
		if n > 0 {
			if _, werr := out.Write((*bp)[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// kwok (and other kubelets that wrap the process's error) report a non-zero
// exit as an internal error whose message ends in Go's "exit status N"
// rather than as a NonZeroExitCode status: the code is still the process's.
var exitStatusSuffix = regexp.MustCompile(`exit status (\d+)\s*$`)

// exitStatus reads the error channel's metav1.Status: Success is exit code
// 0, NonZeroExitCode carries the code, anything else is the exec's error.
func exitStatus(doc []byte) (int32, error) {
	var st metav1.Status
	if err := json.Unmarshal(doc, &st); err != nil {
		return 0, fmt.Errorf("exec status %q: %w", doc, err)
	}
	if st.Status == metav1.StatusSuccess {
		return 0, nil
	}
	if st.Reason == "NonZeroExitCode" && st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Type == "ExitCode" {
				if code, err := strconv.ParseInt(c.Message, 10, 32); err == nil {
					return int32(code), nil
				}
			}
		}
	}
	if m := exitStatusSuffix.FindStringSubmatch(st.Message); m != nil {
		if code, err := strconv.ParseInt(m[1], 10, 32); err == nil {
			return int32(code), nil
		}
	}
	return 0, fmt.Errorf("exec failed: %s", st.Message)
}

// spdyStream runs client-go's SPDY executor, for servers (or proxies) that
// refuse the WebSocket upgrade. It costs goroutines and buffers that
// wsStream does not, so it is only the fallback.
type spdyStream struct {
	exec   remotecommand.Executor
	tty    bool
	ctx    context.Context
	cancel context.CancelFunc
	stdin  *io.PipeReader
	stdinW *io.PipeWriter
	sizes  *sizeQueue
}

func newSPDYStream(ctx context.Context, cfg *rest.Config, u *url.URL, tty bool) (*spdyStream, error) {
	exec, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r, w := io.Pipe()
	return &spdyStream{exec: exec, tty: tty, ctx: ctx, cancel: cancel, stdin: r, stdinW: w,
		sizes: &sizeQueue{ctx: ctx, next: make(chan remotecommand.TerminalSize, 1)}}, nil
}

func (s *spdyStream) Write(p []byte) (int, error) { return s.stdinW.Write(p) }
func (s *spdyStream) Resize(sz wire.Size) error {
	s.sizes.set(remotecommand.TerminalSize{Width: sz.Cols, Height: sz.Rows})
	return nil
}
func (s *spdyStream) Ping() error { return nil } // SPDY has its own keepalive
func (s *spdyStream) Close() error {
	s.cancel()
	return s.stdinW.Close()
}

func (s *spdyStream) Wait(out io.Writer) (int32, error) {
	opts := remotecommand.StreamOptions{Stdin: s.stdin, Stdout: out, Tty: s.tty}
	if s.tty {
		opts.TerminalSizeQueue = s.sizes
	} else {
		opts.Stderr = out
	}
	err := s.exec.StreamWithContext(s.ctx, opts)
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exitErr):
		return int32(exitErr.ExitStatus()), nil
	}
	if m := exitStatusSuffix.FindStringSubmatch(err.Error()); m != nil {
		if code, perr := strconv.ParseInt(m[1], 10, 32); perr == nil {
			return int32(code), nil
		}
	}
	return 0, err
}

// sizeQueue feeds the SPDY executor its terminal size, coalesced to the
// latest.
type sizeQueue struct {
	ctx  context.Context
	next chan remotecommand.TerminalSize
}

func (q *sizeQueue) set(sz remotecommand.TerminalSize) {
	for {
		select {
		case q.next <- sz:
			return
		default:
		}
		select {
		case <-q.next: // drop the stale one
		default:
		}
	}
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case sz := <-q.next:
		return &sz
	case <-q.ctx.Done():
		return nil
	}
}

// openExec opens pods/exec at u: WebSocket first, SPDY when the upgrade is
// refused (as kubectl does).
func openExec(ctx context.Context, cfg *rest.Config, tlsConfs *tlsConfigs, u *url.URL, tty bool) (execStream, error) {
	ws, err := dialWebSocket(ctx, cfg, tlsConfs, u)
	if err == nil {
		return ws, nil
	}
	var up *upgradeError
	if !errors.As(err, &up) || up.status == http.StatusUnauthorized || up.status == http.StatusForbidden {
		return nil, err
	}
	return newSPDYStream(ctx, cfg, u, tty)
}
