package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
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
	shellCache     = 4096
	probeTimeout   = 10 * time.Second
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
	leaseRev                       atomic.Uint64
	busy                           atomic.Bool // maintenance in flight

	mu            sync.Mutex
	stream        execStream // nil until the exec is open
	input         [][]byte
	inputBytes    int
	size          *wire.Size
	writing       bool
	broken        bool
	viewers       map[string]time.Time
	unviewedSince time.Time
	lastStatus    time.Time
	lastPing      time.Time
	wroteActivity time.Time
	wroteViewers  int32
	out           *output
	followers     followers
}

func (s *session) touch()                { s.activity.Store(time.Now().UnixNano()) }
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
	if s.stream == nil || s.writing || s.broken {
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
	if s.stream != nil && !s.writing && !s.broken && (len(s.input) > 0 || s.size != nil) {
		s.writing = true
		go s.write()
	}
}

// write sends queued resizes and input to the process, in order, until the
// queue is empty.
func (s *session) write() {
	for {
		s.mu.Lock()
		size, in, stream := s.size, s.input, s.stream
		s.size, s.input, s.inputBytes = nil, nil, 0
		if size == nil && len(in) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		var err error
		if size != nil {
			err = stream.Resize(*size)
		}
		for _, p := range in {
			if err != nil {
				break
			}
			s.touch()
			_, err = stream.Write(p)
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

// presence records a viewer's announcement.
func (s *session) presence(p wire.Presence) {
	if p.ID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p.State {
	case wire.Attached:
		if _, ok := s.viewers[p.ID]; ok || len(s.viewers) < maxViewers {
			s.viewers[p.ID] = time.Now()
			s.unviewedSince = time.Time{}
		}
	case wire.Detached:
		delete(s.viewers, p.ID)
		if len(s.viewers) == 0 && s.unviewedSince.IsZero() {
			s.unviewedSince = time.Now()
		}
	}
}

// viewerCount forgets viewers silent for wire.ViewerTTL and counts the rest
// (caller holds mu).
func (s *session) viewerCount(now time.Time) int {
	for id, seen := range s.viewers {
		if now.Sub(seen) >= wire.ViewerTTL {
			delete(s.viewers, id)
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

// renew extends the session's lease; losing it stops the exec (another
// replica will mark the session BridgeLost).
func (s *session) renew() {
	ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.LeaseDuration/3)
	defer cancel()
	next, err := s.b.leases.renew(ctx, string(s.obj.UID), s.leaseRev.Load())
	if err != nil {
		if s.ctx.Err() == nil {
			klog.ErrorS(err, "Lost a session's lease; stopping its exec", "session", klog.KObj(s.obj))
			s.cancel(errLeaseLost)
		}
		return
	}
	s.leaseRev.Store(next)
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

// subscribe routes the session's input, resize and viewer subjects to the
// bridge's router.
func (s *session) subscribe() ([]*nats.Subscription, error) {
	var subs []*nats.Subscription
	for _, subj := range []string{s.subj.In(), s.subj.Resize(), s.subj.Viewers()} {
		sub, err := s.b.cfg.Conn.ChanSubscribe(subj, s.b.msgs)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// route hands each message on a session subject to its session.
func (b *Bridge) route(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-b.msgs:
			b.deliver(m)
		}
	}
}

func (b *Bridge) deliver(m *nats.Msg) {
	subj, kind, ok := wire.Parse(m.Subject)
	if !ok {
		return
	}
	b.mu.Lock()
	s := b.running[types.UID(subj.UID())]
	b.mu.Unlock()
	if s == nil {
		return
	}
	switch kind {
	case wire.KindIn:
		s.queueInput(m.Data)
	case wire.KindResize:
		var sz wire.Size
		if json.Unmarshal(m.Data, &sz) == nil && sz.Cols > 0 && sz.Rows > 0 {
			s.resized(sz)
		}
	case wire.KindViewers:
		var p wire.Presence
		if json.Unmarshal(m.Data, &p) == nil {
			s.presence(p)
		}
	}
}

// execURL is the pods/exec URL of a command in the session's container.
func (b *Bridge) execURL(s *v1alpha1.TerminalSession, command []string, tty, stdin bool) *url.URL {
	return b.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(s.Namespace).Name(s.Spec.Target.Pod).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: s.Spec.Target.Container,
		Command:   command,
		Stdin:     stdin,
		Stdout:    true,
		Stderr:    !tty,
		TTY:       tty,
	}, scheme.ParameterCodec).URL()
}

// asOwner is the bridge's client configuration impersonating the session's
// owner: the cluster authorizes the exec as them and names them in its
// audit log.
func (b *Bridge) asOwner(s *v1alpha1.TerminalSession) (*rest.Config, error) {
	owner := s.Status.Owner
	if owner == nil || owner.Username == "" {
		return nil, errors.New("session has no owner to run as")
	}
	cfg := rest.CopyConfig(b.cfg.KubeConfig)
	cfg.Impersonate = Impersonation(owner.Username, owner.UID, owner.Groups, owner.Extra)
	return cfg, nil
}

// Impersonation is how the bridge impersonates a session's owner, and so
// the identity whose exec rights a session gets. Constrained impersonation
// (what the server's RBAC grants) allows a ServiceAccount only by name, its
// groups following from it, and never the system:masters group: an owner
// whose rights come from system:masters alone gets none through a session
// (the create-time check asks for this same identity, so they learn at
// once).
func Impersonation(username, uid string, groups []string, extra map[string][]string) rest.ImpersonationConfig {
	if strings.HasPrefix(username, serviceAccountPrefix) {
		return rest.ImpersonationConfig{UserName: username}
	}
	var kept []string
	for _, g := range groups {
		if g != systemMasters {
			kept = append(kept, g)
		}
	}
	return rest.ImpersonationConfig{UserName: username, UID: uid, Groups: kept, Extra: extra}
}

const (
	serviceAccountPrefix = "system:serviceaccount:"
	systemMasters        = "system:masters"
)

func (b *Bridge) openExec(ctx context.Context, s *v1alpha1.TerminalSession, command []string, tty, stdin bool) (execStream, error) {
	cfg, err := b.asOwner(s)
	if err != nil {
		return nil, err
	}
	return openExec(ctx, cfg, b.tlsConfigs, b.execURL(s, command, tty, stdin), tty)
}

// shell picks the first of bash and sh that the container runs, before any
// input is accepted. The answer is remembered per pod UID and container:
// a second session on the same container skips the probe.
func (b *Bridge) shell(ctx context.Context, s *v1alpha1.TerminalSession) []string {
	key := ""
	if pod, err := b.kube.CoreV1().Pods(s.Namespace).Get(ctx, s.Spec.Target.Pod, metav1.GetOptions{}); err == nil {
		key = string(pod.UID) + "/" + s.Spec.Target.Container
		b.mu.Lock()
		sh, ok := b.shells[key]
		b.mu.Unlock()
		if ok {
			return []string{sh}
		}
	}
	sh := "sh"
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if exec, err := b.openExec(pctx, s, []string{"bash", "-c", "exit 0"}, false, false); err == nil {
		stop := context.AfterFunc(pctx, func() { _ = exec.Close() })
		if code, err := exec.Wait(io.Discard); err == nil && code == 0 {
			sh = "bash"
		}
		stop()
		_ = exec.Close()
	}
	if key != "" && ctx.Err() == nil {
		b.mu.Lock()
		if len(b.shells) >= shellCache {
			clear(b.shells)
		}
		b.shells[key] = sh
		b.mu.Unlock()
	}
	return []string{sh}
}

// run is one session's exec, from start to exit. It returns the exit code,
// or an error if the exec could not run.
func (b *Bridge) run(s *session) (exitCode int32, err error) {
	ctx := s.ctx
	subs, err := s.subscribe()
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	command := s.obj.Spec.Command
	type opened struct {
		command []string
		stream  execStream
		err     error
	}
	// The probe and the handshake run on a goroutine of their own: their
	// deep call chains would otherwise leave this one, which lives as long
	// as the session, with a stack several times the size it needs.
	o := onFreshStack(func() opened {
		if len(command) == 0 {
			command = b.shell(ctx, s.obj)
		}
		stream, err := b.openExec(ctx, s.obj, command, s.tty, true)
		return opened{command, stream, err}
	})
	command, stream := o.command, o.stream
	if o.err != nil {
		return 0, o.err
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() { _ = stream.Close() })
	defer stop()

	s.mu.Lock()
	if s.tty && s.obj.Spec.Size != nil && s.size == nil {
		// Before any input: the first thing the process's terminal gets.
		s.size = &wire.Size{Cols: uint16(s.obj.Spec.Size.Cols), Rows: uint16(s.obj.Spec.Size.Rows)}
	}
	s.stream = stream
	s.startWriter()
	s.mu.Unlock()

	var marked sync.WaitGroup
	marked.Go(func() {
		if err := b.publishEvent(ctx, s.subj, wire.Event{Type: wire.EventStarted, Command: command}); err != nil {
			klog.ErrorS(err, "Publishing the start event failed", "session", klog.KObj(s.obj))
		}
		b.markRunning(ctx, s.obj, command)
	})
	defer marked.Wait()

	code, err := stream.Wait(s.out)
	if ferr := s.out.close(); ferr != nil && ctx.Err() == nil {
		klog.ErrorS(ferr, "Publishing output failed", "session", klog.KObj(s.obj))
	}
	if ctx.Err() != nil {
		return code, context.Cause(ctx)
	}
	return code, err
}

// onFreshStack runs f on a goroutine of its own and returns its result.
func onFreshStack[T any](f func() T) T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return <-ch
}

func (b *Bridge) publishOutput(subj wire.Subjects, s *session) func(ctx context.Context, seq uint64, frame []byte) (func() error, error) {
	out := subj.Out()
	// Frames are published one after the other (one drainer at a time).
	var offset uint64
	return func(ctx context.Context, seq uint64, frame []byte) (func() error, error) {
		s.touch()
		ack, err := b.js.PublishMsgAsync(&nats.Msg{
			Subject: out, Data: frame,
			Header: nats.Header{
				wire.SeqHeader:    []string{strconv.FormatUint(seq, 10)},
				wire.OffsetHeader: []string{strconv.FormatUint(offset, 10)},
			},
		})
		if err != nil {
			return nil, err
		}
		offset += uint64(len(frame))
		return func() error {
			select {
			case <-ack.Ok():
				return nil
			case err := <-ack.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}, nil
	}
}

func (b *Bridge) publishEvent(ctx context.Context, subj wire.Subjects, ev wire.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = b.cfg.JetStream.Publish(ctx, subj.Ctl(), data)
	return err
}
