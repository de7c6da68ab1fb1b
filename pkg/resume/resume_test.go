package resume

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestCounterCountsANoticeAsTheBytesItStandsFor(t *testing.T) {
	out := "before" + Notice(1000) + "after"
	want := uint64(len("before") + 1000 + len("after"))
	// Every split of the stream in two writes, as SPDY's reads may cut it.
	for i := 0; i <= len(out); i++ {
		var c Counter
		c.Count([]byte(out[:i]))
		c.Count([]byte(out[i:]))
		if got := c.Offset(); got != want {
			t.Fatalf("split at %d: offset %d, want %d", i, got, want)
		}
	}
	// One byte at a time.
	var c Counter
	c.Start(7)
	for i := 0; i < len(out); i++ {
		c.Count([]byte{out[i]})
	}
	if got := c.Offset(); got != 7+want {
		t.Fatalf("byte by byte from 7: offset %d, want %d", got, 7+want)
	}
}

func TestCounterCountsOutputThatOnlyLooksLikeANotice(t *testing.T) {
	for _, out := range []string{
		"\r\n[terminal-apiserver: ",
		"\r\n[terminal-apiserver:  bytes of output are no longer kept]\r\n",                 // no count
		"\r\n[terminal-apiserver: 12 bytes of output are kept]\r\n",                         // another text
		"\r\n[terminal-apiserver: 1234567890123456 bytes of output are no longer kept]\r\n", // past maxDigits
		"\r\r\n[terminal-apiserver: 12x bytes of output are no longer kept]\r\n",
		"ls -l\r\ntotal 0\r\n",
	} {
		var c Counter
		c.Count([]byte(out))
		if got := c.Offset(); got != uint64(len(out)) {
			t.Errorf("%q: offset %d, want its length %d", out, got, len(out))
		}
	}
}

func TestCounterFindsNoticesAfterNearMisses(t *testing.T) {
	out := "\r\r\n[terminal\r" + Notice(5) + Notice(6) + "\r\n[terminal-apiserver: 9"
	var c Counter
	c.Count([]byte(out))
	want := uint64(len("\r\r\n[terminal\r") + 5 + 6 + len("\r\n[terminal-apiserver: 9"))
	if got := c.Offset(); got != want {
		t.Fatalf("offset %d, want %d", got, want)
	}
	if !strings.HasPrefix(Notice(5), noticePrefix) {
		t.Fatal("Notice does not start with its prefix")
	}
}

func FuzzCounterCountsTheSameHoweverOutputIsSplit(f *testing.F) {
	f.Add([]byte("plain output"), 3)
	f.Add([]byte(Notice(10)), 4)
	f.Fuzz(func(t *testing.T, out []byte, split int) {
		if split < 0 || split > len(out) {
			split = len(out) / 2
		}
		var whole, parts Counter
		whole.Count(out)
		parts.Count(out[:split])
		parts.Count(out[split:])
		if whole.Offset() != parts.Offset() {
			t.Fatalf("one write counts %d, two writes %d", whole.Offset(), parts.Offset())
		}
		if !strings.Contains(string(out), "no longer kept]") && whole.Offset() != uint64(len(out)) {
			t.Fatalf("output without a notice counted %d, its length is %d", whole.Offset(), len(out))
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
	if !strings.Contains(string(src), "NOTICE_MAX_DIGITS = "+strconv.Itoa(maxDigits)) {
		t.Errorf("web/src/attach/attach.ts does not allow %d digits", maxDigits)
	}
}
