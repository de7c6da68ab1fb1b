/*
Copyright The Meshery Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package terminalsession

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

func pod(name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dev"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		})
	}
	return p
}

func withAnnotation(p *corev1.Pod, value string) *corev1.Pod {
	p.Annotations = map[string]string{DefaultContainerAnnotation: value}
	return p
}

func TestResolveContainer(t *testing.T) {
	sidecar := pod("mesh", "app")
	sidecar.Spec.InitContainers = []corev1.Container{
		{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
		{Name: "migrate"},
	}
	cases := []struct {
		name      string
		pod       *corev1.Pod
		requested string
		want      string
		// wantErr is the whole rendered field error: these messages are the API.
		wantErr string
	}{
		{name: "only container", pod: pod("p", "shell"), want: "shell"},
		{name: "requested", pod: pod("p", "app", "sidecar"), requested: "sidecar", want: "sidecar"},
		{name: "annotation", pod: withAnnotation(pod("p", "sidecar", "app"), "app"), want: "app"},
		{name: "request beats annotation", pod: withAnnotation(pod("p", "app", "sidecar"), "app"), requested: "sidecar", want: "sidecar"},
		{name: "stale annotation, one container", pod: withAnnotation(pod("p", "app"), "gone"), want: "app"},
		{name: "several, none chosen", pod: pod("p", "app", "sidecar"),
			wantErr: `spec.target.container: Required value: pod "p" has 2 containers (app, sidecar); choose one with spec.target.container`},
		{name: "several, stale annotation", pod: withAnnotation(pod("p", "app", "sidecar"), "gone"),
			wantErr: `spec.target.container: Required value: pod "p" has 2 containers (app, sidecar); choose one with spec.target.container ` +
				`(its kubectl.kubernetes.io/default-container annotation names "gone", which it does not have)`},
		{name: "unknown", pod: pod("p", "app", "sidecar"), requested: "nope",
			wantErr: `spec.target.container: Unsupported value: "nope": supported values: "app", "sidecar"`},
		{name: "sidecar init container by name", pod: sidecar, requested: "proxy", want: "proxy"},
		{name: "finished init container", pod: sidecar, requested: "migrate",
			wantErr: `spec.target.container: Unsupported value: "migrate": supported values: "app", "proxy"`},
		{name: "sidecars are never the default", pod: sidecar, want: "app"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := resolveContainer(c.pod, c.requested)
			if c.wantErr != "" {
				if err == nil || err.Error() != c.wantErr {
					t.Fatalf("error = %v\nwant    %s", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestCheckPodRunning(t *testing.T) {
	pending := pod("p", "app")
	pending.Status.Phase = corev1.PodPending
	succeeded := pod("p", "app")
	succeeded.Status.Phase = corev1.PodSucceeded
	unknown := pod("p", "app")
	unknown.Status.Phase = ""
	deleting := pod("p", "app")
	deleting.DeletionTimestamp = &metav1.Time{}
	for _, c := range []struct {
		pod  *corev1.Pod
		want string
	}{
		{pod("p", "app"), ""},
		{pending, `spec.target.pod: Invalid value: "p": pod is Pending, not Running: a terminal needs a running pod`},
		{succeeded, `spec.target.pod: Invalid value: "p": pod is Succeeded, not Running: a terminal needs a running pod`},
		{unknown, `spec.target.pod: Invalid value: "p": pod is not started, not Running: a terminal needs a running pod`},
		{deleting, `spec.target.pod: Invalid value: "p": pod is being deleted`},
	} {
		err := checkPodRunning(c.pod)
		if (c.want == "") != (err == nil) || (err != nil && err.Error() != c.want) {
			t.Errorf("phase %q: error = %v, want %q", c.pod.Status.Phase, err, c.want)
		}
	}
}

func TestCheckContainerRunning(t *testing.T) {
	p := pod("p", "app", "crash", "done", "fresh")
	p.Status.ContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	p.Status.ContainerStatuses[2].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ExitCode: 0}}
	p.Status.ContainerStatuses = p.Status.ContainerStatuses[:3] // "fresh" has no status yet
	for container, want := range map[string]string{
		"app":   "",
		"fresh": "",
		"crash": `spec.target.container: Invalid value: "crash": container is not running (waiting: CrashLoopBackOff)`,
		"done":  `spec.target.container: Invalid value: "done": container is not running (terminated: Completed, exit code 0)`,
	} {
		err := checkContainerRunning(p, container)
		if (want == "") != (err == nil) || (err != nil && err.Error() != want) {
			t.Errorf("%s: error = %v, want %q", container, err, want)
		}
	}
}

// fakeCluster is a fake clientset whose SubjectAccessReviews answer allowed, and which
// records the reviews it was asked.
func fakeCluster(allowed bool, objects ...runtime.Object) (*fake.Clientset, *[]authorizationv1.SubjectAccessReviewSpec) {
	client := fake.NewClientset(objects...)
	var asked []authorizationv1.SubjectAccessReviewSpec
	client.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		asked = append(asked, review.Spec)
		review.Status.Allowed = allowed
		return true, review, nil
	})
	return client, &asked
}

func sessionFor(podName, container string) *terminal.TerminalSession {
	s := newSession()
	s.Spec.Target = terminal.TerminalTarget{Pod: podName, Container: container}
	return s
}

func TestTargetCheckerAsksAsTheUser(t *testing.T) {
	client, asked := fakeCluster(true, withAnnotation(pod("web-0", "sidecar", "app"), "app"))
	container, err := NewTargetChecker(client).Check(context.Background(), jane, sessionFor("web-0", ""))
	if err != nil || container != "app" {
		t.Fatalf("Check = %q, %v; want the annotated container", container, err)
	}
	want := []authorizationv1.SubjectAccessReviewSpec{{
		User:   "jane",
		UID:    "u-42",
		Groups: []string{"dev", "system:authenticated"},
		Extra:  map[string]authorizationv1.ExtraValue{"authentication.kubernetes.io/credential-id": {"X509SHA256=abc"}},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: "dev", Verb: "create", Resource: "pods", Subresource: "exec", Name: "web-0",
		},
	}}
	if !reflect.DeepEqual(*asked, want) {
		t.Errorf("reviews asked = %+v\nwant %+v", *asked, want)
	}
}

func TestTargetCheckerRefused(t *testing.T) {
	// The pod does not exist: a refused user must get the 403 anyway, not learn that.
	client, _ := fakeCluster(false)
	_, err := NewTargetChecker(client).Check(context.Background(), jane, sessionFor("secret-pod", ""))
	want := `terminalsessions.terminal.meshery.io "debug" is forbidden: user "jane" cannot create pods/exec on pod "secret-pod" ` +
		`in namespace "dev": opening a terminal needs the same permission as kubectl exec`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("error = %v\nwant 403 %s", err, want)
	}
	for _, a := range client.Actions() {
		if a.GetResource().Resource == "pods" {
			t.Errorf("looked up a pod for a refused user: %v", a)
		}
	}
	if _, err := NewTargetChecker(client).Check(context.Background(), nil, sessionFor("p", "")); !apierrors.IsForbidden(err) {
		t.Errorf("no user: error = %v, want 403", err)
	}
}

func TestTargetCheckerErrors(t *testing.T) {
	pending := pod("starting", "app")
	pending.Status.Phase = corev1.PodPending
	client, _ := fakeCluster(true, pod("two", "app", "sidecar"), pending)
	checker := NewTargetChecker(client)
	for _, c := range []struct {
		pod, container string
		field, message string
	}{
		{"missing", "", "spec.target.pod", `spec.target.pod: Not found: pod "missing" in namespace "dev"`},
		{"starting", "", "spec.target.pod", `pod is Pending, not Running`},
		{"two", "", "spec.target.container", `pod "two" has 2 containers (app, sidecar)`},
		{"two", "nope", "spec.target.container", `Unsupported value: "nope": supported values: "app", "sidecar"`},
	} {
		_, err := checker.Check(context.Background(), jane, sessionFor(c.pod, c.container))
		if !apierrors.IsInvalid(err) || !hasCause(err, c.field) || !strings.Contains(err.Error(), c.message) {
			t.Errorf("%s/%s: error = %v\nwant 422 on %s containing %q", c.pod, c.container, err, c.field, c.message)
		}
		if err != nil && !strings.HasPrefix(err.Error(), `TerminalSession.terminal.meshery.io "debug" is invalid: `) {
			t.Errorf("error does not name the session: %v", err)
		}
	}
}

func TestTargetCheckerClusterErrors(t *testing.T) {
	// The review cannot be asked: 500 with what was being checked.
	client := fake.NewClientset()
	client.PrependReactor("create", "subjectaccessreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	_, err := NewTargetChecker(client).Check(context.Background(), jane, sessionFor("p", ""))
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `checking whether user "jane" may create pods/exec on pod "p" in namespace "dev": connection refused`) {
		t.Errorf("review error = %v", err)
	}

	// The pod cannot be read (the server's own RBAC, say): 500, not "not found".
	client, _ = fakeCluster(true)
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "p", errors.New("no get pods"))
	})
	_, err = NewTargetChecker(client).Check(context.Background(), jane, sessionFor("p", ""))
	if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusInternalServerError ||
		!strings.Contains(err.Error(), `looking up target pod "p" in namespace "dev"`) {
		t.Errorf("pod lookup error = %v", err)
	}
}

// recordingTargets is a TargetChecker that records what it was asked and answers as
// told, for the tests of where the registry runs the checks.
type recordingTargets struct {
	asked     []*terminal.TerminalSession
	users     []string
	container string
	err       error
}

func (f *recordingTargets) Check(ctx context.Context, u user.Info, session *terminal.TerminalSession) (string, error) {
	f.asked = append(f.asked, session.DeepCopy())
	name := ""
	if u != nil {
		name = u.GetName()
	}
	f.users = append(f.users, name)
	return f.container, f.err
}

func newCheckedREST(t *testing.T, targets TargetChecker) *REST {
	t.Helper()
	r, _, err := NewREST(newScheme(), fakeRESTOptions(), targets, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Destroy)
	return r
}

func TestCreateRunsTheChecks(t *testing.T) {
	targets := &recordingTargets{container: "app"}
	r := newCheckedREST(t, targets)
	s := sessionFor("web-0", "")
	obj, err := r.Create(userContext(jane), s, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := obj.(*terminal.TerminalSession)
	if len(targets.asked) != 1 || targets.users[0] != "jane" || targets.asked[0].Namespace != "dev" || targets.asked[0].Spec.Target.Pod != "web-0" {
		t.Fatalf("checks asked %d times, as %v, for %+v", len(targets.asked), targets.users, targets.asked)
	}
	if created.Spec.Target.Container != "app" {
		t.Errorf("resolved container not written into the spec: %+v", created.Spec.Target)
	}
	if created.UID == "" || created.Status.Subjects != "terminal."+string(created.UID) {
		t.Errorf("status.subjects = %q for UID %q", created.Status.Subjects, created.UID)
	}
	stored, err := r.Get(userContext(jane), created.Name, &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.(*terminal.TerminalSession).Spec.Target.Container; got != "app" {
		t.Errorf("stored container = %q, want app", got)
	}
}

func TestCreateRefused(t *testing.T) {
	refusal := apierrors.NewForbidden(terminal.Resource("terminalsessions"), "debug", errors.New("no pods/exec"))
	targets := &recordingTargets{err: refusal}
	r := newCheckedREST(t, targets)
	for _, dryRun := range [][]string{nil, {metav1.DryRunAll}} {
		_, err := r.Create(userContext(jane), sessionFor("web-0", ""), rest.ValidateAllObjectFunc, &metav1.CreateOptions{DryRun: dryRun})
		if err != refusal {
			t.Errorf("dry run %v: error = %v, want the checker's", dryRun, err)
		}
	}
	if len(targets.asked) != 2 {
		t.Errorf("checks ran %d times, want on the dry run too", len(targets.asked))
	}
	if _, err := r.Get(userContext(jane), "debug", &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused session was stored: %v", err)
	}
}

// An invalid spec gets its validation errors, and the cluster is not asked about a
// target that validation refuses.
func TestCreateValidatesBeforeChecking(t *testing.T) {
	targets := &recordingTargets{container: "app"}
	r := newCheckedREST(t, targets)
	bad := sessionFor("", "")
	bad.Spec.Size = &terminal.TerminalSize{Cols: 0, Rows: 24}
	_, err := r.Create(userContext(jane), bad, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !hasCause(err, "spec.target.pod") || !hasCause(err, "spec.size.cols") {
		t.Errorf("error = %v, want 422 on spec.target.pod and spec.size.cols", err)
	}
	if len(targets.asked) != 0 {
		t.Errorf("checked an invalid target: %+v", targets.asked)
	}
}

// Server-side apply of a new session creates through Update; the checks must run there too.
func TestApplyCreateRunsTheChecks(t *testing.T) {
	targets := &recordingTargets{container: "app"}
	r := newCheckedREST(t, targets)
	applied := sessionFor("web-0", "")
	obj, created, err := r.Update(userContext(jane), applied.Name, rest.DefaultUpdatedObjectInfo(applied),
		rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, true, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*terminal.TerminalSession)
	if !created || len(targets.asked) != 1 || s.Spec.Target.Container != "app" || s.Status.Subjects != "terminal."+string(s.UID) {
		t.Errorf("apply-create: created %v, checks %d, target %+v, subjects %q", created, len(targets.asked), s.Spec.Target, s.Status.Subjects)
	}

	// Updating an existing session does not check again (the spec cannot change).
	labelled := s.DeepCopy()
	labelled.Labels = map[string]string{"a": "b"}
	if _, _, err := r.Update(userContext(jane), s.Name, rest.DefaultUpdatedObjectInfo(labelled),
		rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, true, &metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(targets.asked) != 1 {
		t.Errorf("an update ran the create checks (%d calls)", len(targets.asked))
	}

	targets.err = apierrors.NewForbidden(terminal.Resource("terminalsessions"), "other", errors.New("no pods/exec"))
	other := sessionFor("web-0", "")
	other.Name = "other"
	if _, _, err := r.Update(userContext(jane), other.Name, rest.DefaultUpdatedObjectInfo(other),
		rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, true, &metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("refused apply-create: error = %v, want 403", err)
	}
}
