package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// What a terminal in a real container does that kwok's processes could not:
// the shell has a controlling terminal, so Ctrl-C interrupts the foreground
// job and the shell lives on; a resize reaches the process as SIGWINCH.
func TestTerminalSignals(t *testing.T) {
	t.Parallel()
	sh := openShell(t, "team-a", "shell-demo", "")
	typeIn := func(s string) {
		t.Helper()
		if err := sh.nc.Publish(sh.subj.In(), []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	id := marker()
	typeIn(fmt.Sprintf("echo \"started\"-%s; sleep 600; echo \"finished\"-%s\n", id, id))
	eventually(t, scenarioTimeout, "the foreground job running", func(context.Context) (bool, error) {
		return strings.Contains(sh.scr.String(), "started-"+id), nil
	})
	interrupted := time.Now()
	typeIn("\x03")
	typeIn("echo \"alive\"-$((6*7))-" + id + "\n")
	eventually(t, scenarioTimeout, "the shell answering after Ctrl-C", func(context.Context) (bool, error) {
		return strings.Contains(sh.scr.String(), "alive-42-"+id), nil
	})
	if d := time.Since(interrupted); d > 10*time.Second {
		t.Errorf("the shell answered %s after Ctrl-C: the sleep was not interrupted", d)
	}
	if out := sh.scr.String(); strings.Contains(out, "finished-"+id) || strings.Contains(out, "no job control") {
		t.Errorf("after Ctrl-C the list went on, or the shell has no terminal:\n%s", out)
	}

	// SIGWINCH: the process sees the new size when the terminal changes.
	typeIn("trap 'echo winch-$(stty size | tr \" \" x)' WINCH\n")
	typeIn("echo \"trap\"-set-" + id + "\n")
	eventually(t, scenarioTimeout, "the WINCH trap set", func(context.Context) (bool, error) {
		return strings.Contains(sh.scr.String(), "trap-set-"+id), nil
	})
	data, _ := json.Marshal(wire.Size{Cols: 123, Rows: 45})
	if err := sh.nc.Publish(sh.subj.Resize(), data); err != nil {
		t.Fatal(err)
	}
	eventually(t, scenarioTimeout, "SIGWINCH with the new size", func(context.Context) (bool, error) {
		return strings.Contains(sh.scr.String(), "winch-45x123"), nil
	})
}

// Output a process writes just before it exits arrives whole, in order,
// before the session says the process exited; the exit code is the
// runtime's.
func TestOutputBeforeExitComplete(t *testing.T) {
	t.Parallel()
	nc, js := natsConn(t)
	s := framework.NewSession("team-a", uniqueName("last-words"), "shell-demo")
	s.Spec.Command = []string{"sh", "-c", "seq 1 20000 | sed 's/^/line-/'; exit 5"}
	created := createSession(t, "alice", s)
	subj := wire.SubjectsFor(string(created.UID))
	scr := watchScreen(t, js, subj)
	closed := watchClosed(t, nc, subj)
	final := waitPhase(t, "team-a", created.Name, v1alpha1.TerminalSessionClosed)
	if final.Status.ExitCode == nil || *final.Status.ExitCode != 5 {
		t.Fatalf("status %+v, want exit code 5", final.Status)
	}
	select {
	case ev := <-closed:
		if ev.ExitCode == nil || *ev.ExitCode != 5 {
			t.Errorf("closed event %+v, want exit code 5", ev)
		}
	case <-time.After(10 * time.Second):
		// The event may have been published before the subscription: the
		// status says it all the same.
	}
	var text string
	eventually(t, scenarioTimeout, "every line of output", func(context.Context) (bool, error) {
		text = strings.ReplaceAll(scr.String(), "\r\n", "\n")
		return strings.Contains(text, "line-20000\n"), nil
	})
	next := 1
	for _, l := range strings.Split(text, "\n") {
		if l == fmt.Sprintf("line-%d", next) {
			next++
		} else if strings.HasPrefix(l, "line-") {
			t.Fatalf("line %q where line-%d was due", l, next)
		}
	}
	if next != 20001 {
		t.Fatalf("lines up to line-%d, want all 20000", next-1)
	}
	if err := scr.Err(); err != nil {
		t.Errorf("output frames: %v", err)
	}
}
