package resume

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func count(start uint64, writes ...string) uint64 {
	var c Counter
	c.Start(start)
	for _, w := range writes {
		c.Count([]byte(w))
	}
	return c.Offset()
}

func TestCounterCountsANoticeAtTheStartAsTheBytesItStandsFor(t *testing.T) {
	out := Notice(1000) + "after"
	want := uint64(1000 + len("after"))
	// Every split of the attach's output in two writes, as SPDY's reads
	// may cut it.
	for i := 0; i <= len(out); i++ {
		if got := count(0, out[:i], out[i:]); got != want {
			t.Fatalf("split at %d: offset %d, want %d", i, got, want)
		}
	}
	// One byte at a time, from since=7.
	writes := strings.Split(out, "")
	if got := count(7, writes...); got != 7+want {
		t.Fatalf("byte by byte from 7: offset %d, want %d", got, 7+want)
	}
}

// Only an attach's first bytes can be a notice: the same text later (a
// nested kubectl terminal, a replayed recording) is output.
func TestCounterCountsANoticeAfterOutputAsOutput(t *testing.T) {
	for _, out := range []string{"x" + Notice(1000), Notice(5) + Notice(6), "\r" + Notice(9)} {
		want := uint64(len(out))
		if strings.HasPrefix(out, Notice(5)) {
			want = 5 + uint64(len(Notice(6)))
		}
		if got := count(0, out); got != want {
			t.Errorf("%q: offset %d, want %d", out, got, want)
		}
	}
}

func TestCounterCountsOutputThatOnlyLooksLikeANotice(t *testing.T) {
	for _, out := range []string{
		"\r\n[terminal-apiserver:  bytes of output are no longer kept]\r\n",                 // no count
		"\r\n[terminal-apiserver: 12 bytes of output are kept]\r\n",                         // another text
		"\r\n[terminal-apiserver: 1234567890123456 bytes of output are no longer kept]\r\n", // past maxDigits
		"\r\r\n[terminal-apiserver: 12 bytes of output are no longer kept]\r\n",
		"ls -l\r\ntotal 0\r\n",
	} {
		if got := count(0, out); got != uint64(len(out)) {
			t.Errorf("%q: offset %d, want its length %d", out, got, len(out))
		}
	}
}

// An attach that broke in the middle of a notice resumes where it began.
func TestCounterResumesAtTheAttachStartAfterAPartialNotice(t *testing.T) {
	if got := count(3, Notice(5)[:20]); got != 3 {
		t.Fatalf("offset %d, want 3", got)
	}
}

func TestCounterStaysWithinMaxOffset(t *testing.T) {
	if got := count(MaxOffset-1, Notice(999999999999999), "more"); got != MaxOffset {
		t.Fatalf("offset %d, want %d", got, uint64(MaxOffset))
	}
}

var complete = regexp.MustCompile(`^\r\n\[terminal-apiserver: ([0-9]{1,15}) bytes of output are no longer kept\]\r\n`)

func FuzzCounterCountsTheSameHoweverOutputIsSplit(f *testing.F) {
	f.Add([]byte("plain output"), 3)
	f.Add([]byte(Notice(10)+"x"), 4)
	f.Add([]byte("\r\n[terminal-apiserver: 12 bytes"), 9)
	f.Fuzz(func(t *testing.T, out []byte, split int) {
		if split < 0 || split > len(out) {
			split = len(out) / 2
		}
		whole := count(0, string(out))
		if parts := count(0, string(out[:split]), string(out[split:])); whole != parts {
			t.Fatalf("one write counts %d, two writes %d", whole, parts)
		}
		switch m := complete.FindSubmatch(out); {
		case m != nil:
			lost, _ := strconv.ParseUint(string(m[1]), 10, 64)
			if want := lost + uint64(len(out)-len(m[0])); whole != want {
				t.Fatalf("a notice of %d, then %d bytes: counted %d", lost, len(out)-len(m[0]), whole)
			}
		case len(out) > 0 && out[0] != '\r':
			if whole != uint64(len(out)) {
				t.Fatalf("output that is no notice counted %d, its length is %d", whole, len(out))
			}
		}
	})
}

// The console's attach module counts the same Notice (web/src/attach).
func TestTheBrowserCounterMatchesTheSameNotice(t *testing.T) {
	src, err := os.ReadFile("../../web/src/attach/attach.ts")
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{noticePrefix, noticeSuffix} {
		quoted := strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(part)
		if !strings.Contains(string(src), `"`+quoted+`"`) {
			t.Errorf("web/src/attach/attach.ts does not match %q", quoted)
		}
	}
	for _, c := range []string{"NOTICE_MAX_DIGITS = " + strconv.Itoa(maxDigits), "Number.MAX_SAFE_INTEGER"} {
		if !strings.Contains(string(src), c) {
			t.Errorf("web/src/attach/attach.ts has no %q", c)
		}
	}
}
