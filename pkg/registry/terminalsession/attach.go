package terminalsession

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/attach"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// AttachREST is the attach subresource: it speaks the streaming protocols
// of pods/attach (SPDY v4..v1; WebSocket v5.channel.k8s.io, and v4 binary
// and base64) and relays between the client and the session's NATS subjects,
// so any replica serves any session.
type AttachREST struct {
	store *REST
	relay *attach.Relay
	// authz decides join and observe grants, as kube-apiserver would.
	authz authorizer.Authorizer
	// waitRunning bounds how long an attach to a Pending session waits for
	// its process to start.
	waitRunning time.Duration
	open        *attachCounter
	// origins are the browser origins that may attach (see checkOrigin).
	origins []string
}

var _ rest.Connecter = &AttachREST{}

// NewAttachREST serves attach for the sessions in store.
func NewAttachREST(store *REST, relay *attach.Relay, authz authorizer.Authorizer, limits AttachLimits, origins []string) *AttachREST {
	return &AttachREST{store: store, relay: relay, authz: authz, waitRunning: 30 * time.Second,
		open: newAttachCounter(limits), origins: origins}
}

func (r *AttachREST) New() runtime.Object { return &terminal.TerminalSession{} }
func (r *AttachREST) Destroy()            {}

// ConnectMethods: SPDY clients POST; WebSocket clients (browsers) GET.
func (r *AttachREST) ConnectMethods() []string { return []string{http.MethodGet, http.MethodPost} }

// NewConnectOptions: the query is decoded into TerminalSessionAttachOptions
// by the generic machinery, as a pod's into PodAttachOptions (a malformed
// value is a 400 before Connect).
func (r *AttachREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &terminal.TerminalSessionAttachOptions{}, false, ""
}

// Connect authorizes the viewer and returns the streaming handler.
func (r *AttachREST) Connect(ctx context.Context, name string, options runtime.Object, _ rest.Responder) (http.Handler, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewUnauthorized("no user in the request")
	}
	o, ok := options.(*terminal.TerminalSessionAttachOptions)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("attach options of type %T", options))
	}
	if !o.Stdin && !o.Stdout && !o.Stderr {
		return nil, apierrors.NewBadRequest("you must specify at least one of stdin, stdout, stderr")
	}
	if o.Since < 0 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("since: %d is not a byte count", o.Since))
	}
	s, err := r.session(ctx, name)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := checkOrigin(req, r.origins, name); err != nil {
			writeStatus(w, asStatus(err))
			return
		}
		opts := streamOptions(o)
		// Knowing a session's name grants nothing: every attach is
		// authorized as the attaching user, now.
		access, err := authorizeAttach(ctx, r.authz, u, s, opts.Stdin)
		if err != nil {
			writeStatus(w, asStatus(err))
			return
		}
		opts.ReadOnly = access != accessWrite
		// After authorization: nobody learns more of a session than they
		// may see.
		// A client that reconnects names the session it had: one of the
		// same name created since is another session.
		if o.UID != "" && o.UID != string(s.UID) {
			writeStatus(w, apierrors.NewConflict(terminal.Resource("terminalsessions"), name,
				fmt.Errorf("the session has UID %s, not %s: it was deleted and created again", s.UID, o.UID)))
			return
		}
		if s.DeletionTimestamp != nil {
			writeStatus(w, deleting(s))
			return
		}
		release, err := r.open.acquire(u.GetName(), s.UID, s.Name)
		if err != nil {
			writeStatus(w, asStatus(err))
			return
		}
		defer release()
		if s.Status.Phase == terminal.TerminalSessionPending {
			if s, err = r.running(ctx, name); err != nil {
				writeStatus(w, asStatus(err))
				return
			}
			if s.DeletionTimestamp != nil {
				writeStatus(w, deleting(s))
				return
			}
		}
		subj := wire.Subjects(s.Status.Subjects)
		w, abort := attach.Abortable(w)
		v := &viewer{relay: r.relay, subj: subj, user: u.GetName(), since: uint64(o.Since), abort: abort,
			typing: opts.Stdin && !opts.ReadOnly, session: s.Namespace + "/" + s.Name}
		if wsstream.IsWebSocketRequest(req) {
			attach.ServeWebSocket(w, req, opts, attach.PingPeriod, func(p []byte) error { return r.relay.Type(subj, p) },
				func(ctx context.Context, out io.Writer, sizes <-chan wire.Size) error {
					return v.serve(ctx, nil, out, sizes)
				})
			return
		}
		attach.ServeSPDY(w, req, opts, v.serve)
	}), nil
}

// deleting refuses an attach to a session being deleted: its exec has
// ended, or is ending, whatever finalizers keep the object.
func deleting(s *terminal.TerminalSession) *apierrors.StatusError {
	return apierrors.NewBadRequest(fmt.Sprintf("session %q is being deleted: its terminal has ended", s.Name))
}

// asStatus is err as the Status an attach answers with before the upgrade.
func asStatus(err error) *apierrors.StatusError {
	var st *apierrors.StatusError
	if errors.As(err, &st) {
		return st
	}
	return apierrors.NewInternalError(err)
}

func (r *AttachREST) session(ctx context.Context, name string) (*terminal.TerminalSession, error) {
	obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj.(*terminal.TerminalSession), nil
}

// running waits for a Pending session's process to start.
func (r *AttachREST) running(ctx context.Context, name string) (*terminal.TerminalSession, error) {
	ctx, cancel := context.WithTimeout(ctx, r.waitRunning)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		s, err := r.session(ctx, name)
		if err != nil {
			return nil, err
		}
		if s.Status.Phase != terminal.TerminalSessionPending {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, apierrors.NewTimeoutError(fmt.Sprintf("session %q is still Pending after %s", name, r.waitRunning), 1)
		case <-t.C:
		}
	}
}

// streamOptions are the streams the viewer asked for.
func streamOptions(o *terminal.TerminalSessionAttachOptions) attach.Options {
	opts := attach.Options{Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, TTY: o.TTY}
	if opts.TTY {
		opts.Stderr = false // merged into stdout under a terminal
	}
	return opts
}

// viewer is one attached client: the command is the session's, already
// running; this only watches and, if allowed, types.
type viewer struct {
	relay *attach.Relay
	subj  wire.Subjects
	user  string
	since uint64
	abort func()
	// typing: the viewer may type (its attach has stdin, and write access).
	typing bool
	// session is namespace/name, for the log.
	session string
}

// serve relays until the session closes: nil when its process exited with
// 0, an ExitError with another code, an error when it closed otherwise.
func (v *viewer) serve(ctx context.Context, in io.Reader, out io.Writer, sizes <-chan wire.Size) error {
	closed, err := v.relay.Serve(ctx, v.subj, attach.Viewer{User: v.user, In: in, Typing: v.typing, Resize: sizes, Out: out, Since: v.since, Abort: v.abort})
	switch {
	case errors.Is(err, attach.ErrSlowViewer):
		klog.InfoS("Disconnected a viewer that stopped reading", "session", v.session, "user", v.user)
		return err
	case err != nil:
		klog.V(2).InfoS("Viewer detached", "session", v.session, "user", v.user, "err", err)
		return err
	case closed.ExitCode != nil && *closed.ExitCode != 0:
		return &attach.ExitError{Code: *closed.ExitCode}
	case closed.Reason != terminal.ReasonExited:
		return fmt.Errorf("session closed (%s): %s", closed.Reason, closed.Message)
	}
	return nil
}

// writeStatus answers a streaming request with a Status, which client-go
// shows as the upgrade's error.
func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	doc, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_, _ = w.Write(doc)
}
