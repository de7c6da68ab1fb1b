package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// A replica that is told to stop (SIGTERM: a rolling upgrade, a node
// drain) would end every shell it runs: a kubelet ends an exec whose
// stream is gone. Drain lets them finish instead, for a bounded period.

// drainPoll is how often Drain looks whether its sessions have ended.
const drainPoll = 100 * time.Millisecond

// Drain stops claiming sessions, so that the other replicas claim the new
// ones at once, and lets the sessions this replica runs go on for period:
// each is told once, in its output (where every viewer, its scrollback and
// its transcript have it) and with a "draining" event on its control
// subject, by when it will end. Those still running after period are
// closed with the reason ServerShutdown. Drain returns once none runs, or
// when ctx ends.
func (b *Bridge) Drain(ctx context.Context, period time.Duration) {
	deadline := b.clock.Now().Add(period)
	b.mu.Lock()
	if !b.drainBy.IsZero() {
		b.mu.Unlock()
		return
	}
	b.drainBy = deadline
	b.mu.Unlock()
	running := b.sessions()
	klog.InfoS("Draining before shutdown", "sessions", len(running), "period", period)
	// Told side by side: one session whose output or NATS is slow must not
	// hold up the others, nor the deadline.
	var tells sync.WaitGroup
	defer tells.Wait()
	if period > 0 {
		for _, s := range running {
			tells.Go(func() { s.drainUntil(deadline) })
		}
	}
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for b.busy() {
		if !b.clock.Now().Before(deadline) {
			// Every tick: a claim that was in flight may have added one.
			for _, s := range b.sessions() {
				s.cancel(&closeCause{reason: v1alpha1.ReasonServerShutdown, phase: v1alpha1.TerminalSessionClosed,
					message: fmt.Sprintf("the server running this session (%s) shut down after draining for %s", b.cfg.Holder, period)})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// busy says whether a session runs here, or a claim is in flight.
func (b *Bridge) busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.running) > 0 || b.claiming > 0
}

// drainUntil tells the session's viewers, once, that it ends by deadline
// unless it ends first. A session whose output is not open yet is told
// when it opens (runClaimed).
func (s *session) drainUntil(deadline time.Time) {
	s.mu.Lock()
	if s.drainBy.IsZero() {
		s.drainBy = deadline
	}
	// A deadline already past (no drain period) is not announced: the
	// session is being closed.
	out, tell := s.out, s.out != nil && !s.drainTold && deadline.After(s.b.clock.Now())
	s.drainTold = s.drainTold || tell
	s.mu.Unlock()
	if tell {
		s.tellDraining(out, deadline)
	}
}

// tellDraining writes the notice into the session's output, as a system
// writes a shutdown message to its terminals, and publishes the event.
func (s *session) tellDraining(out *output, deadline time.Time) {
	b := s.b
	left := deadline.Sub(b.clock.Now()).Round(time.Second)
	notice := fmt.Sprintf("\r\n[terminal-apiserver: the server running this session is shutting down; "+
		"the session ends by %s (in %s) unless it ends first]\r\n", deadline.UTC().Format("15:04:05 MST"), left)
	if _, err := out.Write([]byte(notice)); err == nil {
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		rec.output([]byte(notice))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	ev := wire.Event{Type: wire.EventDraining, Deadline: deadline.UTC().Format(time.RFC3339),
		Message: fmt.Sprintf("the server running this session (%s) is shutting down", b.cfg.Holder)}
	if err := b.publishEvent(ctx, s.subj, ev); err != nil {
		klog.ErrorS(err, "Publishing the draining event failed", "session", klog.KObj(s.obj))
	}
	b.record(s.obj, corev1.EventTypeNormal, "Draining", "Drain",
		"the server running this session (%s) is shutting down: the session ends by %s unless it ends first",
		b.cfg.Holder, deadline.UTC().Format(time.RFC3339))
}
