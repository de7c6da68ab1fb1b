package terminalsession

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// VerbReplay on terminalsessions lets a user read the transcripts of
// sessions that are not theirs, and of deleted sessions (by UID).
const VerbReplay = "replay"

// TranscriptREST is the transcript subresource: a GET that streams a
// session's transcript (asciicast v2) as pods/log streams a container's log.
type TranscriptREST struct {
	store *REST
	js    jetstream.JetStream
	authz authorizer.Authorizer
}

var _ rest.GetterWithOptions = &TranscriptREST{}

// NewTranscriptREST serves the transcripts of the sessions in store.
func NewTranscriptREST(store *REST, js jetstream.JetStream, authz authorizer.Authorizer) *TranscriptREST {
	return &TranscriptREST{store: store, js: js, authz: authz}
}

func (r *TranscriptREST) New() runtime.Object { return &terminal.TerminalSession{} }
func (r *TranscriptREST) Destroy()            {}

// NewGetOptions: the query is decoded into TerminalSessionTranscriptOptions.
func (r *TranscriptREST) NewGetOptions() (runtime.Object, bool, string) {
	return &terminal.TerminalSessionTranscriptOptions{}, false, ""
}

// uidPattern is what a session UID looks like: nothing that could reach
// another subject (no dots, no wildcards).
var uidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Get authorizes the reader and returns the transcript's stream.
//
//   - a session's owner reads its transcript; anyone else needs the replay
//     verb on it (granted on purpose: ClusterRole terminal-sessions-replay);
//   - with uid=, a session that was deleted, or re-created under the same
//     name, is read by its UID, with the replay verb on that name: the
//     transcript itself says which namespace and name it belongs to.
func (r *TranscriptREST) Get(ctx context.Context, name string, options runtime.Object) (runtime.Object, error) {
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
	switch {
	case err == nil && (o.UID == "" || string(obj.(*terminal.TerminalSession).UID) == o.UID):
		s := obj.(*terminal.TerminalSession)
		if !isOwner(u, s) {
			if err := r.mayReplay(ctx, u, namespace, name); err != nil {
				return nil, err
			}
		}
		return r.stream(ctx, wire.SubjectsFor(string(s.UID)), o.Follow, namespace, name, s)
	case err != nil && !apierrors.IsNotFound(err):
		return nil, err
	case o.UID == "":
		return nil, err // not found
	}
	// An earlier session's transcript, by UID.
	if err := r.mayReplay(ctx, u, namespace, name); err != nil {
		return nil, err
	}
	return r.stream(ctx, wire.SubjectsFor(o.UID), o.Follow, namespace, name, nil)
}

func (r *TranscriptREST) mayReplay(ctx context.Context, u user.Info, namespace, name string) error {
	d, _, err := r.authz.Authorize(ctx, authorizer.AttributesRecord{User: u, Verb: VerbReplay, APIGroup: terminal.GroupName,
		APIVersion: "*", Resource: "terminalsessions", Namespace: namespace, Name: name, ResourceRequest: true})
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("authorizing replay of %s/%s for user %q: %w", namespace, name, u.GetName(), err))
	}
	if d != authorizer.DecisionAllow {
		return apierrors.NewForbidden(terminal.Resource("terminalsessions/transcript"), name,
			fmt.Errorf("the session is not %s's: reading another user's transcript takes the %q verb on terminalsessions (ClusterRole terminal-sessions-replay)",
				u.GetName(), VerbReplay))
	}
	return nil
}

// stream returns the transcript of subj as a stream: the transcript of
// session s, or, with s nil (read by UID), of whichever session the
// transcript says it belongs to, which must be namespace/name.
func (r *TranscriptREST) stream(ctx context.Context, subj wire.Subjects, follow bool, namespace, name string, s *terminal.TerminalSession) (runtime.Object, error) {
	notFound := apierrors.NewNotFound(terminal.Resource("terminalsessions/transcript"), name)
	st, err := r.js.Stream(ctx, wire.TranscriptStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, apierrors.NewServiceUnavailable("this server records no transcripts (terminal-apiserver --transcripts=false)")
	}
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	first, err := st.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subj.Cast()))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound) && s != nil && s.Status.Phase != terminal.TerminalSessionClosed && s.Status.Phase != terminal.TerminalSessionFailed:
		// Not recorded yet: its first lines are on their way.
	case errors.Is(err, jetstream.ErrMsgNotFound) && s != nil:
		return nil, apierrors.NewNotFound(terminal.Resource("terminalsessions/transcript"),
			name+" (not recorded: the server ran with --transcripts=false, or the retention period passed)")
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, notFound
	case err != nil:
		return nil, apierrors.NewInternalError(err)
	case s == nil && (first.Header.Get(wire.NamespaceHeader) != namespace || first.Header.Get(wire.NameHeader) != name):
		// The transcript says whose it is: a UID of another namespace's
		// session is not found here, whatever grants the reader holds.
		return nil, notFound
	}
	return &transcriptStream{js: r.js, subject: subj.Cast(), follow: follow}, nil
}

// transcriptStream is a transcript on its way to the reader.
type transcriptStream struct {
	js      jetstream.JetStream
	subject string
	follow  bool
}

var _ rest.ResourceStreamer = &transcriptStream{}

func (t *transcriptStream) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (t *transcriptStream) DeepCopyObject() runtime.Object {
	c := *t
	return &c
}

// InputStream reads the transcript from JetStream as the reader takes it:
// what is stored, then (follow) what is recorded next, until its end
// message or the request's end.
func (t *transcriptStream) InputStream(ctx context.Context, _, _ string) (io.ReadCloser, bool, string, error) {
	cons, err := t.js.OrderedConsumer(ctx, wire.TranscriptStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{t.subject}})
	if err != nil {
		return nil, false, "", err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(t.copy(ctx, cons, pw))
	}()
	return pr, t.follow, transcript.ContentType, nil
}

// copy writes the messages of cons to w until the transcript's end, or,
// without follow, until what was stored when it began.
func (t *transcriptStream) copy(ctx context.Context, cons jetstream.Consumer, w io.Writer) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	pending := info.NumPending
	if !t.follow && pending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(1 << 20))
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
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
		if pending--; !t.follow && pending == 0 {
			return nil
		}
	}
}
