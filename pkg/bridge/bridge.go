// Package bridge is the exec side of a terminal: it claims a TerminalSession
// (one replica runs each exec, holding its lease), opens pods/exec against
// kube-apiserver as the session's owner, and relays the terminal through
// the session's NATS subjects (pkg/wire), closing it on exit, deletion,
// timeouts or loss of the target.
//
// Files: bridge.go (the informer, claims, sweeps and timers), session.go (a
// running session's state: input, resize, viewers, expiry, maintenance),
// exec.go (impersonation, shell detection and the exec's life),
// execstream.go (the channel protocol client), output.go (framing),
// publish.go, router.go (the NATS side), status.go (status writes and
// events), lease.go, podwatch.go, local.go (the attach side's fast path).
//
// Its unit tests (harness_test.go) run whole bridges without a control
// plane: fake clientsets, an embedded NATS server, fake execs and a fake
// clock; the exec client is tested against a fake kube-apiserver exec
// endpoint (execstream_test.go).
package bridge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	informers "github.com/meshery/terminal-apiserver/pkg/generated/informers/externalversions"
	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Config is what the bridge needs.
type Config struct {
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// KubeConfig reaches kube-apiserver as the server's own identity; each
	// exec adds impersonation of the session's owner.
	KubeConfig *rest.Config
	// Sessions reads and writes TerminalSessions (the server's loopback).
	Sessions clientset.Interface
	// Holder names this replica in leases.
	Holder string
	// LeaseDuration: a replica that stops renewing loses its sessions
	// after this long.
	LeaseDuration time.Duration
	// ScrollbackFrames is how many output frames per session the IO stream
	// keeps for late viewers: at most ScrollbackFrames × 32 KiB a session.
	ScrollbackFrames int
	// OutputBytes bounds the IO stream as a whole (0: DefaultOutputBytes).
	// When it is full the oldest output of any session is shed: the stream
	// reserves its size, so a flood of output never takes the room that
	// session objects and leases need.
	OutputBytes int64
	// Replicas of the JetStream streams and buckets it creates.
	Replicas int
	// Limits: the defaults apply when a session's spec leaves a field out,
	// the ceilings (0: none) cap what a spec may ask for.
	Limits Limits
	// SweepInterval is how often each replica looks for orphaned and
	// expired sessions.
	SweepInterval time.Duration
	// StatusInterval is the most often a session's lastActivityTime is
	// written: a keystroke must never become a storage write.
	StatusInterval time.Duration
	// Transcripts: what is recorded of each session, and kept how long.
	Transcripts Transcripts
}

// Limits are the server-wide session timeouts.
type Limits struct {
	DefaultIdleTimeout, MaxIdleTimeout time.Duration
	DefaultMaxDuration, MaxMaxDuration time.Duration
	// DefaultDetachGracePeriod, MaxDetachGracePeriod: how long a session
	// may have no viewer attached.
	DefaultDetachGracePeriod, MaxDetachGracePeriod time.Duration
	// DefaultTTLAfterClosed is how long closed sessions whose spec has no
	// ttlAfterClosed are kept; 0 keeps them until deleted.
	DefaultTTLAfterClosed time.Duration
}

// effective is the spec's value, else the default, capped by the ceiling.
func effective(spec *metav1.Duration, def, ceiling time.Duration) time.Duration {
	d := def
	if spec != nil {
		d = spec.Duration
	}
	if ceiling > 0 && (d == 0 || d > ceiling) {
		d = ceiling
	}
	return d
}

// Bridge runs the sessions this replica claims.
type Bridge struct {
	cfg        Config
	leases     *leases
	kube       kubernetes.Interface // the server's own identity: target checks
	events     events.EventRecorder
	pods       *podWatch
	tlsConfigs *tlsConfigs
	// openExec opens an exec in a session's container (execAsOwner; a
	// fake in unit tests).
	openExec execOpener
	// clock is what the session timers read (a fake in unit tests).
	clock clock.WithDelayedExecution
	// js publishes output asynchronously: its own context, so the limit
	// on frames in flight is the bridge's alone.
	js jetstream.JetStream
	// msgs carries every running session's input, resize and viewer
	// messages to one router goroutine.
	msgs chan *nats.Msg
	// work feeds sessions due for maintenance to a few workers.
	work chan *session
	// purges holds deleted sessions whose scrollback is to go.
	purges chan purge

	mu      sync.Mutex
	running map[types.UID]*session
	// drainBy is when the sessions still running are closed (Drain); zero
	// until Drain, and from then on no session is claimed.
	drainBy time.Time
	// claiming counts claims in flight (between the drain check and the
	// session's entry in running), which Drain waits for.
	claiming int
	shells   map[string]string // pod UID/container -> shell found there
	wg       sync.WaitGroup
	// renewSlots bounds the lease renewals in flight; renewals are they.
	renewSlots chan struct{}
	renewals   sync.WaitGroup
}

// DefaultOutputBytes is the IO stream's size when Config leaves it out.
const DefaultOutputBytes = 1 << 30

// maintenanceWorkers bound the lease renewals, pod checks and status writes
// in flight at once, whatever the number of sessions.
const maintenanceWorkers = 8

// execOpener opens command's exec in the session's container.
type execOpener func(ctx context.Context, s *v1alpha1.TerminalSession, command []string, tty, stdin bool) (execStream, error)

// New creates the IO stream and the lease bucket.
func New(ctx context.Context, cfg Config) (*Bridge, error) {
	// The bridge's own calls (pod look-ups, events) grow with the number of
	// sessions: client-go's default of 5 QPS would queue them for minutes.
	// kube-apiserver's priority and fairness still protects it.
	own := rest.CopyConfig(cfg.KubeConfig)
	own.QPS, own.Burst = max(own.QPS, 100), max(own.Burst, 200)
	kube, err := kubernetes.NewForConfig(own)
	if err != nil {
		return nil, err
	}
	meta, err := metadata.NewForConfig(own)
	if err != nil {
		return nil, err
	}
	b, err := newBridge(ctx, cfg, kube, meta)
	if err != nil {
		return nil, err
	}
	b.openExec = b.execAsOwner
	return b, nil
}

// newBridge is New with the clients given: the server's own identity for
// pods and events (kube) and pod metadata (meta).
func newBridge(ctx context.Context, cfg Config, kube kubernetes.Interface, meta metadata.Interface) (*Bridge, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.ScrollbackFrames == 0 {
		cfg.ScrollbackFrames = 1000
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.OutputBytes == 0 {
		cfg.OutputBytes = DefaultOutputBytes
	}
	_, err := cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              wire.IOStream,
		Description:       "terminal-apiserver: recent output and lifecycle events of each session (scrollback)",
		Subjects:          wire.IOSubjects(),
		MaxMsgsPerSubject: int64(cfg.ScrollbackFrames),
		MaxAge:            24 * time.Hour,
		MaxBytes:          cfg.OutputBytes,
		MaxMsgSize:        maxFrame + 1024,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", wire.IOStream, err)
	}
	if cfg.Transcripts.Enabled {
		if err := createTranscriptStream(ctx, cfg.JetStream, cfg.Transcripts, cfg.Replicas); err != nil {
			return nil, err
		}
	}
	l, err := openLeases(ctx, cfg.JetStream, cfg.Holder, cfg.LeaseDuration, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = 5 * time.Second
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = time.Second
	}
	js, err := jetstream.New(cfg.Conn, jetstream.WithPublishAsyncMaxPending(1<<15),
		jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	b := &Bridge{
		cfg: cfg, leases: l, kube: kube, js: js,
		tlsConfigs: newTLSConfigs(),
		clock:      clock.RealClock{},
		msgs:       make(chan *nats.Msg, 8192),
		work:       make(chan *session, 4096),
		purges:     make(chan purge, 16384),
		running:    map[types.UID]*session{},
		shells:     map[string]string{},
		renewSlots: make(chan struct{}, renewParallel),
	}
	b.pods = newPodWatch(meta, b.targetDeleted)
	return b, nil
}

// recordEvents makes the bridge report starts and ends as Kubernetes Events
// on the session (kubectl describe term, kubectl events) until stop is
// called: after the sessions have ended, so that a shutdown's own reports
// are sent too.
func (b *Bridge) recordEvents(ctx context.Context) (stop func()) {
	scheme := runtime.NewScheme()
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: b.kube.EventsV1()})
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		klog.ErrorS(err, "Cannot record Kubernetes Events")
		cancel()
		return func() {}
	}
	b.events = broadcaster.NewRecorder(scheme, "terminal-apiserver")
	return func() {
		// Shutdown hands the last events to the sink, which sends each
		// from a goroutine of its own: give those a moment to be sent.
		broadcaster.Shutdown()
		time.AfterFunc(5*time.Second, cancel)
	}
}

func (b *Bridge) record(s *v1alpha1.TerminalSession, eventtype, reason, action, note string, args ...any) {
	if b.events != nil {
		b.events.Eventf(s, nil, eventtype, reason, action, note, args...)
	}
}

// recordViewer records an event about a viewer of s. The viewer's user is
// the event's related object: the Events API counts events alike in
// regarding, reason, action and related as one series (keeping the first
// note), so without it a second viewer's attach would only raise the
// first one's count.
func (b *Bridge) recordViewer(s *v1alpha1.TerminalSession, user, reason, action, note string, args ...any) {
	if b.events == nil {
		return
	}
	var related runtime.Object
	if user != "" {
		related = &corev1.ObjectReference{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "User", Name: user}
	}
	b.events.Eventf(s, related, corev1.EventTypeNormal, reason, action, note, args...)
}

// Run watches TerminalSessions and bridges the pending ones it claims, until
// ctx ends; then it stops every exec it runs.
func (b *Bridge) Run(ctx context.Context) {
	defer b.recordEvents(ctx)()
	factory := informers.NewSharedInformerFactory(b.cfg.Sessions, 10*time.Minute)
	inf := factory.Terminal().V1alpha1().TerminalSessions().Informer()
	// The bridge never reads managedFields: don't keep a copy per session.
	// Cleared only when set: a transform may be handed an object its source
	// still reads (client-go's fake clientset shares them with its tracker).
	_ = inf.SetTransform(func(obj any) (any, error) {
		if s, ok := obj.(*v1alpha1.TerminalSession); ok && s.ManagedFields != nil {
			s.ManagedFields = nil
		}
		return obj, nil
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.sync(ctx, obj.(*v1alpha1.TerminalSession)) },
		UpdateFunc: func(_, obj any) { b.sync(ctx, obj.(*v1alpha1.TerminalSession)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if s, ok := obj.(*v1alpha1.TerminalSession); ok {
				b.stop(s.UID)
				b.purgeScrollback(s.UID)
			}
		},
	})
	factory.Start(ctx.Done())
	// Sessions whose replica died (their lease expires and nobody renews it)
	// are looked for once per lease period; closed sessions past their
	// ttlAfterClosed every SweepInterval.
	var workers sync.WaitGroup
	sweep := func(interval time.Duration, check func(context.Context, *v1alpha1.TerminalSession)) {
		workers.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				for _, obj := range inf.GetStore().List() {
					check(ctx, obj.(*v1alpha1.TerminalSession))
				}
			}, interval)
		})
	}
	sweep(b.cfg.LeaseDuration, b.checkOrphan)
	sweep(b.cfg.SweepInterval, b.deleteExpired)
	workers.Go(func() { b.route(ctx) })
	workers.Go(func() { b.runPurges(ctx) })
	for range maintenanceWorkers {
		workers.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case s := <-b.work:
					s.maintain(b.clock.Now())
				}
			}
		})
	}
	workers.Go(func() { wait.UntilWithContext(ctx, b.tick, time.Second) })
	// Leases are renewed in a loop of their own: nothing slow may delay a
	// renewal past the lease's expiry, or a healthy session would be lost.
	workers.Go(func() {
		wait.NonSlidingUntilWithContext(ctx, b.renewLeases, renewRound(b.cfg.LeaseDuration))
		b.renewals.Wait()
	})
	<-ctx.Done() // each session's exec is stopped with errShutdown
	factory.Shutdown()
	b.wg.Wait()
	workers.Wait()
}

// closeCause is why a session's exec was stopped.
type closeCause struct {
	reason, message string
	phase           v1alpha1.TerminalSessionPhase
}

func (c *closeCause) Error() string { return c.reason + ": " + c.message }

var (
	errDeleted   = &closeCause{reason: v1alpha1.ReasonDeleted, message: "the session was deleted"}
	errShutdown  = errors.New("server shutting down")
	errLeaseLost = errors.New("lease lost")
)

func (b *Bridge) stop(uid types.UID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.running[uid]; ok {
		s.cancel(errDeleted)
	}
}

// scrollbackGrace is how long a deleted session's output stays after its
// deletion: its viewers read the close event in that time.
const scrollbackGrace = 10 * time.Second

// purgeScrollback queues a deleted session's output and events for
// removal from the IO stream once scrollbackGrace has passed, so that a
// tenant's deleted sessions do not hold the stream (every replica does it; a
// purge of nothing is quick). The stream's MaxAge removes what a purge
// missed: all replicas down at the time, or a full queue.
func (b *Bridge) purgeScrollback(uid types.UID) {
	select {
	case b.purges <- purge{uid: uid, due: b.clock.Now().Add(scrollbackGrace)}:
	default:
		klog.V(2).InfoS("Purge queue full; the stream's MaxAge will drop the scrollback", "uid", uid)
	}
}

type purge struct {
	uid types.UID
	due time.Time
}

// runPurges purges in order, one at a time: a thousand sessions deleted at
// once must not become a thousand purges at once, which stall JetStream and
// with it every live session's output.
func (b *Bridge) runPurges(ctx context.Context) {
	for {
		var p purge
		select {
		case <-ctx.Done():
			return
		case p = <-b.purges:
		}
		if wait := p.due.Sub(b.clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-b.clock.After(wait):
			}
		}
		subjects := wire.SubjectsFor(string(p.uid)).All()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		stream, err := b.cfg.JetStream.Stream(pctx, wire.IOStream)
		if err == nil {
			err = stream.Purge(pctx, jetstream.WithPurgeSubject(subjects))
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Purging a deleted session's scrollback failed", "subjects", subjects)
		}
	}
}

// deleteExpired deletes a closed session once its ttlAfterClosed has passed. Every
// replica may; a second delete finds nothing.
func (b *Bridge) deleteExpired(ctx context.Context, s *v1alpha1.TerminalSession) {
	if s.Status.ClosedAt == nil || s.DeletionTimestamp != nil {
		return
	}
	ttl := b.cfg.Limits.DefaultTTLAfterClosed
	if s.Spec.TTLAfterClosed != nil {
		ttl = s.Spec.TTLAfterClosed.Duration
	} else if ttl == 0 {
		return
	}
	if b.clock.Since(s.Status.ClosedAt.Time) < ttl {
		return
	}
	uid := s.UID
	err := b.cfg.Sessions.TerminalV1alpha1().TerminalSessions(s.Namespace).Delete(ctx, s.Name,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "Deleting an expired closed session failed", "session", klog.KObj(s))
	}
}

// checkOrphan marks a Running session Failed(BridgeLost) once no replica
// holds its lease: its replica died or lost NATS, and its stream is gone.
func (b *Bridge) checkOrphan(ctx context.Context, s *v1alpha1.TerminalSession) {
	if s.Status.Phase != v1alpha1.TerminalSessionRunning || s.DeletionTimestamp != nil {
		return
	}
	b.mu.Lock()
	_, mine := b.running[s.UID]
	b.mu.Unlock()
	if mine {
		return
	}
	held, err := b.leases.held(ctx, string(s.UID))
	if err != nil || held {
		return
	}
	ev := wire.Event{Type: wire.EventClosed, Reason: v1alpha1.ReasonBridgeLost,
		Message: "the terminal-apiserver replica running this session's exec stopped renewing its lease: it was killed, restarted without its shutdown, or cut off from NATS, and the shell ended with it"}
	// Its viewers, on any replica, end on the closed event, which nobody
	// else will send. First: once the status is final no sweep comes back,
	// while a copy of the event (a second sweep) is harmless.
	if err := b.publishEvent(ctx, wire.SubjectsFor(string(s.UID)), ev); err != nil {
		klog.ErrorS(err, "Telling a lost session's viewers it closed failed; the next sweep tries again", "session", klog.KObj(s))
		return
	}
	if b.markClosed(ctx, s, ev, v1alpha1.TerminalSessionFailed) {
		// Counted here, by the replica that found it: the one that ran it
		// was killed or cut off, and counts nothing.
		metrics.SessionsClosed.WithLabelValues(v1alpha1.ReasonBridgeLost).Inc()
	}
}

// sync acts on a session's latest state: a session being deleted ends its
// exec at once (finalizers may keep the object for long: the terminal must
// not outlive the user's delete), a Pending one is claimed.
func (b *Bridge) sync(ctx context.Context, s *v1alpha1.TerminalSession) {
	if s.DeletionTimestamp != nil {
		b.stop(s.UID)
		return
	}
	b.claimPending(ctx, s)
}

// claimPending starts a Pending session's exec if this replica wins its lease.
func (b *Bridge) claimPending(ctx context.Context, s *v1alpha1.TerminalSession) {
	if s.Status.Phase != v1alpha1.TerminalSessionPending || s.DeletionTimestamp != nil {
		return
	}
	b.mu.Lock()
	_, mine := b.running[s.UID]
	draining := !b.drainBy.IsZero()
	if !mine && !draining {
		b.claiming++ // Drain waits for it
	}
	b.mu.Unlock()
	if mine || draining {
		return // a draining replica leaves new sessions to the others
	}
	claimed := false
	defer func() {
		if !claimed {
			b.mu.Lock()
			b.claiming--
			b.mu.Unlock()
		}
	}()
	claimSent := time.Now()
	rev, ok, err := b.leases.claim(ctx, string(s.UID))
	if err != nil {
		klog.ErrorS(err, "Claiming a session failed", "session", klog.KObj(s))
		return
	}
	if !ok {
		return // another replica runs it
	}
	// The session's context ends with the bridge's, but says why: a
	// context derived directly would end with context.Canceled, and the
	// session could not tell a shutdown from its exec failing.
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopOnShutdown := context.AfterFunc(ctx, func() { cancel(errShutdown) })
	limits := b.cfg.Limits
	now := b.clock.Now()
	sess := &session{
		b: b, obj: s.DeepCopy(), subj: wire.SubjectsFor(string(s.UID)), ctx: sctx, cancel: cancel,
		tty:         s.Spec.TTY == nil || *s.Spec.TTY,
		idle:        effective(s.Spec.IdleTimeout, limits.DefaultIdleTimeout, limits.MaxIdleTimeout),
		maxDuration: effective(s.Spec.MaxDuration, limits.DefaultMaxDuration, limits.MaxMaxDuration),
		detachGrace: effective(s.Spec.DetachGracePeriod, limits.DefaultDetachGracePeriod, limits.MaxDetachGracePeriod),
		started:     now, unviewedSince: now, lastStatus: now, lastPing: now,
		viewers: map[string]viewer{},
	}
	sess.leaseRev.Store(rev)
	sess.startLeaseTimer(claimSent)
	sess.touch()
	b.mu.Lock()
	// Claimed as the drain began: the other replicas, which lost this
	// claim, will not try again, so run it; Drain tells and closes it.
	sess.drainBy = b.drainBy
	b.running[s.UID] = sess
	b.claiming--
	claimed = true
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			stopOnShutdown()
			cancel(nil)
			b.mu.Lock()
			delete(b.running, s.UID)
			b.mu.Unlock()
		}()
		b.runClaimed(sess)
	}()
}

// tick closes the sessions whose time is up and hands the ones due for
// maintenance to the workers. One loop for all sessions: a session costs
// no timer or goroutine of its own.
func (b *Bridge) tick(context.Context) {
	now := b.clock.Now()
	for _, s := range b.sessions() {
		if cause := s.expired(now); cause != nil {
			s.cancel(cause)
			continue
		}
		// Transcripts reach storage within a tick (an async publish: the
		// tick does not wait for it).
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		rec.flush()
		if s.due(now) && s.busy.CompareAndSwap(false, true) {
			select {
			case b.work <- s:
			default:
				s.busy.Store(false) // the workers are behind: next tick
			}
		}
	}
}

// renewLeases sends the lease renewals due, oldest lease first, up to
// renewParallel at once. A round does not wait for its renewals: one that
// waits for its answer (an outage) must not hold back those due after it
// past their leases, and a session is renewed again a round after its
// renewal timed out. At most one renewal per session is in flight.
func (b *Bridge) renewLeases(ctx context.Context) {
	now := monotonic()
	var due []*session
	for _, s := range b.sessions() {
		if s.renewDue(now) && !s.renewing.Load() {
			due = append(due, s)
		}
	}
	slices.SortFunc(due, func(x, y *session) int { return cmp.Compare(x.leaseSent.Load(), y.leaseSent.Load()) })
	for _, s := range due {
		select {
		case b.renewSlots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.renewing.Store(true)
		b.renewals.Go(func() {
			defer func() { s.renewing.Store(false); <-b.renewSlots }()
			s.renew()
		})
	}
}

// renewParallel bounds the lease renewals in flight.
const renewParallel = 64

func (b *Bridge) sessions() []*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := make([]*session, 0, len(b.running))
	for _, s := range b.running {
		all = append(all, s)
	}
	return all
}

// targetDeleted closes the sessions running in a pod that is going away.
func (b *Bridge) targetDeleted(namespace, pod, why string) {
	for _, s := range b.sessions() {
		if s.obj.Namespace == namespace && s.obj.Spec.Target.Pod == pod {
			s.cancel(&closeCause{reason: v1alpha1.ReasonTargetGone, message: why, phase: v1alpha1.TerminalSessionClosed})
		}
	}
}

// runClaimed runs a claimed session: its exec, and how it ended.
func (b *Bridge) runClaimed(s *session) {
	ctx := s.ctx
	defer s.leaseTimer.Stop()
	defer b.pods.watch(ctx, s.obj.Namespace)()
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	out := newOutput(pubCtx, b.publishOutput(s.subj, s), maxFrame, maxBuffered)
	out.retryable, out.retryFor = retryablePublish, outputRetryFor
	out.connected, out.ended = b.cfg.Conn.IsConnected, ctx.Done()
	out.live = s.followers.send
	s.mu.Lock()
	s.out = out
	drainBy := s.drainBy
	s.mu.Unlock()
	if !drainBy.IsZero() {
		s.drainUntil(drainBy)
	}

	metrics.SessionsOpened.Inc()
	metrics.SessionsOpen.Inc()
	code, err := b.run(s)
	metrics.SessionsOpen.Dec()
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	rec.close()
	cause := context.Cause(ctx)
	if errors.Is(cause, errLeaseLost) {
		// Another replica holds the lease: the session is its to report.
		return
	}
	ev, phase := wire.Event{Type: wire.EventClosed}, v1alpha1.TerminalSessionClosed
	var cc *closeCause
	switch {
	case errors.Is(cause, errShutdown):
		// Said at once, to the viewers and in the status, rather than
		// when the lease has lapsed and another replica (if any) notices.
		ev.Reason, phase = v1alpha1.ReasonBridgeLost, v1alpha1.TerminalSessionFailed
		ev.Message = fmt.Sprintf("the replica running this session's exec (%s) shut down", b.cfg.Holder)
	case errors.As(cause, &cc):
		ev.Reason, ev.Message = cc.reason, cc.message
		if cc.phase != "" {
			phase = cc.phase
		}
	case err != nil:
		ev.Reason, ev.Message, phase = v1alpha1.ReasonExecFailed, err.Error(), v1alpha1.TerminalSessionFailed
		if gone := b.targetGone(context.WithoutCancel(ctx), s.obj); gone != nil {
			ev.Reason, ev.Message, phase = gone.reason, gone.message, gone.phase
		}
	default:
		ev.Reason, ev.ExitCode = v1alpha1.ReasonExited, &code
		ev.Message = fmt.Sprintf("the process exited with code %d", code)
	}
	closeCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	metrics.SessionsClosed.WithLabelValues(ev.Reason).Inc()
	logClosed(s, ev, b.clock.Since(s.started))
	if err := b.publishEvent(closeCtx, s.subj, ev); err != nil {
		klog.ErrorS(err, "Publishing the close event failed", "session", klog.KObj(s.obj))
	}
	// A deleted session whose finalizers keep it says so in its status.
	b.markClosed(closeCtx, s.obj, ev, phase)
	b.leases.release(closeCtx, string(s.obj.UID), s.leaseRev.Load())
}

// logClosed writes the session's one line of record: who, where, how much
// and how long, with the names Kubernetes components use for these keys, so
// that --logging-format=json gives log pipelines fields to index.
func logClosed(s *session, ev wire.Event, took time.Duration) {
	user := ""
	if o := s.obj.Status.Owner; o != nil {
		user = o.Username
	}
	kv := []any{"session", klog.KObj(s.obj), "uid", s.obj.UID, "user", user,
		"pod", klog.KRef(s.obj.Namespace, s.obj.Spec.Target.Pod), "container", s.obj.Spec.Target.Container,
		"reason", ev.Reason, "bytesIn", s.bytesIn.Load(), "bytesOut", s.bytesOut.Load(), "duration", took.Round(time.Millisecond)}
	if ev.ExitCode != nil {
		kv = append(kv, "exitCode", *ev.ExitCode)
	}
	klog.InfoS("Session closed", kv...)
}

// targetGone reports why the session's pod can no longer run it, if so.
func (b *Bridge) targetGone(ctx context.Context, s *v1alpha1.TerminalSession) *closeCause {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pod, err := b.kube.CoreV1().Pods(s.Namespace).Get(ctx, s.Spec.Target.Pod, metav1.GetOptions{})
	gone := func(msg string) *closeCause {
		return &closeCause{reason: v1alpha1.ReasonTargetGone, message: msg, phase: v1alpha1.TerminalSessionClosed}
	}
	switch {
	case apierrors.IsNotFound(err):
		return gone(fmt.Sprintf("pod %q was deleted", s.Spec.Target.Pod))
	case err != nil:
		return nil // can't tell; the next check may
	case s.Status.StartedAt != nil && pod.CreationTimestamp.After(s.Status.StartedAt.Time):
		return gone(fmt.Sprintf("pod %q was replaced", s.Spec.Target.Pod))
	case pod.DeletionTimestamp != nil:
		return gone(fmt.Sprintf("pod %q is being deleted", s.Spec.Target.Pod))
	case pod.Status.Phase != corev1.PodRunning:
		return gone(fmt.Sprintf("pod %q is %s", s.Spec.Target.Pod, pod.Status.Phase))
	}
	return nil
}
