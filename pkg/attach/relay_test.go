package attach

import (
	"strconv"
	"strings"
	"testing"

	"github.com/meshery/terminal-apiserver/pkg/resume"
	"github.com/meshery/terminal-apiserver/pkg/wire"
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
	if want := resume.Notice(7) + "tail"; got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
}

// Live frames (the fast path) are written only where they continue the
// output; JetStream's copies then add nothing, and its frames fill gaps.
func TestResumerMergesLiveAndJetStream(t *testing.T) {
	var got strings.Builder
	r := &resumer{w: &got}
	steps := []struct {
		live   bool
		offset int
		data   string
	}{
		{live: true, offset: 6, data: "world"}, // ahead: skipped
		{offset: 0, data: "hello "},
		{offset: 6, data: "world"},
		{live: true, offset: 11, data: "!"},
		{offset: 11, data: "!"},             // already written live
		{live: true, offset: 13, data: "?"}, // ahead again
		{offset: 12, data: "\n"},
		{offset: 13, data: "?"},
	}
	for _, s := range steps {
		var err error
		if s.live {
			err = r.live(wire.Frame{Offset: uint64(s.offset), Data: []byte(s.data)})
		} else {
			err = r.write([]byte(s.data), strconv.Itoa(s.offset))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != "hello world!\n?" {
		t.Errorf("got %q", got.String())
	}
}
