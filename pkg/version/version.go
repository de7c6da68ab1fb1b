// Package version says which build of terminal-apiserver or kubectl-terminal
// is running: the version, commit and commit date make sets from git, or
// else what the Go toolchain stamped (a module version for go install
// ...@VERSION, the commit of a checkout).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by make (hack/version.sh): -ldflags "-X github.com/meshery/terminal-apiserver/pkg/version.version=...".
// A build without them falls back on what the Go toolchain stamped, if it
// did (not with -buildvcs=false).
var version, commit, date, modified string

// Info is a build's identity.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this build's Info.
func Get() Info {
	i := Info{Version: version, Commit: commit, Date: date, Modified: modified == "true",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok && i.Commit == "" {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.time":
				i.Date = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	return i
}

// String is the line --version prints after the program's name.
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	if i.Modified {
		commit += " (modified)"
	}
	s := fmt.Sprintf("%s, commit %s", i.Version, commit)
	if i.Date != "" {
		s += ", " + i.Date
	}
	return s + fmt.Sprintf(", %s %s", i.GoVersion, i.Platform)
}
