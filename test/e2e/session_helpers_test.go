package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
	"github.com/meshery/terminal-apiserver/test/framework"
)

// A shell is one running session as seen through its NATS subjects: what a
// viewer of the terminal would type into and read from.
type shell struct {
	name string
	nc   *nats.Conn
	subj wire.Subjects
	scr  *framework.FrameScreen
}

// marker returns a random lowercase alphanumeric token: unique across tests,
// runs and the sessions of one run, so finding it in output proves where the
// output came from.
func marker() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// openShell creates a session as alice in ns on pod (container "" lets the
// server resolve it), deletes it when the test ends, follows its output
// subject from the first frame and returns once the session is Running, the
// point from which the bridge reads the input subject.
func openShell(t *testing.T, ns, pod, container string) *shell {
	t.Helper()
	nc, js := natsConn(t)
	name := uniqueName("scenario")
	s := framework.NewSession(ns, name, pod)
	s.Spec.Target.Container = container
	created := createSession(t, "alice", s)
	sh := &shell{name: created.Name, nc: nc, subj: wire.SubjectsFor(string(created.UID))}
	sh.scr = watchScreen(t, js, sh.subj)
	// Registered after watchScreen's cleanup, so it runs before the consumer
	// stops: the screen is complete when it is printed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("session %s/%s screen:\n%s", ns, name, sh.scr.String())
		}
		if sh.scr.Err() != nil {
			t.Errorf("output frames of %s/%s: %v", ns, name, sh.scr.Err())
		}
	})
	waitPhase(t, ns, name, v1alpha1.TerminalSessionRunning)
	return sh
}

// run types cmd into the shell between two echoed markers and returns what
// the shell printed between them, with the terminal's CRLF line ends turned
// into LF. The markers are typed quoted ("BEGIN"-id) and printed unquoted
// (BEGIN-id), so neither the terminal's echo of the typed line nor a prompt
// can be mistaken for the command's output.
func (sh *shell) run(t *testing.T, cmd string, timeout time.Duration) string {
	t.Helper()
	id := marker()
	begin, end := "BEGIN-"+id, "END-"+id
	line := fmt.Sprintf("echo \"BEGIN\"-%s; %s; echo \"END\"-%s\n", id, cmd, id)
	if err := sh.nc.Publish(sh.subj.In(), []byte(line)); err != nil {
		t.Fatal(err)
	}
	var out string
	eventually(t, timeout, fmt.Sprintf("output of %q between markers", cmd), func(context.Context) (bool, error) {
		text := sh.scr.String()
		i := strings.Index(text, begin)
		if i < 0 {
			return false, nil
		}
		rest := text[i+len(begin):]
		j := strings.Index(rest, end)
		if j < 0 {
			return false, nil
		}
		out = rest[:j]
		return true, nil
	})
	out = strings.ReplaceAll(out, "\r\n", "\n")
	// The line break that ends the BEGIN marker's own line.
	return strings.TrimPrefix(out, "\n")
}

// watchClosed delivers the session's "closed" control events from now on.
func watchClosed(t *testing.T, nc *nats.Conn, subj wire.Subjects) <-chan wire.Event {
	t.Helper()
	closed := make(chan wire.Event, 4)
	sub, err := nc.Subscribe(subj.Ctl(), func(m *nats.Msg) {
		var ev wire.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Type == wire.EventClosed {
			closed <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return closed
}
