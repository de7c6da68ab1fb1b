package attach

import (
	"strconv"
	"strings"
	"testing"
	"time"

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

// A frame sent again after a NATS connection dropped is stored after
// frames sent behind it: those are held until it comes, and the viewer
// reads the output in order, without a notice.
func TestResumerWaitsForAFrameStoredLate(t *testing.T) {
	var got strings.Builder
	r := &resumer{w: &got}
	for _, f := range []struct {
		offset int
		data   string
	}{
		{0, "one "},
		{8, "three "}, // "two " was lost with the connection...
		{14, "four "},
		{4, "two "},   // ...and sent again
		{8, "three "}, // copies of the rest, sent again too
		{14, "four "},
		{19, "five"},
	} {
		if err := r.write([]byte(f.data), strconv.Itoa(f.offset)); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != "one two three four five" {
		t.Errorf("got %q", got.String())
	}
	if r.expired() != nil || r.ahead != nil {
		t.Error("frames are still held")
	}
}

// What never comes is taken as lost: after aheadFrames frames past it at
// once, or after aheadWait (the relay calls giveUp when expired fires).
func TestResumerGivesUpOnAFrameThatDoesNotCome(t *testing.T) {
	var got strings.Builder
	r := &resumer{w: &got, wait: 100 * time.Millisecond}
	if err := r.write([]byte("ab"), "0"); err != nil {
		t.Fatal(err)
	}
	if err := r.write([]byte("ef"), "4"); err != nil {
		t.Fatal(err)
	}
	if got.String() != "ab" {
		t.Fatalf("wrote %q before the gap was given up", got.String())
	}
	select {
	case <-r.expired():
	case <-time.After(10 * time.Second):
		t.Fatal("the wait for the gap never ended")
	}
	if err := r.giveUp(); err != nil {
		t.Fatal(err)
	}
	if want := "ab" + resume.Notice(2) + "ef"; got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}

	got.Reset()
	r = &resumer{w: &got}
	if err := r.write([]byte("a"), "0"); err != nil {
		t.Fatal(err)
	}
	for i := range aheadFrames + 1 {
		if err := r.write([]byte("x"), strconv.Itoa(2+i)); err != nil {
			t.Fatal(err)
		}
	}
	if want := "a" + resume.Notice(1) + strings.Repeat("x", aheadFrames+1); got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
	if r.expired() != nil {
		t.Error("still waiting after giving up")
	}
}
