package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A hundred viewers drop at once and reconnect at once, each asking for
// what followed the bytes it has (since): every one of them goes on
// reading where it stopped, every line once and in order, while the shells
// keep printing; the replica takes the storm.
func TestHundredViewersReconnectAtOnce(t *testing.T) {
	t.Parallel()
	const viewers = 100
	sessions := scaled(10, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := startReplica(t, "viewer-storm", "--nats-url="+startNATS(t),
		fmt.Sprintf("--max-sessions-per-user=%d", 2*sessions), fmt.Sprintf("--max-attaches-per-user=%d", 2*viewers+2*sessions),
		fmt.Sprintf("--max-viewers-per-session=%d", 2*viewers/sessions+2))

	shells := openLoadShells(ctx, t, r, sessions)
	for _, sh := range shells {
		sh.typeLine("i=0; while [ $i -lt 100000 ]; do echo tick-$i; i=$((i+1)); sleep 0.2; done")
	}

	// The viewers: read-only, as many on each session.
	var all []*observer
	for i := range viewers {
		o := &observer{r: r, name: shells[i%sessions].name, out: &tickScreen{}}
		o.attach(ctx)
		all = append(all, o)
	}
	for _, o := range all {
		o.waitTicks(t, 5, time.Minute)
	}

	// All dropped at once, as a proxy's restart or a network cut does.
	for _, o := range all {
		o.drop(t)
	}
	had := make([]int, len(all))
	for i, o := range all {
		had[i] = o.ticks()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, o := range all {
		wg.Go(func() { o.attach(ctx) })
	}
	wg.Wait()
	for i, o := range all {
		o.waitTicks(t, had[i]+3, time.Minute)
	}
	took := time.Since(start)
	for _, o := range all {
		o.drop(t)
	}
	recordFigure(t, "100 viewers of running shells dropped at once and reconnected at once (since: the bytes each had)",
		"all reading again, each where it stopped, %s after the reconnect began; no line lost or twice; %d sessions printing 5 lines a second", took.Round(10*time.Millisecond), sessions)
	stopLoadShells(ctx, t, r, shells)
}

// observer is a read-only viewer that reattaches from the bytes it has.
type observer struct {
	r      *replica
	name   string
	out    *tickScreen
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	gate   *gate
}

// gate lets one attach's output onto the screen until it is shut: a
// dropped stream may still hold a chunk it read, which must not land after
// the reconnect asked for what followed the bytes the screen had.
type gate struct {
	s    *tickScreen
	shut bool // under s.mu
}

func (g *gate) Write(p []byte) (int, error) {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if g.shut {
		return len(p), nil
	}
	return g.s.writeLocked(p)
}

func (g *gate) close() {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.shut = true
}

func (o *observer) attach(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	g := &gate{s: o.out}
	o.mu.Lock()
	o.cancel, o.done, o.gate = cancel, done, g
	o.mu.Unlock()
	exec, err := framework.Executor(o.r.config(), framework.AttachURL(o.r.client(), "team-a", o.name,
		&v1alpha1.TerminalSessionAttachOptions{Stdout: true, TTY: true, Since: int64(o.out.len())}), true)
	if err != nil {
		done <- err
		return
	}
	go func() {
		done <- exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: g, Tty: true})
	}()
}

// drop cuts the viewer's connection: what its screen has is then final.
func (o *observer) drop(t *testing.T) {
	o.mu.Lock()
	cancel, done, g := o.cancel, o.done, o.gate
	o.mu.Unlock()
	g.close()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("a viewer of %s did not end 30 s after its connection was cut", o.name)
	}
	o.out.mu.Lock()
	defer o.out.mu.Unlock()
	if o.out.err != nil {
		t.Errorf("a viewer of %s: %v", o.name, o.out.err)
	}
}

func (o *observer) ticks() int {
	o.out.mu.Lock()
	defer o.out.mu.Unlock()
	return o.out.next
}

// waitTicks waits until the viewer has read n lines, in order.
func (o *observer) waitTicks(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d lines in order for a viewer of %s", n, o.name), func(context.Context) (bool, error) {
		o.mu.Lock()
		done := o.done
		o.mu.Unlock()
		select {
		case err := <-done:
			return false, fmt.Errorf("a viewer of %s was cut: %v; screen:\n%s", o.name, err, o.out.tail())
		default:
		}
		o.out.mu.Lock()
		defer o.out.mu.Unlock()
		if o.out.err != nil {
			return false, fmt.Errorf("a viewer of %s: %v", o.name, o.out.err)
		}
		return o.out.next >= n, nil
	})
}
