package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetNamesTheBuild(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion != runtime.Version() || i.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v", i)
	}
	s := i.String()
	for _, want := range []string{i.Version, "commit ", runtime.Version()} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}

func TestStringOfAStampedBuild(t *testing.T) {
	i := Info{Version: "v0.2.0", Commit: "0123abcd", Date: "2026-11-29T20:00:00Z", Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64"}
	if got, want := i.String(), "v0.2.0, commit 0123abcd (modified), 2026-11-29T20:00:00Z, go1.26.8 linux/amd64"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
