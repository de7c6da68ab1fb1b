package transcript

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func redact(t *testing.T, pieces ...string) string {
	t.Helper()
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`), regexp.MustCompile(`password=\S+`)})
	var out strings.Builder
	last := time.Duration(-1)
	take := func(segs []Segment) {
		for _, s := range segs {
			if s.At < last {
				t.Errorf("a segment at %s after one at %s", s.At, last)
			}
			last = s.At
			out.Write(s.Data)
		}
	}
	for i, p := range pieces {
		take(r.Write([]byte(p), time.Duration(i)*time.Second))
	}
	take(r.Flush())
	return out.String()
}

// A secret is masked wherever the output was cut: inside it, at its start,
// at its end, or not at all; the rest passes as it was.
func TestRedactorMasksMatchesAcrossPieces(t *testing.T) {
	token := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl"
	out := "$ cat /var/run/secrets/token\r\n" + token + "\r\n$ echo password=hunter2 done\r\n$ "
	want := strings.ReplaceAll(strings.ReplaceAll(out, token, strings.Repeat("*", len(token))), "password=hunter2", strings.Repeat("*", len("password=hunter2")))
	for i := 0; i <= len(out); i++ {
		if got := redact(t, out[:i], out[i:]); got != want {
			t.Fatalf("cut at %d:\n got %q\nwant %q", i, got, want)
		}
	}
	// One byte at a time.
	if got := redact(t, strings.Split(out, "")...); got != want {
		t.Fatalf("byte by byte:\n got %q\nwant %q", got, want)
	}
}

func joined(segs []Segment) []byte {
	var b []byte
	for _, s := range segs {
		b = append(b, s.Data...)
	}
	return b
}

// Output with no line end is held back no more than holdBack bytes.
func TestRedactorHoldsBackABoundedTail(t *testing.T) {
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`secret-[0-9]+`)})
	b := joined(r.Write([]byte(strings.Repeat("x", 3*holdBack)), 0))
	if len(b) != 2*holdBack {
		t.Errorf("emitted %d bytes of %d without a line end, want all but %d", len(b), 3*holdBack, holdBack)
	}
	b = joined(r.Write([]byte("a prompt$ "), time.Second))
	if len(b) != 10 {
		t.Errorf("emitted %d bytes", len(b))
	}
}

// Held-back output keeps the time it came: a prompt (no line end, held
// back) is recorded when it was printed, not when the line typed after it
// ended; the bytes that follow keep theirs.
func TestRedactorKeepsEachPiecesTime(t *testing.T) {
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`password=\S+`)})
	if segs := r.Write([]byte("$ "), time.Second); len(segs) != 0 {
		t.Fatalf("the prompt was not held back: %q", segs)
	}
	if segs := r.Write([]byte("l"), 5*time.Second); len(segs) != 0 {
		t.Fatalf("the echo was not held back: %q", segs)
	}
	segs := r.Write([]byte("s\r\nfile\r\n$ "), 6*time.Second)
	want := []Segment{{[]byte("$ "), time.Second}, {[]byte("l"), 5 * time.Second}, {[]byte("s\r\nfile\r\n"), 6 * time.Second}}
	if len(segs) != len(want) {
		t.Fatalf("segments %q, want %q", segs, want)
	}
	for i := range want {
		if string(segs[i].Data) != string(want[i].Data) || segs[i].At != want[i].At {
			t.Errorf("segment %d: %q at %s, want %q at %s", i, segs[i].Data, segs[i].At, want[i].Data, want[i].At)
		}
	}
	if rest := r.Flush(); len(rest) != 1 || string(rest[0].Data) != "$ " || rest[0].At != 6*time.Second {
		t.Errorf("the next prompt: %q", rest)
	}
}

// Two expressions whose matches overlap: the cut moves back to the
// earliest, and nothing of either is recorded unmasked.
func TestRedactorOverlappingMatchesOfTwoExpressions(t *testing.T) {
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`AAAA[A-Z]{6}`), regexp.MustCompile(`[A-Z]{5}BBBB[A-Z]*`)})
	out := "x" + strings.Repeat("y", holdBack) + "AAAACCCCCBBBBDDDD and on\n"
	// Cut inside the second match, which began inside the first.
	cut := 1 + holdBack + 12
	got := string(joined(r.Write([]byte(out[:cut]), 0))) + string(joined(r.Write([]byte(out[cut:]), time.Second))) + string(joined(r.Flush()))
	if strings.ContainsAny(got, "ABCD") {
		t.Errorf("part of a match recorded unmasked: %q", got[holdBack-4:])
	}
}

// A match that never ends holds back no more than maxHold: the part
// matched so far is recorded masked (its start, which made it a match,
// among it); what follows no longer matches and is recorded as it is.
func TestRedactorBoundsAnOpenMatch(t *testing.T) {
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`eyJ[A-Za-z0-9]*`)})
	var got []byte
	got = append(got, joined(r.Write([]byte("eyJ"), 0))...)
	for range 40 {
		got = append(got, joined(r.Write([]byte(strings.Repeat("A", 4<<10)), time.Second))...)
		if len(r.pending) > maxHold {
			t.Fatalf("%d bytes held back", len(r.pending))
		}
	}
	if masked := len(got) - len(strings.TrimLeft(string(got), "*")); masked < 3+4<<10 {
		t.Errorf("emitted %d bytes, of which the first %d masked: the match's start is not", len(got), masked)
	}
}

func TestRedactorWithoutExpressionsPassesOutputOn(t *testing.T) {
	r := NewRedactor(nil)
	if segs := r.Write([]byte("abc"), time.Second); len(segs) != 1 || string(segs[0].Data) != "abc" || segs[0].At != time.Second {
		t.Errorf("got %q", segs)
	}
}

// However output is cut into pieces, short matches are masked as in the
// whole (the bridge batches output, a process writes in any pieces).
func FuzzRedactorPiecesMaskAsTheWhole(f *testing.F) {
	f.Add("$ echo password=hunter2\r\npassword=x y\n", uint8(3), uint8(7))
	f.Add("no line end password=abc and more", uint8(1), uint8(30))
	f.Fuzz(func(t *testing.T, out string, a, b uint8) {
		re := regexp.MustCompile(`password=\S+`)
		want := re.ReplaceAllStringFunc(out, func(m string) string { return strings.Repeat("*", len(m)) })
		i, j := min(int(a), len(out)), min(int(a)+int(b), len(out))
		if got := redact(t, out[:i], out[i:j], out[j:]); got != want {
			t.Errorf("cut at %d and %d:\n got %q\nwant %q", i, j, got, want)
		}
	})
}

func TestLastLineEnd(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, s := range []string{"", "x", "\n", "a\nb", "a\n", long, long + "\n" + long, "\n" + long, long + "\n", "a\nb\n" + long, strings.Repeat("ab\n", 500)} {
		if got, want := lastLineEnd([]byte(s)), strings.LastIndexByte(s, '\n')+1; got != want {
			t.Errorf("lastLineEnd of %d bytes: %d, want %d", len(s), got, want)
		}
	}
}
