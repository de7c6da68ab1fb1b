package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// execURL is the pods/exec URL of a command in the session's container.
func (b *Bridge) execURL(s *v1alpha1.TerminalSession, command []string, tty, stdin bool) *url.URL {
	return b.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(s.Namespace).Name(s.Spec.Target.Pod).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: s.Spec.Target.Container,
		Command:   command,
		Stdin:     stdin,
		Stdout:    true,
		Stderr:    !tty,
		TTY:       tty,
	}, scheme.ParameterCodec).URL()
}

// asOwner is the bridge's client configuration impersonating the session's
// owner: the cluster authorizes the exec as them and names them in its
// audit log.
func (b *Bridge) asOwner(s *v1alpha1.TerminalSession) (*rest.Config, error) {
	owner := s.Status.Owner
	if owner == nil || owner.Username == "" {
		return nil, errors.New("session has no owner to run as")
	}
	cfg := rest.CopyConfig(b.cfg.KubeConfig)
	cfg.Impersonate = Impersonation(owner.Username, owner.UID, owner.Groups, owner.Extra)
	return cfg, nil
}

// Impersonation is how the bridge impersonates a session's owner, and so
// the identity whose exec rights a session gets. Constrained impersonation
// (what the server's RBAC grants) allows a ServiceAccount only by name, its
// groups following from it, and never the system:masters group: an owner
// whose rights come from system:masters alone gets none through a session
// (the create-time check asks for this same identity, so they learn at
// once).
func Impersonation(username, uid string, groups []string, extra map[string][]string) rest.ImpersonationConfig {
	if strings.HasPrefix(username, serviceAccountPrefix) {
		return rest.ImpersonationConfig{UserName: username}
	}
	var kept []string
	for _, g := range groups {
		if g != systemMasters {
			kept = append(kept, g)
		}
	}
	return rest.ImpersonationConfig{UserName: username, UID: uid, Groups: kept, Extra: extra}
}

const (
	serviceAccountPrefix = "system:serviceaccount:"
	systemMasters        = "system:masters"
)

// execAsOwner opens an exec through kube-apiserver as the session's owner.
func (b *Bridge) execAsOwner(ctx context.Context, s *v1alpha1.TerminalSession, command []string, tty, stdin bool) (execStream, error) {
	cfg, err := b.asOwner(s)
	if err != nil {
		return nil, err
	}
	exec, err := openExec(ctx, cfg, b.tlsConfigs, b.execURL(s, command, tty, stdin), tty)
	if err != nil {
		// Said in the session's status and events: which exec, where, as whom.
		return nil, fmt.Errorf("exec %q in container %s of pod %s/%s as %s: %w",
			command, s.Spec.Target.Container, s.Namespace, s.Spec.Target.Pod, s.Status.Owner.Username, err)
	}
	return exec, nil
}

// shell picks the first of bash and sh that the container runs, before any
// input is accepted. The answer is remembered per pod UID and container:
// a second session on the same container skips the probe.
func (b *Bridge) shell(ctx context.Context, s *v1alpha1.TerminalSession) []string {
	key := ""
	if pod, err := b.kube.CoreV1().Pods(s.Namespace).Get(ctx, s.Spec.Target.Pod, metav1.GetOptions{}); err == nil {
		key = string(pod.UID) + "/" + s.Spec.Target.Container
		b.mu.Lock()
		sh, ok := b.shells[key]
		b.mu.Unlock()
		if ok {
			return []string{sh}
		}
	}
	sh := "sh"
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if exec, err := b.openExec(pctx, s, []string{"bash", "-c", "exit 0"}, false, false); err == nil {
		stop := context.AfterFunc(pctx, func() { _ = exec.Close() })
		if code, err := exec.Wait(io.Discard); err == nil && code == 0 {
			sh = "bash"
		}
		stop()
		_ = exec.Close()
	}
	if key != "" && ctx.Err() == nil {
		b.mu.Lock()
		if len(b.shells) >= shellCache {
			clear(b.shells)
		}
		b.shells[key] = sh
		b.mu.Unlock()
	}
	return []string{sh}
}

// run is one session's exec, from start to exit. It returns the exit code,
// or an error if the exec could not run.
func (b *Bridge) run(s *session) (exitCode int32, err error) {
	ctx := s.ctx
	subs, err := s.subscribe()
	if err != nil {
		return 0, err
	}
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	command := s.obj.Spec.Command
	type opened struct {
		command []string
		stream  execStream
		err     error
	}
	// The probe and the handshake run on a goroutine of their own: their
	// deep call chains would otherwise leave this one, which lives as long
	// as the session, with a stack several times the size it needs.
	o := onFreshStack(func() opened {
		if len(command) == 0 {
			command = b.shell(ctx, s.obj)
		}
		stream, err := b.openExec(ctx, s.obj, command, s.tty, true)
		return opened{command, stream, err}
	})
	command, stream := o.command, o.stream
	if o.err != nil {
		return 0, o.err
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() { _ = stream.Close() })
	defer stop()

	s.mu.Lock()
	if s.tty && s.obj.Spec.Size != nil && s.size == nil {
		// Before any input: the first thing the process's terminal gets.
		s.size = &wire.Size{Cols: uint16(s.obj.Spec.Size.Cols), Rows: uint16(s.obj.Spec.Size.Rows)}
	}
	s.stream = stream
	if b.cfg.Transcripts.Enabled {
		s.rec = newRecorder(b.js, s.subj, b.cfg.Transcripts, s.obj.Namespace, s.obj.Name, time.Now(), castHeader(s, command))
	}
	// With a size to apply first, input waits for the process's first
	// output (a shell's prompt), or inputHold at most: by then the process
	// runs, and openInput sends the size again before the input. Without
	// one, nothing is gained by waiting (openInput still sends again a
	// viewer's resize that came before the first output).
	hold := s.tty && s.size != nil
	s.inputOpen = !hold
	s.startWriter()
	s.mu.Unlock()
	if hold {
		t := b.clock.AfterFunc(inputHold, s.openInput)
		defer t.Stop()
	}

	var marked sync.WaitGroup
	marked.Go(func() {
		if err := b.publishEvent(ctx, s.subj, wire.Event{Type: wire.EventStarted, Command: command}); err != nil {
			klog.ErrorS(err, "Publishing the start event failed", "session", klog.KObj(s.obj))
		}
		b.markRunning(ctx, s.obj, command)
	})
	defer marked.Wait()

	code, err := stream.Wait(&firstWrite{w: &metered{w: s.out, s: s}, first: func() {
		metrics.SetupDuration.Observe(b.clock.Since(s.started).Seconds())
		s.openInput()
	}})
	if ferr := s.out.close(); ferr != nil && ctx.Err() == nil {
		klog.ErrorS(ferr, "Publishing output failed", "session", klog.KObj(s.obj))
	}
	if ctx.Err() != nil {
		return code, context.Cause(ctx)
	}
	return code, err
}

// firstWrite calls first before the first write to w. (Without a
// terminal, client-go's SPDY fallback writes stdout and stderr from two
// goroutines.)
type firstWrite struct {
	w     io.Writer
	first func()
	once  sync.Once
}

func (f *firstWrite) Write(p []byte) (int, error) {
	f.once.Do(f.first)
	return f.w.Write(p)
}

// castHeader is a session's transcript header: its terminal's size at the
// start, its command, and the TERM a container runtime gives a process
// with a terminal.
func castHeader(s *session, command []string) transcript.Header {
	title := s.obj.Namespace + "/" + s.obj.Spec.Target.Pod
	if c := s.obj.Spec.Target.Container; c != "" {
		title += "/" + c
	}
	h := transcript.Header{Width: 80, Height: 24, Timestamp: time.Now().Unix(), Command: strings.Join(command, " "), Title: title}
	if sz := s.obj.Spec.Size; sz != nil {
		h.Width, h.Height = min(int(sz.Cols), maxRecordedSize), min(int(sz.Rows), maxRecordedSize)
	}
	if s.tty {
		h.Env = map[string]string{"TERM": "xterm"}
	}
	return h
}

// metered is a session's output on its way to be published, measured and
// recorded: its bytes, the time since the input it may answer (the echo),
// and its transcript.
type metered struct {
	w io.Writer
	s *session
}

func (m *metered) Write(p []byte) (int, error) {
	if at := m.s.inputAt.Swap(0); at != 0 {
		// Input that output answers within echoWindow is a keystroke and
		// its echo; later output answers something else (a password
		// prompt typed into, a command that ran for a while).
		if d := time.Duration(monotonic() - at); d <= echoWindow {
			metrics.EchoDuration.Observe(d.Seconds())
		}
	}
	n, err := m.w.Write(p)
	metrics.OutputBytes.Add(float64(n))
	m.s.bytesOut.Add(int64(n))
	m.s.rec.output(p[:n])
	return n, err
}

// echoWindow is the longest echo measured (the histogram's top bucket).
const echoWindow = 2 * time.Second

// monoBase makes monotonic(): a clock that steps with the wall clock would
// skew the echo figures.
var monoBase = time.Now()

// monotonic is the time since the process started, never 0.
func monotonic() int64 { return int64(time.Since(monoBase)) + 1 }

// onFreshStack runs f on a goroutine of its own and returns its result.
func onFreshStack[T any](f func() T) T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return <-ch
}
