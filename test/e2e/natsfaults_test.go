package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/broker"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A replica on a three-node JetStream cluster (streams on three replicas)
// while its shells each print a numbered line several times a second and a
// viewer follows each: one node killed (SIGKILL) and started again, then
// the leader of the output stream. No session object is lost, every
// viewer sees every line once and in order, no viewer is cut, the API stays
// ready (a quorum remains throughout), and the shells answer afterwards.
// Then two of the three, for 5 s and for 20 s (no quorum): each shell
// either goes on and answers, or stops and is reported BridgeLost with its
// viewer told; the API is unready only after ReadyGrace without a quorum,
// and ready again once NATS is whole.
func TestNATSNodeAndStreamLeaderKilledUnderLoad(t *testing.T) {
	t.Parallel()
	sessions := scaled(100, 8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(scaled(25, 8))*time.Minute)
	defer cancel()
	cluster := startNATSCluster(t, "faults")
	js := cluster.jetStream(t)
	r := startReplica(t, "nats-faults", "--nats-url="+cluster.url(), "--nats-stream-replicas=3",
		fmt.Sprintf("--max-sessions-per-user=%d", 2*sessions), fmt.Sprintf("--max-attaches-per-user=%d", 4*sessions))
	ready := watchReady(ctx, t, r)
	cluster.waitCurrent(ctx, js, time.Minute)

	shells := openLoadShells(ctx, t, r, sessions)
	// Ten lines a second in each shell; fewer each at full scale, so that
	// the node's two cores keep up (the loop forks sleep).
	period := "0.1"
	if fullScale() {
		period = "0.5"
	}
	loop := func(sh *loadShell) {
		sh.typeLine(fmt.Sprintf("i=%d; while [ $i -lt 100000 ]; do echo tick-$i; i=$((i+1)); sleep %s; done", sh.ticks(), period))
	}
	for _, sh := range shells {
		loop(sh)
	}
	for _, sh := range shells {
		sh.waitTicks(t, 5, 30*time.Second)
	}

	// Each fault: nodes down for hold, started again, the cluster whole
	// again and the API ready.
	down := func(hold time.Duration, nodes ...int) (start time.Time, whole time.Duration) {
		t.Helper()
		for _, sh := range shells {
			sh.out.resetPause()
		}
		start = time.Now()
		for _, n := range nodes {
			cluster.kill(n)
		}
		time.Sleep(hold) // the fault itself: the nodes stay down this long
		for _, n := range nodes {
			cluster.start(n)
		}
		cluster.waitCurrent(ctx, js, 2*time.Minute)
		ready.waitReady(t, 30*time.Second)
		return start, time.Since(start)
	}
	// With a quorum: nothing lost, nobody cut, the API ready throughout.
	fault := func(what string, node int) {
		t.Helper()
		before := make([]int, len(shells))
		for i, sh := range shells {
			before[i] = sh.ticks()
		}
		start, whole := down(5*time.Second, node)
		for i, sh := range shells {
			sh.waitTicks(t, before[i]+5, time.Minute)
		}
		unready := ready.unreadySince(start)
		recordFigure(t, what, "down 5s, whole again %s after the kill; API unready %s; longest pause in a viewer's output %s; %d sessions, none lost, no line lost or out of order",
			whole.Round(100*time.Millisecond), unready.Round(100*time.Millisecond), longestPause(shells).Round(10*time.Millisecond), len(shells))
		// Known gap (docs/reliability.md): a replica's check may fail for
		// a moment after NATS is whole again. Bounded, not yet zero.
		if unready > broker.ReadyGrace/2 {
			t.Errorf("%s: the API was unready for %s with a quorum throughout", what, unready)
		}
	}

	leaders := map[int]int{}
	for _, stream := range []string{wire.IOStream, wire.LeaseStream} {
		l, err := cluster.streamLeader(ctx, js, stream)
		if err != nil {
			t.Fatal(err)
		}
		leaders[l]++
	}
	follower := 0
	for follower < len(cluster.nodes) && leaders[follower] > 0 {
		follower++
	}
	if follower == len(cluster.nodes) {
		t.Fatal("every node leads a stream")
	}
	fault("a NATS node (no leader of output or leases) killed and restarted", follower)
	leader, err := cluster.streamLeader(ctx, js, wire.IOStream)
	if err != nil {
		t.Fatal(err)
	}
	fault("the output stream's leader node killed and restarted", leader)

	c := r.client().TerminalV1alpha1().TerminalSessions("team-a")
	for _, sh := range shells {
		s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("session %s after the faults: %v", sh.name, err)
		}
		if s.Status.Phase != v1alpha1.TerminalSessionRunning {
			t.Errorf("session %s after the faults: %s (%s: %s)", sh.name, s.Status.Phase, s.Status.Reason, s.Status.Message)
		}
	}
	// Every shell answers: ^C ends its loop, and it starts again where it
	// stopped.
	answered, retyped := answering(t, shells, len(shells))
	recordFigure(t, "after a node and the stream leader were killed and restarted", "every shell answered ^C; %d of %d interrupts had to be typed again (lost keystrokes)", retyped, len(shells))
	for _, sh := range answered {
		loop(sh)
	}

	// No quorum: two of three down. For a short while the shells may go on
	// (a lease has 12 s from its last renewal); past it they stop rather
	// than run with nobody able to tell, and are reported.
	two := []int{leader, (leader + 1) % len(cluster.nodes)}
	for _, hold := range []time.Duration{5 * time.Second, 20 * time.Second} {
		start, whole := down(hold, two...)
		unready := ready.unreadySince(start)
		// Unready only once ReadyGrace has passed without a quorum, and
		// ready again once NATS is whole (down waited for it). The slack of
		// half a grace is the known gap of docs/reliability.md: a
		// replica's stream lookups may go unanswered for a while after a
		// leader's server came back, and that run of failures can carry
		// into this fault.
		if bound := max(whole-broker.ReadyGrace, 0) + broker.ReadyGrace/2; unready > bound {
			t.Errorf("without a quorum for %s the API was unready %s, more than the %s allowed (NATS broken for %s, less ReadyGrace, plus slack)", hold, unready, bound, whole)
		}
		if hold > broker.ReadyGrace+2*time.Second && unready == 0 {
			t.Errorf("without a quorum for %s the API was never unready", hold)
		}
		// A lease after NATS is whole, each session is reported or Running.
		back := time.Now()
		settled := back.Add(15 * time.Second)
		var lastReport time.Duration // an upper bound: sessions are looked at in turn
		var alive []*loadShell
		for _, sh := range shells {
			eventually(t, time.Minute, "session "+sh.name+" reported or still running", func(ctx context.Context) (bool, error) {
				s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				switch {
				case s.Status.Phase == v1alpha1.TerminalSessionFailed && s.Status.Reason == v1alpha1.ReasonBridgeLost:
					lastReport = max(lastReport, time.Since(back))
					return true, nil
				case s.Status.Phase == v1alpha1.TerminalSessionRunning && time.Now().After(settled):
					alive = append(alive, sh)
					return true, nil
				case s.Status.Phase != v1alpha1.TerminalSessionRunning:
					return false, fmt.Errorf("session %s: %s (%s: %s), want Running or Failed as BridgeLost", sh.name, s.Status.Phase, s.Status.Reason, s.Status.Message)
				}
				return false, nil
			})
		}
		// A Running one answers, or is reported soon after (its lease
		// lapsed later than the others'): none stays Running with nobody
		// behind it.
		survivors, retyped := answering(t, alive, 0)
		late := 0
		for _, sh := range alive {
			if slices.Contains(survivors, sh) {
				continue
			}
			eventually(t, time.Minute, "session "+sh.name+", whose shell does not answer, reported", func(ctx context.Context) (bool, error) {
				s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
				return err == nil && s.Status.Phase == v1alpha1.TerminalSessionFailed && s.Status.Reason == v1alpha1.ReasonBridgeLost, nil
			})
			late++
			lastReport = max(lastReport, time.Since(back))
		}
		// A stopped shell's viewer is told: its attach ends.
		for _, sh := range shells {
			if slices.Contains(survivors, sh) {
				continue
			}
			select {
			case <-sh.done:
			case <-time.After(30 * time.Second):
				t.Errorf("the viewer of %s, stopped as BridgeLost, is still attached", sh.name)
			}
		}
		recordFigure(t, fmt.Sprintf("two of the three NATS nodes down for %s (no quorum)", hold),
			"whole again %s after the kill; API unready %s; %d of %d shells went on and answered (%d interrupts typed again); %d stopped and were reported BridgeLost (their viewers told), all within %s of NATS being whole, %d of them more than 15 s after",
			whole.Round(100*time.Millisecond), unready.Round(100*time.Millisecond), len(survivors), len(shells), retyped, len(shells)-len(survivors), lastReport.Round(time.Second), late)
		for _, sh := range survivors {
			loop(sh)
		}
		shells = survivors
	}
	stopLoadShells(ctx, t, r, shells)
}

// answering interrupts each shell's loop (^C) and returns those whose
// shell answers: the interrupt echoed and a prompt after it. A ^C that got
// no answer within 10 s is typed again, twice at most, as a user would:
// keystrokes typed while NATS recovers can be lost (docs/reliability.md,
// known gaps), and the lost ones are counted in retyped. Fewer answering
// than want fails the test.
func answering(t *testing.T, shells []*loadShell, want int) (answered []*loadShell, retyped int) {
	t.Helper()
	marks := make([]int, len(shells))
	for i, sh := range shells {
		marks[i] = sh.out.len()
	}
	pending := append([]*loadShell(nil), shells...)
	index := func(sh *loadShell) int { return slices.Index(shells, sh) }
	for try := 0; try < 3 && len(pending) > 0; try++ {
		if try > 0 {
			retyped += len(pending)
		}
		for _, sh := range pending {
			sh.typeLine("\x03")
		}
		deadline := time.Now().Add(10 * time.Second) // for them all: they were typed to at once
		var still []*loadShell
		for _, sh := range pending {
			if sh.prompted(marks[index(sh)], max(time.Until(deadline), 100*time.Millisecond)) {
				answered = append(answered, sh)
			} else {
				still = append(still, sh)
			}
		}
		pending = still
	}
	for _, sh := range pending {
		t.Logf("the shell of %s does not answer ^C, typed three times; screen:\n%s", sh.name, sh.out.tail())
	}
	if len(answered) < want {
		t.Fatalf("%d of %d shells answer ^C, want %d", len(answered), len(shells), want)
	}
	return answered, retyped
}

// prompted says whether, after mark, the screen shows the echoed ^C and
// then a prompt within timeout: a numbered line printed as the interrupt
// came is before the prompt, and the loop may start again after it.
func (sh *loadShell) prompted(mark int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		sh.out.mu.Lock()
		rest := sh.out.buf.Bytes()[mark:]
		i := bytes.Index(rest, []byte("^C"))
		ok := i >= 0 && bytes.Contains(rest[i:], []byte("# "))
		sh.out.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return ok
		}
		time.Sleep(50 * time.Millisecond) // a poll with a deadline
	}
}

// loadShell is a session of the replica's with a viewer attached over
// WebSocket, as admin, reading numbered lines.
type loadShell struct {
	name  string
	stdin *io.PipeWriter
	out   *tickScreen
	done  chan error
}

// openLoadShells opens n sessions, eight at a time, each with its viewer.
func openLoadShells(ctx context.Context, t *testing.T, r *replica, n int) []*loadShell {
	t.Helper()
	shells := make([]*loadShell, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range shells {
		g.Go(func() error {
			sh, err := openLoadShell(ctx, gctx, r)
			shells[i] = sh
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	return shells
}

// openLoadShell opens the session within setup and keeps the viewer
// attached until ctx ends.
func openLoadShell(ctx, setup context.Context, r *replica) (*loadShell, error) {
	c := r.client()
	s, err := c.TerminalV1alpha1().TerminalSessions("team-a").Create(setup, framework.NewSession("team-a", uniqueName("load"), "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	r.t.Cleanup(func() {
		_ = c.TerminalV1alpha1().TerminalSessions("team-a").Delete(context.Background(), s.Name, metav1.DeleteOptions{})
	})
	if _, err := framework.WaitPhase(setup, c, "team-a", s.Name, v1alpha1.TerminalSessionRunning, time.Minute); err != nil {
		return nil, err
	}
	exec, err := framework.Executor(r.config(), framework.AttachURL(c, "team-a", s.Name,
		&v1alpha1.TerminalSessionAttachOptions{Stdin: true, Stdout: true, TTY: true}), true)
	if err != nil {
		return nil, err
	}
	stdin, typeIn := io.Pipe()
	r.t.Cleanup(func() { typeIn.Close() })
	sh := &loadShell{name: s.Name, stdin: typeIn, out: &tickScreen{}, done: make(chan error, 1)}
	go func() {
		sh.done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: sh.out, Tty: true})
	}()
	return sh, nil
}

// typeLine writes from a goroutine: a pipe write blocks until the executor
// reads it.
func (sh *loadShell) typeLine(line string) {
	go func() { _, _ = sh.stdin.Write([]byte(line + "\n")) }()
}

func (sh *loadShell) ticks() int {
	sh.out.mu.Lock()
	defer sh.out.mu.Unlock()
	return sh.out.next
}

// waitTicks waits until the viewer has read n lines, all in order, and the
// attach is still open.
func (sh *loadShell) waitTicks(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d lines in order from %s", n, sh.name), func(context.Context) (bool, error) {
		select {
		case err := <-sh.done:
			return false, fmt.Errorf("the viewer of %s was cut: %v; screen:\n%s", sh.name, err, sh.out.tail())
		default:
		}
		sh.out.mu.Lock()
		defer sh.out.mu.Unlock()
		if sh.out.err != nil {
			return false, fmt.Errorf("%s: %v; screen:\n%s", sh.name, sh.out.err, tail(sh.out.buf.String(), 20))
		}
		return sh.out.next >= n, nil
	})
}

// stopLoadShells ends each loop (^C) and shell, and checks that each
// viewer's attach ended with its shell, having seen every line in order.
func stopLoadShells(ctx context.Context, t *testing.T, r *replica, shells []*loadShell) {
	t.Helper()
	// ^C first, and exit once the shell is back at its prompt: the
	// terminal drops what was typed ahead of an interrupt.
	answered, _ := answering(t, shells, len(shells))
	for _, sh := range answered {
		sh.typeLine("exit 0")
	}
	deadline := time.After(30 * time.Second)
	c := r.client().TerminalV1alpha1().TerminalSessions("team-a")
	for _, sh := range shells {
		select {
		case err := <-sh.done:
			if err != nil {
				t.Errorf("the viewer of %s ended with %v", sh.name, err)
			}
		case <-deadline:
			deadline = time.After(0)
			s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
			if err == nil {
				err = fmt.Errorf("%s (%s: %s)", s.Status.Phase, s.Status.Reason, s.Status.Message)
			}
			t.Errorf("the viewer of %s did not end after exit; the session: %v; screen:\n%s", sh.name, err, sh.out.tail())
		}
		sh.out.mu.Lock()
		if sh.out.err != nil {
			t.Errorf("%s: %v", sh.name, sh.out.err)
		}
		sh.out.mu.Unlock()
	}
}

var tickLine = regexp.MustCompile(`tick-(\d+)\r\n`)

// tickScreen is a viewer's screen that checks, as it arrives, that the
// loop's lines come once each and in order, and notes the longest pause
// between two of them. The echo of the typed loop ("tick-$i") does not
// match.
type tickScreen struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	scanned  int
	next     int
	last     time.Time
	maxPause time.Duration
	err      error
}

func (s *tickScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(p)
}

func (s *tickScreen) writeLocked(p []byte) (int, error) {
	s.buf.Write(p)
	rest := s.buf.Bytes()[s.scanned:]
	now := time.Now()
	for _, m := range tickLine.FindAllSubmatchIndex(rest, -1) {
		n, _ := strconv.Atoi(string(rest[m[2]:m[3]]))
		if n != s.next && s.err == nil {
			s.err = fmt.Errorf("line tick-%d where tick-%d was due: output lost, repeated or reordered", n, s.next)
		}
		s.next = n + 1
		if !s.last.IsZero() && now.Sub(s.last) > s.maxPause {
			s.maxPause = now.Sub(s.last)
		}
		s.last = now
	}
	// A partial line waits for the next write.
	if i := bytes.LastIndexByte(rest, '\n'); i >= 0 {
		s.scanned += i + 1
	}
	return len(p), nil
}

func (s *tickScreen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// resetPause starts measuring the longest pause afresh (for one fault).
func (s *tickScreen) resetPause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxPause = 0
}

func (s *tickScreen) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tail(s.buf.String(), 20)
}

// longestPause is the longest any viewer waited between two lines.
func longestPause(shells []*loadShell) time.Duration {
	var max time.Duration
	for _, sh := range shells {
		sh.out.mu.Lock()
		if sh.out.maxPause > max {
			max = sh.out.maxPause
		}
		sh.out.mu.Unlock()
	}
	return max
}

// readiness polls a replica's /readyz ten times a second and keeps the
// spans it failed.
type readiness struct {
	mu      sync.Mutex
	spans   [][2]time.Time // unready from, to (zero: still)
	current bool
}

func watchReady(ctx context.Context, t *testing.T, r *replica) *readiness {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(r.config())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 3 * time.Second}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz?verbose", r.port)
	rd := &readiness{current: true}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			ok, why := false, ""
			if resp, err := client.Do(req); err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				ok, why = resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, body)
			} else {
				why = err.Error()
			}
			if ctx.Err() != nil {
				return
			}
			if rd.note(ok, time.Now()) {
				t.Logf("replica %s: /readyz %s", r.name, why)
			}
		}
	}()
	return rd
}

// note records a poll's result, and says whether it changed.
func (rd *readiness) note(ok bool, at time.Time) bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	changed := ok != rd.current
	switch {
	case !ok && rd.current:
		rd.spans = append(rd.spans, [2]time.Time{at, {}})
	case ok && !rd.current:
		rd.spans[len(rd.spans)-1][1] = at
	}
	rd.current = ok
	return changed
}

// waitReady waits until /readyz passes.
func (rd *readiness) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the replica ready", func(context.Context) (bool, error) {
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.current, nil
	})
}

// unreadySince is how long /readyz failed since from.
func (rd *readiness) unreadySince(from time.Time) time.Duration {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	var d time.Duration
	for _, s := range rd.spans {
		start, end := s[0], s[1]
		if end.IsZero() {
			end = time.Now()
		}
		if end.Before(from) {
			continue
		}
		if start.Before(from) {
			start = from
		}
		d += end.Sub(start)
	}
	return d
}
