package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// The server's identity at kube-apiserver, which the bridge's exec carries
// (hack/local-up.sh gives it the ServiceAccount's name, as in a cluster).
const serverUser = "system:serviceaccount:terminal-system:terminal-apiserver"

// "Who ran what, where and when" is answered by the audit logs of both
// servers and by the session's closing log line: a session alice creates
// and attaches to through kube-apiserver is audited at kube-apiserver and at
// terminal-apiserver under one audit ID, as alice; the exec behind it is
// audited at kube-apiserver as made by terminal-apiserver impersonating
// alice; and terminal-apiserver's JSON log says at close who it was, where,
// how many bytes went each way and for how long.
func TestAuditAndCloseLogNameTheUser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := uniqueName("audit")
	// A pod of the test's own: the exec the audit log shows is this
	// session's, not another test's into a shared pod.
	pod := podWith("team-a", name, "main")
	createPod(t, pod)
	waitPodRunning(t, "team-a", pod.Name)
	created := createSession(t, "alice", framework.NewSession("team-a", name, pod.Name))
	waitPhase(t, "team-a", name, v1alpha1.TerminalSessionRunning)
	typed := fmt.Sprintf("echo audit-%s\nexit 3\n", marker())
	var out bytes.Buffer
	err := <-attach(ctx, t, "alice", "team-a", name, true, strings.NewReader(typed), &out)
	if err == nil || !strings.Contains(err.Error(), "exit code 3") {
		t.Fatalf("attach ended with %v, want exit code 3; output:\n%s", err, out.String())
	}

	// terminal-apiserver's log: the create with its spec, and the attach.
	var create, attached *auditv1.Event
	eventually(t, 30*time.Second, "the create and the attach in terminal-apiserver's audit log", func(context.Context) (bool, error) {
		create = findAudit(t, os.Getenv("TERMINAL_APISERVER_AUDIT_LOG"), func(e *auditv1.Event) bool {
			return e.Verb == "create" && refersTo(e, "terminalsessions", "", name)
		})
		attached = findAudit(t, os.Getenv("TERMINAL_APISERVER_AUDIT_LOG"), func(e *auditv1.Event) bool {
			return e.Verb == "create" && refersTo(e, "terminalsessions", "attach", name)
		})
		return create != nil && attached != nil, nil
	})
	for what, e := range map[string]*auditv1.Event{"create": create, "attach": attached} {
		if e.User.Username != "alice" || e.ImpersonatedUser != nil {
			t.Errorf("%s audited as %+v (impersonating %+v), want alice herself", what, e.User, e.ImpersonatedUser)
		}
		if e.ObjectRef.Namespace != "team-a" || e.ObjectRef.APIGroup != "terminal.meshery.io" {
			t.Errorf("%s audited with object %+v", what, e.ObjectRef)
		}
	}
	if create.Level != auditv1.LevelRequestResponse || create.RequestObject == nil ||
		!strings.Contains(string(create.RequestObject.Raw), fmt.Sprintf(`"pod":%q`, pod.Name)) {
		t.Errorf("the create is audited at level %s without the spec naming the pod: %v", create.Level, create.RequestObject)
	}
	if create.ResponseObject == nil || !strings.Contains(string(create.ResponseObject.Raw), fmt.Sprintf(`"uid":%q`, created.UID)) {
		t.Errorf("the create's audit event lacks the created session's UID: %v", create.ResponseObject)
	}
	if create.ResponseStatus == nil || create.ResponseStatus.Code != 201 {
		t.Errorf("the create's audited response: %+v", create.ResponseStatus)
	}

	// kube-apiserver's log: the same create under the same audit ID, and the
	// exec the bridge made for alice.
	var front, execEv *auditv1.Event
	eventually(t, 30*time.Second, "the create and the exec in kube-apiserver's audit log", func(context.Context) (bool, error) {
		front = findAudit(t, os.Getenv("KUBE_AUDIT_LOG"), func(e *auditv1.Event) bool {
			return e.AuditID == create.AuditID && e.Verb == "create"
		})
		execEv = findAudit(t, os.Getenv("KUBE_AUDIT_LOG"), func(e *auditv1.Event) bool {
			return refersTo(e, "pods", "exec", pod.Name) && e.ObjectRef.Namespace == "team-a" &&
				e.ImpersonatedUser != nil && e.ImpersonatedUser.Username == "alice"
		})
		return front != nil && execEv != nil, nil
	})
	// kube-apiserver proxies the create without reading its body: its
	// event names the collection, not the object (terminal-apiserver's does).
	if front.User.Username != "alice" || !refersTo(front, "terminalsessions", "", "") || front.ObjectRef.Namespace != "team-a" {
		t.Errorf("kube-apiserver audited the create (audit ID %s) as %+v on %+v", create.AuditID, front.User, front.ObjectRef)
	}
	if execEv.User.Username != serverUser {
		t.Errorf("the exec is audited as made by %q, want the impersonator %q", execEv.User.Username, serverUser)
	}

	// terminal-apiserver's JSON log line at close.
	var closed map[string]any
	eventually(t, 30*time.Second, "the session's closing line in terminal-apiserver's JSON log", func(context.Context) (bool, error) {
		closed = findLogLine(t, os.Getenv("TERMINAL_APISERVER_LOG"), func(l map[string]any) bool {
			s, _ := l["session"].(map[string]any)
			return l["msg"] == "Session closed" && s["name"] == name && s["namespace"] == "team-a"
		})
		return closed != nil, nil
	})
	target, _ := closed["pod"].(map[string]any)
	if closed["user"] != "alice" || closed["uid"] != string(created.UID) || target["name"] != pod.Name ||
		closed["container"] != "main" || closed["reason"] != v1alpha1.ReasonExited ||
		closed["exitCode"] != float64(3) {
		t.Errorf("closing line %v", closed)
	}
	// What alice typed reached the shell; its output (her echo, the
	// prompt) came back; the duration is a Go duration.
	if in, _ := closed["bytesIn"].(float64); int(in) != len(typed) {
		t.Errorf("bytesIn %v, want the %d bytes typed", closed["bytesIn"], len(typed))
	}
	if o, _ := closed["bytesOut"].(float64); o < float64(len(typed)) {
		t.Errorf("bytesOut %v, want at least the echo of what was typed", closed["bytesOut"])
	}
	if d, err := time.ParseDuration(fmt.Sprint(closed["duration"])); err != nil || d <= 0 {
		t.Errorf("duration %v: %v", closed["duration"], err)
	}
}

// refersTo says whether an audit event is about resource/subresource name.
func refersTo(e *auditv1.Event, resource, subresource, name string) bool {
	return e.ObjectRef != nil && e.ObjectRef.Resource == resource && e.ObjectRef.Subresource == subresource && e.ObjectRef.Name == name
}

// findAudit returns the last completed event in the audit log at path
// that match accepts.
func findAudit(t *testing.T, path string, match func(*auditv1.Event) bool) *auditv1.Event {
	t.Helper()
	var found *auditv1.Event
	scanLines(t, path, func(line []byte) {
		var e auditv1.Event
		if json.Unmarshal(line, &e) == nil && e.Stage == auditv1.StageResponseComplete && match(&e) {
			found = &e
		}
	})
	return found
}

// findLogLine returns the last JSON log line at path that match accepts.
func findLogLine(t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	scanLines(t, path, func(line []byte) {
		var l map[string]any
		if json.Unmarshal(line, &l) == nil && match(l) {
			found = l
		}
	})
	return found
}

func scanLines(t *testing.T, path string, each func([]byte)) {
	t.Helper()
	if path == "" {
		t.Fatal("no log path: source the environment hack/local-up.sh writes")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		each(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
