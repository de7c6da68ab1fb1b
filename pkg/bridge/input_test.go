package bridge

import (
	"bytes"
	"testing"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
)

// Input towards a process that is not reading is bounded in bytes, from
// the NATS path and the local fast path alike: a paste into a stuck shell
// cannot grow the replica.
func TestInputQueueBounded(t *testing.T) {
	s := &session{obj: &v1alpha1.TerminalSession{}} // no exec yet: nothing drains the queue
	chunk := bytes.Repeat([]byte("x"), 60<<10)
	for range 100 { // 6 MiB
		s.queueInput(chunk)
		s.writeInputNow(chunk)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inputBytes > maxInputQueued {
		t.Fatalf("%d bytes queued, bound %d", s.inputBytes, maxInputQueued)
	}
	n := 0
	for _, p := range s.input {
		n += len(p)
	}
	if n != s.inputBytes || n < maxInputQueued-len(chunk) {
		t.Fatalf("queue holds %d bytes (counted %d); want it filled to the bound", n, s.inputBytes)
	}
}
