package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A replica on a three-node JetStream cluster (streams on three replicas)
// while its shells each print a numbered line several times a second and a
// viewer follows each: one node killed (SIGKILL) and started again, then
// the leader of the output stream. No session object is lost, every
// viewer sees every line once and in order, no viewer is cut, the API stays
// ready (a quorum remains throughout), and the shells answer afterwards.
func TestNATSNodeAndStreamLeaderKilledUnderLoad(t *testing.T) {
	t.Parallel()
	sessions := scaled(100, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cluster := startNATSCluster(t, "faults")
	js := cluster.jetStream(t)
	r := startReplica(t, "nats-faults", "--nats-url="+cluster.url(), "--nats-stream-replicas=3",
		fmt.Sprintf("--max-sessions-per-user=%d", 2*sessions), fmt.Sprintf("--max-attaches-per-user=%d", 4*sessions))
	ready := watchReady(ctx, t, r)
	cluster.waitCurrent(ctx, js, time.Minute)

	shells := make([]*loadShell, sessions)
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
	// again; then every shell has printed more.
	down := func(hold time.Duration, nodes ...int) (start time.Time, whole time.Duration) {
		t.Helper()
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
	fault := func(what string, hold time.Duration, nodes ...int) (unready, whole time.Duration) {
		t.Helper()
		before := make([]int, len(shells))
		for i, sh := range shells {
			before[i] = sh.ticks()
		}
		start, whole := down(hold, nodes...)
		for i, sh := range shells {
			sh.waitTicks(t, before[i]+5, time.Minute)
		}
		unready = ready.unreadySince(start)
		recordFigure(t, what, "down %s, whole again %s after the kill; API unready %s; longest pause in a viewer's output %s; %d sessions, none lost, no line lost or out of order",
			hold, whole.Round(100*time.Millisecond), unready.Round(100*time.Millisecond), longestPause(shells).Round(10*time.Millisecond), len(shells))
		return unready, whole
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
	if unready, _ := fault("a NATS node (no leader of output or leases) killed and restarted", 5*time.Second, follower); unready > 0 {
		t.Errorf("the API was unready for %s with a quorum throughout", unready)
	}
	leader, err := cluster.streamLeader(ctx, js, wire.IOStream)
	if err != nil {
		t.Fatal(err)
	}
	if unready, _ := fault("the output stream's leader node killed and restarted", 5*time.Second, leader); unready > 0 {
		t.Errorf("the API was unready for %s with a quorum throughout", unready)
	}
	// Two of three for less than a lease's margin: no quorum, then the
	// streams elect leaders again and every shell goes on.
	two := []int{leader, (leader + 1) % len(cluster.nodes)}
	if unready, whole := fault("two of the three NATS nodes killed (no quorum) and restarted", 5*time.Second, two...); unready > whole {
		t.Errorf("the API was unready %s, longer than the cluster was broken (%s)", unready, whole)
	}

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

	// Every shell answers: ^C ends its loop (the echo comes back after the
	// loop's last line), and the loop starts again where it stopped.
	for _, sh := range shells {
		sh.typeLine("\x03")
	}
	for _, sh := range shells {
		if !sh.sees("^C", 30*time.Second) {
			t.Fatalf("the shell of %s does not answer ^C after the faults; screen:\n%s", sh.name, sh.out.tail())
		}
		loop(sh)
	}
	for _, sh := range shells {
		sh.waitTicks(t, sh.ticks()+5, 30*time.Second)
	}

	// No quorum for longer than a lease: the API says so, and the shells
	// stop (BridgeLost) rather than run with nobody able to tell.
	const long = 20 * time.Second
	start, whole := down(long, two...)
	unready := ready.unreadySince(start)
	if unready == 0 || unready > whole {
		t.Errorf("without a quorum for %s the API was unready %s; want unready, for no longer than the cluster was broken (%s)", long, unready, whole)
	}
	// A lease after the cluster is whole again, every session is either
	// reported (the replica that ran it, or any other, found its lease
	// lapsed) or Running: then its shell must answer (stopLoadShells).
	var lost, running int
	settled := time.Now().Add(15 * time.Second)
	for _, sh := range shells {
		eventually(t, time.Minute, "session "+sh.name+" reported or still running", func(ctx context.Context) (bool, error) {
			s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			switch {
			case s.Status.Phase == v1alpha1.TerminalSessionFailed && s.Status.Reason == v1alpha1.ReasonBridgeLost:
				lost++
				return true, nil
			case s.Status.Phase == v1alpha1.TerminalSessionRunning && time.Now().After(settled):
				running++
				return true, nil
			case s.Status.Phase != v1alpha1.TerminalSessionRunning:
				return false, fmt.Errorf("session %s: %s (%s: %s), want Running or Failed as BridgeLost", sh.name, s.Status.Phase, s.Status.Reason, s.Status.Message)
			}
			return false, nil
		})
	}
	var alive []*loadShell
	for _, sh := range shells {
		s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
		if err == nil && s.Status.Phase == v1alpha1.TerminalSessionRunning {
			alive = append(alive, sh)
			continue
		}
		// A stopped shell's viewer is told: its attach ends.
		select {
		case <-sh.done:
		case <-time.After(30 * time.Second):
			t.Errorf("the viewer of %s, stopped as BridgeLost, is still attached", sh.name)
		}
	}
	// A session still Running either answers, or is reported soon after
	// (its lease lapsed later than the others'): none stays Running with
	// nobody behind it.
	var answered []*loadShell
	late := 0
	for _, sh := range alive {
		sh.typeLine("\x03")
	}
	probe := time.Now().Add(30 * time.Second) // for them all: they were typed to at once
	for _, sh := range alive {
		if sh.sees("^C", max(time.Until(probe), time.Second)) {
			answered = append(answered, sh)
			continue
		}
		eventually(t, time.Minute, "session "+sh.name+", whose shell does not answer, reported", func(ctx context.Context) (bool, error) {
			s, err := c.Get(ctx, sh.name, metav1.GetOptions{})
			return err == nil && s.Status.Phase == v1alpha1.TerminalSessionFailed && s.Status.Reason == v1alpha1.ReasonBridgeLost, nil
		})
		late++
	}
	lost += late
	running -= late
	recordFigure(t, "two of the three NATS nodes down for longer than a lease", "down %s, whole again %s after the kill; API unready %s; %d of %d shells stopped and reported BridgeLost (their viewers told), %d of them more than 15 s after; %d went on and answered",
		long, whole.Round(100*time.Millisecond), unready.Round(100*time.Millisecond), lost, len(shells), late, len(answered))
	stopLoadShells(ctx, t, r, answered)
}

// sees says whether want shows on the screen after the last numbered line
// within timeout.
func (sh *loadShell) sees(want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		sh.out.mu.Lock()
		ok := bytes.Contains(sh.out.buf.Bytes()[sh.out.lastTickEnd:], []byte(want))
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
	for _, sh := range shells {
		sh.typeLine("\x03")
	}
	for _, sh := range shells {
		if !sh.sees("^C", 30*time.Second) {
			t.Errorf("the shell of %s does not answer ^C; screen:\n%s", sh.name, sh.out.tail())
		}
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
	mu          sync.Mutex
	buf         bytes.Buffer
	scanned     int
	lastTickEnd int
	next        int
	last        time.Time
	maxPause    time.Duration
	err         error
}

func (s *tickScreen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	rest := s.buf.Bytes()[s.scanned:]
	now := time.Now()
	for _, m := range tickLine.FindAllSubmatchIndex(rest, -1) {
		n, _ := strconv.Atoi(string(rest[m[2]:m[3]]))
		s.lastTickEnd = s.scanned + m[1]
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
