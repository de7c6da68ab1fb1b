package attach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// SPDY subprotocols served, newest first. v3 added the resize stream, v4 the
// exit code in a JSON status on the error stream.
const (
	spdyV4 = "v4.channel.k8s.io"
	spdyV3 = "v3.channel.k8s.io"
	spdyV2 = "v2.channel.k8s.io"
	spdyV1 = "channel.k8s.io"
)

var spdyProtocols = []string{spdyV4, spdyV3, spdyV2, spdyV1}

// Stream types, from each SPDY stream's streamType header.
const (
	streamTypeHeader = "streamType"
	streamError      = "error"
	streamStdin      = "stdin"
	streamStdout     = "stdout"
	streamStderr     = "stderr"
	streamResize     = "resize"
)

// streamSetupTimeout bounds how long a client may take to open the streams
// it asked for, as the kubelet's streaming server does.
const streamSetupTimeout = 30 * time.Second

// ServeSPDY speaks the server side of pods/attach over SPDY (v4 down to the
// unversioned channel.k8s.io). relay runs the viewer until its connection
// closes or the session ends; its error becomes the final status on the
// error stream.
//
// This is not the kubelet's streaming server (k8s.io/cri-streaming), on
// purpose. That one counts streams, not their types: a client that asks for
// stdout only may open a stdin stream instead and type. Here the streams a
// viewer may open are decided by its query and its access together, and
// anything else is refused when it is opened (the stream is reset, which
// client-go reports as a failed attach): stdin only with stdin in the query
// and a viewer that may type; resize only with tty in the query; one stream
// of each type. An observer's resize stream is accepted, so read-only
// clients that always send sizes still work, but what it carries is read
// with a bound and dropped.
func ServeSPDY(w http.ResponseWriter, req *http.Request, opts Options,
	relay func(ctx context.Context, in io.Reader, out io.Writer, resize <-chan wire.Size) error) {
	proto, err := httpstream.Handshake(req, w, spdyProtocols)
	if err != nil {
		return // Handshake has answered the request
	}
	if proto == "" {
		proto = spdyV1 // a client that does not negotiate speaks the first version
	}
	a := newAdmission(proto, opts)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, a.admit)
	if conn == nil {
		return // the upgrader has answered the request
	}
	defer conn.Close()
	// No idle timeout: a terminal may be quiet for hours. SPDY clients ping.
	conn.SetIdleTimeout(0)

	streams, err := a.wait(conn.CloseChan(), streamSetupTimeout)
	if err != nil {
		klog.V(2).InfoS("Attach streams not set up", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	// The request's context is not cancelled once the connection is
	// hijacked: the connection closing is how a viewer leaves.
	go func() {
		select {
		case <-conn.CloseChan():
		case <-a.refused:
		case <-ctx.Done():
		}
		cancel()
	}()

	var in io.Reader
	if s := streams[streamStdin]; s != nil {
		in = s
	}
	var out io.Writer = io.Discard
	if s := streams[streamStdout]; s != nil {
		out = s
	}
	sizes := make(chan wire.Size, 1)
	if s := streams[streamResize]; s != nil {
		to := sizes
		if opts.ReadOnly {
			to = nil // read and dropped
			close(sizes)
		}
		go func() {
			defer cancel() // the resize stream ends only with the connection
			readSizes(s, to)
		}()
	} else {
		close(sizes)
	}
	err = relay(ctx, in, out, sizes)
	if s := streams[streamError]; s != nil {
		writeSPDYStatus(s, proto, err)
	}
}

// admission decides, as each stream is opened, whether the viewer may have
// it, and collects the ones it may.
type admission struct {
	allowed map[string]bool

	mu      sync.Mutex
	streams map[string]httpstream.Stream
	replies []<-chan struct{}
	closed  bool          // set up (or given up): every later stream is refused
	arrived chan struct{} // a stream was admitted
	// refused is closed once maxRefused streams were refused: the
	// connection ends, so a client cannot keep the server refusing (and
	// logging) streams. Not at the first: a client learns of a refusal
	// from a reset frame, which a connection closed right after it can
	// drop (the client then waits 30 s for a reply); well-behaved clients
	// close the connection themselves.
	refused      chan struct{}
	refusedCount int
}

// maxRefused is how many streams a connection may have refused.
const maxRefused = 4

func newAdmission(proto string, opts Options) *admission {
	allowed := map[string]bool{streamError: true}
	allowed[streamStdin] = opts.Stdin && !opts.ReadOnly
	allowed[streamStdout] = opts.Stdout
	allowed[streamStderr] = opts.Stderr && !opts.TTY
	allowed[streamResize] = opts.TTY && (proto == spdyV4 || proto == spdyV3)
	return &admission{allowed: allowed, streams: map[string]httpstream.Stream{}, arrived: make(chan struct{}, 1),
		refused: make(chan struct{})}
}

// expected is how many streams a well-behaved client opens.
func (a *admission) expected() int {
	n := 0
	for _, ok := range a.allowed {
		if ok {
			n++
		}
	}
	return n
}

// admit is the connection's stream handler: it runs on the SPDY
// connection's frame workers, several at once, and must never block. An
// error resets the stream.
func (a *admission) admit(s httpstream.Stream, replySent <-chan struct{}) error {
	typ := s.Headers().Get(streamTypeHeader)
	a.mu.Lock()
	defer a.mu.Unlock()
	var err error
	switch {
	case a.closed:
		err = fmt.Errorf("attach: a %q stream opened after set-up is refused", typ)
	case !a.allowed[typ]:
		err = fmt.Errorf("attach: a %q stream is not allowed on this connection", typ)
	case a.streams[typ] != nil:
		err = fmt.Errorf("attach: a second %q stream is refused", typ)
	}
	if err != nil {
		if a.refusedCount++; a.refusedCount == maxRefused {
			close(a.refused)
		}
		return err
	}
	a.streams[typ] = s
	a.replies = append(a.replies, replySent)
	select {
	case a.arrived <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the streams once the client has opened all it asked for and
// their replies are sent (so nothing is written to a stream the client
// does not know yet).
func (a *admission) wait(connClosed <-chan bool, timeout time.Duration) (map[string]httpstream.Stream, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	want := a.expected()
	for {
		a.mu.Lock()
		done := len(a.streams) == want
		a.closed = done
		a.mu.Unlock()
		if done {
			break
		}
		select {
		case <-a.arrived:
		case <-connClosed:
			a.refuseMore()
			return nil, errors.New("connection closed before its streams were opened")
		case <-a.refused:
			a.refuseMore()
			return nil, errors.New("the client kept opening streams it may not have")
		case <-deadline.C:
			a.refuseMore()
			return nil, fmt.Errorf("timed out after %s waiting for the client to open its streams", timeout)
		}
	}
	// Complete: admit changes nothing from here on.
	for _, r := range a.replies {
		select {
		case <-r:
		case <-connClosed:
			return nil, errors.New("connection closed while its streams were opened")
		case <-deadline.C:
			return nil, fmt.Errorf("timed out after %s waiting for the client to open its streams", timeout)
		}
	}
	return a.streams, nil
}

func (a *admission) refuseMore() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

// writeSPDYStatus ends the attach: v4 writes a JSON Status (with the exit
// code), older versions the error's text, nothing on success.
func writeSPDYStatus(s io.Writer, proto string, err error) {
	if proto == spdyV4 {
		doc, _ := json.Marshal(statusOf(err))
		_, _ = s.Write(doc)
		return
	}
	if err != nil {
		_, _ = io.WriteString(s, err.Error())
	}
}
