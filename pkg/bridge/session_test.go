package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Input reaches the process in the order it was sent, from the NATS path
// and the local fast path; the size in the spec comes before any input,
// and resizes follow.
func TestInputAndResizeReachTheProcess(t *testing.T) {
	h := newHarness(t)
	b, _ := h.startBridge("replica", nil)
	created, f := h.running("typing", func(s *v1alpha1.TerminalSession) {
		s.Spec.Size = &v1alpha1.TerminalSize{Cols: 100, Rows: 30}
	})
	subj := wire.SubjectsFor(string(created.UID))

	var want strings.Builder
	for i := range 300 {
		p := fmt.Sprintf("nats%03d;", i)
		want.WriteString(p)
		if err := h.nats.Conn.Publish(subj.In(), []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually("the NATS input typed, in order", func() bool { return f.typed() == want.String() })
	for i := range 300 {
		p := fmt.Sprintf("local%03d;", i)
		want.WriteString(p)
		if !b.Type(subj, []byte(p)) {
			t.Fatal("the local fast path refused input for a session this replica runs")
		}
	}
	h.eventually("the local input typed, in order", func() bool { return f.typed() == want.String() })

	for _, msg := range []string{`{"cols":0,"rows":10}`, `not json`, `{"cols":120,"rows":40}`} {
		if err := h.nats.Conn.Publish(subj.Resize(), []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	last := func(want wire.Size) func() bool {
		return func() bool { s := f.resizes(); return len(s) > 0 && s[len(s)-1] == want }
	}
	h.eventually("the resize applied", last(wire.Size{Cols: 120, Rows: 40}))
	b.Resize(subj, wire.Size{Cols: 80, Rows: 24})
	h.eventually("the local resize applied", last(wire.Size{Cols: 80, Rows: 24}))
	// The spec's size comes once or twice: again with the first input
	// when the first was sent before the process's first output.
	sizes := f.resizes()
	spec := wire.Size{Cols: 100, Rows: 30}
	if len(sizes) == 4 && sizes[1] == spec {
		sizes = sizes[1:]
	}
	if len(sizes) != 3 || sizes[0] != spec || sizes[1] != (wire.Size{Cols: 120, Rows: 40}) {
		t.Errorf("resizes %v, want the spec's 100x30, then 120x40 and 80x24 (invalid ones ignored)", f.resizes())
	}
	f.mu.Lock()
	before := f.inputs
	f.mu.Unlock()
	if before != 0 {
		t.Errorf("%d bytes typed before the spec's size was set, want 0", before)
	}
}

// Input typed before the process has written anything waits, behind the
// terminal's size, for its first output (a shell's prompt) or inputHold:
// the runtime applies a resize asynchronously, and a shell reading typed-
// ahead input at once would run it at the wrong size. The size is sent
// again just before the input, as a runtime may drop the first.
func TestInputWaitsForTheProcess(t *testing.T) {
	for _, opened := range []string{"by the first output", "by inputHold"} {
		t.Run(opened, func(t *testing.T) {
			h := newHarness(t)
			h.silent.Store(true)
			b, _ := h.startBridge("replica", nil)
			created, f := h.running("early", func(s *v1alpha1.TerminalSession) {
				s.Spec.Size = &v1alpha1.TerminalSize{Cols: 100, Rows: 30}
			})
			sess := runningSession(t, b, created)
			if err := h.nats.Conn.Publish(sess.subj.In(), []byte("typed ahead\n")); err != nil {
				t.Fatal(err)
			}
			h.eventually("the size set and the input queued", func() bool {
				sess.mu.Lock()
				defer sess.mu.Unlock()
				return len(f.resizes()) == 1 && len(sess.input) == 1
			})
			if got := f.typed(); got != "" {
				t.Fatalf("the process read %q before it wrote anything", got)
			}
			if opened == "by the first output" {
				f.write(t, []byte(fakePrompt))
			} else {
				h.clock.Step(inputHold)
			}
			h.eventually("the input typed", func() bool { return f.typed() == "typed ahead\n" })
			f.mu.Lock()
			sizes, typedAt := f.sizes, f.typedAt
			f.mu.Unlock()
			spec := wire.Size{Cols: 100, Rows: 30}
			if len(sizes) != 2 || sizes[0] != spec || sizes[1] != spec || typedAt[1] != 0 {
				t.Errorf("resizes %v with %v bytes typed before each, want the spec's 100x30 twice, both before any input", sizes, typedAt)
			}
		})
	}
}

// The session timers, on a clock the test moves: the bridge's tick closes
// a session when its time is up, and not a moment before. Limits cap what
// a spec asks for.
func TestSessionTimers(t *testing.T) {
	minute := &metav1.Duration{Duration: time.Minute}
	hour := &metav1.Duration{Duration: time.Hour}
	for _, tc := range []struct {
		name   string
		limits Limits
		spec   func(*v1alpha1.TerminalSessionSpec)
		// script moves the clock and acts; alive is checked after each step.
		script []step
		reason string
	}{{
		name: "idle timeout counts from the last input",
		spec: func(s *v1alpha1.TerminalSessionSpec) { s.IdleTimeout = minute },
		script: []step{
			{advance: 50 * time.Second, typeKey: true},
			{advance: 50 * time.Second},
			{advance: 9 * time.Second},
			{advance: 2 * time.Second, closes: true},
		},
		reason: v1alpha1.ReasonIdleTimeout,
	}, {
		name: "idle timeout counts from the last output",
		spec: func(s *v1alpha1.TerminalSessionSpec) { s.IdleTimeout = minute },
		script: []step{
			{advance: 50 * time.Second, output: true},
			{advance: 59 * time.Second},
			{advance: 2 * time.Second, closes: true},
		},
		reason: v1alpha1.ReasonIdleTimeout,
	}, {
		name: "maximum duration",
		spec: func(s *v1alpha1.TerminalSessionSpec) { s.MaxDuration = hour },
		script: []step{
			{advance: 30 * time.Minute, typeKey: true},
			{advance: 29 * time.Minute},
			{advance: time.Minute, closes: true},
		},
		reason: v1alpha1.ReasonMaxDuration,
	}, {
		name:   "a ceiling caps the spec",
		limits: Limits{MaxMaxDuration: 10 * time.Minute},
		spec:   func(s *v1alpha1.TerminalSessionSpec) { s.MaxDuration = hour },
		script: []step{
			{advance: 9 * time.Minute},
			{advance: time.Minute, closes: true},
		},
		reason: v1alpha1.ReasonMaxDuration,
	}, {
		name:   "the server default applies when the spec says nothing",
		limits: Limits{DefaultDetachGracePeriod: time.Minute},
		script: []step{
			{advance: 59 * time.Second},
			{advance: time.Second, closes: true},
		},
		reason: v1alpha1.ReasonDetached,
	}, {
		name: "an announcing viewer keeps the session; the grace period starts when it detaches",
		spec: func(s *v1alpha1.TerminalSessionSpec) { s.DetachGracePeriod = minute },
		script: []step{
			{viewer: wire.Attached},
			{advance: 20 * time.Second, viewer: wire.Attached},
			{advance: 20 * time.Second, viewer: wire.Attached},
			{advance: 20 * time.Second, viewer: wire.Attached},
			{advance: 20 * time.Second, viewer: wire.Attached},
			{viewer: wire.Detached},
			{advance: 59 * time.Second},
			{advance: 2 * time.Second, closes: true},
		},
		reason: v1alpha1.ReasonDetached,
	}, {
		name: "a viewer that goes silent is gone after the viewer TTL",
		spec: func(s *v1alpha1.TerminalSessionSpec) { s.DetachGracePeriod = minute },
		script: []step{
			{viewer: wire.Attached},
			{advance: wire.ViewerTTL + 59*time.Second},
			{advance: 2 * time.Second, closes: true},
		},
		reason: v1alpha1.ReasonDetached,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			b, _ := h.startBridge("replica", func(c *Config) { c.Limits = tc.limits })
			created, f := h.running("timed", func(s *v1alpha1.TerminalSession) {
				if tc.spec != nil {
					tc.spec(&s.Spec)
				}
			})
			sess := runningSession(t, b, created)
			for i, st := range tc.script {
				h.clock.Step(st.advance)
				st.do(h, sess, f)
				b.tick(h.ctx)
				if err := ended(sess); (err != nil) != st.closes {
					t.Fatalf("step %d (%+v): session ended: %v, want ended %v", i, st, err, st.closes)
				}
			}
			s := h.waitPhase("timed", v1alpha1.TerminalSessionClosed)
			if s.Status.Reason != tc.reason {
				t.Fatalf("status %+v, want %s", s.Status, tc.reason)
			}
			if !f.isClosed() {
				t.Error("the session closed with its exec open")
			}
		})
	}
}

// step is one step of a timer test: move the clock, then act.
type step struct {
	advance time.Duration
	typeKey bool               // type a key (through NATS) and wait for the process to read it
	output  bool               // the process writes output, published before the step ends
	viewer  wire.PresenceState // a viewer announces itself (and the bridge records it)
	closes  bool               // the session is over after this step
}

func (st step) do(h *harness, sess *session, f *fakeExec) {
	h.t.Helper()
	now := h.clock.Now()
	switch {
	case st.typeKey:
		before := f.typed()
		if err := h.nats.Conn.Publish(sess.subj.In(), []byte("k")); err != nil {
			h.t.Fatal(err)
		}
		h.eventually("the key typed", func() bool { return f.typed() == before+"k" })
	case st.output:
		f.write(h.t, []byte("output"))
		h.eventually("the output counted as activity", func() bool { return !sess.lastActive().Before(now) })
	case st.viewer != "":
		data, _ := json.Marshal(wire.Presence{ID: "viewer-1", State: st.viewer, User: "alice"})
		if err := h.nats.Conn.Publish(sess.subj.Viewers(), data); err != nil {
			h.t.Fatal(err)
		}
		h.eventually("the presence recorded", func() bool {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			seen, ok := sess.viewers["viewer-1"]
			if st.viewer == wire.Detached {
				return !ok
			}
			return ok && !seen.seen.Before(now)
		})
	}
}

// Keystrokes never become storage writes: lastActivityTime and the viewer
// count are written at most every StatusInterval, and only when they
// changed. The same maintenance keeps the exec's connection alive.
func TestStatusWritesThrottled(t *testing.T) {
	h := newHarness(t)
	b, _ := h.startBridge("replica", nil)
	created, f := h.running("busy", nil)
	sess := runningSession(t, b, created)
	statusWrites := func() int {
		n := 0
		for _, a := range h.sessions.Actions() {
			if u, ok := a.(clienttesting.UpdateAction); ok && a.GetSubresource() == "status" &&
				u.GetObject().(*v1alpha1.TerminalSession).Name == "busy" {
				n++
			}
		}
		return n
	}
	running := statusWrites()
	data, _ := json.Marshal(wire.Presence{ID: "v", State: wire.Attached})
	if err := h.nats.Conn.Publish(sess.subj.Viewers(), data); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := h.nats.Conn.Publish(sess.subj.In(), []byte{byte('a' + i%26)}); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually("the keys typed", func() bool { return len(f.typed()) == 100 })
	h.eventually("the viewer recorded", func() bool { sess.mu.Lock(); defer sess.mu.Unlock(); return len(sess.viewers) == 1 })
	maintainNow(h, sess)
	if n := statusWrites() - running; n != 0 {
		t.Fatalf("%d status writes within StatusInterval, want 0", n)
	}
	h.clock.Step(5 * time.Second)
	maintainNow(h, sess)
	if n := statusWrites() - running; n != 1 {
		t.Fatalf("%d status writes after StatusInterval, want 1", n)
	}
	if s := h.get("busy"); s.Status.Viewers != 1 || s.Status.LastActivityTime == nil {
		t.Errorf("status %+v, want 1 viewer and lastActivityTime", s.Status)
	}
	h.clock.Step(5 * time.Second)
	maintainNow(h, sess)
	if n := statusWrites() - running; n != 1 {
		t.Fatalf("%d status writes with nothing changed, want still 1", n)
	}
	if f.pings.Load() != 0 {
		t.Fatal("pinged before pingEvery")
	}
	h.clock.Step(pingEvery)
	maintainNow(h, sess)
	if f.pings.Load() != 1 {
		t.Fatalf("%d keepalive pings after pingEvery, want 1", f.pings.Load())
	}
}

// maintainNow runs the session's maintenance in the test's goroutine,
// taking the place of the bridge's workers as they do (one at a time).
func maintainNow(h *harness, s *session) {
	h.t.Helper()
	h.eventually("no maintenance in flight", func() bool { return s.busy.CompareAndSwap(false, true) })
	s.maintain(h.clock.Now())
}

// Input towards a process that is not reading is bounded in bytes, from
// the NATS path and the local fast path alike: a paste into a stuck shell
// cannot grow the replica.
func TestInputQueueBounded(t *testing.T) {
	s := &session{obj: &v1alpha1.TerminalSession{}} // no exec yet: nothing drains the queue
	chunk := bytes.Repeat([]byte("x"), 60<<10)
	for range 100 { // 6 MiB
		s.queueInput(chunk)
		s.writeInputNow(chunk)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inputBytes > maxInputQueued {
		t.Fatalf("%d bytes queued, bound %d", s.inputBytes, maxInputQueued)
	}
	n := 0
	for _, p := range s.input {
		n += len(p)
	}
	if n != s.inputBytes || n < maxInputQueued-len(chunk) {
		t.Fatalf("queue holds %d bytes (counted %d); want it filled to the bound", n, s.inputBytes)
	}
}

// A write error marks the stream broken: queued input is dropped, not
// retried forever, and the reader ends the session.
func TestBrokenStreamDropsInput(t *testing.T) {
	f := newFakeExec(&v1alpha1.TerminalSession{}, []string{"sh"}, true)
	_ = f.Close()
	s := &session{b: &Bridge{clock: clock.RealClock{}}, obj: &v1alpha1.TerminalSession{}, stream: f, inputOpen: true}
	s.writeInputNow([]byte("lost"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.broken || s.writing || s.inputBytes != 0 {
		t.Fatalf("after a failed write: broken %v, writing %v, %d bytes queued", s.broken, s.writing, s.inputBytes)
	}
}

// Viewers coming and going are Kubernetes Events on the session, naming
// who and how (read-write or read-only); an announcement repeated is one
// viewer, and a viewer gone silent is said to be gone.
func TestViewerEvents(t *testing.T) {
	h := newHarness(t)
	h.startBridge("replica", nil)
	created, _ := h.running("watched", nil)
	subj := wire.SubjectsFor(string(created.UID))
	announce := func(p wire.Presence) {
		data, _ := json.Marshal(p)
		if err := h.nats.Conn.Publish(subj.Viewers(), data); err != nil {
			t.Fatal(err)
		}
	}
	notes := func(reason string) []string {
		list, err := h.kube.EventsV1().Events(testNamespace).List(h.ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ev := range list.Items {
			if ev.Reason == reason && ev.Regarding.Name == "watched" {
				out = append(out, ev.Note)
			}
		}
		return out
	}
	announce(wire.Presence{ID: "v1", State: wire.Attached, User: "bob", Mode: wire.ModeReadOnly})
	announce(wire.Presence{ID: "v1", State: wire.Attached, User: "bob", Mode: wire.ModeReadOnly})
	announce(wire.Presence{ID: "v2", State: wire.Attached, User: "carol\x1b[2J", Mode: wire.ModeReadWrite})
	h.eventually("two ViewerAttached events", func() bool { return len(notes("ViewerAttached")) == 2 })
	got := strings.Join(notes("ViewerAttached"), "\n")
	if !strings.Contains(got, `"bob" attached (read-only)`) || !strings.Contains(got, `"carol\x1b[2J" attached (read-write)`) {
		t.Errorf("ViewerAttached notes:\n%s", got)
	}
	announce(wire.Presence{ID: "v1", State: wire.Detached, User: "bob"})
	h.eventually("bob's ViewerDetached event", func() bool {
		return strings.Contains(strings.Join(notes("ViewerDetached"), "\n"), `"bob" detached`)
	})
}
