package bridge

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// output is what the session's process wrote so far, as its viewers read it.
func (h *harness) output(uid types.UID) string {
	h.t.Helper()
	return h.stored(wire.IOStream, wire.SubjectsFor(string(uid)).Out())
}

// A draining replica claims nothing more (another replica takes the new
// session at once), tells each of its sessions once, in the output and as
// an event, by when it ends; a session that ends by itself meanwhile is
// closed as usual, and the ones left at the deadline are Closed with the
// reason ServerShutdown, with a Kubernetes Event.
func TestDrain(t *testing.T) {
	h := newHarness(t)
	old, _ := h.startBridge("old", recordTranscripts(false, 1<<20))
	exits, fExits := h.running("exits", nil)
	stays, fStays := h.running("stays", nil)
	h.startBridge("new", nil)

	const period = time.Minute
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		old.Drain(context.Background(), period)
	}()
	for _, uid := range []types.UID{exits.UID, stays.UID} {
		h.eventually("the draining notice in the output", func() bool {
			return strings.Contains(h.output(uid), "the server running this session is shutting down; the session ends by")
		})
		var draining []wire.Event
		for _, ev := range h.events(uid) {
			if ev.Type == wire.EventDraining {
				draining = append(draining, ev)
			}
		}
		if len(draining) != 1 || draining[0].Deadline == "" || !strings.Contains(draining[0].Message, "(old)") {
			t.Errorf("draining events %+v, want one naming the replica, with its deadline", draining)
		}
	}
	h.eventually("the notice in the transcript", func() bool {
		return strings.Contains(strings.Join(h.transcript(stays.UID), "\n"), "shutting down")
	})

	created := h.create("after", nil)
	if f := h.nextExec(); f.session.Name != "after" {
		t.Fatalf("the exec of %s opened, want after's", f.session.Name)
	}
	h.waitPhase("after", v1alpha1.TerminalSessionRunning)
	if holder := h.leaseHolder(created.UID); holder != "new" {
		t.Errorf("a session created during the drain is run by %q, want the other replica (new)", holder)
	}

	// Working during the drain: typed input reaches the process, which ends by itself.
	fExits.write(t, []byte("still here\r\n"))
	fExits.exit <- 4
	s := h.waitPhase("exits", v1alpha1.TerminalSessionClosed)
	if s.Status.Reason != v1alpha1.ReasonExited || s.Status.ExitCode == nil || *s.Status.ExitCode != 4 {
		t.Errorf("a session that exited during the drain: %+v, want Exited(4)", s.Status)
	}
	select {
	case <-drained:
		t.Fatal("Drain returned before its period with a session still running")
	default:
	}

	h.clock.Step(period)
	select {
	case <-drained:
	case <-time.After(30 * time.Second):
		t.Fatal("Drain did not return after its period")
	}
	s = h.get("stays")
	if s.Status.Phase != v1alpha1.TerminalSessionClosed || s.Status.Reason != v1alpha1.ReasonServerShutdown ||
		!strings.Contains(s.Status.Message, "(old)") {
		t.Fatalf("the session left at the deadline: %+v, want Closed(ServerShutdown) naming the replica", s.Status)
	}
	if !fStays.isClosed() {
		t.Error("its exec is still open")
	}
	if holder := h.leaseHolder(stays.UID); holder != "" {
		t.Errorf("its lease is still held by %q", holder)
	}
	h.eventually("Draining and ServerShutdown Kubernetes Events", func() bool {
		list, err := h.kube.EventsV1().Events(testNamespace).List(h.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, ev := range list.Items {
			if ev.Regarding.Name == "stays" {
				seen[ev.Reason] = true
			}
		}
		return seen["Draining"] && seen[v1alpha1.ReasonServerShutdown]
	})
}

// With no drain period the sessions close at once, as ServerShutdown, and
// nobody is told of a deadline already past.
func TestDrainWithoutPeriod(t *testing.T) {
	h := newHarness(t)
	b, _ := h.startBridge("replica", nil)
	created, f := h.running("now", nil)
	b.Drain(context.Background(), 0)
	if !f.isClosed() {
		t.Fatal("the exec is still open")
	}
	s := h.get("now")
	if s.Status.Phase != v1alpha1.TerminalSessionClosed || s.Status.Reason != v1alpha1.ReasonServerShutdown {
		t.Fatalf("status %+v, want Closed(ServerShutdown)", s.Status)
	}
	for _, ev := range h.events(created.UID) {
		if ev.Type == wire.EventDraining {
			t.Errorf("a draining event without a drain period: %+v", ev)
		}
	}
}
