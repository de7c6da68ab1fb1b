package app

import (
	"bytes"
	"testing"

	"github.com/meshery/terminal-apiserver/pkg/resume"
)

// A reattach after lost output resumes at the session's offset: the
// server's notice is shown but counted as the bytes it stands for.
func TestCounterResumesAtTheSessionOffsetAfterANotice(t *testing.T) {
	var shown, errOut bytes.Buffer
	c := &counter{w: &shown, errOut: &errOut}
	if since := c.reattach(); since != 0 {
		t.Fatalf("first attach from %d, want 0", since)
	}
	_, _ = c.Write([]byte("hello "))
	if since := c.reattach(); since != 6 {
		t.Fatalf("second attach from %d, want 6", since)
	}
	notice := resume.Notice(500)
	_, _ = c.Write([]byte(notice[:10]))
	_, _ = c.Write([]byte(notice[10:] + "tail"))
	if since := c.reattach(); since != 6+500+4 {
		t.Fatalf("third attach from %d, want %d", since, 6+500+4)
	}
	if want := "hello " + notice + "tail"; shown.String() != want {
		t.Fatalf("shown %q, want %q", shown.String(), want)
	}
}
