package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/kubectl/pkg/util/term"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned/scheme"
	"github.com/meshery/terminal-apiserver/pkg/resume"
)

// attach streams the session to this terminal, in raw mode with resizes
// when it is one, and returns the remote exit code as an ExitError. When
// the connection drops while the session runs, it reattaches where the
// output left off (since=N): nothing lost, nothing twice.
//
// Every attach names the session's UID (query parameter uid): a session
// deleted and created again under the same name, by anyone, is another
// session, and the plugin never types into it.
func (o *options) attach(ctx context.Context, c *clients, name string, uid types.UID, stdin bool) error {
	tty := term.TTY{In: o.streams.In, Out: o.streams.Out, Raw: stdin}
	out := &counter{w: o.streams.Out, errOut: o.streams.ErrOut}
	var in *inputPump
	if stdin {
		in = newInputPump(o.streams.In)
	}
	var sizes *latestSize
	if tty.IsTerminalIn() {
		sizes = watchSize(&tty)
	} else {
		tty.Raw = false
	}
	return tty.Safe(func() error {
		var lost time.Time // when the connection last dropped
		for first := true; ; first = false {
			started, before := time.Now(), out.written()
			err := o.stream(ctx, c, name, uid, in, out, sizes)
			if err == nil || ctx.Err() != nil {
				return err
			}
			var status apierrors.APIStatus
			var exit utilexec.ExitError
			if errors.As(err, &status) || errors.As(err, &exit) {
				return err // refused, or the process's exit code
			}
			if strings.HasPrefix(err.Error(), "session closed (") {
				return err // the final status of an attach to a session that ended: why
			}
			// The session may have ended (closed, deleted): say how, and
			// stop. Otherwise the connection broke: reattach.
			if err := o.ended(ctx, c, name, uid); err != nil {
				return err
			}
			// A connection that never held (refused, or broken at once)
			// is an error to show, not one to retry.
			held := out.written() > before || time.Since(started) > 5*time.Second
			if first && !held || o.reconnectTimeout <= 0 {
				return err
			}
			if held {
				lost = time.Now()
				fmt.Fprintf(o.streams.ErrOut, "\r\n[kubectl terminal: connection lost (%s); reconnecting...]\r\n", printable(err.Error()))
				out.announce("[kubectl terminal: reconnected]\r\n")
			}
			if time.Since(lost) > o.reconnectTimeout {
				return fmt.Errorf("connection to session %s lost for %s; it may still run: kubectl terminal attach %s", name, o.reconnectTimeout, name)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	})
}

// ended is how the session ended (its exit code, or why it closed or that
// it was deleted), nil while it runs or when that cannot be told.
func (o *options) ended(ctx context.Context, c *clients, name string, uid types.UID) error {
	s, err := c.sessions.TerminalV1alpha1().TerminalSessions(c.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) || err == nil && (s.DeletionTimestamp != nil || s.UID != uid):
		return fmt.Errorf("session %s was deleted", name)
	case err != nil:
		return nil // cut off from the cluster too: keep trying
	case s.Status.Phase == v1alpha1.TerminalSessionClosed:
		if s.Status.ExitCode != nil {
			return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", *s.Status.ExitCode), Code: int(*s.Status.ExitCode)}
		}
		return fmt.Errorf("session %s closed (%s): %s", name, s.Status.Reason, s.Status.Message)
	}
	return nil
}

// stream is one attach: output from where out's count ended on.
func (o *options) stream(ctx context.Context, c *clients, name string, uid types.UID, in *inputPump, out *counter, sizes *latestSize) error {
	req := c.sessions.TerminalV1alpha1().RESTClient().Post().Namespace(c.namespace).Resource("terminalsessions").
		Name(name).SubResource("attach").VersionedParams(&v1alpha1.TerminalSessionAttachOptions{
		Stdin: in != nil, Stdout: true, TTY: true, Since: int64(out.reattach()), UID: string(uid),
	}, scheme.ParameterCodec)
	exec, err := executor(c.cfg, req.URL())
	if err != nil {
		return err
	}
	// This attach's own view of stdin and of the window size ends with it,
	// so that a dead connection's reader does not take what the next one
	// should get.
	done := make(chan struct{})
	defer close(done)
	opts := remotecommand.StreamOptions{Stdout: out, Tty: true}
	if in != nil {
		opts.Stdin = &attemptInput{pump: in, done: done}
	}
	if sizes != nil {
		opts.TerminalSizeQueue = &attemptSizes{sizes: sizes, done: done}
	}
	return exec.StreamWithContext(ctx, opts)
}

// executor speaks WebSocket, falling back to SPDY, as kubectl exec does.
func executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// counter counts the output bytes shown: where a reattach resumes. The
// server's notice of lost output counts as the bytes it stands for.
type counter struct {
	w, errOut io.Writer
	mu        sync.Mutex
	n         resume.Counter
	notice    string // shown before the next output
}

func (c *counter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notice != "" {
		_, _ = io.WriteString(c.errOut, c.notice)
		c.notice = ""
	}
	n, err := c.w.Write(p)
	c.n.Count(p[:n])
	return n, err
}

func (c *counter) written() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n.Offset()
}

// reattach starts the count of a new attach where the last one ended (a
// notice is never split between two).
func (c *counter) reattach() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n.Start(c.n.Offset())
	return c.n.Offset()
}

// announce shows msg once output flows again.
func (c *counter) announce(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notice = msg
}

// inputPump reads stdin for every attach of the session in turn: keys
// typed while reconnecting wait for the next attach.
type inputPump struct {
	chunks chan []byte // closed at the input's end
}

func newInputPump(r io.Reader) *inputPump {
	p := &inputPump{chunks: make(chan []byte, 64)}
	go func() {
		defer close(p.chunks)
		for {
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			if n > 0 {
				p.chunks <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

// attemptInput is one attach's stdin: the pump's input until done.
type attemptInput struct {
	pump *inputPump
	done <-chan struct{}
	rest []byte
}

func (a *attemptInput) Read(b []byte) (int, error) {
	if len(a.rest) == 0 {
		select {
		case chunk, ok := <-a.pump.chunks:
			if !ok {
				return 0, io.EOF
			}
			a.rest = chunk
		case <-a.done:
			return 0, io.EOF
		}
	}
	n := copy(b, a.rest)
	a.rest = a.rest[n:]
	return n, nil
}

// latestSize is the terminal's current size, following resizes.
type latestSize struct {
	mu      sync.Mutex
	size    *remotecommand.TerminalSize
	changed chan struct{} // closed and replaced at each change
}

func watchSize(tty *term.TTY) *latestSize {
	l := &latestSize{changed: make(chan struct{})}
	if sz := tty.GetSize(); sz != nil {
		l.size = &remotecommand.TerminalSize{Width: sz.Width, Height: sz.Height}
	}
	q := tty.MonitorSize(tty.GetSize()) // stopped by tty.Safe
	go func() {
		for {
			sz := q.Next()
			if sz == nil {
				return
			}
			l.mu.Lock()
			l.size = &remotecommand.TerminalSize{Width: sz.Width, Height: sz.Height}
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *latestSize) get() (*remotecommand.TerminalSize, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.changed
}

// attemptSizes is one attach's size queue: the current size first, then
// each change, until done.
type attemptSizes struct {
	sizes *latestSize
	done  <-chan struct{}
	next  <-chan struct{} // nil before the first size
}

func (a *attemptSizes) Next() *remotecommand.TerminalSize {
	if a.next != nil {
		select {
		case <-a.next:
		case <-a.done:
			return nil
		}
	}
	sz, changed := a.sizes.get()
	a.next = changed
	if sz == nil {
		return a.Next()
	}
	return sz
}
