package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	kubefake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/broker"
	sessionsfake "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned/fake"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// harness runs bridges without a control plane: TerminalSessions and pods
// in fake clientsets, an embedded NATS server with JetStream, execs that
// are fakes driven by the test, and a clock the test moves.
type harness struct {
	t        *testing.T
	ctx      context.Context
	nats     *broker.Broker
	sessions *sessionsfake.Clientset
	kube     *kubefake.Clientset
	meta     *metadatafake.FakeMetadataClient
	clock    *testingclock.FakeClock

	// prepare, when set, is called with each bridge before it runs.
	prepare func(*Bridge)

	// execs receives every exec the bridges open for a session's process
	// (not the shell probes).
	execs chan *fakeExec
	// hasBash says whether a probe for bash succeeds.
	hasBash atomic.Bool
	probes  atomic.Int32
	// execErr, when set, is what opening a session's exec returns.
	execErr atomic.Pointer[error]
	// silent: a session's process writes no prompt when it starts.
	silent atomic.Bool
}

const (
	testNamespace = "team-a"
	testPod       = "web"
)

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	nb, err := broker.Start(context.Background(), broker.Config{DataDir: t.TempDir(), Name: "bridge-" + t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nb.Close)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: testPod, Namespace: testNamespace, UID: "pod-uid",
			CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Hour))},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	podMeta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: pod.ObjectMeta}
	return &harness{
		t: t, ctx: ctx, nats: nb,
		sessions: sessionsfake.NewSimpleClientset(),
		kube:     kubefake.NewClientset(pod),
		meta:     metadatafake.NewSimpleMetadataClient(scheme, podMeta),
		clock:    testingclock.NewFakeClock(time.Now()),
		execs:    make(chan *fakeExec, 64),
	}
}

// startBridge starts a replica named holder; it runs until the test ends
// (or stop is called), and the test waits for it to return.
func (h *harness) startBridge(holder string, configure func(*Config)) (b *Bridge, stop func()) {
	h.t.Helper()
	cfg := Config{
		Conn: h.nats.Conn, JetStream: h.nats.JetStream, KubeConfig: &rest.Config{Host: "https://127.0.0.1:1"},
		Sessions: h.sessions, Holder: holder,
		LeaseDuration: 2 * time.Second, SweepInterval: 100 * time.Millisecond, StatusInterval: 5 * time.Second,
	}
	if configure != nil {
		configure(&cfg)
	}
	b, err := newBridge(h.ctx, cfg, h.kube, h.meta)
	if err != nil {
		h.t.Fatal(err)
	}
	b.clock = h.clock
	b.openExec = h.openExec
	if h.prepare != nil {
		h.prepare(b)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			h.t.Errorf("bridge %s did not stop within 30s of its context ending", holder)
		}
	}
	h.t.Cleanup(stop)
	return b, stop
}

func (h *harness) openExec(ctx context.Context, s *v1alpha1.TerminalSession, command []string, tty, stdin bool) (execStream, error) {
	if len(command) == 3 && command[0] == "bash" && command[1] == "-c" {
		h.probes.Add(1)
		code := int32(127)
		if h.hasBash.Load() {
			code = 0
		}
		f := newFakeExec(s, command, tty)
		f.exit <- code
		return f, nil
	}
	if err := h.execErr.Load(); err != nil {
		return nil, *err
	}
	f := newFakeExec(s, command, tty)
	f.prompt = !h.silent.Load()
	select {
	case h.execs <- f:
	default:
		h.t.Error("more execs than the test reads")
	}
	return f, nil
}

// create makes a Pending session as the registry would, owned by alice.
func (h *harness) create(name string, configure func(*v1alpha1.TerminalSession)) *v1alpha1.TerminalSession {
	h.t.Helper()
	s := &v1alpha1.TerminalSession{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace, UID: uuid.NewUUID()},
		Spec: v1alpha1.TerminalSessionSpec{
			Target:  v1alpha1.TerminalTarget{Pod: testPod, Container: "app"},
			Command: []string{"sh"},
		},
		Status: v1alpha1.TerminalSessionStatus{Phase: v1alpha1.TerminalSessionPending,
			Owner: &v1alpha1.SessionOwner{Username: "alice"}},
	}
	if configure != nil {
		configure(s)
	}
	created, err := h.sessions.TerminalV1alpha1().TerminalSessions(testNamespace).Create(h.ctx, s, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return created
}

// running creates a session and waits until its exec is open and its
// status says Running; it returns the session as created and its exec.
func (h *harness) running(name string, configure func(*v1alpha1.TerminalSession)) (*v1alpha1.TerminalSession, *fakeExec) {
	h.t.Helper()
	created := h.create(name, configure)
	f := h.nextExec()
	if f.session.Name != name {
		h.t.Fatalf("the exec of %s opened, want %s's", f.session.Name, name)
	}
	h.waitPhase(name, v1alpha1.TerminalSessionRunning)
	return created, f
}

// nextExec is the next session exec opened.
func (h *harness) nextExec() *fakeExec {
	h.t.Helper()
	select {
	case f := <-h.execs:
		return f
	case <-time.After(30 * time.Second):
		h.t.Fatal("no exec opened within 30s")
		return nil
	}
}

// eventually polls cond until it holds, failing the test after 30s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, 10*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		h.t.Fatalf("%s: not within 30s", what)
	}
}

func (h *harness) get(name string) *v1alpha1.TerminalSession {
	h.t.Helper()
	s, err := h.sessions.TerminalV1alpha1().TerminalSessions(testNamespace).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// waitPhase waits for the session to reach phase and returns it.
func (h *harness) waitPhase(name string, phase v1alpha1.TerminalSessionPhase) *v1alpha1.TerminalSession {
	h.t.Helper()
	var s *v1alpha1.TerminalSession
	h.eventually(fmt.Sprintf("session %s %s", name, phase), func() bool {
		s = h.get(name)
		return s.Status.Phase == phase
	})
	return s
}

// events reads the session's control events published so far.
func (h *harness) events(uid types.UID) []wire.Event {
	h.t.Helper()
	c, err := h.nats.JetStream.OrderedConsumer(h.ctx, wire.IOStream,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{wire.SubjectsFor(string(uid)).Ctl()}})
	if err != nil {
		h.t.Fatal(err)
	}
	var evs []wire.Event
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev wire.Event
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				h.t.Fatalf("control event %q: %v", m.Data(), err)
			}
			evs = append(evs, ev)
		}
		if n == 0 {
			return evs
		}
	}
}

// leaseHolder is who holds the session's lease ("" when nobody does).
func (h *harness) leaseHolder(uid types.UID) string {
	h.t.Helper()
	kv, err := h.nats.JetStream.KeyValue(h.ctx, wire.LeaseBucket)
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(h.ctx, string(uid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return string(e.Value())
}

// fakeExec is a process the test drives: what the session types is
// recorded, output and the exit code are sent by the test.
type fakeExec struct {
	session *v1alpha1.TerminalSession
	command []string
	tty     bool
	// prompt: Wait writes fakePrompt first, as a shell that starts does.
	prompt bool

	out    chan []byte
	exit   chan int32
	closed chan struct{}
	once   sync.Once
	pings  atomic.Int32

	mu     sync.Mutex
	input  bytes.Buffer
	sizes  []wire.Size
	inputs int // bytes typed before the first resize, -1 until then
	// typedAt: the bytes typed before each resize.
	typedAt []int
}

func newFakeExec(s *v1alpha1.TerminalSession, command []string, tty bool) *fakeExec {
	return &fakeExec{session: s, command: command, tty: tty,
		out: make(chan []byte), exit: make(chan int32, 1), closed: make(chan struct{}), inputs: -1}
}

func (f *fakeExec) Write(p []byte) (int, error) {
	select {
	case <-f.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.input.Write(p)
}

func (f *fakeExec) Resize(sz wire.Size) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inputs < 0 {
		f.inputs = f.input.Len()
	}
	f.sizes = append(f.sizes, sz)
	f.typedAt = append(f.typedAt, f.input.Len())
	return nil
}

// fakePrompt is what a fake process with a prompt writes when it starts.
const fakePrompt = "$ "

func (f *fakeExec) Wait(out io.Writer) (int32, error) {
	if f.prompt {
		if _, err := io.WriteString(out, fakePrompt); err != nil {
			return 0, err
		}
	}
	for {
		select {
		case p := <-f.out:
			if _, err := out.Write(p); err != nil {
				return 0, err
			}
		case code := <-f.exit:
			return code, nil
		case <-f.closed:
			return 0, errors.New("exec stream closed")
		}
	}
}

func (f *fakeExec) Ping() error {
	f.pings.Add(1)
	return nil
}

func (f *fakeExec) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// typed is what the process has read so far.
func (f *fakeExec) typed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.input.String()
}

func (f *fakeExec) resizes() []wire.Size {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.Size(nil), f.sizes...)
}

// isClosed says whether the bridge closed the exec.
func (f *fakeExec) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// write is the process writing p to its terminal.
func (f *fakeExec) write(t *testing.T, p []byte) {
	t.Helper()
	select {
	case f.out <- p:
	case <-time.After(30 * time.Second):
		t.Fatal("the bridge did not read the process's output within 30s")
	}
}
