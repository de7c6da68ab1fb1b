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
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

var (
	nSetup     = flag.Int("sessions", 50, "sessions for the setup figures")
	nEcho      = flag.Int("echo", 200, "keystrokes for the echo figures")
	bulkMiB    = flag.Int("bulk-mib", 256, "MiB of output for the throughput figures")
	nIdle      = flag.Int("idle", 1000, "idle sessions for the memory figure")
	bulkRounds = flag.Int("bulk-rounds", 3, "rounds of the throughput figures (median)")
	hold       = flag.Duration("hold", 0, "keep the idle sessions open this long after measuring (to profile the server)")
	ns         = "team-a"
	// pod is the benchmark's own, made for the run and deleted after it:
	// the runtime does not end an exec's process when its stream closes,
	// and deleting the pod ends the thousand shells the run leaves.
	pod = "bench-" + rand.String(5)
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
	cfg, err := framework.RESTConfig(os.Getenv("KUBECONFIG"), "alice")
	if err != nil {
		return fmt.Errorf("%w (run through make bench)", err)
	}
	e := &env{cfg: cfg}
	e.kube = kubernetes.NewForConfigOrDie(cfg)
	e.sessions = clientset.NewForConfigOrDie(cfg)
	if *sizing {
		ctx := context.Background()
		if err := e.createPod(ctx); err != nil {
			return err
		}
		defer e.deletePod()
		return e.sizeInCluster(ctx)
	}
	if e.nc, e.js, err = framework.NATS(); err != nil {
		return err
	}
	defer e.nc.Close()
	ctx := context.Background()

	if err := e.createPod(ctx); err != nil {
		return err
	}
	defer e.deletePod()
	node := os.Getenv("LOCAL_NODE")
	fmt.Printf("terminal-apiserver vs direct pods/exec, pod %s/%s, through kube-apiserver (%s node)\n\n", ns, pod, node)
	// Three columns: a session driven straight through NATS (the bridge
	// alone), the same through the attach subresource (client ->
	// kube-apiserver -> terminal-apiserver -> NATS -> bridge ->
	// kube-apiserver -> kubelet), and a direct pods/exec on the same pod.
	row := func(figure, viaNATS, viaAttach, direct string) {
		fmt.Printf("%-40s %14s %14s %14s\n", figure, viaNATS, viaAttach, direct)
	}
	row("figure", "session (NATS)", "attach", "direct exec")

	// Memory first: the other figures churn NATS's buffers (in this process
	// with the embedded server), which would blur a before/after reading.
	perSession, err := e.memory(ctx)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("server RSS per idle session (n=%d)", *nIdle), fmt.Sprintf("%.1f KiB", perSession.rss/1024), "-", "-")
	row("  of which live heap and stacks", fmt.Sprintf("%.1f KiB", perSession.heapStack/1024), "-", "-")

	ss, ds, err := e.setup(ctx)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("setup to first byte p50 (n=%d)", *nSetup), pct(ss, 50), "-", pct(ds, 50))
	row("setup to first byte p99", pct(ss, 99), "-", pct(ds, 99))

	sn, sa, sd, err := e.echo(ctx)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("keystroke echo p50 (n=%d)", *nEcho), pct(sn, 50), pct(sa, 50), pct(sd, 50))
	row("keystroke echo p99", pct(sn, 99), pct(sa, 99), pct(sd, 99))
	row("  echo p50 / direct", ratio(float64(at(sn, 50)), float64(at(sd, 50))), ratio(float64(at(sa, 50)), float64(at(sd, 50))), "")

	// Throughput on a shared 2-core machine varies from run to run: the
	// median of alternating rounds.
	var tn, ta, td []float64
	for range *bulkRounds {
		bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		n, a, d, err := e.bulk(bctx)
		cancel()
		if err != nil {
			fmt.Printf("bulk output (%d MiB): %v\n", *bulkMiB, err)
			return nil
		}
		tn, ta, td = append(tn, n), append(ta, a), append(td, d)
	}
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB/s", v) }
	n, a, d := median(tn), median(ta), median(td)
	row(fmt.Sprintf("bulk output (%d MiB), median of %d", *bulkMiB, *bulkRounds), mib(n), mib(a), mib(d))
	row("  throughput / direct", ratio(n, d), ratio(a, d), "")
	if *transcriptPairs > 0 {
		return e.printTranscriptCost(ctx)
	}
	return nil
}

// printTranscriptCost prints the recording cost side by side: echo and
// throughput through attach with transcripts on and off.
func (e *env) printTranscriptCost(ctx context.Context) error {
	on, off, err := e.transcriptCost(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nrecording cost: attach with transcripts on and off, %d rounds each, alternating (server restarted per round)\n\n", len(on))
	row := func(figure, a, b, c string) { fmt.Printf("%-40s %14s %14s %14s\n", figure, a, b, c) }
	row("figure", "transcripts on", "off", "on / off")
	pool := func(rs []transcriptRound) (echo []time.Duration, mibs []float64) {
		for _, r := range rs {
			echo, mibs = append(echo, r.echo...), append(mibs, r.throughput)
		}
		return echo, mibs
	}
	eOn, tOn := pool(on)
	eOff, tOff := pool(off)
	for _, p := range []int{50, 99} {
		row(fmt.Sprintf("keystroke echo p%d (n=%d)", p, len(eOn)), pct(eOn, p), pct(eOff, p), ratio(float64(at(eOn, p)), float64(at(eOff, p))))
	}
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB/s", v) }
	row(fmt.Sprintf("text output (%d MiB of base64), median", *transcriptMiB), mib(median(tOn)), mib(median(tOff)), ratio(median(tOn), median(tOff)))
	cpu := func(rs []transcriptRound) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, r.cpu)
		}
		return at(ds, 50)
	}
	row("  server CPU per MiB of it, median", cpu(on).Round(10*time.Microsecond).String(), cpu(off).Round(10*time.Microsecond).String(),
		ratio(float64(cpu(on)), float64(cpu(off))))
	// Each round on a freshly started server: the spread between rounds
	// of one mode is what a difference between the modes is measured against.
	rounds := func(rs []transcriptRound) string {
		var f []string
		for _, r := range rs {
			f = append(f, fmt.Sprintf("%s %.1f", pct(r.echo, 50), r.throughput))
		}
		return strings.Join(f, ", ")
	}
	fmt.Printf("  per round, echo p50 and MiB/s: on %s; off %s\n", rounds(on), rounds(off))
	return nil
}

func ratio(x, direct float64) string { return fmt.Sprintf("%.2fx", x/direct) }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// at is the p-th percentile of ds.
func at(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	return at(ds, p).Round(10 * time.Microsecond).String()
}

// create creates a session running command (nil: the container's shell);
// the returned func deletes it.
func (e *env) create(ctx context.Context, command []string) (*v1alpha1.TerminalSession, func(), error) {
	tty := true
	c := e.sessions.TerminalV1alpha1().TerminalSessions(ns)
	s, err := c.Create(ctx, &v1alpha1.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-", Namespace: ns},
		Spec:       v1alpha1.TerminalSessionSpec{Target: v1alpha1.TerminalTarget{Pod: pod}, Command: command, TTY: &tty},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, err
	}
	return s, func() { _ = c.Delete(context.Background(), s.Name, metav1.DeleteOptions{}) }, nil
}

// open creates a session and returns it with a channel of its output
// frames, read straight from NATS.
func (e *env) open(ctx context.Context, command []string) (*v1alpha1.TerminalSession, <-chan []byte, func(), error) {
	s, deleteFn, err := e.create(ctx, command)
	if err != nil {
		return nil, nil, nil, err
	}
	frames := make(chan []byte, 4096)
	cons, err := e.js.OrderedConsumer(ctx, wire.IOStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.SubjectsFor(string(s.UID)).Out()}})
	if err != nil {
		deleteFn()
		return nil, nil, nil, err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { frames <- m.Data() })
	if err != nil {
		deleteFn()
		return nil, nil, nil, err
	}
	closeFn := func() {
		cc.Stop()
		deleteFn()
	}
	return s, frames, closeFn, nil
}

// executor runs command by a direct pods/exec on the pod.
func (e *env) executor(command []string) (remotecommand.Executor, error) {
	return framework.FallbackExecutor(e.cfg, e.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Command: command, Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec).URL())
}

// attacher attaches to a session through kube-apiserver, as kubectl
// terminal does.
func (e *env) attacher(name string) (remotecommand.Executor, error) {
	return framework.FallbackExecutor(e.cfg, framework.AttachURL(e.sessions, ns, name,
		&v1alpha1.TerminalSessionAttachOptions{Stdin: true, Stdout: true, TTY: true}))
}

// streams runs exec with piped stdin and stdout until ctx ends; stdout
// reports the stream's end as a read error.
func streams(ctx context.Context, exec remotecommand.Executor) (stdin *io.PipeWriter, stdout *io.PipeReader) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() {
		err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: inR, Stdout: outW, Tty: true})
		if err == nil {
			err = io.EOF
		}
		outW.CloseWithError(err)
		inR.CloseWithError(err)
	}()
	return inW, outR
}

// waitRunning polls until the session's process runs.
func (e *env) waitRunning(ctx context.Context, name string) error {
	_, err := framework.WaitPhase(ctx, e.sessions, ns, name, v1alpha1.TerminalSessionRunning, 30*time.Second)
	return err
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

// echo times keystroke round trips three ways: published to the
// session's NATS subject and read from its output stream; typed into an
// attach through kube-apiserver; typed into a direct pods/exec. The three
// take turns key by key, so that the machine's ups and downs touch all.
func (e *env) echo(ctx context.Context) (viaNATS, viaAttach, direct []time.Duration, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// cat under a TTY: the line discipline echoes each key at once.
	cat := []string{"cat"}
	s, frames, closeFn, err := e.open(ctx, cat)
	if err != nil {
		return nil, nil, nil, err
	}
	defer closeFn()
	// Input is read once the session runs (the bridge subscribes then).
	if err := e.waitRunning(ctx, s.Name); err != nil {
		return nil, nil, nil, err
	}
	in := wire.SubjectsFor(string(s.UID)).In()
	var buf bytes.Buffer
	natsKey := func(key []byte) error {
		buf.Reset()
		if err := e.nc.Publish(in, key); err != nil {
			return err
		}
		return waitFor(frames, key, &buf)
	}

	a, deleteFn, err := e.create(ctx, cat)
	if err != nil {
		return nil, nil, nil, err
	}
	defer deleteFn()
	attach, err := e.attacher(a.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	exec, err := e.executor(cat)
	if err != nil {
		return nil, nil, nil, err
	}
	paths := []func([]byte) error{natsKey, typer(sctx, attach), typer(sctx, exec)}
	rtts := make([][]time.Duration, len(paths))
	for i := range *nEcho + 1 {
		key := []byte{byte('a' + i%26)}
		for p, typeKey := range paths {
			start := time.Now()
			if err := typeKey(key); err != nil {
				return nil, nil, nil, fmt.Errorf("echo (%s): %w", []string{"NATS", "attach", "direct"}[p], err)
			}
			if i > 0 { // the first waits for the process or stream to start
				rtts[p] = append(rtts[p], time.Since(start))
			}
		}
	}
	return rtts[0], rtts[1], rtts[2], nil
}

// typer types a key into cat through exec and returns once it is echoed.
func typer(ctx context.Context, exec remotecommand.Executor) func([]byte) error {
	stdin, stdout := streams(ctx, exec)
	p := make([]byte, 4096)
	return func(key []byte) error {
		if _, err := stdin.Write(key); err != nil {
			return err
		}
		for {
			n, err := stdout.Read(p)
			if err != nil {
				return err
			}
			if bytes.Contains(p[:n], key) {
				return nil
			}
		}
	}
}

// bulkScript says it is ready, then writes bulk-mib MiB once a line arrives
// on its stdin. The clock starts at READY: the server holds input typed
// ahead of a process's first output (up to 5 s, until its terminal is
// sized), which is not throughput.
func bulkScript() []string {
	return []string{"bash", "-c", fmt.Sprintf("echo READY; read go; head -c %d /dev/zero | tr '\\0' 'x'; echo; echo BULK-END", *bulkMiB<<20)}
}

// bulk measures output throughput in MiB/s three ways, as echo does.
func (e *env) bulk(ctx context.Context) (viaNATS, viaAttach, direct float64, err error) {
	s, frames, closeFn, err := e.open(ctx, bulkScript())
	if err != nil {
		return 0, 0, 0, err
	}
	defer closeFn()
	if err := e.waitRunning(ctx, s.Name); err != nil {
		return 0, 0, 0, err
	}
	var ready bytes.Buffer
	if err := waitFor(frames, []byte("READY"), &ready); err != nil {
		return 0, 0, 0, err
	}
	start := time.Now()
	if err := e.nc.Publish(wire.SubjectsFor(string(s.UID)).In(), []byte("\n")); err != nil {
		return 0, 0, 0, err
	}
	var total int
	var tail []byte
	for !bytes.Contains(tail, []byte("BULK-END")) {
		select {
		case f := <-frames:
			total += len(f)
			tail = append(tail, f...)
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
		case <-ctx.Done():
			return 0, 0, 0, fmt.Errorf("session bulk output incomplete after %d bytes", total)
		}
	}
	viaNATS = float64(total) / (1 << 20) / time.Since(start).Seconds()

	a, deleteFn, err := e.create(ctx, bulkScript())
	if err != nil {
		return 0, 0, 0, err
	}
	defer deleteFn()
	attach, err := e.attacher(a.Name)
	if err != nil {
		return 0, 0, 0, err
	}
	if viaAttach, err = readBulk(ctx, attach); err != nil {
		return 0, 0, 0, fmt.Errorf("attach bulk output: %w", err)
	}
	exec, err := e.executor(bulkScript())
	if err != nil {
		return 0, 0, 0, err
	}
	if direct, err = readBulk(ctx, exec); err != nil {
		return 0, 0, 0, fmt.Errorf("direct bulk output: %w", err)
	}
	return viaNATS, viaAttach, direct, nil
}

// readBulk starts bulkScript's output through exec and reads it all: MiB/s.
func readBulk(ctx context.Context, exec remotecommand.Executor) (float64, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdin, stdout := streams(sctx, exec)
	p := make([]byte, 64<<10)
	var ready []byte
	for !bytes.Contains(ready, []byte("READY")) {
		n, err := stdout.Read(p)
		if err != nil {
			return 0, fmt.Errorf("before READY: %w", err)
		}
		ready = append(ready, p[:n]...)
	}
	start := time.Now()
	if _, err := stdin.Write([]byte("\n")); err != nil {
		return 0, err
	}
	total, tail := 0, []byte(nil)
	for !bytes.Contains(tail, []byte("BULK-END")) {
		n, err := stdout.Read(p)
		if err != nil {
			return 0, fmt.Errorf("after %d bytes: %w", total, err)
		}
		total += n
		tail = append(tail, p[:n]...)
		if len(tail) > 64 {
			tail = tail[len(tail)-64:]
		}
	}
	return float64(total) / (1 << 20) / time.Since(start).Seconds(), nil
}

// memStats is the server's memory as its /metrics report it, read right
// after a forced garbage collection (/debug/pprof/heap?gc=1) so that two
// readings compare live memory rather than points in the GC cycle.
type memStats struct{ rss, heapStack, goroutines float64 }

func serverMemory() (memStats, error) { return replicaMemory(localServer()) }

// replicaMemory is serverMemory of the replica at addr (host:port).
func replicaMemory(addr string) (memStats, error) {
	if _, err := replicaGet(addr, "/debug/pprof/heap?gc=1"); err != nil {
		return memStats{}, err
	}
	metrics, err := replicaMetrics(addr)
	if err != nil {
		return memStats{}, err
	}
	m := memStats{
		rss:        metrics["process_resident_memory_bytes"],
		heapStack:  metrics["go_memstats_heap_inuse_bytes"] + metrics["go_memstats_stack_inuse_bytes"],
		goroutines: metrics["go_goroutines"],
	}
	if m.rss == 0 {
		return m, fmt.Errorf("no process_resident_memory_bytes in /metrics")
	}
	return m, nil
}

// serverMetrics reads the server's /metrics: the series without labels
// and the sums of those with labels, by name.
func serverMetrics() (map[string]float64, error) { return replicaMetrics(localServer()) }

func replicaMetrics(addr string) (map[string]float64, error) {
	b, err := replicaGet(addr, "/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		m[name] += v
	}
	return m, nil
}

// localServer is make up's server's address.
func localServer() string { return "127.0.0.1:" + os.Getenv("TERMINAL_APISERVER_PORT") }

// replicaGet reads path from a server's port (make up's, or an in-cluster
// replica's) as the cluster admin.
func replicaGet(addr, path string) ([]byte, error) {
	pki := filepath.Join(os.Getenv("LOCAL_DIR"), "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return nil, err
	}
	// No connection kept open between readings: each would be a goroutine
	// of the server's, counted by settled.
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert},
		// A server's own port, by address; its certificate names the
		// in-cluster Service.
		InsecureSkipVerify: true, //nolint:gosec
	}}}
	resp, err := c.Get("https://" + addr + path)
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

func (e *env) memory(ctx context.Context) (memStats, error) {
	start, err := serverMemory()
	if err != nil {
		return memStats{}, err
	}
	// Warm up with a tenth as many sessions, opened and closed: one-time
	// costs (connection pools, caches, code first run) are not per session.
	warm, err := e.openIdle(ctx, max(*nIdle/10, 1), "warmup")
	e.closeIdle(warm)
	if err != nil {
		return memStats{}, err
	}
	// Measure from a server that has ended the warm-up sessions, not one
	// still tearing them down (which would count their memory as before).
	before, err := settled(ctx, start.goroutines)
	if err != nil {
		return memStats{}, err
	}
	names, err := e.openIdle(ctx, *nIdle, "idle")
	defer func() {
		e.closeIdle(names)
		// What follows (latency, throughput) runs on a server that is
		// not ending a thousand sessions meanwhile.
		if _, err := settled(ctx, start.goroutines); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v; going on\n", err)
		}
	}()
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

// closeIdle deletes the sessions; the server ends them in the background
// (settled waits for that).
func (e *env) closeIdle(names []string) {
	c := e.sessions.TerminalV1alpha1().TerminalSessions(ns)
	for _, n := range names {
		_ = c.Delete(context.Background(), n, metav1.DeleteOptions{})
	}
}

// closeIdleAndWait deletes the sessions and waits until none labelled
// bench=label is left.
func (e *env) closeIdleAndWait(ctx context.Context, names []string, label string) error {
	e.closeIdle(names)
	c := e.sessions.TerminalV1alpha1().TerminalSessions(ns)
	return wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := c.List(ctx, metav1.ListOptions{LabelSelector: "bench=" + label, Limit: 1})
		return err == nil && len(l.Items) == 0, nil
	})
}

// settled waits until the server runs no more goroutines than it did with
// no sessions (and a little slack for its own housekeeping), i.e. it has
// ended the sessions just deleted, and returns its memory then.
func settled(ctx context.Context, goroutines float64) (memStats, error) {
	const slack = 20
	deadline := time.Now().Add(3 * time.Minute)
	for {
		m, err := serverMemory()
		if err != nil || m.goroutines <= goroutines+slack {
			return m, err
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("the server still runs %.0f goroutines 3m after its sessions were deleted (%.0f with none)", m.goroutines, goroutines)
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// createPod starts the benchmark's pod (bash, on the local node) and waits
// until it runs.
func (e *env) createPod(ctx context.Context) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{framework.SleepingContainer("shell")},
			TerminationGracePeriodSeconds: ptr.To[int64](0)},
	}
	p.Spec.Containers[0].Image = framework.BashImage
	if _, err := e.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("the benchmark's pod: %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := e.kube.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
}

func (e *env) deletePod() {
	_ = e.kube.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{})
}
