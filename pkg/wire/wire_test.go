package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// The contract, pinned: a change here is a change both sides and every
// deployed replica must agree on.
func TestContract(t *testing.T) {
	s := SubjectsFor("0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90")
	for got, want := range map[string]string{
		string(s):        "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90",
		s.Out():          "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.out",
		s.Ctl():          "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.ctl",
		s.In():           "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.in",
		s.Resize():       "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.resize",
		s.Viewers():      "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.viewers",
		s.All():          "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.*",
		s.Cast():         "terminal.0b5c1f1e-7d3a-4c7e-9a51-2f0a1c6d8e90.cast",
		IOStream:         "TERMINAL_IO",
		TranscriptStream: "TERMINAL_TRANSCRIPTS",
		LeaseBucket:      "TERMINAL_BRIDGE_LEASES",
		SeqHeader:        "Terminal-Seq",
		OffsetHeader:     "Terminal-Offset",
		NamespaceHeader:  "Terminal-Namespace",
		NameHeader:       "Terminal-Name",
		EndHeader:        "Terminal-End",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if io := IOSubjects(); len(io) != 2 || io[0] != "terminal.*.out" || io[1] != "terminal.*.ctl" {
		t.Errorf("IOSubjects %q", io)
	}
	if tr := TranscriptSubjects(); len(tr) != 1 || tr[0] != "terminal.*.cast" {
		t.Errorf("TranscriptSubjects %q", tr)
	}
	if MaxFrame != 32768 || ViewerRefresh != 10*time.Second || ViewerTTL != 30*time.Second {
		t.Errorf("MaxFrame %d, ViewerRefresh %s, ViewerTTL %s", MaxFrame, ViewerRefresh, ViewerTTL)
	}
	code := int32(3)
	for _, tc := range []struct {
		msg  any
		want string
	}{
		{Event{Type: EventStarted, Command: []string{"bash"}}, `{"type":"started","command":["bash"]}`},
		{Event{Type: EventClosed, ExitCode: &code, Reason: "Exited", Message: "the process exited with code 3"},
			`{"type":"closed","exitCode":3,"reason":"Exited","message":"the process exited with code 3"}`},
		{Size{Cols: 120, Rows: 40}, `{"cols":120,"rows":40}`},
		{Presence{ID: "ab12", State: Attached, User: "alice"}, `{"id":"ab12","state":"attached","user":"alice"}`},
		{Presence{ID: "ab12", State: Detached}, `{"id":"ab12","state":"detached"}`},
	} {
		doc, err := json.Marshal(tc.msg)
		if err != nil || string(doc) != tc.want {
			t.Errorf("%T: %s (%v), want %s", tc.msg, doc, err, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	s := SubjectsFor("u-1")
	for subject, want := range map[string]Kind{
		s.Out(): KindOut, s.Ctl(): KindCtl, s.In(): KindIn, s.Resize(): KindResize, s.Viewers(): KindViewers,
	} {
		got, kind, ok := Parse(subject)
		if !ok || got != s || kind != want {
			t.Errorf("Parse(%q) = %q, %q, %v", subject, got, kind, ok)
		}
	}
	for _, bad := range []string{"", "terminal", "terminal.u-1", "terminal.u-1.bogus", "other.u-1.in",
		"terminal..in", "terminal.*.in", "terminal.>.in", "terminal.a.b.in"} {
		if _, _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if SubjectsFor("u-1").UID() != "u-1" || Subjects("nope").UID() != "" {
		t.Error("UID")
	}
}
