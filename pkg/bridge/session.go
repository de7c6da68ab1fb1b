package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/nats-io/nats.go"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

const (
	maxFrame    = wire.MaxFrame
	maxBuffered = 1 << 20
	// maxInputQueued bounds the input bytes queued towards a process that
	// is not reading (a terminal's kernel buffer holds 4 KiB): more is
	// dropped, and a paste into a stuck process cannot grow the replica.
	maxInputQueued = 256 << 10
	maxViewers     = 1024 // viewer IDs tracked per session
	pingEvery      = 30 * time.Second
	// inputHold is the longest typed-ahead input waits for the process's
	// first output before it is let through. Five seconds, not one: on a
	// loaded two-core node bash took over a second to start, and input
	// let through at one second reached a terminal the runtime had not
	// sized yet (stty size saw 0x0). A process that never writes (cat)
	// gets its typed-ahead input that much later.
	inputHold = 5 * time.Second
	// resizeSettle is how long input that was typed ahead waits behind
	// the size sent again at the process's start (openInput). The size
	// goes to the runtime on a stream of its own and the input on stdin:
	// nothing orders them, and CI saw a typed-ahead stty size run before
	// the resize took (busybox's stty: "standard input", the terminal 0x0).
	// The runtime gives no sign that it took the size; a quarter of a
	// second, once per session, is the price.
	resizeSettle = 250 * time.Millisecond
	shellCache   = 4096
	probeTimeout = 10 * time.Second
)

// session is one session this replica runs: its exec, its input queue, its
// viewers and its timers. Its only long-lived goroutine is the one that
// runs the exec and reads its output (runClaimed); input, output publishing and
// maintenance run in goroutines that exist only while there is work.
type session struct {
	b      *Bridge
	obj    *v1alpha1.TerminalSession
	subj   wire.Subjects
	ctx    context.Context
	cancel context.CancelCauseFunc
	tty    bool

	idle, maxDuration, detachGrace time.Duration
	started                        time.Time
	activity                       atomic.Int64 // unix nanos of the last input or output
	inputAt                        atomic.Int64 // monotonic() of the first input not yet answered by output, or 0
	leaseRev                       atomic.Uint64
	// leaseSent is when the last renewal that landed was sent
	// (monotonic()): the next is due LeaseDuration/3 after it.
	leaseSent atomic.Int64
	// renewing: a renewal is in flight (at most one per session).
	renewing atomic.Bool
	// leaseTimer stops the exec when the lease may lapse: LeaseDuration
	// less a fifth after the last renewal known to have landed was sent
	// (the bucket's TTL counts from when it was stored, which is later).
	leaseTimer *time.Timer
	busy       atomic.Bool // maintenance in flight
	// bytesIn and bytesOut are what reached the process and what it
	// wrote, for the log line at close.
	bytesIn, bytesOut atomic.Int64

	mu         sync.Mutex
	stream     execStream // nil until the exec is open
	input      [][]byte
	inputBytes int
	size       *wire.Size
	writing    bool
	broken     bool
	// inputOpen: the process has started writing (or inputHold passed).
	// Until then only the terminal size is written: the runtime applies a
	// resize asynchronously, and input typed ahead would reach the shell
	// before its terminal has the spec's size.
	inputOpen bool
	// applied is the last size taken for the stream: sent again once the
	// process has started (see openInput), which resent says.
	applied *wire.Size
	resent  bool
	// settle: the next write sends the size sent again, then waits
	// resizeSettle before any input.
	settle        bool
	viewers       map[string]viewer
	unviewedSince time.Time
	lastStatus    time.Time
	lastPing      time.Time
	wroteActivity time.Time
	wroteViewers  int32
	out           *output
	followers     followers
	// rec records the transcript once the exec is open (nil: none).
	rec *recorder
	// drainBy is when the replica's drain closes the session (zero: not
	// draining); drainTold, whether its viewers have been told.
	drainBy   time.Time
	drainTold bool
}

func (s *session) touch() { s.activity.Store(s.b.clock.Now().UnixNano()) }

func (s *session) lastActive() time.Time { return time.Unix(0, s.activity.Load()) }

// queueInput queues input for the process.
func (s *session) queueInput(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enqueue(p) {
		s.startWriter()
	}
}

// enqueue adds p to the input queue if it fits (caller holds mu).
func (s *session) enqueue(p []byte) bool {
	if s.inputBytes+len(p) > maxInputQueued {
		// The process is not reading: refuse rather than queue without bound.
		klog.V(2).InfoS("Dropping input: the process is not reading", "session", klog.KObj(s.obj), "bytes", len(p))
		return false
	}
	s.input = append(s.input, p)
	s.inputBytes += len(p)
	return true
}

// writeInputNow queues input and, when no writer runs, writes it in the caller's
// goroutine: a local viewer's keystroke reaches the exec without a hand-off.
// Not for the router, which must never wait on one session.
func (s *session) writeInputNow(p []byte) {
	s.mu.Lock()
	if !s.enqueue(p) {
		s.mu.Unlock()
		return
	}
	if s.stream == nil || s.writing || s.broken || !s.inputOpen {
		s.startWriter()
		s.mu.Unlock()
		return
	}
	s.writing = true
	s.mu.Unlock()
	s.write()
}

// resized sets the terminal size, coalesced to the latest.
func (s *session) resized(sz wire.Size) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size = &sz
	s.startWriter()
}

// startWriter starts the writer if there is something to write (caller holds mu).
func (s *session) startWriter() {
	if s.stream != nil && !s.writing && !s.broken && (s.inputOpen && len(s.input) > 0 || s.size != nil) {
		s.writing = true
		go s.write()
	}
}

// write sends queued resizes and input to the process, in order, until the
// queue is empty.
func (s *session) write() {
	for {
		s.mu.Lock()
		size, stream, rec := s.size, s.stream, s.rec
		var in [][]byte
		if s.inputOpen {
			in = s.input
			s.input, s.inputBytes = nil, 0
		}
		if size != nil {
			s.applied = size
		}
		s.size = nil
		settle := s.settle && size != nil
		if size != nil {
			s.settle = false
		}
		if size == nil && len(in) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		var err error
		if size != nil {
			// Recorded first, as input is: the redraw it causes must
			// not come before it in the transcript.
			rec.resized(*size)
			err = stream.Resize(*size)
			if settle && len(in) > 0 {
				time.Sleep(resizeSettle)
			}
		}
		for _, p := range in {
			if err != nil {
				break
			}
			s.touch()
			var n int
			// Stamped before the write: a fast echo may come back
			// before Write returns. Recorded before it too, so that a
			// transcript's input comes before its echo.
			s.inputAt.CompareAndSwap(0, monotonic())
			rec.typed(p)
			n, err = stream.Write(p)
			metrics.InputBytes.Add(float64(n))
			s.bytesIn.Add(int64(n))
		}
		if err != nil {
			// The stream is broken; its reader ends the session.
			s.mu.Lock()
			s.broken, s.writing, s.input, s.inputBytes = true, false, nil, 0
			s.mu.Unlock()
			klog.V(2).InfoS("Writing to the exec failed", "session", klog.KObj(s.obj), "err", err)
			return
		}
	}
}

// openInput is called at the process's first output (or inputHold): it
// lets queued and further input through, behind the terminal's size sent
// once more. The runtime may have dropped the first: containerd ignores a
// resize that reaches an exec before its process has a console, and the
// terminal then stays 0x0 until the next resize (CI's stty size saw it,
// even with input held for the prompt). That holds for a viewer's resize
// sent early as much as for the spec's size. By now the process runs,
// and the writer sends the size before the input.
func (s *session) openInput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resent {
		return
	}
	s.resent, s.inputOpen = true, true
	if s.size == nil && s.applied != nil {
		sz := *s.applied
		s.size = &sz
	}
	s.settle = s.size != nil
	s.startWriter()
}

// presence records a viewer's announcement.
func (s *session) presence(p wire.Presence) {
	if p.ID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.State {
	case wire.Attached:
		v, known := s.viewers[p.ID]
		if known || len(s.viewers) < maxViewers {
			if !known {
				v = viewer{user: p.User, mode: p.Mode}
				s.b.recordViewer(s.obj, v.user, "ViewerAttached", "Attach", "%s attached (%s)", who(v.user), mode(v.mode))
			}
			v.seen = s.b.clock.Now()
			s.viewers[p.ID] = v
			s.unviewedSince = time.Time{}
		}
	case wire.Detached:
		if v, known := s.viewers[p.ID]; known {
			delete(s.viewers, p.ID)
			s.b.recordViewer(s.obj, v.user, "ViewerDetached", "Detach", "%s detached", who(v.user))
		}
		if len(s.viewers) == 0 && s.unviewedSince.IsZero() {
			s.unviewedSince = s.b.clock.Now()
		}
	}
}

// viewer is one viewer connection as its announcements say.
type viewer struct {
	seen       time.Time
	user, mode string
}

// who and mode are a viewer's name and mode in an event, whatever a
// replica of another version announced.
func who(user string) string {
	if user == "" {
		return "a viewer"
	}
	return strconv.Quote(user)
}

func mode(m string) string {
	if m == "" {
		return "mode unknown"
	}
	return m
}

// viewerCount forgets viewers silent for wire.ViewerTTL and counts the rest
// (caller holds mu).
func (s *session) viewerCount(now time.Time) int {
	for id, v := range s.viewers {
		if seen := v.seen; now.Sub(seen) >= wire.ViewerTTL {
			delete(s.viewers, id)
			s.b.recordViewer(s.obj, v.user, "ViewerDetached", "Detach", "%s stopped answering (gone for %s)", who(v.user), wire.ViewerTTL)
			if len(s.viewers) == 0 && s.unviewedSince.IsZero() {
				s.unviewedSince = seen.Add(wire.ViewerTTL)
			}
		}
	}
	return len(s.viewers)
}

// expired says why the session must close now, if it must.
func (s *session) expired(now time.Time) *closeCause {
	s.mu.Lock()
	viewers := s.viewerCount(now)
	unviewed := s.unviewedSince
	s.mu.Unlock()
	switch {
	case s.maxDuration > 0 && now.Sub(s.started) >= s.maxDuration:
		return &closeCause{reason: v1alpha1.ReasonMaxDuration, message: fmt.Sprintf("the session reached its maximum duration of %s", s.maxDuration)}
	case s.idle > 0 && now.Sub(s.lastActive()) >= s.idle:
		return &closeCause{reason: v1alpha1.ReasonIdleTimeout, message: fmt.Sprintf("no input or output for %s", s.idle)}
	case s.detachGrace > 0 && viewers == 0 && now.Sub(unviewed) >= s.detachGrace:
		return &closeCause{reason: v1alpha1.ReasonDetached, message: fmt.Sprintf("no viewer attached for %s", s.detachGrace)}
	}
	return nil
}

// renew extends the session's lease. A renewal that gets no answer (NATS
// reconnecting, a stream leader being elected) is not a lost lease: the
// next one, a renewal round later, may land, and leaseTimer stops the exec
// if none does in time.
// The exec stops at once when another replica holds the lease or nobody
// does (another replica will mark the session BridgeLost).
func (s *session) renew() {
	uid := string(s.obj.UID)
	timeout := renewTimeout(s.b.cfg.LeaseDuration)
	sent := time.Now()
	next, err := s.b.leases.renew(s.ctx, timeout, uid, s.leaseRev.Load())
	if err == nil {
		s.leaseRenewed(next, sent)
		return
	}
	if s.ctx.Err() != nil {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		// No answer says nothing, and asking would wait as long again.
		// The next try, a round later, fails at once with a revision
		// mismatch if this one landed after all, and finds out below.
		klog.V(2).InfoS("Renewing a session's lease got no answer; trying again", "session", klog.KObj(s.obj), "err", err)
		return
	}
	held, rev, gerr := s.b.leases.holds(s.ctx, timeout, uid)
	if held {
		// Ours at rev: a renewal that landed after all, its answer lost.
		// Written again, so that the lease runs from a time known here.
		sent = time.Now()
		if next, err = s.b.leases.renew(s.ctx, timeout, uid, rev); err == nil {
			s.leaseRenewed(next, sent)
			return
		}
	}
	if gerr == nil && !held {
		klog.ErrorS(err, "Lost a session's lease; stopping its exec", "session", klog.KObj(s.obj))
		s.cancel(errLeaseLost)
		return
	}
	klog.V(2).InfoS("Renewing a session's lease got no answer; trying again", "session", klog.KObj(s.obj), "err", err)
}

// renewDue says whether the lease is due a renewal: LeaseDuration/3
// after the last one that landed, and at every round after that until one
// lands.
func (s *session) renewDue(now int64) bool {
	return time.Duration(now-s.leaseSent.Load()) >= s.b.cfg.LeaseDuration/3
}

// renewTimeout is how long one renewal waits for NATS's answer: short, so
// that a renewal lost in an outage is tried again a round later, several
// times before the lease timer's margin (a fifth of the lease) runs out.
func renewTimeout(lease time.Duration) time.Duration {
	return lease / 10
}

// renewRound is how often the renewals due are sent.
func renewRound(lease time.Duration) time.Duration {
	return min(time.Second, lease/6)
}

// leaseRenewed records a renewal that landed at rev, sent at sent.
func (s *session) leaseRenewed(rev uint64, sent time.Time) {
	s.leaseRev.Store(rev)
	s.leaseSent.Store(monotonic() - int64(time.Since(sent)))
	s.leaseTimer.Reset(time.Until(sent.Add(s.b.cfg.LeaseDuration - s.b.cfg.LeaseDuration/5)))
}

// startLeaseTimer arms leaseTimer for a lease claimed by a request sent at
// sent.
func (s *session) startLeaseTimer(sent time.Time) {
	s.leaseSent.Store(monotonic() - int64(time.Since(sent)))
	s.leaseTimer = time.AfterFunc(time.Until(sent.Add(s.b.cfg.LeaseDuration-s.b.cfg.LeaseDuration/5)), func() {
		if s.ctx.Err() == nil {
			klog.ErrorS(nil, "A session's lease may lapse, no renewal having landed; stopping its exec", "session", klog.KObj(s.obj))
			s.cancel(errLeaseLost)
		}
	})
}

// due says whether the session has maintenance to do.
func (s *session) due(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream != nil && (now.Sub(s.lastPing) >= pingEvery || now.Sub(s.lastStatus) >= s.b.cfg.StatusInterval)
}

// maintain does a session's periodic work that involves I/O: keep its
// connection alive, and write lastActivityTime and viewers (at most every
// StatusInterval, and only when they changed). It runs on one of the
// bridge's workers, never twice at once for a session.
func (s *session) maintain(now time.Time) {
	defer s.busy.Store(false)
	s.mu.Lock()
	stream := s.stream
	viewers := int32(s.viewerCount(now))
	ping := now.Sub(s.lastPing) >= pingEvery
	if ping {
		s.lastPing = now
	}
	write := now.Sub(s.lastStatus) >= s.b.cfg.StatusInterval
	if write {
		s.lastStatus = now
	}
	s.mu.Unlock()
	if stream == nil {
		return
	}
	if ping {
		if err := stream.Ping(); err != nil {
			klog.V(2).InfoS("Keepalive ping failed", "session", klog.KObj(s.obj), "err", err)
		}
	}
	last := s.lastActive()
	if !write || !last.After(s.wroteActivity) && viewers == s.wroteViewers {
		return
	}
	s.wroteActivity, s.wroteViewers = last, viewers
	t := metav1.NewTime(last)
	s.b.updateStatus(s.ctx, s.obj, func(st *v1alpha1.TerminalSessionStatus) bool {
		if st.Phase != v1alpha1.TerminalSessionRunning {
			return false
		}
		st.LastActivityTime, st.Viewers = &t, viewers
		return true
	})
}
