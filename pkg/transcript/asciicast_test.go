package transcript

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLinesAreAsciicastV2(t *testing.T) {
	var b []byte
	b = AppendHeader(b, Header{Width: 120, Height: 40, Timestamp: 1700000000, Command: "/bin/sh", Env: map[string]string{"TERM": "xterm"}})
	b = AppendEvent(b, 1500*time.Millisecond, Output, "héllo \x1b[1mworld\x1b[0m\r\n\"quoted\"")
	b = AppendEvent(b, 2*time.Second, Resize, Size(100, 30))
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), b)
	}
	var h map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
		t.Fatal(err)
	}
	if h["version"] != 2.0 || h["width"] != 120.0 || h["height"] != 40.0 || h["command"] != "/bin/sh" {
		t.Errorf("header %v", h)
	}
	var ev []any
	if err := json.Unmarshal([]byte(lines[1]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev[0] != 1.5 || ev[1] != "o" || ev[2] != "héllo \x1b[1mworld\x1b[0m\r\n\"quoted\"" {
		t.Errorf("output event %q", lines[1])
	}
	if lines[2] != `[2.000000, "r", "100x30"]` {
		t.Errorf("resize event %q", lines[2])
	}
}
