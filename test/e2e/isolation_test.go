package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	v1alpha1client "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned/typed/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// Isolation (issue 3 item 6): 50 sessions open at once, for different pods,
// containers and users, never cross streams. Each session types a marker of
// its own; its output must show that marker, printed by a shell in its own
// target, and nothing typed into or printed by any of the other 49.
func TestIsolation(t *testing.T) {
	t.Parallel()
	const (
		sessions = 50
		// Creators working at once: enough to overlap creates, SubjectAccessReviews
		// and exec setup, few enough not to queue 50 execs on a 2-core machine at once.
		workers = 8
	)
	// The whole test, creation to last check, within about a minute.
	start := time.Now()
	deadline := start.Add(60 * time.Second)

	type target struct{ user, ns, pod, container, env string }
	// env is what $TEAM/$APP_NAME prints in that container (demo.yaml): it
	// tells the pods apart (worker's two containers print the same).
	targets := []target{
		{"alice", "team-a", "shell-demo", "shell", "team-a/shell-demo"},
		{"alice", "team-a", runningPod(t, "team-a", "web"), "web", "team-a/web"},
		{"bob", "team-b", runningPod(t, "team-b", "api"), "api", "team-b/api"},
		{"bob", "team-b", runningPod(t, "team-b", "worker"), "worker", "team-b/worker"},
		{"bob", "team-b", runningPod(t, "team-b", "worker"), "log-shipper", "team-b/worker"},
	}
	// Each user creates, lists and deletes with their own credentials, in the
	// namespace they may edit.
	clients := map[string]v1alpha1client.TerminalSessionInterface{
		"alice": terminalClient(t, "alice").TerminalV1alpha1().TerminalSessions("team-a"),
		"bob":   terminalClient(t, "bob").TerminalV1alpha1().TerminalSessions("team-b"),
	}
	// A label for this run's sessions: to list them and delete them together.
	run := marker()
	selector := "e2e-isolation=" + run
	t.Cleanup(func() {
		for user, c := range clients {
			if err := c.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: selector}); err != nil {
				t.Errorf("%s deleting this run's sessions: %v", user, err)
			}
		}
	})

	type session struct {
		target
		name, id string
		want     string // the shell's output line: ISO-<id> <$TEAM/$APP_NAME>
		uid      string
		scr      *framework.FrameScreen
		typed    bool
	}
	all := make([]*session, sessions)
	for i := range all {
		tg, id := targets[i%len(targets)], marker()
		all[i] = &session{target: tg, name: uniqueName("iso"), id: id, want: "ISO-" + id + " " + tg.env}
	}

	// Create concurrently through a small worker pool.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	jobs := make(chan *session)
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s := range jobs {
				obj := framework.NewSession(s.ns, s.name, s.pod)
				obj.Labels["e2e-isolation"] = run
				obj.Spec.Target.Container = s.container
				created, err := clients[s.user].Create(ctx, obj, metav1.CreateOptions{})
				if err != nil {
					errs <- fmt.Errorf("%s creating %s/%s on %s/%s: %w", s.user, s.ns, s.name, s.pod, s.container, err)
					continue
				}
				s.uid = string(created.UID)
			}
		})
	}
	for _, s := range all {
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("created %d sessions in %s", sessions, time.Since(start).Round(time.Millisecond))

	nc, js := natsConn(t)
	for _, s := range all {
		s.scr = watchScreen(t, js, wire.SubjectsFor(s.uid))
	}
	defer func() {
		if t.Failed() {
			for _, s := range all {
				t.Logf("%s/%s (%s, %s/%s) screen:\n%s", s.ns, s.name, s.user, s.pod, s.container, s.scr.String())
			}
		}
	}()

	// Type each session's marker as soon as it is Running (the bridge reads
	// input from then on). One list per namespace per poll, not 50 gets.
	// The marker is typed quoted ("ISO"-id) and printed unquoted (ISO-id):
	// only the shell's output contains ISO-id, the terminal's echo of the
	// typed line does not.
	byName := map[string]*session{}
	for _, s := range all {
		byName[s.ns+"/"+s.name] = s
	}
	eventually(t, time.Until(deadline), "all sessions Running and typed into", func(ctx context.Context) (bool, error) {
		pending := 0
		for _, c := range clients {
			list, err := c.List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return false, nil // the server may be restarting; keep polling to the deadline
			}
			for _, obj := range list.Items {
				s := byName[obj.Namespace+"/"+obj.Name]
				if s == nil || s.typed {
					continue
				}
				switch obj.Status.Phase {
				case v1alpha1.TerminalSessionRunning:
					line := fmt.Sprintf("echo \"ISO\"-%s $TEAM/$APP_NAME\n", s.id)
					if err := nc.Publish(wire.SubjectsFor(s.uid).In(), []byte(line)); err != nil {
						return false, err
					}
					s.typed = true
				case v1alpha1.TerminalSessionClosed, v1alpha1.TerminalSessionFailed:
					return false, fmt.Errorf("session %s/%s %s: %s: %s", obj.Namespace, obj.Name, obj.Status.Phase, obj.Status.Reason, obj.Status.Message)
				default:
					pending++
				}
			}
		}
		for _, s := range all {
			if !s.typed {
				pending++
			}
		}
		return pending == 0, nil
	})
	t.Logf("all Running and typed into after %s", time.Since(start).Round(time.Millisecond))

	eventually(t, time.Until(deadline), "every session's marker on its output subject", func(context.Context) (bool, error) {
		for _, s := range all {
			if !strings.Contains(s.scr.String(), s.want) {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("every marker seen after %s", time.Since(start).Round(time.Millisecond))

	// Nothing of another session, in any form: neither the printed marker
	// (its shell's output) nor the bare id (what was typed into it, echoed).
	printed := regexp.MustCompile(`ISO-[0-9a-f]+`)
	for _, s := range all {
		text := s.scr.String()
		for _, m := range printed.FindAllString(text, -1) {
			if m != "ISO-"+s.id {
				t.Errorf("%s/%s shows %s, not its own ISO-%s", s.ns, s.name, m, s.id)
			}
		}
		for _, o := range all {
			if o != s && strings.Contains(text, o.id) {
				t.Errorf("%s/%s shows the id of %s/%s", s.ns, s.name, o.ns, o.name)
			}
		}
		if s.scr.Err() != nil {
			t.Errorf("%s/%s output frames: %v", s.ns, s.name, s.scr.Err())
		}
	}
}
