// Package attach serves a session's terminal to one viewer: it relays
// between the viewer's streams (stdin, stdout, resize) and the session's
// NATS subjects, so any replica can serve any session.
package attach

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Relay connects viewers to sessions through NATS.
type Relay struct {
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// StallTimeout is how long a write to a viewer may block before the
	// viewer is disconnected (0: DefaultStallTimeout).
	StallTimeout time.Duration
	// local is this replica's exec side, once it runs (SetLocal).
	local atomic.Pointer[localHolder]
}

// LocalSessions is what the attach side needs of the exec side running in
// the same replica, for its fast path: input straight to a session's exec,
// resizes straight to its terminal, and live output straight from its
// reader, skipping NATS. Each reports false when this replica does not run
// the session, and the relay goes through NATS instead. pkg/bridge's
// Bridge implements it.
type LocalSessions interface {
	Type(subj wire.Subjects, p []byte) bool
	Resize(subj wire.Subjects, sz wire.Size) bool
	// Follow sends the session's output frames to ch (skipping, never
	// waiting, when ch is full) until stop is called.
	Follow(subj wire.Subjects, ch chan<- wire.Frame) (stop func(), ok bool)
}

type localHolder struct{ LocalSessions }

// SetLocal tells the relay about this replica's exec side: the sessions it
// runs are served without NATS hops for input and live output.
func (r *Relay) SetLocal(l LocalSessions) { r.local.Store(&localHolder{l}) }

// localSessions is this replica's exec side, or one that runs nothing.
func (r *Relay) localSessions() LocalSessions {
	if h := r.local.Load(); h != nil && h.LocalSessions != nil {
		return h.LocalSessions
	}
	return noLocal{}
}

type noLocal struct{}

func (noLocal) Type(wire.Subjects, []byte) bool                        { return false }
func (noLocal) Resize(wire.Subjects, wire.Size) bool                   { return false }
func (noLocal) Follow(wire.Subjects, chan<- wire.Frame) (func(), bool) { return nil, false }

// liveQueue is how many fast-path frames may wait for a viewer; more are
// skipped and come from JetStream instead.
const liveQueue = 64

// Viewer is one attached client.
type Viewer struct {
	User string
	// In is the viewer's input, nil for none.
	In io.Reader
	// Typing: the viewer may type, through In or through Type (a
	// WebSocket viewer's input is handed over frame by frame).
	Typing bool
	// Out receives the terminal's output: the scrollback first.
	Out io.Writer
	// Resize carries the viewer's terminal size changes; nil for none.
	Resize <-chan wire.Size
	// Since is how many bytes of the output the viewer has already seen
	// (a reconnect): output resumes at the next byte.
	Since uint64
	// Abort breaks the viewer's connection. A write to a viewer that has
	// stopped reading blocks until the connection closes: this is how a
	// stalled viewer is let go (nil: wait for the write).
	Abort func()
}

// Closed is how the session ended, as its control subject said.
type Closed struct {
	Reason   string
	Message  string
	ExitCode *int32
}

// ErrSlowViewer ends a viewer that has stopped reading its output: a write
// to it blocked for the stall timeout.
var ErrSlowViewer = errors.New("viewer stalled: output not read")

const (
	// DefaultStallTimeout is how long a write to a viewer may block before
	// the viewer is let go.
	DefaultStallTimeout = 10 * time.Second
	// consumerBytes bounds the output a viewer's JetStream consumer
	// fetches ahead of the viewer.
	consumerBytes = 1 << 20
)

// Serve relays between v and the session with subjects subj until the
// session closes (the result says how) or ctx ends.
func (r *Relay) Serve(ctx context.Context, subj wire.Subjects, v Viewer) (*Closed, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	local := r.localSessions()
	frames, stopFollowing, err := r.follow(ctx, subj, cancel)
	if err != nil {
		return nil, err
	}
	defer stopFollowing()
	if v.Abort != nil {
		stop := context.AfterFunc(ctx, func() {
			if errors.Is(context.Cause(ctx), ErrSlowViewer) {
				v.Abort()
			}
		})
		defer stop()
	}
	live, stopLive, err := r.liveOutput(subj, local)
	if err != nil {
		return nil, err
	}
	defer stopLive()
	mode := metrics.ReadOnly
	if v.Typing || v.In != nil {
		mode = metrics.ReadWrite
	}
	metrics.ViewersAttached.WithLabelValues(mode).Inc()
	defer metrics.ViewersAttached.WithLabelValues(mode).Dec()
	p := presence{conn: r.Conn, subj: subj, id: viewerID(), user: v.User, mode: mode}
	p.announce(wire.Attached)
	defer p.announce(wire.Detached)
	if v.In != nil {
		go r.pumpInput(subj, v.In, cancel)
	}
	// A viewer is never waited for by anyone else, but a write to one
	// that stopped reading blocks its own relay: after the stall timeout,
	// let it go (Abort breaks the write).
	stallTimeout := r.StallTimeout
	if stallTimeout == 0 {
		stallTimeout = DefaultStallTimeout
	}
	stall := time.AfterFunc(time.Hour, func() { cancel(ErrSlowViewer) })
	stall.Stop()
	defer stall.Stop()
	out := &resumer{w: watched{w: v.Out, stall: stall, timeout: stallTimeout}, next: v.Since}
	defer out.stop()
	var resize <-chan wire.Size = v.Resize
	refresh := time.NewTicker(wire.ViewerRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-refresh.C:
			p.announce(wire.Attached)
		case sz, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			r.resize(subj, local, sz)
		case f := <-live:
			if err := out.live(f); err != nil {
				return nil, writeErr(ctx, err)
			}
		case <-out.expired():
			if err := out.giveUp(); err != nil {
				return nil, writeErr(ctx, err)
			}
		case m := <-frames:
			if m.Subject() == subj.Out() {
				if err := out.write(m.Data(), m.Headers().Get(wire.OffsetHeader)); err != nil {
					return nil, writeErr(ctx, err)
				}
				continue
			}
			var ev wire.Event
			if json.Unmarshal(m.Data(), &ev) == nil && ev.Type == wire.EventClosed {
				return &Closed{Reason: ev.Reason, Message: ev.Message, ExitCode: ev.ExitCode}, nil
			}
		}
	}
}

// follow delivers the session's output frames and control events from
// JetStream, from the first kept, pulled as the viewer takes them: a viewer
// that reads slowly slows only its own consumer, whose buffer is bounded
// in bytes. A broken consumer cancels the viewer.
func (r *Relay) follow(ctx context.Context, subj wire.Subjects, cancel context.CancelCauseFunc) (<-chan jetstream.Msg, func(), error) {
	cons, err := r.JetStream.OrderedConsumer(ctx, wire.IOStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj.Out(), subj.Ctl()},
	})
	if err != nil {
		metrics.JetStreamErrors.WithLabelValues(metrics.Follow).Inc()
		return nil, nil, fmt.Errorf("follow %s: %w", subj.Out(), err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(consumerBytes))
	if err != nil {
		metrics.JetStreamErrors.WithLabelValues(metrics.Follow).Inc()
		return nil, nil, fmt.Errorf("follow %s: %w", subj.Out(), err)
	}
	frames := make(chan jetstream.Msg, 8)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					metrics.JetStreamErrors.WithLabelValues(metrics.Follow).Inc()
					cancel(fmt.Errorf("follow %s: %w", subj.Out(), err))
				}
				return
			}
			select {
			case frames <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return frames, it.Stop, nil
}

// liveOutput delivers output as it is produced, for latency: from the
// local exec side when this replica runs the session, else from a core
// NATS subscription. Either skips frames rather than queue them when the
// viewer is behind; the JetStream consumer (follow) delivers every frame
// and fills in.
func (r *Relay) liveOutput(subj wire.Subjects, local LocalSessions) (<-chan wire.Frame, func(), error) {
	live := make(chan wire.Frame, liveQueue)
	if stop, ok := local.Follow(subj, live); ok {
		return live, stop, nil
	}
	// A callback rather than a channel subscription: a full channel
	// would count as a slow consumer and be logged.
	sub, err := r.Conn.Subscribe(subj.Out(), func(m *nats.Msg) {
		offset, err := strconv.ParseUint(m.Header.Get(wire.OffsetHeader), 10, 64)
		if err != nil {
			return
		}
		select {
		case live <- wire.Frame{Offset: offset, Data: m.Data}:
		default:
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("follow %s: %w", subj.Out(), err)
	}
	return live, func() { _ = sub.Unsubscribe() }, nil
}

// pumpInput sends the viewer's input to the session until the viewer
// closes it (it may still watch) or the session's input is gone (which
// cancels the viewer). It ends with the viewer's connection.
func (r *Relay) pumpInput(subj wire.Subjects, in io.Reader, cancel context.CancelCauseFunc) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if perr := r.Type(subj, append([]byte(nil), buf[:n]...)); perr != nil {
				cancel(perr)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// resize sets the session's terminal size: straight to its exec when this
// replica runs it, else on its resize subject.
func (r *Relay) resize(subj wire.Subjects, local LocalSessions, sz wire.Size) {
	if local.Resize(subj, sz) {
		return
	}
	data, _ := json.Marshal(sz)
	_ = r.Conn.Publish(subj.Resize(), data)
}

// presence announces one viewer on the session's viewers subject.
type presence struct {
	conn *nats.Conn
	subj wire.Subjects
	id   string
	user string
	mode string
}

func (p presence) announce(state wire.PresenceState) {
	data, _ := json.Marshal(wire.Presence{ID: p.id, State: state, User: p.user, Mode: p.mode})
	_ = p.conn.Publish(p.subj.Viewers(), data)
}

// watched is a viewer's output with a stall watchdog around each write.
type watched struct {
	w       io.Writer
	stall   *time.Timer
	timeout time.Duration
}

func (w watched) Write(p []byte) (int, error) {
	w.stall.Reset(w.timeout)
	defer w.stall.Stop()
	return w.w.Write(p)
}

// writeErr is why a write to the viewer failed: the viewer was let go, or
// the write's own error.
func writeErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// Type sends a viewer's input to the session with subjects subj: straight
// to its exec when this replica runs it, else on its input subject. The
// caller owns ordering: one goroutine per viewer.
func (r *Relay) Type(subj wire.Subjects, p []byte) error {
	if r.localSessions().Type(subj, p) {
		return nil
	}
	return r.Conn.Publish(subj.In(), p)
}

func viewerID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
