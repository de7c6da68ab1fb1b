package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// Both binaries as make up built them say which build they are: the commit
// of this checkout, its date, and the Go version.
func TestBinariesPrintTheirVersion(t *testing.T) {
	t.Parallel()
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(string(head))
	for _, bin := range []string{"terminal-apiserver", "kubectl-terminal"} {
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, out)
		}
		line := strings.TrimSpace(string(out))
		if !strings.HasPrefix(line, bin+" ") || !strings.Contains(line, "commit "+commit) || !strings.Contains(line, " go1.") {
			t.Errorf("%s --version printed %q, want its name, commit %s and Go version", bin, line, commit)
		}
	}
	// As a kubectl plugin too (kubectl takes no flags before a plugin's name).
	if out, err := exec.Command("kubectl", "terminal", "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), commit) {
		t.Errorf("kubectl terminal --version: %v: %q", err, out)
	}
}
