package stream

import (
	"strconv"
	"strings"
	"testing"
)

func TestResumerSkipsWhatWasSeen(t *testing.T) {
	frames := []string{"hello ", "wonderful ", "world"}
	for since := 0; since <= len(strings.Join(frames, "")); since++ {
		var got strings.Builder
		r := &resumer{w: &got, next: uint64(since)}
		off := 0
		for _, f := range frames {
			if err := r.write([]byte(f), strconv.Itoa(off)); err != nil {
				t.Fatal(err)
			}
			off += len(f)
		}
		if want := strings.Join(frames, "")[since:]; got.String() != want {
			t.Errorf("since %d: got %q, want %q", since, got.String(), want)
		}
	}
}

func TestResumerMarksLostOutput(t *testing.T) {
	var got strings.Builder
	r := &resumer{w: &got, next: 3}
	// The scrollback starts at byte 10: bytes 3..9 are gone.
	if err := r.write([]byte("tail"), "10"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.String(), "7 bytes of output are no longer kept") || !strings.HasSuffix(got.String(), "tail") {
		t.Errorf("got %q", got.String())
	}
}
