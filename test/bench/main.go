// Command bench measures terminal sessions on the local control plane (make
// bench) side by side with a direct pods/exec on the same pod: session setup,
// keystroke echo round trip, bulk output throughput, and server memory per
// idle session. It prints the figures; it asserts nothing.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/bridge"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
)

var (
	nSetup     = flag.Int("sessions", 50, "sessions for the setup figures")
	nEcho      = flag.Int("echo", 200, "keystrokes for the echo figures")
	bulkMiB    = flag.Int("bulk-mib", 256, "MiB of output for the throughput figures")
	nIdle      = flag.Int("idle", 1000, "idle sessions for the memory figure")
	bulkRounds = flag.Int("bulk-rounds", 3, "rounds of the throughput figures (median)")
	hold       = flag.Duration("hold", 0, "keep the idle sessions open this long after measuring (to profile the server)")
	ns         = "team-a"
	pod        = "shell-demo"
)

type env struct {
	cfg      *rest.Config
	kube     *kubernetes.Clientset
	sessions clientset.Interface
	nc       *nats.Conn
	js       jetstream.JetStream
}

func main() {
	flag.Parse()
	// client-go logs every closed exec stream; the figures are the output.
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("logtostderr", "false")
	_ = klogFlags.Set("stderrthreshold", "FATAL")
	klog.SetOutput(io.Discard)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: os.Getenv("KUBECONFIG")},
		&clientcmd.ConfigOverrides{CurrentContext: "alice"}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig (run through make bench): %w", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	e := &env{cfg: cfg}
	e.kube = kubernetes.NewForConfigOrDie(cfg)
	e.sessions = clientset.NewForConfigOrDie(cfg)
	if e.nc, err = nats.Connect(os.Getenv("TERMINAL_APISERVER_NATS_URL")); err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	defer e.nc.Close()
	e.js, _ = jetstream.New(e.nc)
	ctx := context.Background()

	fmt.Printf("terminal-apiserver vs direct pods/exec, pod %s/%s, through kube-apiserver (kwok kubelet)\n\n", ns, pod)
	fmt.Printf("%-44s %14s %14s\n", "figure", "session", "direct exec")

	// Memory first: the other figures churn NATS's buffers (in this process
	// with the embedded server), which would blur a before/after reading.
	perSession, err := e.memory(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %10.1f KiB %14s\n", fmt.Sprintf("server RSS per idle session (n=%d)", *nIdle), perSession.rss/1024, "-")
	fmt.Printf("%-44s %10.1f KiB %14s\n", "  of which live heap and stacks", perSession.heapStack/1024, "-")

	ss, ds, err := e.setup(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %14s %14s\n", fmt.Sprintf("setup to first byte p50 (n=%d)", *nSetup), pct(ss, 50), pct(ds, 50))
	fmt.Printf("%-44s %14s %14s\n", "setup to first byte p99", pct(ss, 99), pct(ds, 99))

	se, de, err := e.echo(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %14s %14s\n", fmt.Sprintf("keystroke echo p50 (n=%d)", *nEcho), pct(se, 50), pct(de, 50))
	fmt.Printf("%-44s %14s %14s\n", "keystroke echo p99", pct(se, 99), pct(de, 99))

	// Throughput on a shared 2-core machine varies from run to run: the
	// median of alternating rounds.
	var sts, dts []float64
	for range *bulkRounds {
		bctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		st, dt, err := e.bulk(bctx)
		cancel()
		if err != nil {
			fmt.Printf("%-44s %14s %14s   (%v)\n", fmt.Sprintf("bulk output (%d MiB)", *bulkMiB), "-", "-", err)
			return nil
		}
		sts, dts = append(sts, st), append(dts, dt)
	}
	st, dt := median(sts), median(dts)
	fmt.Printf("%-44s %11.1f MiB/s %11.1f MiB/s\n", fmt.Sprintf("bulk output (%d MiB), median of %d", *bulkMiB, *bulkRounds), st, dt)
	fmt.Printf("%-44s %13.2fx\n", "  session / direct", st/dt)
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond).String()
}

// open creates a session and returns it with a channel of its output frames.
func (e *env) open(ctx context.Context, command []string) (*v1alpha1.TerminalSession, <-chan []byte, func(), error) {
	tty := true
	s, err := e.sessions.TerminalV1alpha1().TerminalSessions(ns).Create(ctx, &v1alpha1.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-", Namespace: ns},
		Spec:       v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: pod}, Command: command, TTY: &tty},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	frames := make(chan []byte, 4096)
	cons, err := e.js.OrderedConsumer(ctx, bridge.IOStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bridge.SubjectsFor(string(s.UID)).Out()}})
	if err != nil {
		return nil, nil, nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { frames <- m.Data() })
	if err != nil {
		return nil, nil, nil, err
	}
	closeFn := func() {
		cc.Stop()
		_ = e.sessions.TerminalV1alpha1().TerminalSessions(ns).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
	}
	return s, frames, closeFn, nil
}

func (e *env) executor(command []string) (remotecommand.Executor, error) {
	u := e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: command, Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec).URL()
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, httpstream.IsUpgradeFailure)
}

// waitRunning polls until the session's process runs.
func (e *env) waitRunning(ctx context.Context, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cur, err := e.sessions.TerminalV1alpha1().TerminalSessions(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Status.Phase == v1alpha1.TerminalSessionRunning {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("session %s not running within 30s", name)
}

// firstByte is a writer that reports its first write.
type firstByte struct {
	once sync.Once
	ch   chan struct{}
}

func (f *firstByte) Write(p []byte) (int, error) {
	f.once.Do(func() { close(f.ch) })
	return len(p), nil
}

func (e *env) setup(ctx context.Context) (session, direct []time.Duration, err error) {
	for range *nSetup {
		start := time.Now()
		_, frames, closeFn, err := e.open(ctx, nil)
		if err != nil {
			return nil, nil, err
		}
		select {
		case <-frames:
			session = append(session, time.Since(start))
		case <-time.After(30 * time.Second):
			closeFn()
			return nil, nil, fmt.Errorf("no output within 30s")
		}
		closeFn()
	}
	for range *nSetup {
		start := time.Now()
		exec, err := e.executor([]string{"bash"})
		if err != nil {
			return nil, nil, err
		}
		fb := &firstByte{ch: make(chan struct{})}
		sctx, cancel := context.WithCancel(ctx)
		stdin, stdinW := io.Pipe()
		go func() {
			_ = exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: fb, Tty: true})
		}()
		select {
		case <-fb.ch:
			direct = append(direct, time.Since(start))
		case <-time.After(30 * time.Second):
		}
		_, _ = stdinW.Write([]byte("exit\n"))
		stdinW.Close()
		cancel()
	}
	return session, direct, nil
}

// waitFor reads frames until want has been seen.
func waitFor(frames <-chan []byte, want []byte, buf *bytes.Buffer) error {
	timeout := time.After(60 * time.Second)
	for !bytes.Contains(buf.Bytes(), want) {
		select {
		case f := <-frames:
			buf.Write(f)
		case <-timeout:
			return fmt.Errorf("did not see %q", want)
		}
	}
	return nil
}

func (e *env) echo(ctx context.Context) (session, direct []time.Duration, err error) {
	// cat under a TTY: the line discipline echoes each key at once.
	s, frames, closeFn, err := e.open(ctx, []string{"cat"})
	if err != nil {
		return nil, nil, err
	}
	defer closeFn()
	// Input is read once the session runs (the bridge subscribes then).
	if err := e.waitRunning(ctx, s.Name); err != nil {
		return nil, nil, err
	}
	in := bridge.SubjectsFor(string(s.UID)).In()
	var buf bytes.Buffer
	for i := range *nEcho + 1 {
		key := []byte{byte('a' + i%26)}
		buf.Reset()
		start := time.Now()
		if err := e.nc.Publish(in, key); err != nil {
			return nil, nil, err
		}
		if err := waitFor(frames, key, &buf); err != nil {
			return nil, nil, fmt.Errorf("session echo: %w", err)
		}
		if i > 0 { // the first waits for the process to start
			session = append(session, time.Since(start))
		}
	}

	exec, err := e.executor([]string{"cat"})
	if err != nil {
		return nil, nil, err
	}
	stdin, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: outW, Tty: true})
	}()
	p := make([]byte, 4096)
	for i := range *nEcho + 1 {
		key := []byte{byte('a' + i%26)}
		start := time.Now()
		if _, err := stdinW.Write(key); err != nil {
			return nil, nil, err
		}
		for {
			n, err := outR.Read(p)
			if err != nil {
				return nil, nil, err
			}
			if bytes.Contains(p[:n], key) {
				break
			}
		}
		if i > 0 {
			direct = append(direct, time.Since(start))
		}
	}
	stdinW.Write([]byte{4})
	return session, direct, nil
}

func (e *env) bulk(ctx context.Context) (session, direct float64, err error) {
	// The process waits after the marker: kwok closes the pty as soon as
	// the process exits, losing whatever output it had not read yet.
	script := fmt.Sprintf("read go; head -c %d /dev/zero | tr '\\0' 'x'; echo; echo BULK-END; read done", *bulkMiB<<20)
	cmd := []string{"bash", "-c", script}
	s, frames, closeFn, err := e.open(ctx, cmd)
	if err != nil {
		return 0, 0, err
	}
	defer closeFn()
	if err := e.waitRunning(ctx, s.Name); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := e.nc.Publish(bridge.SubjectsFor(string(s.UID)).In(), []byte("\n")); err != nil {
		return 0, 0, err
	}
	var total int
	var tail []byte
	deadline := ctx.Done()
	for !bytes.Contains(tail, []byte("BULK-END")) {
		select {
		case f := <-frames:
			total += len(f)
			tail = append(tail, f...)
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
		case <-deadline:
			return 0, 0, fmt.Errorf("session bulk output incomplete after %d bytes", total)
		}
	}
	session = float64(total) / (1 << 20) / time.Since(start).Seconds()

	exec, err := e.executor([]string{"bash", "-c", script})
	if err != nil {
		return 0, 0, err
	}
	stdin, stdinW := io.Pipe()
	outR, outW := io.Pipe()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: outW, Tty: true})
	}()
	start = time.Now()
	stdinW.Write([]byte("\n"))
	total, tail = 0, nil
	p := make([]byte, 64<<10)
	for !bytes.Contains(tail, []byte("BULK-END")) {
		if ctx.Err() != nil {
			return session, 0, fmt.Errorf("direct bulk output incomplete after %d bytes", total)
		}
		n, err := outR.Read(p)
		if err != nil {
			return 0, 0, err
		}
		total += n
		tail = append(tail, p[:n]...)
		if len(tail) > 64 {
			tail = tail[len(tail)-64:]
		}
	}
	direct = float64(total) / (1 << 20) / time.Since(start).Seconds()
	return session, direct, nil
}

// memStats is the server's memory as its /metrics report it, read right
// after a forced garbage collection (/debug/pprof/heap?gc=1) so that two
// readings compare live memory rather than points in the GC cycle.
type memStats struct{ rss, heapStack float64 }

func serverMemory() (memStats, error) {
	pki := filepath.Join(os.Getenv("LOCAL_DIR"), "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return memStats{}, err
	}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert},
		// Loopback to the server's own port; its certificate names the
		// in-cluster Service.
		InsecureSkipVerify: true, //nolint:gosec
	}}}
	base := "https://127.0.0.1:" + os.Getenv("TERMINAL_APISERVER_PORT")
	get := func(path string) ([]byte, error) {
		resp, err := c.Get(base + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return b, err
	}
	if _, err := get("/debug/pprof/heap?gc=1"); err != nil {
		return memStats{}, err
	}
	metrics, err := get("/metrics")
	if err != nil {
		return memStats{}, err
	}
	var m memStats
	for _, l := range strings.Split(string(metrics), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "process_resident_memory_bytes":
			m.rss = v
		case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes":
			m.heapStack += v
		}
	}
	if m.rss == 0 {
		return m, fmt.Errorf("no process_resident_memory_bytes in /metrics")
	}
	return m, nil
}

func (e *env) memory(ctx context.Context) (memStats, error) {
	// Warm up with a tenth as many sessions, opened and closed: one-time
	// costs (connection pools, caches, code first run) are not per session.
	warm, err := e.openIdle(ctx, max(*nIdle/10, 1), "warmup")
	e.closeIdle(warm)
	if err != nil {
		return memStats{}, err
	}
	before, err := serverMemory()
	if err != nil {
		return memStats{}, err
	}
	names, err := e.openIdle(ctx, *nIdle, "idle")
	defer e.closeIdle(names)
	if err != nil {
		return memStats{}, err
	}
	after, err := serverMemory()
	if err != nil {
		return memStats{}, err
	}
	if *hold > 0 {
		fmt.Fprintf(os.Stderr, "holding %d idle sessions for %s\n", len(names), *hold)
		time.Sleep(*hold)
	}
	n := float64(len(names))
	return memStats{rss: (after.rss - before.rss) / n, heapStack: (after.heapStack - before.heapStack) / n}, nil
}

// openIdle creates n sessions running cat, labelled bench=label, and
// returns once all run.
func (e *env) openIdle(ctx context.Context, n int, label string) ([]string, error) {
	c := e.sessions.TerminalV1alpha1().TerminalSessions(ns)
	var names []string
	tty := true
	for range n {
		s, err := c.Create(ctx, &v1alpha1.TerminalSession{
			ObjectMeta: metav1.ObjectMeta{GenerateName: label + "-", Namespace: ns, Labels: map[string]string{"bench": label}},
			Spec:       v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: pod}, Command: []string{"cat"}, TTY: &tty},
		}, metav1.CreateOptions{})
		if err != nil {
			return names, err
		}
		names = append(names, s.Name)
	}
	// Wait until none is left that is not Running: a cheap list (at most
	// one item), so that polling does not inflate the server's heap.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		l, err := c.List(ctx, metav1.ListOptions{LabelSelector: "bench=" + label, FieldSelector: "status.phase!=Running", Limit: 1})
		if err != nil {
			return names, err
		}
		if len(l.Items) == 0 {
			return names, nil
		}
		if time.Now().After(deadline) {
			return names, fmt.Errorf("%s sessions not all running after 10m (%s/%s is %s)", label, ns, l.Items[0].Name, l.Items[0].Status.Phase)
		}
		time.Sleep(time.Second)
	}
}

// closeIdle deletes the sessions and gives the server a moment to end them.
func (e *env) closeIdle(names []string) {
	c := e.sessions.TerminalV1alpha1().TerminalSessions(ns)
	for _, n := range names {
		_ = c.Delete(context.Background(), n, metav1.DeleteOptions{})
	}
	time.Sleep(3 * time.Second)
}
