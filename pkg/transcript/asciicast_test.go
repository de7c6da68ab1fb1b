package transcript

import (
	"encoding/binary"
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

// appendString writes what encoding/json would, as far as a JSON decoder
// can tell: the same string back, for any bytes.
func FuzzAppendStringDecodesAsEncodingJSON(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[1mbold\x1b[0m\r\n", "\"\\", "h\xc3", "\xff\xfe", "\u2028\u2029", "<&>", "\x00\x1f\x7f", "héllo 世界 🙂"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		ours := appendString(nil, s)
		var got, want string
		if err := json.Unmarshal(ours, &got); err != nil {
			t.Fatalf("%q encodes as %q, not JSON: %v", s, ours, err)
		}
		std, _ := json.Marshal(string(s))
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%q decodes as %q, encoding/json's as %q", s, got, want)
		}
		if strings.ContainsAny(string(ours), "\n\r\u2028\u2029") {
			t.Errorf("%q encodes with a raw line break: %q", s, ours)
		}
	})
}

func BenchmarkAppendEvent(b *testing.B) {
	out := []byte(strings.Repeat("total 48\r\ndrwxr-xr-x  2 root root 4096 \x1b[01;34mbin\x1b[0m\r\n", 512))
	buf := make([]byte, 0, 2*len(out))
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], time.Second, Output, out)
	}
}

// The word-at-a-time test agrees with the byte table for every byte value
// at every position (next to plain bytes and to the ones most likely to
// borrow: 0x00 and 0xff).
func TestAllPlainAgreesWithTheTable(t *testing.T) {
	for _, fill := range []byte{'a', 0x00, 0xff, 0x20, '"'} {
		for pos := range 8 {
			for b := range 256 {
				w := [8]byte{}
				for i := range w {
					w[i] = 'a'
				}
				w[pos] = byte(b)
				if pos > 0 {
					w[pos-1] = fill
				}
				want := true
				for _, c := range w {
					want = want && plain[c]
				}
				if got := allPlain(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("%q: allPlain %v, the table says %v", w, got, want)
				}
			}
		}
	}
}
