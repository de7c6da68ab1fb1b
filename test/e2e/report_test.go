package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The figures of the fault and load tests, printed as one table when the
// run ends (make test-reliability shows it; docs/reliability.md quotes it).
var figures struct {
	sync.Mutex
	rows []figureRow
}

type figureRow struct {
	test, fault, figure string
}

// recordFigure notes what a fault did, measured, for the table.
func recordFigure(t *testing.T, fault, format string, args ...any) {
	t.Helper()
	figure := fmt.Sprintf(format, args...)
	t.Logf("%s: %s", fault, figure)
	figures.Lock()
	defer figures.Unlock()
	figures.rows = append(figures.rows, figureRow{test: t.Name(), fault: fault, figure: figure})
}

// writeFigures prints the table to w and keeps it in
// $LOCAL_DIR/logs/reliability.md (make test-reliability prints it).
func writeFigures(w io.Writer) {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.rows) == 0 {
		return
	}
	sort.SliceStable(figures.rows, func(i, j int) bool { return figures.rows[i].test < figures.rows[j].test })
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Faults and figures (%s, %s)\n\n| fault | measured | test |\n| --- | --- | --- |\n",
		time.Now().UTC().Format("2006-01-02"), scaleName())
	for _, r := range figures.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.fault, r.figure, r.test)
	}
	fmt.Fprint(w, b.String())
	_ = os.WriteFile(filepath.Join(env.localDir, "logs", "reliability.md"), []byte(b.String()), 0o644)
}

// fullScale is set by make test-reliability: the fault tests run at the
// sizes the reliability issue names (100 sessions). make test runs them
// smaller, so CI stays bounded; the figures say which.
func fullScale() bool { return os.Getenv("RELIABILITY_SCALE") == "full" }

func scaleName() string {
	if fullScale() {
		return "full scale: make test-reliability"
	}
	return "reduced scale: make test"
}

// scaled is full at full scale and reduced otherwise.
func scaled(full, reduced int) int {
	if fullScale() {
		return full
	}
	return reduced
}
