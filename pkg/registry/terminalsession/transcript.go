package terminalsession

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// VerbReplay on terminalsessions lets a user read the transcripts of
// sessions that are not theirs, and of deleted sessions (by UID).
const VerbReplay = "replay"

const (
	// followCheck: a follow that has seen nothing for this long asks
	// whether the session still runs (a replica that crashed never wrote
	// the transcript's end).
	followCheck = 30 * time.Second
	// consumerIdle: a reader's JetStream consumer is removed this long
	// after its reader stops pulling.
	consumerIdle = 30 * time.Second
)

// TranscriptREST is the transcript subresource: a GET that streams a
// session's transcript (asciicast v2), as pods/log streams a container's
// log. It is a connect subresource so that it can refuse what pods/log
// cannot: a WebSocket upgrade (which a page of any origin could open
// through `kubectl proxy`), and a browser page of an origin not allowed.
type TranscriptREST struct {
	store   *REST
	js      jetstream.JetStream
	authz   authorizer.Authorizer
	origins []string
	open    *attachCounter
}

var _ rest.Connecter = &TranscriptREST{}

// NewTranscriptREST serves the transcripts of the sessions in store; one
// user's concurrent reads are bounded as their attaches are.
func NewTranscriptREST(store *REST, js jetstream.JetStream, authz authorizer.Authorizer, limits AttachLimits, origins []string) *TranscriptREST {
	return &TranscriptREST{store: store, js: js, authz: authz, origins: origins, open: newAttachCounter(AttachLimits{PerUser: limits.PerUser})}
}

func (r *TranscriptREST) New() runtime.Object { return &terminal.TerminalSession{} }
func (r *TranscriptREST) Destroy()            {}

// ConnectMethods: a plain GET.
func (r *TranscriptREST) ConnectMethods() []string { return []string{http.MethodGet} }

// NewConnectOptions: the query is decoded into TerminalSessionTranscriptOptions.
func (r *TranscriptREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &terminal.TerminalSessionTranscriptOptions{}, false, ""
}

// uidPattern is what a session UID looks like: nothing that could reach
// another subject (no dots, no wildcards).
var uidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Connect authorizes the reader and returns the handler that streams the
// transcript.
//
//   - a session's owner reads its transcript; anyone else needs the replay
//     verb on it (granted on purpose: ClusterRole terminal-sessions-replay);
//   - with uid=, a session that was deleted, or re-created under the same
//     name, is read by its UID, with the replay verb on that name: the
//     transcript itself says which namespace and name it belongs to.
func (r *TranscriptREST) Connect(ctx context.Context, name string, options runtime.Object, _ rest.Responder) (http.Handler, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewUnauthorized("no user in the request")
	}
	o, ok := options.(*terminal.TerminalSessionTranscriptOptions)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("unexpected options %T", options))
	}
	namespace := genericapirequest.NamespaceValue(ctx)
	if o.UID != "" && !uidPattern.MatchString(o.UID) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("uid: %q is not a session UID", o.UID))
	}
	obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	var t *transcriptStream
	switch {
	case err == nil && (o.UID == "" || string(obj.(*terminal.TerminalSession).UID) == o.UID):
		s := obj.(*terminal.TerminalSession)
		if !isOwner(u, s) {
			if err := r.mayReplay(ctx, u, namespace, name, "the session is not "+u.GetName()+"'s"); err != nil {
				return nil, err
			}
		}
		t, err = r.transcript(ctx, s.UID, o.Follow, namespace, name, s)
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	case o.UID == "":
		return nil, err // not found
	default:
		// An earlier session's transcript, by UID.
		if err := r.mayReplay(ctx, u, namespace, name, "it is a deleted or earlier session's"); err != nil {
			return nil, err
		}
		t, err = r.transcript(ctx, types.UID(o.UID), o.Follow, namespace, name, nil)
	}
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if httpstream.IsUpgradeRequest(req) {
			writeStatus(w, apierrors.NewBadRequest("the transcript is served over plain HTTP, not as an upgrade"))
			return
		}
		if err := checkOriginOf(req, r.origins, "transcript", name); err != nil {
			writeStatus(w, asStatus(err))
			return
		}
		release, err := r.open.acquire(u.GetName(), "", "")
		if err != nil {
			writeStatus(w, asStatus(err))
			return
		}
		defer release()
		t.serve(req.Context(), w)
	}), nil
}

func (r *TranscriptREST) mayReplay(ctx context.Context, u user.Info, namespace, name, why string) error {
	d, _, err := r.authz.Authorize(ctx, authorizer.AttributesRecord{User: u, Verb: VerbReplay, APIGroup: terminal.GroupName,
		APIVersion: "*", Resource: "terminalsessions", Namespace: namespace, Name: name, ResourceRequest: true})
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("authorizing replay of %s/%s for user %q: %w", namespace, name, u.GetName(), err))
	}
	if d != authorizer.DecisionAllow {
		return apierrors.NewForbidden(terminal.Resource("terminalsessions/transcript"), name,
			fmt.Errorf("%s: reading it takes the %q verb on terminalsessions (ClusterRole terminal-sessions-replay)", why, VerbReplay))
	}
	return nil
}

// transcript finds the transcript of session uid: session s's, or, with s
// nil (read by UID), whichever session's the transcript says it is, which
// must be namespace/name.
func (r *TranscriptREST) transcript(ctx context.Context, uid types.UID, follow bool, namespace, name string, s *terminal.TerminalSession) (*transcriptStream, error) {
	subj := wire.SubjectsFor(string(uid))
	notFound := apierrors.NewNotFound(terminal.Resource("terminalsessions/transcript"), name)
	st, err := r.js.Stream(ctx, wire.TranscriptStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, apierrors.NewNotFound(terminal.Resource("terminalsessions/transcript"), name)
	}
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	first, err := st.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subj.Cast()))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound) && s != nil && !ended(s):
		// Not recorded yet: its first lines are on their way.
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, notFound
	case err != nil:
		return nil, apierrors.NewInternalError(err)
	case s == nil && (first.Header.Get(wire.NamespaceHeader) != namespace || first.Header.Get(wire.NameHeader) != name):
		// The transcript says whose it is: a UID of another namespace's
		// session is not found here, whatever grants the reader holds.
		return nil, notFound
	}
	t := &transcriptStream{js: r.js, subject: subj.Cast(), follow: follow, session: name}
	t.running = func(ctx context.Context) bool {
		obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
		if err != nil {
			return !apierrors.IsNotFound(err) // can't tell: keep following
		}
		cur := obj.(*terminal.TerminalSession)
		return cur.UID == uid && !ended(cur)
	}
	return t, nil
}

func ended(s *terminal.TerminalSession) bool {
	return s.Status.Phase == terminal.TerminalSessionClosed || s.Status.Phase == terminal.TerminalSessionFailed
}

// transcriptStream is a transcript on its way to one reader.
type transcriptStream struct {
	js      jetstream.JetStream
	subject string
	follow  bool
	session string
	// running says whether the session still runs (a follow ends when it
	// does not, even if its transcript's end never came).
	running func(context.Context) bool
}

// serve writes the transcript to w: what is stored, then (follow) what is
// recorded next, until its end, the session's end, or the reader's.
func (t *transcriptStream) serve(ctx context.Context, w http.ResponseWriter) {
	cons, err := t.js.OrderedConsumer(ctx, wire.TranscriptStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{t.subject}, InactiveThreshold: consumerIdle})
	if err != nil {
		writeStatus(w, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", transcript.ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if err := t.copy(ctx, cons, w, flusher); err != nil && ctx.Err() == nil {
		klog.V(2).InfoS("Streaming a transcript ended early", "session", t.session, "err", err)
	}
}

func (t *transcriptStream) copy(ctx context.Context, cons jetstream.Consumer, w http.ResponseWriter, flusher http.Flusher) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if !t.follow && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(4 << 20))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next(jetstream.NextMaxWait(followCheck))
		switch {
		case errors.Is(err, nats.ErrTimeout):
			if !t.follow || !t.running(ctx) {
				return nil // nothing more is coming
			}
			continue
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if m.Headers().Get(wire.EndHeader) != "" {
			return nil
		}
		if _, err := w.Write(m.Data()); err != nil {
			return err
		}
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		// Without follow, stop at what was stored when the read began
		// (counted by the stream, so messages it dropped since, past its
		// bounds, are not waited for).
		if meta.NumPending == 0 {
			if flusher != nil {
				flusher.Flush()
			}
			if !t.follow {
				return nil
			}
		}
	}
}
