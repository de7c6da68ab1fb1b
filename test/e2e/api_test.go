package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

func sessionYAML(ns, name, pod string, extraSpec ...string) string {
	return fmt.Sprintf(`apiVersion: terminal.meshery.io/v1alpha1
kind: TerminalSession
metadata:
  name: %s
  namespace: %s
  labels:
    e2e: "true"
spec:
  target:
    pod: %s
%s`, name, ns, pod, strings.Join(extraSpec, "\n"))
}

func TestDiscoveryAndExplain(t *testing.T) {
	t.Parallel()
	out := mustKubectl(t, "alice", "", "api-resources", "--api-group=terminal.meshery.io", "--no-headers")
	fields := strings.Fields(out)
	// NAME SHORTNAMES APIVERSION NAMESPACED KIND
	if len(fields) != 5 || fields[0] != "terminalsessions" || fields[1] != "term" ||
		fields[2] != "terminal.meshery.io/v1alpha1" || fields[3] != "true" || fields[4] != "TerminalSession" {
		t.Fatalf("api-resources: got %q", out)
	}

	out = mustKubectl(t, "alice", "", "explain", "terminalsession.spec.target")
	for _, want := range []string{"pod\t<string> -required-", "container\t<string>", "kubectl.kubernetes.io/default-container"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain spec.target lacks %q:\n%s", want, out)
		}
	}
	out = mustKubectl(t, "alice", "", "explain", "terminalsession.status")
	for _, want := range []string{"phase", "owner", "exitCode", "lastActivityTime"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain status lacks %q:\n%s", want, out)
		}
	}
}

// The README's tour: apply the example, see it with printer columns, watch,
// delete.
func TestKubectlTour(t *testing.T) {
	t.Parallel()
	// Watch from before the example exists, through the aggregation layer.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watchCmd := exec.CommandContext(ctx, "kubectl", "--context", "alice", "-n", "team-a", "get", "term",
		// Without --watch-only, kubectl reports the initial list as ADDED
		// events too, so the create below may race the watch's start.
		"--watch", "--output-watch-events")
	watchCmd.Dir = env.root
	stdout, err := watchCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watchCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watchCmd.Process.Kill(); _ = watchCmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expectLine := func(event string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("kubectl get -w ended before %s shell-demo", event)
				}
				f := strings.Fields(l)
				if len(f) >= 2 && f[0] == event && f[1] == "shell-demo" {
					return
				}
			case <-timeout:
				t.Fatalf("kubectl get -w: no %s event for shell-demo", event)
			}
		}
	}
	out := mustKubectl(t, "alice", "", "apply", "-f", "artifacts/examples/session.yaml")
	if !strings.Contains(out, "terminalsession.terminal.meshery.io/shell-demo created") {
		t.Fatalf("apply: %s", out)
	}
	t.Cleanup(func() { kubectl(t, "alice", "", "-n", "team-a", "delete", "term", "shell-demo", "--ignore-not-found") })
	expectLine("ADDED")

	out = mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", "shell-demo")
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	wantHeader := []string{"NAME", "POD", "CONTAINER", "OWNER", "PHASE", "AGE", "IDLE"}
	if strings.Join(header, " ") != strings.Join(wantHeader, " ") {
		t.Errorf("get term columns = %v, want %v", header, wantHeader)
	}
	if !strings.Contains(out, "shell-demo") || !strings.Contains(out, "alice") ||
		!strings.Contains(out, "Pending") && !strings.Contains(out, "Running") {
		t.Errorf("get term row lacks pod, owner or phase:\n%s", out)
	}

	// Re-applying the same file writes nothing: the resourceVersion stays.
	// (kubectl may still say "configured": it compares "15m" with the
	// server's canonical "15m0s".)
	rv := mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", "shell-demo", "-o", "jsonpath={.metadata.resourceVersion}")
	mustKubectl(t, "alice", "", "apply", "-f", "artifacts/examples/session.yaml")
	if rv2 := mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", "shell-demo", "-o", "jsonpath={.metadata.resourceVersion}"); rv2 != rv {
		t.Errorf("second apply changed resourceVersion %s -> %s", rv, rv2)
	}

	mustKubectl(t, "alice", "", "-n", "team-a", "delete", "term", "shell-demo")
	expectLine("DELETED")
	r := kubectl(t, "alice", "", "-n", "team-a", "get", "term", "shell-demo")
	if r.code == 0 || !strings.Contains(r.stderr, `terminalsessions.terminal.meshery.io "shell-demo" not found`) {
		t.Errorf("get after delete: %s", r)
	}
}

func TestRBACCreate(t *testing.T) {
	t.Parallel()
	name := uniqueName("rbac")
	// alice may create sessions in team-a (edit), not in team-b.
	mustKubectl(t, "alice", sessionYAML("team-a", name, "shell-demo"), "create", "-f", "-")
	t.Cleanup(func() { kubectl(t, "admin", "", "-n", "team-a", "delete", "term", name, "--ignore-not-found") })

	r := kubectl(t, "alice", sessionYAML("team-b", name, "shell-demo"), "create", "-f", "-")
	want := `User "alice" cannot create resource "terminalsessions" in API group "terminal.meshery.io" in the namespace "team-b"`
	if r.code == 0 || !strings.Contains(r.stderr, "Forbidden") || !strings.Contains(r.stderr, want) {
		t.Errorf("alice in team-b: want 403 %q, got %s", want, r)
	}
	// viewer can see sessions in team-a (view) but not open one.
	r = kubectl(t, "viewer", sessionYAML("team-a", uniqueName("viewer"), "shell-demo"), "create", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, `User "viewer" cannot create resource "terminalsessions"`) {
		t.Errorf("viewer create: want 403, got %s", r)
	}
	out := mustKubectl(t, "viewer", "", "-n", "team-a", "get", "term", name, "-o", "name")
	if strings.TrimSpace(out) != "terminalsession.terminal.meshery.io/"+name {
		t.Errorf("viewer get: %q", out)
	}
	// bob sees nothing in team-a.
	r = kubectl(t, "bob", "", "-n", "team-a", "get", "term")
	if r.code == 0 || !strings.Contains(r.stderr, `User "bob" cannot list resource "terminalsessions"`) {
		t.Errorf("bob list team-a: want 403, got %s", r)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, spec string
		want       []string
	}{
		{"missing pod", "", []string{"spec.target.pod: Required value"}},
		{"bad durations and size", `  idleTimeout: -1s
  maxDuration: 0s
  size:
    cols: -3
    rows: 20000`, []string{"spec.idleTimeout: Invalid value", "spec.maxDuration: Invalid value", "spec.size.cols: Invalid value", "spec.size.rows: Invalid value"}},
		{"empty command entry", `  command: [""]`, []string{"spec.command[0]: Required value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			y := sessionYAML("team-a", uniqueName("invalid"), "shell-demo", c.spec)
			if c.name == "missing pod" {
				y = strings.Replace(y, "    pod: shell-demo\n", "    container: x\n", 1)
			}
			r := kubectl(t, "alice", y, "create", "-f", "-")
			if r.code == 0 || !strings.Contains(r.stderr, "is invalid") {
				t.Fatalf("want 422, got %s", r)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("error lacks %q: %s", w, r.stderr)
				}
			}
		})
	}
}

// The API semantics kubectl and controllers rely on, through the generated
// clientset and the aggregation layer.
func TestAPISemantics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	admin := terminalClient(t, "admin").TerminalV1alpha1().TerminalSessions("team-a")
	name := uniqueName("sem")
	created, err := c.Create(ctx, framework.NewSession("team-a", name, "shell-demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), name, metav1.DeleteOptions{}) })

	// Server-side defaults and the server-owned owner.
	if created.Spec.TTY == nil || !*created.Spec.TTY || created.Spec.Size == nil || created.Spec.Size.Cols != 80 || created.Spec.Size.Rows != 24 {
		t.Errorf("defaults not applied: tty=%v size=%+v", created.Spec.TTY, created.Spec.Size)
	}
	if created.Status.Owner == nil || created.Status.Owner.Username != "alice" {
		t.Errorf("status.owner = %+v, want alice", created.Status.Owner)
	}
	if created.Status.Phase != v1alpha1.TerminalSessionPending {
		t.Errorf("phase = %q, want Pending", created.Status.Phase)
	}
	// The bridge starts the shell and writes status; let it settle so the
	// writes below don't race it.
	created = waitPhase(t, "team-a", name, v1alpha1.TerminalSessionRunning)

	// Watch from a past resourceVersion sees the later update.
	w, err := c.Watch(ctx, metav1.ListOptions{ResourceVersion: created.ResourceVersion, FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	updated := created.DeepCopy()
	updated.Labels["step"] = "two"
	updated, err = c.Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		s, ok := ev.Object.(*v1alpha1.TerminalSession)
		if ev.Type != watch.Modified || !ok || s.ResourceVersion != updated.ResourceVersion {
			t.Errorf("watch from RV: got %s %#v", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the update")
	}

	// A stale resourceVersion is a 409 Conflict.
	stale := created.DeepCopy()
	stale.Labels["step"] = "stale"
	if _, err := c.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("stale update: want 409 Conflict, got %v", err)
	}

	// The spec is immutable.
	changed := updated.DeepCopy()
	changed.Spec.Target.Pod = "other"
	if _, err := c.Update(ctx, changed, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec") {
		t.Errorf("spec change: want 422 naming spec, got %v", err)
	}

	// Label and field selectors.
	list, err := c.List(ctx, metav1.ListOptions{LabelSelector: "step=two", FieldSelector: "spec.target.pod=shell-demo,status.owner.username=alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !containsName(list.Items, name) {
		t.Errorf("selector list lacks %s", name)
	}
	list, err = c.List(ctx, metav1.ListOptions{FieldSelector: "spec.target.pod=nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if containsName(list.Items, name) {
		t.Errorf("field selector spec.target.pod=nonexistent matched %s", name)
	}

	// Users cannot write status; the server (admin here) can, through the
	// status subresource only.
	st := updated.DeepCopy()
	st.Status.Message = "set by e2e"
	if _, err := c.UpdateStatus(ctx, st, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("alice UpdateStatus: want 403 (edit has no terminalsessions/status), got %v", err)
	}
	viaMain := updated.DeepCopy()
	viaMain.Status.Message = "set by e2e"
	got, err := c.Update(ctx, viaMain, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Message == "set by e2e" {
		t.Error("status changed through the main resource")
	}
	st.ResourceVersion = got.ResourceVersion
	got, err = admin.UpdateStatus(ctx, st, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Message != "set by e2e" || got.Status.Owner == nil || got.Status.Owner.Username != "alice" {
		t.Errorf("status update: message %q owner %+v", got.Status.Message, got.Status.Owner)
	}

	// Delete; the object is gone and the watch says so.
	if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: want 404, got %v", err)
	}
	for {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Deleted {
				return
			}
		case <-ctx.Done():
			t.Fatal("no DELETED watch event")
		}
	}
}

func TestServerSideApply(t *testing.T) {
	t.Parallel()
	name := uniqueName("ssa")
	y := sessionYAML("team-a", name, "shell-demo", "  idleTimeout: 10m")
	mustKubectl(t, "alice", y, "apply", "--server-side", "-f", "-")
	t.Cleanup(func() { kubectl(t, "admin", "", "-n", "team-a", "delete", "term", name, "--ignore-not-found") })
	out := mustKubectl(t, "alice", "", "-n", "team-a", "get", "term", name, "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation} {.spec.idleTimeout}")
	if out != "kubectl Apply 10m0s" {
		t.Errorf("managed fields / applied spec: %q", out)
	}
	// Applying a changed immutable field is refused with the field named.
	r := kubectl(t, "alice", sessionYAML("team-a", name, "shell-demo", "  idleTimeout: 20m"), "apply", "--server-side", "-f", "-")
	if r.code == 0 || !strings.Contains(r.stderr, "spec: Forbidden: field is immutable") {
		t.Errorf("apply changed spec: %s", r)
	}
}

// Deleting an object with finalizers marks it; it goes once they are gone.
func TestGracefulDeleteWithFinalizer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a")
	s := framework.NewSession("team-a", uniqueName("final"), "shell-demo")
	s.Finalizers = []string{"e2e.terminal.meshery.io/hold"}
	created, err := c.Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, created.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	held, err := c.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("object with a finalizer gone at once: %v", err)
	}
	if held.DeletionTimestamp == nil {
		t.Fatal("deletionTimestamp not set")
	}
	patch := []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`)
	if _, err := c.Patch(ctx, created.Name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "object gone after its finalizer", func(ctx context.Context) (bool, error) {
		_, err := c.Get(ctx, created.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func containsName(items []v1alpha1.TerminalSession, name string) bool {
	for _, s := range items {
		if s.Name == name {
			return true
		}
	}
	return false
}

// The attach query is decoded as TerminalSessionAttachOptions by the
// generic machinery, as a pod's into PodAttachOptions: every refusal
// before the upgrade is a metav1.Status saying what was wrong, and the
// session's UID is told only to whoever may attach to it.
func TestAttachOptionsRefusedAsStatus(t *testing.T) {
	t.Parallel()
	ns, s, _ := sharedSession(t, "attach-opts")
	bind(t, ns, "bob", sessionRole(t)) // may attach, but holds no observe grant
	ctx, cancel := contextWithTimeout(t, 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		user, name string
		query      map[string]string
		code       int32
		says       string
	}{
		{"alice", s.Name, map[string]string{"stdout": "true", "since": "abc"}, 400, `since: "abc" is not a byte count`},
		{"alice", s.Name, map[string]string{"stdout": "true", "since": "-1"}, 400, "since"},
		{"alice", s.Name, map[string]string{"tty": "true"}, 400, "at least one of stdin, stdout, stderr"},
		{"alice", s.Name, map[string]string{"stdout": "false", "stdin": "0"}, 400, "at least one of stdin, stdout, stderr"},
		{"alice", "no-such-session", map[string]string{"stdout": "true"}, 404, "not found"},
		{"alice", s.Name, map[string]string{"stdout": "true", "uid": "0000"}, 409, "deleted and created again"},
		{"bob", s.Name, map[string]string{"stdout": "true", "uid": "0000"}, 403, "observe"},
	} {
		refusal := func() error {
			req := terminalClient(t, tc.user).TerminalV1alpha1().RESTClient().Post().Namespace(ns).
				Resource("terminalsessions").Name(tc.name).SubResource("attach")
			for k, v := range tc.query {
				req = req.Param(k, v)
			}
			err := req.Do(ctx).Error()
			var st apierrors.APIStatus
			if !errors.As(err, &st) || st.Status().Code != tc.code || !strings.Contains(st.Status().Message, tc.says) {
				return fmt.Errorf("%s attaching to %s with %v: %v, want a %d Status saying %q", tc.user, tc.name, tc.query, err, tc.code, tc.says)
			}
			if tc.code != 409 && strings.Contains(st.Status().Message, string(s.UID)) {
				return fmt.Errorf("%s attaching with %v learned the session's UID: %q", tc.user, tc.query, st.Status().Message)
			}
			return nil
		}
		// bob's RoleBinding reaches kube-apiserver's authorizer in a moment.
		err := refusal()
		for deadline := time.Now().Add(30 * time.Second); err != nil && tc.user == "bob" && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond) // a poll with a deadline, keeping the last error to report
			err = refusal()
		}
		if err != nil {
			t.Error(err)
		}
	}
}
