package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

// Event is what the control subject carries.
type Event struct {
	Type     string   `json:"type"` // "started" or "closed"
	Command  []string `json:"command,omitempty"`
	ExitCode *int32   `json:"exitCode,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Message  string   `json:"message,omitempty"`
}

// Size is what the resize subject carries.
type Size struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

const (
	maxFrame    = 32 << 10
	maxBuffered = 1 << 20
	inputQueue  = 256 // messages of input buffered towards the process
)

// executor opens pods/exec as the session's owner: WebSocket
// (v5.channel.k8s.io) first, SPDY when the upgrade is refused.
func (b *Bridge) executor(s *v1alpha1.TerminalSession, command []string, tty, stdin bool) (remotecommand.Executor, error) {
	owner := s.Status.Owner
	if owner == nil || owner.Username == "" {
		return nil, errors.New("session has no owner to run as")
	}
	cfg := rest.CopyConfig(b.cfg.KubeConfig)
	// Impersonating the owner makes the cluster authorize the exec as them
	// and name them in its audit log.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: owner.Username, UID: owner.UID, Groups: owner.Groups, Extra: owner.Extra}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	u := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(s.Namespace).Name(s.Spec.Target.Pod).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: s.Spec.Target.Container,
		Command:   command,
		Stdin:     stdin,
		Stdout:    true,
		Stderr:    !tty,
		TTY:       tty,
	}, scheme.ParameterCodec).URL()
	return newFallbackExecutor(cfg, u)
}

func newFallbackExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// shell picks the first of bash and sh that the container runs, before any
// input is accepted.
func (b *Bridge) shell(ctx context.Context, s *v1alpha1.TerminalSession) []string {
	exec, err := b.executor(s, []string{"bash", "-c", "exit 0"}, false, false)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
	}
	if err == nil {
		return []string{"bash"}
	}
	return []string{"sh"}
}

// sizeQueue feeds the exec its terminal size: the initial one first, then
// each resize, coalesced to the latest.
type sizeQueue struct {
	ctx  context.Context
	next chan remotecommand.TerminalSize
}

func (q *sizeQueue) set(sz remotecommand.TerminalSize) {
	for {
		select {
		case q.next <- sz:
			return
		default:
		}
		select {
		case <-q.next: // drop the stale one
		default:
		}
	}
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case sz := <-q.next:
		return &sz
	case <-q.ctx.Done():
		return nil
	}
}

// run is one session's exec, from start to exit. It returns the exit code,
// or an error if the exec could not run.
func (b *Bridge) run(ctx context.Context, s *v1alpha1.TerminalSession, act *activity) (exitCode int32, command []string, err error) {
	subj := SubjectsFor(string(s.UID))
	tty := s.Spec.TTY == nil || *s.Spec.TTY

	// Input and resize subscriptions exist before the process starts, so
	// nothing typed early is lost.
	sizes := &sizeQueue{ctx: ctx, next: make(chan remotecommand.TerminalSize, 1)}
	if s.Spec.Size != nil {
		sizes.set(remotecommand.TerminalSize{Width: uint16(s.Spec.Size.Cols), Height: uint16(s.Spec.Size.Rows)})
	}
	resizeSub, err := b.cfg.Conn.Subscribe(subj.Resize(), func(m *nats.Msg) {
		var sz Size
		if json.Unmarshal(m.Data, &sz) == nil && sz.Cols > 0 && sz.Rows > 0 {
			sizes.set(remotecommand.TerminalSize{Width: sz.Cols, Height: sz.Rows})
		}
	})
	if err != nil {
		return 0, nil, fmt.Errorf("subscribe %s: %w", subj.Resize(), err)
	}
	defer resizeSub.Unsubscribe()

	input := make(chan []byte, inputQueue)
	inSub, err := b.cfg.Conn.Subscribe(subj.In(), func(m *nats.Msg) {
		select {
		case input <- m.Data:
		default:
			// The process is not reading: refuse rather than queue without bound.
			klog.V(2).InfoS("Dropping input: the process is not reading", "session", klog.KObj(s))
		}
	})
	if err != nil {
		return 0, nil, fmt.Errorf("subscribe %s: %w", subj.In(), err)
	}
	defer inSub.Unsubscribe()
	stdin, stdinW := io.Pipe()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stdinW.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case p := <-input:
				act.touch()
				if _, err := stdinW.Write(p); err != nil {
					return
				}
			case <-ctx.Done():
				stdinW.CloseWithError(ctx.Err())
				return
			}
		}
	}()

	command = s.Spec.Command
	if len(command) == 0 {
		command = b.shell(ctx, s)
	}
	exec, err := b.executor(s, command, tty, true)
	if err != nil {
		return 0, command, err
	}

	out := newOutput(func(ctx context.Context, seq uint64, frame []byte) error {
		act.touch()
		_, err := b.cfg.JetStream.PublishMsg(ctx, &nats.Msg{
			Subject: subj.Out(), Data: frame,
			Header: nats.Header{SeqHeader: []string{strconv.FormatUint(seq, 10)}},
		})
		return err
	}, maxFrame, maxBuffered)
	pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPub()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := out.run(pubCtx); err != nil && pubCtx.Err() == nil {
			klog.ErrorS(err, "Publishing output failed", "session", klog.KObj(s))
		}
	}()
	if err := b.publishEvent(ctx, subj, Event{Type: "started", Command: command}); err != nil {
		klog.ErrorS(err, "Publishing the start event failed", "session", klog.KObj(s))
	}
	b.markRunning(ctx, s, command)

	opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: out, Tty: tty}
	if tty {
		opts.TerminalSizeQueue = sizes
	} else {
		opts.Stderr = out
	}
	err = exec.StreamWithContext(ctx, opts)
	out.close()
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
		return 0, command, nil
	case errors.As(err, &exitErr):
		return int32(exitErr.ExitStatus()), command, nil
	default:
		return 0, command, err
	}
}

func (b *Bridge) publishEvent(ctx context.Context, subj Subjects, ev Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = b.cfg.JetStream.Publish(ctx, subj.Ctl(), data)
	return err
}
