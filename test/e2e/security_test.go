package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// bind gives user the ClusterRole role in ns, until the test ends; it
// returns a function that revokes it at once.
func bind(t *testing.T, ns, user, role string) (revoke func()) {
	t.Helper()
	rb := kubeClient(t, "admin").RbacV1().RoleBindings(ns)
	name := user + "-" + role
	b := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
	if _, err := rb.Create(context.Background(), b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	revoke = func() {
		if err := rb.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
	t.Cleanup(revoke)
	return revoke
}

// clusterRole creates (once per run) a ClusterRole for tests to bind.
func clusterRole(t *testing.T, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	_, err := kubeClient(t, "admin").RbacV1().ClusterRoles().Create(context.Background(), cr, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

// execRole is a ClusterRole with pods/exec and nothing else, so that tests
// can grant and revoke exec apart from the session verbs. Both verbs, as in
// edit: kube-apiserver authorizes a WebSocket exec (a GET, what the bridge
// opens) as get and create.
func execRole(t *testing.T) string {
	return clusterRole(t, "e2e-pods-exec",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"get", "create"}})
}

// sessionRole is a ClusterRole with the session verbs of
// terminal-sessions-edit and reading pods, and no pods/exec.
func sessionRole(t *testing.T) string {
	return clusterRole(t, "e2e-sessions-no-exec",
		rbacv1.PolicyRule{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions"}, Verbs: []string{"create", "get", "list", "watch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions/attach"}, Verbs: []string{"create", "get"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}})
}

// waitRefused retries attempt until it fails with an error containing
// want: authorization decisions are cached for up to 10 s, so a grant's
// revocation takes that long to show. An attempt that is let in lasts, so
// each gets a few seconds.
func waitRefused(t *testing.T, what, want string, attempt func(ctx context.Context) error) {
	t.Helper()
	eventually(t, 45*time.Second, what, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := attempt(ctx)
		return err != nil && strings.Contains(err.Error(), want), nil
	})
}

// sharedSession is a namespace of its own with a running pod and a running
// session of alice's on it; alice may exec there.
func sharedSession(t *testing.T, prefix string) (ns string, s *v1alpha1.TerminalSession, revokeExec func()) {
	t.Helper()
	ns = ownNamespace(t, prefix)
	bind(t, ns, "alice", sessionRole(t))
	revokeExec = bind(t, ns, "alice", execRole(t))
	pod := podWith(ns, "target", "main")
	createPod(t, pod)
	waitPodRunning(t, ns, pod.Name)
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns)
	eventually(t, 30*time.Second, "alice opens a session (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		var err error
		s, err = c.Create(ctx, framework.NewSession(ns, uniqueName(prefix), pod.Name), metav1.CreateOptions{})
		return err == nil, nil
	})
	t.Cleanup(func() { _ = c.Delete(context.Background(), s.Name, metav1.DeleteOptions{}) })
	waitPhase(t, ns, s.Name, v1alpha1.TerminalSessionRunning)
	return ns, s, revokeExec
}

// An observer whose client opens a stdin stream, or writes to the stdin
// channel, without stdin in its query types nothing into the shell: over
// SPDY the stream is refused and the attach fails; over WebSocket the
// frames are dropped and the observer keeps watching.
func TestAttachObserverCannotType(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, s, _ := sharedSession(t, "observer-stdin")
	bind(t, ns, "bob", "terminal-sessions-observe")
	bind(t, ns, "bob", execRole(t)) // even one who could exec may only observe

	ownerIn, ownerType := io.Pipe()
	defer ownerType.Close()
	var owner framework.Screen
	attach(ctx, t, "alice", ns, s.Name, false, ownerIn, &owner) // until the test's context ends
	waitViewers(t, 30*time.Second, "the owner attached", ns, s.Name, 1)

	u := terminalClient(t, "bob").TerminalV1alpha1().RESTClient().Post().Namespace(ns).Resource("terminalsessions").
		Name(s.Name).SubResource("attach").Param("stdout", "true").Param("tty", "true").URL()
	sneak := "echo pwned-$((6*7))\n"
	// SPDY: client-go opens a stdin stream whenever it has a Stdin reader.
	eventually(t, 30*time.Second, "bob's SPDY stdin stream refused (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		spdy, err := remotecommand.NewSPDYExecutor(restConfig(t, "bob"), "POST", u)
		if err != nil {
			return false, err
		}
		err = spdy.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(sneak), Stdout: io.Discard})
		if err == nil {
			t.Fatal("bob's SPDY attach with a stdin stream ended without error")
		}
		return !strings.Contains(err.Error(), "forbidden") && !strings.Contains(err.Error(), "Forbidden"), nil
	})
	// WebSocket: client-go writes stdin frames whenever it has a Stdin reader.
	ws, err := remotecommand.NewWebSocketExecutor(restConfig(t, "bob"), "GET", u.String())
	if err != nil {
		t.Fatal(err)
	}
	var watched framework.Screen
	wsCtx, wsCancel := context.WithCancel(ctx)
	wsDone := make(chan error, 1)
	go func() {
		wsDone <- ws.StreamWithContext(wsCtx, remotecommand.StreamOptions{Stdin: strings.NewReader(sneak), Stdout: &watched, Tty: true})
	}()
	waitViewers(t, 30*time.Second, "bob watching over WebSocket", ns, s.Name, 2)

	// Anything bob's clients sent is ahead of this in the session's input.
	go func() { _, _ = ownerType.Write([]byte("echo after-$((1+1))\n")) }()
	for who, scr := range map[string]*framework.Screen{"owner": &owner, "observer": &watched} {
		eventually(t, 30*time.Second, who+" sees the owner's command", func(context.Context) (bool, error) {
			return strings.Contains(scr.String(), "after-2"), nil
		})
	}
	if strings.Contains(owner.String(), "pwned-42") {
		t.Fatalf("an observer's input ran in the owner's shell:\n%s", owner.String())
	}
	wsCancel()
	<-wsDone
}

// Attach is authorized at every attach, as the attaching user: once the
// owner's pods/exec is revoked, so is the terminal; a joiner needs pods/exec
// of their own to type, and without it may only watch.
func TestAttachReauthorized(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns, s, revokeExec := sharedSession(t, "reauth")
	bind(t, ns, "bob", "terminal-sessions-join")

	// bob may join but not exec: no typing, watching is fine.
	eventually(t, 30*time.Second, "bob's typing refused for want of pods/exec (once RBAC caught up)", func(ctx context.Context) (bool, error) {
		err := <-attach(ctx, t, "bob", ns, s.Name, false, strings.NewReader("echo hi\n"), io.Discard)
		return err != nil && strings.Contains(err.Error(), `cannot create pods/exec on pod "target"`), nil
	})
	watchCtx, stopWatching := context.WithCancel(ctx)
	watching := attach(watchCtx, t, "bob", ns, s.Name, true, nil, io.Discard)
	waitViewers(t, 30*time.Second, "bob watching", ns, s.Name, 1)
	stopWatching()
	<-watching

	// The owner attaches while they may exec, and not after.
	var out framework.Screen
	in, typed := io.Pipe()
	attach(ctx, t, "alice", ns, s.Name, false, in, &out)
	go func() { _, _ = typed.Write([]byte("echo owner-$((3*3))\n")) }()
	eventually(t, 30*time.Second, "alice's command echoed", func(context.Context) (bool, error) {
		return strings.Contains(out.String(), "owner-9"), nil
	})
	_ = typed.Close() // the attach stays, watching, until the test's context ends
	revokeExec()
	waitRefused(t, "alice refused once her pods/exec is revoked", `cannot create pods/exec on pod "target"`, func(ctx context.Context) error {
		return <-attach(ctx, t, "alice", ns, s.Name, false, strings.NewReader(""), io.Discard)
	})
}

// Deleting a session ends its exec at once, even while a finalizer keeps
// the object: the attached viewer is let go, the status says Deleted, and
// a new attach is refused.
func TestDeleteWithFinalizerEndsExec(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	s := framework.NewSession("team-a", uniqueName("finalized"), "shell-demo")
	s.Finalizers = []string{"e2e.terminal.meshery.io/hold"}
	created := createSession(t, "alice", s)
	t.Cleanup(func() {
		patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
		_, _ = c.Patch(context.Background(), created.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	})
	waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionRunning)
	in, typed := io.Pipe()
	defer typed.Close()
	done := attach(ctx, t, "alice", "team-a", created.Name, false, in, io.Discard)
	waitViewers(t, 30*time.Second, "alice attached", "team-a", created.Name, 1)

	if err := c.Delete(ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), v1alpha1.ReasonDeleted) {
			t.Errorf("the attach ended with %v, want the session's deletion", err)
		}
	case <-ctx.Done():
		t.Fatal("the attach outlived the deletion")
	}
	got := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
	if got.Status.Reason != v1alpha1.ReasonDeleted || got.DeletionTimestamp == nil {
		t.Errorf("status %s/%s with deletionTimestamp %v, want Closed/Deleted while the finalizer holds it",
			got.Status.Phase, got.Status.Reason, got.DeletionTimestamp)
	}
	err := <-attach(ctx, t, "alice", "team-a", created.Name, false, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is being deleted") {
		t.Errorf("attach to a deleted session: %v, want a refusal saying it is being deleted", err)
	}
}

// An attach that names a UID reaches only the session with that UID: the
// plugin's reconnects never land in a session created since under the
// same name.
func TestAttachUIDPrecondition(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := runningSession(t, "uid")
	err := <-attach(ctx, t, "alice", "team-a", s.Name, false, strings.NewReader(""), io.Discard,
		func(o *v1alpha1.TerminalSessionAttachOptions) { o.UID = "0f0f0f0f-not-this-one" })
	if !apierrors.IsConflict(err) && (err == nil || !strings.Contains(err.Error(), "deleted and created again")) {
		t.Fatalf("attach naming another UID: %v, want 409", err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	if err := <-attach(ctx2, t, "alice", "team-a", s.Name, false, strings.NewReader(""), io.Discard,
		func(o *v1alpha1.TerminalSessionAttachOptions) { o.UID = string(s.UID) }); ctx2.Err() == nil {
		t.Fatalf("attach naming the session's own UID ended: %v", err)
	}
}

// A deleted session's scrollback leaves the output stream shortly after
// (its viewers have read the close event by then), rather than staying
// for the stream's maximum age.
func TestScrollbackPurgedOnDelete(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := runningSession(t, "purge")
	_, js := natsConn(t)
	io, err := js.Stream(ctx, wire.IOStream)
	if err != nil {
		t.Fatal(err)
	}
	subj := wire.Subjects(s.Status.Subjects)
	kept := func(ctx context.Context) (int, error) {
		info, err := io.Info(ctx, jetstream.WithSubjectFilter(string(subj)+".*"))
		if err != nil {
			return 0, err
		}
		n := 0
		for _, c := range info.State.Subjects {
			n += int(c)
		}
		return n, nil
	}
	eventually(t, 30*time.Second, "the session's start in the output stream", func(ctx context.Context) (bool, error) {
		n, err := kept(ctx)
		return n > 0, err
	})
	if err := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a").Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "the deleted session's scrollback purged", func(ctx context.Context) (bool, error) {
		n, err := kept(ctx)
		return n == 0, err
	})
}
