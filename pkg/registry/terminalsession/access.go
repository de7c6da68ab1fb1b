package terminalsession

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// Verbs on terminalsessions that let a user other than the owner attach.
const (
	// VerbJoin: attach read-write (type into the session). The joiner also
	// needs create pods/exec on the target pod, as the owner does.
	VerbJoin = "join"
	// VerbObserve: attach read-only (watch it).
	VerbObserve = "observe"
)

// access is what one attach may do with a session's terminal.
type access int

const (
	accessNone  access = iota
	accessRead         // watch: output only; input refused, resizes dropped
	accessWrite        // type and resize as well
)

// isOwner says whether u is the session's owner: the same username, and the
// same UID where the owner's is known (a user deleted and re-created under
// the same name is somebody else).
func isOwner(u user.Info, s *terminal.TerminalSession) bool {
	o := s.Status.Owner
	if o == nil || o.Username == "" || o.Username != u.GetName() {
		return false
	}
	return o.UID == "" || o.UID == u.GetUID()
}

// authorizeAttach decides, as the attaching user and at every attach, what
// the attach may do: nothing is remembered from an earlier attach or from
// the session's creation. wantsInput is the query's stdin.
//
//   - read-write needs to be the owner or hold join, and in both cases
//     create pods/exec on the target pod: a terminal never lets anyone type
//     what they could not type with kubectl exec, and an owner whose exec
//     right was revoked loses the terminal with it;
//   - read-only needs observe, or what read-write needs.
//
// A refusal is a 403 that names the permission missing.
func authorizeAttach(ctx context.Context, authz authorizer.Authorizer, u user.Info, s *terminal.TerminalSession, wantsInput bool) (access, error) {
	allowed := func(a authorizer.AttributesRecord) (bool, error) {
		a.User, a.Namespace, a.ResourceRequest = u, s.Namespace, true
		d, _, err := authz.Authorize(ctx, a)
		if err != nil {
			return false, apierrors.NewInternalError(fmt.Errorf("authorizing %s %s/%s of %s/%s for user %q: %w",
				a.Verb, a.Resource, a.Subresource, s.Namespace, a.Name, u.GetName(), err))
		}
		return d == authorizer.DecisionAllow, nil
	}
	session := func(verb string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{Verb: verb, APIGroup: terminal.GroupName, APIVersion: "*",
			Resource: "terminalsessions", Name: s.Name}
	}
	pod := s.Spec.Target.Pod
	forbidden := func(format string, args ...any) error {
		return apierrors.NewForbidden(terminal.Resource("terminalsessions/attach"), s.Name, fmt.Errorf(format, args...))
	}

	owner := isOwner(u, s)
	mayJoin := owner
	if !owner {
		ok, err := allowed(session(VerbJoin))
		if err != nil {
			return accessNone, err
		}
		mayJoin = ok
	}
	mayExec := false
	if mayJoin {
		ok, err := allowed(authorizer.AttributesRecord{Verb: "create", APIVersion: "v1", Resource: "pods",
			Subresource: "exec", Name: pod})
		if err != nil {
			return accessNone, err
		}
		mayExec = ok
	}
	if mayJoin && mayExec {
		return accessWrite, nil
	}
	mayObserve, err := allowed(session(VerbObserve))
	if err != nil {
		return accessNone, err
	}
	switch {
	case mayJoin && (wantsInput || !mayObserve):
		return accessNone, forbidden("user %q cannot create pods/exec on pod %q in namespace %q: typing into a terminal needs the same permission as kubectl exec%s",
			u.GetName(), pod, s.Namespace, observeHint(mayObserve))
	case mayObserve && wantsInput:
		return accessNone, forbidden("user %q may only observe this session: attach without stdin", u.GetName())
	case mayObserve:
		return accessRead, nil
	}
	return accessNone, forbidden("user %q is not the owner of the session: others need the %q verb on terminalsessions and create pods/exec on the pod (read-write), or the %q verb (read-only)",
		u.GetName(), VerbJoin, VerbObserve)
}

func observeHint(mayObserve bool) string {
	if mayObserve {
		return " (attach without stdin to watch)"
	}
	return ""
}
