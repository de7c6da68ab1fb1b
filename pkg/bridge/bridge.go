package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	informers "github.com/meshery/terminal-apiserver/pkg/generated/informers/externalversions"
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
	// keeps for late viewers.
	ScrollbackFrames int
	// Replicas of the JetStream streams and buckets it creates.
	Replicas int
}

// Bridge runs the sessions this replica claims.
type Bridge struct {
	cfg    Config
	leases *leases

	mu      sync.Mutex
	running map[types.UID]context.CancelFunc
	wg      sync.WaitGroup
}

// New creates the IO stream and the lease bucket.
func New(ctx context.Context, cfg Config) (*Bridge, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.ScrollbackFrames == 0 {
		cfg.ScrollbackFrames = 1000
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	_, err := cfg.JetStream.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              IOStream,
		Description:       "terminal-apiserver: recent output and lifecycle events of each session (scrollback)",
		Subjects:          []string{"terminal.*.out", "terminal.*.ctl"},
		MaxMsgsPerSubject: int64(cfg.ScrollbackFrames),
		MaxAge:            24 * time.Hour,
		MaxMsgSize:        maxFrame + 1024,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", IOStream, err)
	}
	l, err := openLeases(ctx, cfg.JetStream, cfg.Holder, cfg.LeaseDuration, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	return &Bridge{cfg: cfg, leases: l, running: map[types.UID]context.CancelFunc{}}, nil
}

// Run watches TerminalSessions and bridges the pending ones it claims, until
// ctx ends; then it stops every exec it runs.
func (b *Bridge) Run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(b.cfg.Sessions, 10*time.Minute)
	inf := factory.Terminal().V1alpha1().TerminalSessions().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.consider(ctx, obj.(*v1alpha1.TerminalSession)) },
		UpdateFunc: func(_, obj any) { b.consider(ctx, obj.(*v1alpha1.TerminalSession)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if s, ok := obj.(*v1alpha1.TerminalSession); ok {
				b.stop(s.UID)
			}
		},
	})
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	b.mu.Lock()
	for _, cancel := range b.running {
		cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Bridge) stop(uid types.UID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cancel, ok := b.running[uid]; ok {
		cancel()
	}
}

// consider starts a Pending session's exec if this replica wins its lease.
func (b *Bridge) consider(ctx context.Context, s *v1alpha1.TerminalSession) {
	if s.Status.Phase != v1alpha1.TerminalSessionPending || s.DeletionTimestamp != nil {
		return
	}
	b.mu.Lock()
	_, mine := b.running[s.UID]
	b.mu.Unlock()
	if mine {
		return
	}
	rev, ok, err := b.leases.claim(ctx, string(s.UID))
	if err != nil {
		klog.ErrorS(err, "Claiming a session failed", "session", klog.KObj(s))
		return
	}
	if !ok {
		return // another replica runs it
	}
	sctx, cancel := context.WithCancel(ctx)
	b.mu.Lock()
	b.running[s.UID] = cancel
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			cancel()
			b.mu.Lock()
			delete(b.running, s.UID)
			b.mu.Unlock()
		}()
		b.own(sctx, cancel, s.DeepCopy(), rev)
	}()
}

// own runs a claimed session: renews its lease, runs its exec and records
// how it ended.
func (b *Bridge) own(ctx context.Context, cancel context.CancelFunc, s *v1alpha1.TerminalSession, rev uint64) {
	leaseLost := make(chan struct{})
	go func() {
		t := time.NewTicker(b.cfg.LeaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				next, err := b.leases.renew(ctx, string(s.UID), rev)
				if err != nil {
					if ctx.Err() == nil {
						klog.ErrorS(err, "Lost a session's lease; stopping its exec", "session", klog.KObj(s))
						close(leaseLost)
						cancel()
					}
					return
				}
				rev = next
			}
		}
	}()

	code, _, err := b.run(ctx, s)
	subj := SubjectsFor(string(s.UID))
	ev := Event{Type: "closed"}
	switch {
	case isClosed(leaseLost):
		return // the replica that sees the lease expire reports it
	case ctx.Err() != nil:
		ev.Reason = v1alpha1.ReasonDeleted
	case err != nil:
		ev.Reason, ev.Message = "ExecFailed", err.Error()
	default:
		ev.Reason, ev.ExitCode = v1alpha1.ReasonExited, &code
	}
	pubCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	if err := b.event(pubCtx, subj, ev); err != nil {
		klog.ErrorS(err, "Publishing the close event failed", "session", klog.KObj(s))
	}
	if ev.Reason != v1alpha1.ReasonDeleted {
		b.markClosed(pubCtx, s, ev)
	}
	b.leases.release(pubCtx, string(s.UID), rev)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (b *Bridge) updateStatus(ctx context.Context, s *v1alpha1.TerminalSession, mutate func(*v1alpha1.TerminalSessionStatus)) {
	c := b.cfg.Sessions.TerminalV1alpha1().TerminalSessions(s.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := c.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != s.UID {
			return errors.New("session was replaced")
		}
		mutate(&cur.Status)
		_, err = c.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && ctx.Err() == nil {
		klog.ErrorS(err, "Updating session status failed", "session", klog.KObj(s))
	}
}

func (b *Bridge) markRunning(ctx context.Context, s *v1alpha1.TerminalSession, command []string) {
	now := metav1.Now()
	b.updateStatus(ctx, s, func(st *v1alpha1.TerminalSessionStatus) {
		st.Phase = v1alpha1.TerminalSessionRunning
		st.StartedAt = &now
		st.LastActivityTime = &now
		st.Message = fmt.Sprintf("running %q", command)
	})
}

func (b *Bridge) markClosed(ctx context.Context, s *v1alpha1.TerminalSession, ev Event) {
	now := metav1.Now()
	b.updateStatus(ctx, s, func(st *v1alpha1.TerminalSessionStatus) {
		st.Phase = v1alpha1.TerminalSessionClosed
		if ev.Reason == "ExecFailed" {
			st.Phase = v1alpha1.TerminalSessionFailed
		}
		st.Reason, st.Message, st.ExitCode, st.ClosedAt = ev.Reason, ev.Message, ev.ExitCode, &now
		if ev.Reason == v1alpha1.ReasonExited {
			st.Message = fmt.Sprintf("the process exited with code %d", *ev.ExitCode)
		}
	})
}
