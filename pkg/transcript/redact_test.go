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
	for i, p := range pieces {
		b, at := r.Write([]byte(p), time.Duration(i)*time.Second)
		if len(b) > 0 && at < last {
			t.Errorf("an emission at %s after one at %s", at, last)
		}
		if len(b) > 0 {
			last = at
		}
		out.Write(b)
	}
	b, _ := r.Flush()
	out.Write(b)
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

// Output with no line end is held back no more than holdBack bytes.
func TestRedactorHoldsBackABoundedTail(t *testing.T) {
	r := NewRedactor([]*regexp.Regexp{regexp.MustCompile(`secret-[0-9]+`)})
	b, _ := r.Write([]byte(strings.Repeat("x", 3*holdBack)), 0)
	if len(b) != 2*holdBack {
		t.Errorf("emitted %d bytes of %d without a line end, want all but %d", len(b), 3*holdBack, holdBack)
	}
	b, _ = r.Write([]byte("a prompt$ "), time.Second)
	if len(b) != 10 {
		t.Errorf("emitted %d bytes", len(b))
	}
}

func TestRedactorWithoutExpressionsPassesOutputOn(t *testing.T) {
	r := NewRedactor(nil)
	if b, at := r.Write([]byte("abc"), time.Second); string(b) != "abc" || at != time.Second {
		t.Errorf("got %q at %s", b, at)
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
