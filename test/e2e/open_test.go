package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// The create-time checks (issue 3 items 1 and 2): a session opens only where its creator
// could `kubectl exec`, only on a running pod, and in a container the server resolves
// and writes into the spec.

// runningPod returns the name of a running pod of a demo Deployment.
func runningPod(t *testing.T, ns, app string) string {
	t.Helper()
	var name string
	eventually(t, 60*time.Second, fmt.Sprintf("a running %s/%s pod", ns, app), func(ctx context.Context) (bool, error) {
		pods, err := kubeClient(t, "admin").CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				name = p.Name
				return true, nil
			}
		}
		return false, nil
	})
	return name
}

// createPod creates a pod as admin, deleted at the end of the test.
func createPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods := kubeClient(t, "admin").CoreV1().Pods(pod.Namespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
}

func podWith(ns, name string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"e2e": "true"}}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, framework.SleepingContainer(c))
	}
	return p
}

func waitPodRunning(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 60*time.Second, "pod "+ns+"/"+name+" running", func(ctx context.Context) (bool, error) {
		p, err := kubeClient(t, "admin").CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
}

// createFails runs `kubectl create` (extra flags allowed) with a session and wants it
// refused with every one of wants in the error.
func createFails(t *testing.T, context, yaml string, wants []string, flags ...string) {
	t.Helper()
	r := kubectl(t, context, yaml, append([]string{"create", "-f", "-"}, flags...)...)
	if r.code == 0 {
		t.Fatalf("kubectl create %v: succeeded, want an error containing %q\n%s", flags, wants, r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("kubectl create %v: error lacks %q:\n%s", flags, w, r.stderr)
		}
	}
}

func TestOpenResolvesContainerAndSubjects(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	name := uniqueName("open")
	created, err := c.Create(ctx, framework.NewSession("team-a", name, "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if created.Spec.Target.Container != "shell" {
		t.Errorf("spec.target.container = %q, want shell-demo's only container", created.Spec.Target.Container)
	}
	if created.UID == "" || created.Status.Subjects != "terminal."+string(created.UID) {
		t.Errorf("status.subjects = %q, want terminal.%s", created.Status.Subjects, created.UID)
	}
	out := mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", name, "--no-headers")
	if f := strings.Fields(out); len(f) < 3 || f[2] != "shell" {
		t.Errorf("get term CONTAINER column: %q", out)
	}
}

func TestOpenDefaultContainer(t *testing.T) {
	t.Parallel()
	app := runningPod(t, "team-a", "app")
	cleanup := func(name string) {
		t.Cleanup(func() { kubectl(t, "alice", "", "-n", "team-a", "delete", "term", name, "--ignore-not-found") })
	}

	// No container: the default-container annotation's.
	name := uniqueName("default")
	out := mustKubectl(t, "alice", sessionYAML("team-a", name, app), "create", "-f", "-", "-o", "jsonpath={.spec.target.container}")
	cleanup(name)
	if out != "app" {
		t.Errorf("container = %q, want the annotated default app", out)
	}
	// A named container is kept.
	name = uniqueName("sidecar")
	out = mustKubectl(t, "alice", sessionYAML("team-a", name, app, "    container: sidecar"), "create", "-f", "-", "-o", "jsonpath={.spec.target.container}")
	cleanup(name)
	if out != "sidecar" {
		t.Errorf("container = %q, want sidecar", out)
	}
	// An unknown one is refused with the valid ones listed, the same on a server dry run.
	y := sessionYAML("team-a", uniqueName("nope"), app, "    container: nope")
	want := []string{"is invalid", `spec.target.container: Unsupported value: "nope": supported values: "app", "sidecar"`}
	createFails(t, "alice", y, want)
	createFails(t, "alice", y, want, "--dry-run=server")
	// A server dry run reports the resolved container and stores nothing.
	name = uniqueName("dry")
	out = mustKubectl(t, "alice", sessionYAML("team-a", name, app), "create", "-f", "-", "--dry-run=server", "-o", "jsonpath={.spec.target.container}")
	if out != "app" {
		t.Errorf("dry run container = %q, want app", out)
	}
	if r := kubectl(t, "alice", "", "-n", "team-a", "get", "term", name); r.code == 0 {
		t.Errorf("a dry run stored the session: %s", r)
	}
	// Server-side apply creates through another code path; the same checks hold there.
	name = uniqueName("ssa")
	mustKubectl(t, "alice", sessionYAML("team-a", name, app), "apply", "--server-side", "-f", "-")
	cleanup(name)
	if out := mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", name, "-o", "jsonpath={.spec.target.container}"); out != "app" {
		t.Errorf("server-side apply: container = %q, want app", out)
	}
	r := kubectl(t, "alice", y, "apply", "--server-side", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, want[1]) {
		t.Errorf("server-side apply with an unknown container: %s", r)
	}
}

func TestOpenUnknownPod(t *testing.T) {
	t.Parallel()
	y := sessionYAML("team-a", uniqueName("nopod"), "no-such-pod")
	want := []string{"is invalid", `spec.target.pod: Not found: pod "no-such-pod" in namespace "team-a"`}
	createFails(t, "alice", y, want)
	createFails(t, "alice", y, want, "--dry-run=server")
	r := kubectl(t, "alice", y, "apply", "--server-side", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, want[1]) {
		t.Errorf("server-side apply: %s", r)
	}
	// Through the clientset: a 422 with the cause on the field.
	_, err := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a").Create(context.Background(),
		framework.NewSession("team-a", uniqueName("nopod"), "no-such-pod"), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !hasCauseOn(err, "spec.target.pod", metav1.CauseTypeFieldValueNotFound) {
		t.Errorf("clientset create: want 422 FieldValueNotFound on spec.target.pod, got %v", err)
	}
}

func TestOpenPodNotRunning(t *testing.T) {
	t.Parallel()
	// No node matches: the scheduler leaves it Pending.
	pending := podWith("team-a", uniqueName("pending"), "main")
	pending.Spec.NodeSelector = map[string]string{"e2e.terminal.meshery.io/no-such-node": "true"}
	createPod(t, pending)
	createFails(t, "alice", sessionYAML("team-a", uniqueName("pending"), pending.Name),
		[]string{"is invalid", fmt.Sprintf(`spec.target.pod: Invalid value: %q: pod is Pending, not Running`, pending.Name)})
}

// ownNamespace creates a namespace for one test, deleted when it ends,
// and returns once pods can be created in it.
func ownNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	ns := uniqueName(prefix)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	// Pods need the namespace's default ServiceAccount, which the controller-manager makes.
	eventually(t, 60*time.Second, "default ServiceAccount in "+ns, func(ctx context.Context) (bool, error) {
		_, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return ns
}

func TestOpenNeedsPodsExec(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")

	// A namespace of its own, so that granting alice here cannot change what other
	// tests expect of her in team-a and team-b (authorization decisions are cached).
	ns := ownNamespace(t, "e2e-exec")
	// Someone grants alice create terminalsessions (patch too, for server-side apply)
	// and reading pods here, not pods/exec; bob gets edit, which has both.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "open-sessions", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"terminal.meshery.io"}, Resources: []string{"terminalsessions"}, Verbs: []string{"create", "patch", "get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*rbacv1.RoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: "alice-open-sessions", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "alice"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bob-edit", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "bob"}}},
	} {
		if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := podWith(ns, "target", "main")
	createPod(t, pod)
	twoContainers := podWith(ns, "two", "app", "helper")
	createPod(t, twoContainers)
	waitPodRunning(t, ns, pod.Name)
	waitPodRunning(t, ns, twoContainers.Name)

	// bob may exec: he opens a session (once RBAC's caches have caught up).
	bob := terminalClient(t, "bob").TerminalV1alpha1().TerminalSessions(ns)
	var opened *v1alpha1.TerminalSession
	eventually(t, 60*time.Second, "bob opening a session in "+ns, func(ctx context.Context) (bool, error) {
		s, err := bob.Create(ctx, framework.NewSession(ns, uniqueName("bob"), pod.Name), metav1.CreateOptions{})
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		opened = s
		return err == nil, err
	})
	if opened.Spec.Target.Container != "main" || opened.Status.Owner == nil || opened.Status.Owner.Username != "bob" {
		t.Errorf("bob's session: target %+v owner %+v", opened.Spec.Target, opened.Status.Owner)
	}
	// Several containers, no annotation, none chosen: the error lists them.
	createFails(t, "bob", sessionYAML(ns, uniqueName("two"), twoContainers.Name), []string{"is invalid",
		`spec.target.container: Required value: pod "two" has 2 containers (app, helper); choose one with spec.target.container`})

	// alice may create terminalsessions but not pods/exec: 403 naming the permission,
	// and the same for a pod that does not exist, so refusal says nothing about pods.
	wantFor := func(pod string) string {
		return fmt.Sprintf(`user "alice" cannot create pods/exec on pod %q in namespace %q: opening a terminal needs the same permission as kubectl exec`, pod, ns)
	}
	y := sessionYAML(ns, uniqueName("alice"), pod.Name)
	eventually(t, 60*time.Second, "alice's terminalsessions grant in effect", func(context.Context) (bool, error) {
		r := kubectl(t, "alice", y, "create", "-f", "-")
		if r.code == 0 {
			return false, fmt.Errorf("alice opened a session without pods/exec: %s", r)
		}
		return strings.Contains(r.stderr, wantFor(pod.Name)), nil
	})
	createFails(t, "alice", y, []string{"Forbidden", wantFor(pod.Name)})
	createFails(t, "alice", y, []string{"Forbidden", wantFor(pod.Name)}, "--dry-run=server")
	createFails(t, "alice", sessionYAML(ns, uniqueName("alice"), "no-such-pod"), []string{"Forbidden", wantFor("no-such-pod")})
	r := kubectl(t, "alice", y, "apply", "--server-side", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, wantFor(pod.Name)) {
		t.Errorf("alice server-side apply: want 403, got %s", r)
	}
	_, err := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns).Create(ctx, framework.NewSession(ns, uniqueName("alice"), pod.Name), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("alice clientset create: want 403, got %v", err)
	}
	list, err := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items {
		if s.Status.Owner != nil && s.Status.Owner.Username == "alice" {
			t.Errorf("a refused session was stored: %s", s.Name)
		}
	}

	// viewer may not create sessions at all: kube's own RBAC refuses first.
	createFails(t, "viewer", sessionYAML("team-a", uniqueName("viewer"), "shell-demo"),
		[]string{"Forbidden", `User "viewer" cannot create resource "terminalsessions"`})
}

func hasCauseOn(err error, field string, typ metav1.CauseType) bool {
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == field && c.Type == typ {
			return true
		}
	}
	return false
}
