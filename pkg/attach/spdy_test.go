package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// spdyRelay is what a SPDY attach test's relay saw.
type spdyRelay struct {
	mu     sync.Mutex
	input  bytes.Buffer
	sizes  []wire.Size
	served int
}

func (r *spdyRelay) got() (string, []wire.Size, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.input.String(), append([]wire.Size(nil), r.sizes...), r.served
}

// spdyServer serves attach with opts from the query (stdin, stdout, tty)
// and readOnly. Its relay writes "ready\n", then answers each input line
// with "got:LINE\n" and each size with "size:COLSxROWS\n"; input "exit" ends
// it with exit code 3. A relay whose input is closed ends once its sizes
// are closed, with "sizes:N\n" (the sizes it got).
func spdyServer(t *testing.T, readOnly bool) (*httptest.Server, *spdyRelay) {
	t.Helper()
	r := &spdyRelay{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		opts := Options{Stdin: q.Get("stdin") == "true", Stdout: q.Get("stdout") == "true", TTY: q.Get("tty") == "true", ReadOnly: readOnly}
		ServeSPDY(w, req, opts, func(ctx context.Context, in io.Reader, out io.Writer, sizes <-chan wire.Size) error {
			r.mu.Lock()
			r.served++
			r.mu.Unlock()
			fmt.Fprintln(out, "ready")
			lines := make(chan string)
			if in != nil {
				go func() {
					buf := make([]byte, 1024)
					for {
						n, err := in.Read(buf)
						if n > 0 {
							r.mu.Lock()
							r.input.Write(buf[:n])
							r.mu.Unlock()
							for _, l := range strings.Fields(string(buf[:n])) {
								lines <- l
							}
						}
						if err != nil {
							return
						}
					}
				}()
			}
			n := 0
			for {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case sz, ok := <-sizes:
					if !ok {
						if in == nil {
							fmt.Fprintf(out, "sizes:%d\n", n)
							return nil
						}
						sizes = nil
						continue
					}
					n++
					r.mu.Lock()
					r.sizes = append(r.sizes, sz)
					r.mu.Unlock()
					fmt.Fprintf(out, "size:%dx%d\n", sz.Cols, sz.Rows)
				case l := <-lines:
					if l == "exit" {
						return &ExitError{Code: 3}
					}
					fmt.Fprintf(out, "got:%s\n", l)
				}
			}
		})
	}))
	t.Cleanup(srv.Close)
	return srv, r
}

// spdyExec is client-go's SPDY executor for srv with the given query,
// speaking one protocol (all when none).
func spdyExec(t *testing.T, srv *httptest.Server, query string, protocols ...string) remotecommand.Executor {
	t.Helper()
	u, _ := url.Parse(srv.URL + "/attach?" + query)
	cfg := &rest.Config{Host: srv.URL}
	if len(protocols) == 0 {
		e, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := remotecommand.NewSPDYExecutorForProtocols(tr, up, "POST", u, protocols...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixedSizes is a TerminalSizeQueue that sends its sizes, then blocks
// until ctx ends.
type fixedSizes struct {
	ctx   context.Context
	sizes chan remotecommand.TerminalSize
}

func newFixedSizes(ctx context.Context, sizes ...remotecommand.TerminalSize) *fixedSizes {
	q := &fixedSizes{ctx: ctx, sizes: make(chan remotecommand.TerminalSize, len(sizes))}
	for _, s := range sizes {
		q.sizes <- s
	}
	return q
}

func (q *fixedSizes) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.sizes:
		return &s
	case <-q.ctx.Done():
		return nil
	}
}

// A viewer that may type: input, resizes and the exit code, on each
// protocol version (resize from v3 on, the exit code in v4).
func TestSPDYWriter(t *testing.T) {
	for _, proto := range []string{spdyV4, spdyV3, spdyV2, spdyV1} {
		t.Run(proto, func(t *testing.T) {
			srv, r := spdyServer(t, false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out := &lockedBuffer{}
			in, typed := io.Pipe()
			opts := remotecommand.StreamOptions{Stdin: in, Stdout: out}
			query := "stdin=true&stdout=true"
			if proto == spdyV4 || proto == spdyV3 {
				opts.Tty, opts.TerminalSizeQueue = true, newFixedSizes(ctx, remotecommand.TerminalSize{Width: 120, Height: 40})
				query += "&tty=true"
			}
			go func() {
				// Exit once the answer to the input, and to the size, are
				// back: the relay has taken both.
				fmt.Fprintln(typed, "hello")
				want := "got:hello\n"
				if opts.Tty {
					want = "size:120x40\n"
				}
				for !strings.Contains(out.String(), want) && ctx.Err() == nil && proto != spdyV1 {
					time.Sleep(5 * time.Millisecond)
				}
				fmt.Fprintln(typed, "exit")
			}()
			err := spdyExec(t, srv, query, proto).StreamWithContext(ctx, opts)
			var exit utilexec.CodeExitError
			switch {
			case proto == spdyV4 && (!errors.As(err, &exit) || exit.Code != 3):
				t.Fatalf("attach ended with %v, want exit code 3", err)
			// v1's client may return before reading the error stream.
			case (proto == spdyV3 || proto == spdyV2) && (err == nil || !strings.Contains(err.Error(), "exit code 3")):
				t.Fatalf("attach ended with %v, want the error text of exit code 3", err)
			}
			input, sizes, _ := r.got()
			if input != "hello\nexit\n" {
				t.Errorf("the relay got input %q", input)
			}
			// v1's client returns at the error stream's message, maybe
			// before the output before it (a bug of v1, fixed in v2).
			if proto != spdyV1 && !strings.Contains(out.String(), "got:hello\n") {
				t.Errorf("output %q lacks the answer to the input", out.String())
			}
			if opts.Tty && (len(sizes) == 0 || sizes[0] != (wire.Size{Cols: 120, Rows: 40})) {
				t.Errorf("the relay got sizes %v, want 120x40", sizes)
			}
		})
	}
}

// An observer's client that opens a stdin stream, with or without stdin in
// the query, is refused when it opens it: nothing it sends reaches the
// session. This is the hole the kubelet's streaming server leaves (it
// counts streams, not their types).
func TestSPDYObserverStdinRefused(t *testing.T) {
	for _, tc := range []struct{ name, query string }{
		{"stdin stream without the query", "stdout=true&tty=true"},
		{"stdin stream without tty", "stdout=true"},
		{"stdin in the query", "stdin=true&stdout=true"},
	} {
		for _, proto := range []string{spdyV4, spdyV2} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				srv, r := spdyServer(t, true)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var out bytes.Buffer
				err := spdyExec(t, srv, tc.query, proto).StreamWithContext(ctx, remotecommand.StreamOptions{
					Stdin: strings.NewReader("touch /tmp/pwned\n"), Stdout: &out})
				if err == nil {
					t.Fatalf("an observer's stdin stream was accepted; output %q", out.String())
				}
				if input, _, served := r.got(); input != "" || served != 0 {
					t.Fatalf("the relay ran %d times and got input %q", served, input)
				}
			})
		}
	}
}

// A read-only client that sends its terminal size works; the sizes are
// dropped.
func TestSPDYObserverResizeDropped(t *testing.T) {
	srv, r := spdyServer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := spdyExec(t, srv, "stdout=true&tty=true").StreamWithContext(ctx, remotecommand.StreamOptions{
		Stdout: &out, Tty: true, TerminalSizeQueue: newFixedSizes(ctx, remotecommand.TerminalSize{Width: 10, Height: 5})})
	if err != nil {
		t.Fatalf("read-only attach with a size queue: %v", err)
	}
	if out.String() != "ready\nsizes:0\n" {
		t.Errorf("output %q, want the relay to get no size", out.String())
	}
	if _, sizes, _ := r.got(); len(sizes) != 0 {
		t.Errorf("the relay got sizes %v from an observer", sizes)
	}
}

// openStreams connects to srv at query and opens one stream per type, as a
// hostile client would; it returns the connection and each stream's error.
func openStreams(t *testing.T, srv *httptest.Server, query string, types ...string) (httpstream.Connection, []error) {
	t.Helper()
	tr, up, err := spdy.RoundTripperFor(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/attach?"+query, nil)
	conn, _, err := spdy.Negotiate(up, &http.Client{Transport: tr}, req, spdyV4)
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(types))
	for i, typ := range types {
		h := http.Header{}
		h.Set(streamTypeHeader, typ)
		_, errs[i] = conn.CreateStream(h)
	}
	return conn, errs
}

// Streams a viewer is not entitled to, duplicates and unknown types are
// refused.
func TestSPDYStreamAdmission(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		types       []string
		refused     int // index of the first stream refused; -1 none
	}{
		{"requested streams", "stdout=true&tty=true", []string{streamError, streamStdout, streamResize}, -1},
		{"stdin not requested", "stdout=true", []string{streamError, streamStdin}, 1},
		{"second stdout", "stdout=true&stdin=true", []string{streamError, streamStdout, streamStdout}, 2},
		{"resize without tty", "stdout=true&stdin=true", []string{streamError, streamResize}, 1},
		{"stderr under tty", "stdout=true&stderr=true&tty=true", []string{streamError, streamStderr}, 1},
		{"unknown type", "stdout=true&stdin=true", []string{"bogus"}, 0},
		{"after set-up", "stdout=true", []string{streamError, streamStdout, streamStdin}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := spdyServer(t, false)
			conn, errs := openStreams(t, srv, tc.query, tc.types...)
			defer conn.Close()
			for i, err := range errs {
				if want := tc.refused < 0 || i != tc.refused; (err == nil) != want {
					t.Errorf("stream %d (%s): error %v, want accepted=%v", i, tc.types[i], err, want)
				}
			}
		})
	}
}

// A client that keeps opening streams it may not have loses its
// connection.
func TestSPDYRefusalsEndTheConnection(t *testing.T) {
	srv, r := spdyServer(t, true)
	types := []string{streamError}
	for range maxRefused {
		types = append(types, streamStdin)
	}
	conn, _ := openStreams(t, srv, "stdout=true", types...)
	defer conn.Close()
	select {
	case <-conn.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection stayed open after %d refused streams", maxRefused)
	}
	if _, _, served := r.got(); served != 0 {
		t.Fatal("the relay ran")
	}
}

// One endless resize message ends the viewer's resize stream after a
// bounded read; the viewer's memory does not grow with it.
func TestReadSizesBounded(t *testing.T) {
	src := &countingReader{r: io.MultiReader(strings.NewReader(`{"Width":80,"Height":24}{"Width":`), endless(' '))}
	sizes := make(chan wire.Size, 1)
	done := make(chan struct{})
	go func() { readSizes(src, sizes); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("readSizes still reading an endless message")
	}
	if sz, ok := <-sizes; !ok || sz != (wire.Size{Cols: 80, Rows: 24}) {
		t.Errorf("first size %v (%v), want 80x24", sz, ok)
	}
	if _, ok := <-sizes; ok {
		t.Error("sizes not closed")
	}
	if src.n > 2*maxResizeMessage {
		t.Errorf("read %d bytes of the stream, want at most %d", src.n, 2*maxResizeMessage)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// Refused attaches leave no goroutine behind once their connections close.
func TestSPDYRefusedStreamsLeakNothing(t *testing.T) {
	srv, _ := spdyServer(t, true)
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := settle()
	for range 20 {
		conn, errs := openStreams(t, srv, "stdout=true", streamError, streamStdin, streamStdin, streamResize)
		for i, err := range errs[1:] {
			if err == nil {
				t.Fatalf("stream %d accepted", i+1)
			}
		}
		conn.Close()
	}
	srv.CloseClientConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := settle()
		if n <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
