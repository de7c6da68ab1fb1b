package bridge

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Replicas race for every Pending session; each runs on exactly one, whose
// name its lease holds.
func TestClaimRunsEachSessionOnce(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica-a", nil)
	h.startBridge("replica-b", nil)
	const n = 10
	for i := range n {
		h.create(fmt.Sprintf("s%d", i), nil)
	}
	seen := map[string]bool{}
	for range n {
		f := h.nextExec()
		if seen[f.session.Name] {
			t.Fatalf("session %s was opened twice", f.session.Name)
		}
		seen[f.session.Name] = true
	}
	for i := range n {
		s := h.waitPhase(fmt.Sprintf("s%d", i), v1alpha1.TerminalSessionRunning)
		if holder := h.leaseHolder(s.UID); holder != "replica-a" && holder != "replica-b" {
			t.Errorf("session %s: lease held by %q", s.Name, holder)
		}
		if s.Status.StartedAt == nil || !strings.Contains(s.Status.Message, `["sh"]`) {
			t.Errorf("session %s: status %+v, want startedAt and the command", s.Name, s.Status)
		}
	}
	select {
	case f := <-h.execs:
		t.Fatalf("an extra exec for %s", f.session.Name)
	default:
	}
}

// A process's exit closes the session with its exit code, says so on the
// control subject, and frees the lease.
func TestExitClosesSession(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	created, f := h.running("exits", nil)
	f.exit <- 3
	s := h.waitPhase("exits", v1alpha1.TerminalSessionClosed)
	if s.Status.Reason != v1alpha1.ReasonExited || s.Status.ExitCode == nil || *s.Status.ExitCode != 3 || s.Status.ClosedAt == nil {
		t.Fatalf("status %+v, want Exited with code 3", s.Status)
	}
	h.eventually("the lease released", func() bool { return h.leaseHolder(created.UID) == "" })
	evs := h.events(created.UID)
	if len(evs) != 2 || evs[0].Type != wire.EventStarted || evs[1].Type != wire.EventClosed ||
		evs[1].Reason != v1alpha1.ReasonExited || evs[1].ExitCode == nil || *evs[1].ExitCode != 3 {
		t.Fatalf("control events %+v, want started then closed(Exited, 3)", evs)
	}
}

// An exec that cannot be opened fails the session, saying why; if the pod
// is gone, that is the reason given.
func TestExecFailure(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	refused := errors.New("pods \"web\" is forbidden: User \"alice\" cannot create resource \"pods/exec\"")
	h.execErr.Store(&refused)
	h.create("refused", nil)
	s := h.waitPhase("refused", v1alpha1.TerminalSessionFailed)
	if s.Status.Reason != v1alpha1.ReasonExecFailed || !strings.Contains(s.Status.Message, "cannot create resource") {
		t.Fatalf("status %+v, want ExecFailed with the exec's error", s.Status)
	}

	if err := h.kube.CoreV1().Pods(testNamespace).Delete(h.ctx, testPod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.create("no-pod", nil)
	s = h.waitPhase("no-pod", v1alpha1.TerminalSessionClosed)
	if s.Status.Reason != v1alpha1.ReasonTargetGone || !strings.Contains(s.Status.Message, `pod "web" was deleted`) {
		t.Fatalf("status %+v, want TargetGone", s.Status)
	}
}

// Deleting the target pod closes its sessions at once (the pod metadata
// watch), not when the exec happens to notice.
func TestTargetPodDeleted(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	_, f := h.running("target", nil)
	h.eventually("the pod watch established", func() bool {
		for _, a := range h.meta.Actions() {
			if a.GetVerb() == "watch" && a.GetResource() == podsResource {
				return true
			}
		}
		return false
	})
	if err := h.meta.Resource(podsResource).Namespace(testNamespace).Delete(h.ctx, testPod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s := h.waitPhase("target", v1alpha1.TerminalSessionClosed)
	if s.Status.Reason != v1alpha1.ReasonTargetGone || !f.isClosed() {
		t.Fatalf("status %+v, exec closed %v: want TargetGone and the exec closed", s.Status, f.isClosed())
	}
}

// Deleting a session ends its exec at once, also while a finalizer keeps
// the object, whose status then says Closed(Deleted).
func TestDeleteEndsExec(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	c := h.sessions.TerminalV1alpha1().TerminalSessions(testNamespace)

	_, f := h.running("held", func(s *v1alpha1.TerminalSession) { s.Finalizers = []string{"example.com/keep"} })
	s := h.get("held")
	now := metav1.Now()
	s.DeletionTimestamp = &now
	if _, err := c.Update(h.ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s = h.waitPhase("held", v1alpha1.TerminalSessionClosed)
	if s.Status.Reason != v1alpha1.ReasonDeleted || !f.isClosed() {
		t.Fatalf("status %+v, exec closed %v: want Deleted and the exec closed", s.Status, f.isClosed())
	}

	_, f = h.running("gone", nil)
	if err := c.Delete(h.ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.eventually("the deleted session's exec closed", f.isClosed)
}

// A replica whose lease was taken stops the exec and leaves the session to
// the lease's holder: it neither closes the session nor says it ended.
func TestStolenLeaseStopsExec(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	created, f := h.running("stolen", nil)
	kv, err := h.nats.JetStream.KeyValue(h.ctx, wire.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(h.ctx, string(created.UID), []byte("thief")); err != nil {
		t.Fatal(err)
	}
	h.eventually("the exec closed after its lease was taken", f.isClosed)
	if holder := h.leaseHolder(created.UID); holder != "thief" {
		t.Errorf("lease held by %q, want the thief's", holder)
	}
	if s := h.get("stolen"); s.Status.Phase != v1alpha1.TerminalSessionRunning {
		t.Errorf("status %+v: the replica that lost the lease closed the session", s.Status)
	}
	for _, ev := range h.events(created.UID) {
		if ev.Type == wire.EventClosed {
			t.Errorf("the replica that lost the lease published %+v", ev)
		}
	}
}

// A replica that shuts down ends its execs and reports their sessions at
// once, to viewers and in the status, and frees their leases.
func TestShutdownReportsSessions(t *testing.T) {
	h := newHarness(t)
	_, stop := h.startBridge("replica", nil)
	created, f := h.running("shutdown", nil)
	stop()
	if !f.isClosed() {
		t.Fatal("a replica shut down with its exec still open")
	}
	s := h.get("shutdown")
	if s.Status.Phase != v1alpha1.TerminalSessionFailed || s.Status.Reason != v1alpha1.ReasonBridgeLost ||
		!strings.Contains(s.Status.Message, "shut down") {
		t.Fatalf("status %+v right after shutdown, want Failed(BridgeLost) saying the replica shut down", s.Status)
	}
	if holder := h.leaseHolder(created.UID); holder != "" {
		t.Errorf("lease still held by %q after shutdown", holder)
	}
	evs := h.events(created.UID)
	if len(evs) == 0 || evs[len(evs)-1].Reason != v1alpha1.ReasonBridgeLost {
		t.Errorf("control events %+v, want a closed(BridgeLost) last", evs)
	}
	h.eventually("a BridgeLost Kubernetes Event sent during the shutdown", func() bool {
		list, err := h.kube.EventsV1().Events(testNamespace).List(h.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.Reason == v1alpha1.ReasonBridgeLost && ev.Regarding.Name == "shutdown" {
				return true
			}
		}
		return false
	})
}

// A Running session whose replica died (it holds the lease but stopped
// renewing it) is marked BridgeLost by another replica once the lease
// expires, and not before; its viewers are told.
func TestOrphanBecomesBridgeLost(t *testing.T) {
	h := newHarness(t)
	h.startBridge("survivor", nil)
	created := h.create("orphan", func(s *v1alpha1.TerminalSession) {
		s.Status.Phase = v1alpha1.TerminalSessionRunning
	})
	kv, err := h.nats.JetStream.KeyValue(h.ctx, wire.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	leased := time.Now()
	if _, err := kv.Create(h.ctx, string(created.UID), []byte("dead-replica")); err != nil {
		t.Fatal(err)
	}
	s := h.waitPhase("orphan", v1alpha1.TerminalSessionFailed)
	if s.Status.Reason != v1alpha1.ReasonBridgeLost {
		t.Fatalf("status %+v, want BridgeLost", s.Status)
	}
	// The lease lasts 2s, so the sweep may not act before then.
	if held := time.Since(leased); held < 2*time.Second {
		t.Fatalf("marked BridgeLost %s after the lease was taken, before it expired", held)
	}
	// Viewers on any replica end on the closed event: the replica that ran
	// it cannot send one.
	h.eventually("a closed(BridgeLost) control event", func() bool {
		evs := h.events(created.UID)
		return len(evs) > 0 && evs[len(evs)-1].Type == wire.EventClosed && evs[len(evs)-1].Reason == v1alpha1.ReasonBridgeLost
	})
}

// A Pending session's shell is bash where the container has it, else sh;
// the answer is remembered per pod and container.
func TestShellDetection(t *testing.T) {
	for _, bash := range []bool{true, false} {
		t.Run(fmt.Sprintf("bash=%v", bash), func(t *testing.T) {
			h := newHarness(t)
			h.hasBash.Store(bash)
			h.startBridge("replica", nil)
			want := "sh"
			if bash {
				want = "bash"
			}
			for i := range 2 {
				h.create(fmt.Sprintf("shell%d", i), func(s *v1alpha1.TerminalSession) { s.Spec.Command = nil })
				if f := h.nextExec(); len(f.command) != 1 || f.command[0] != want {
					t.Fatalf("session %d runs %q, want %s", i, f.command, want)
				}
			}
			if n := h.probes.Load(); n != 1 {
				t.Errorf("%d probes for two sessions on one container, want 1", n)
			}
		})
	}
}

// runningSession is the bridge's state of a session it runs.
func runningSession(t *testing.T, b *Bridge, s *v1alpha1.TerminalSession) *session {
	t.Helper()
	sess := b.local(wire.SubjectsFor(string(s.UID)))
	if sess == nil {
		t.Fatalf("session %s does not run here", s.Name)
	}
	return sess
}

// ended says whether the bridge stopped the session, and why.
func ended(sess *session) error {
	if sess.ctx.Err() == nil {
		return nil
	}
	return context.Cause(sess.ctx)
}

// Once Run returns, nothing of the bridge runs on: not the sweeps, the
// router, the maintenance workers, the input writers, the output
// publishers or the pod watches of the sessions it ran.
func TestNoGoroutineOutlivesTheBridge(t *testing.T) {
	h := newHarness(t)
	b, stop := h.startBridge("replica", nil)
	for i := range 3 {
		created, f := h.running(fmt.Sprintf("s%d", i), nil)
		subj := wire.SubjectsFor(string(created.UID))
		b.Type(subj, []byte("typed"))
		if err := h.nats.Conn.Publish(subj.In(), []byte("more")); err != nil {
			t.Fatal(err)
		}
		h.eventually("the input typed", func() bool { return f.typed() == "typedmore" })
		f.write(t, []byte("output"))
	}
	if len(bridgeGoroutines()) == 0 {
		t.Fatal("no goroutine of the running bridge found: the check below would see nothing")
	}
	stop()
	left := bridgeGoroutines()
	for deadline := time.Now().Add(10 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = bridgeGoroutines() {
		time.Sleep(10 * time.Millisecond) // a poll with a deadline, keeping what is left to report
	}
	if len(left) > 0 {
		t.Fatalf("goroutines of the bridge left:\n%s", strings.Join(left, "\n\n"))
	}
}

// bridgeGoroutines are the stacks of the goroutines running this package's
// code, other than the tests'.
func bridgeGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "terminal-apiserver/pkg/bridge.") && !strings.Contains(g, "testing.tRunner") &&
			!strings.Contains(g, "bridge.(*harness)") {
			left = append(left, g)
		}
	}
	return left
}

// unanswered is a lease bucket whose answers NATS loses while mode says
// so: "none" (neither renewals nor reads are answered), "lost" (renewals
// land, and every other one's answer is lost). stored is when a renewal
// last landed.
type unanswered struct {
	jetstream.KeyValue
	mode   atomic.Value // string
	calls  atomic.Int64
	stored atomic.Int64 // unix nanos
}

func (u *unanswered) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if u.mode.Load() == "none" {
		return 0, nats.ErrTimeout
	}
	next, err := u.KeyValue.Update(ctx, key, value, rev)
	if err != nil {
		return 0, err
	}
	u.stored.Store(time.Now().UnixNano())
	if u.mode.Load() == "lost" && u.calls.Add(1)%2 == 1 {
		return 0, nats.ErrTimeout
	}
	return next, nil
}

func (u *unanswered) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if u.mode.Load() == "none" {
		return nil, nats.ErrTimeout
	}
	return u.KeyValue.Get(ctx, key)
}

// Lease renewals that NATS leaves unanswered (its connection dropped, a
// leader being elected) do not stop the exec while the lease runs, and one
// whose answer alone was lost is recognised; but the exec stops before the
// lease can lapse when no renewal lands, so that no other replica runs
// the session meanwhile.
func TestLeaseRenewalsWithoutAnswer(t *testing.T) {
	h := newHarness(t)
	kv := &unanswered{}
	kv.mode.Store("")
	h.prepare = func(b *Bridge) {
		kv.KeyValue = b.leases.kv
		b.leases.kv = kv
	}
	const lease = 4500 * time.Millisecond // renewed every 1.5 s; the exec stops 3.6 s after one landed
	h.startBridge("replica", func(c *Config) { c.LeaseDuration = lease })
	created, f := h.running("unanswered", nil)

	kv.mode.Store("lost")
	time.Sleep(4 * time.Second) // renewals whose answers are lost: the case under test
	kv.mode.Store("none")
	time.Sleep(time.Second) // one renewal at most gets no answer: the next lands 3 s after the last
	kv.mode.Store("")
	time.Sleep(2 * time.Second)
	if f.isClosed() {
		t.Fatal("the exec was stopped while its lease was held")
	}
	if holder := h.leaseHolder(created.UID); holder != "replica" {
		t.Fatalf("the lease is held by %q", holder)
	}

	kv.mode.Store("none")
	h.eventually("the exec stopped once no renewal landed", f.isClosed)
	lapse := time.Unix(0, kv.stored.Load()).Add(lease)
	if late := time.Since(lapse); late > 0 {
		t.Errorf("the exec stopped %s after its lease could lapse", late)
	}
}
