package terminalsession

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// Whatever names and commands a tenant sends (NATS wildcards and token
// separators, unicode, control characters), validation does not panic, a
// valid session's names carry nothing NATS treats specially but dots, and
// its subjects come from its UID alone.
func FuzzSessionSpec(f *testing.F) {
	f.Add("shell", "web-0", "app", "bash", int32(80), int32(24))
	f.Add("a.b", "*", ">", "terminal.*.in", int32(0), int32(-1))
	f.Add("x", "p\u202e", "c\x1b[2J", "", int32(100000), int32(1))
	f.Add("déjà", "pod.with.dots", "UPPER", "sh -c 'exit 3'", int32(1), int32(1))
	strategy := NewStrategy(newScheme())
	f.Fuzz(func(t *testing.T, name, pod, container, arg string, cols, rows int32) {
		uid := types.UID("0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90")
		s := &terminal.TerminalSession{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a", UID: uid},
			Spec: terminal.TerminalSessionSpec{Target: terminal.TerminalTarget{Pod: pod, Container: container},
				Command: []string{arg}, Size: &terminal.TerminalSize{Cols: cols, Rows: rows}},
		}
		if got := SubjectPrefix(s); got != "terminal."+string(uid) {
			t.Fatalf("subjects %q, want terminal.<uid>", got)
		}
		if errs := strategy.Validate(context.Background(), s); len(errs) > 0 {
			return
		}
		for _, v := range []string{name, pod, container} {
			if strings.ContainsAny(v, "*> \t\r\n\x00") {
				t.Fatalf("valid session with %q", v)
			}
		}
	})
}
