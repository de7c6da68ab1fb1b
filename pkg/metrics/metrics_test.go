package metrics

import (
	"strings"
	"testing"

	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
)

func TestRegisterServesEveryMetricWithItsPrefix(t *testing.T) {
	connected := true
	Register(func() bool { return connected })
	Register(func() bool { return false }) // only the first call counts
	SessionsClosed.WithLabelValues("Exited").Inc()
	ViewersAttached.WithLabelValues(ReadOnly).Inc()
	JetStreamErrors.WithLabelValues(Follow).Inc()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), namespace+"_") {
			got[f.GetName()] = true
		}
	}
	for _, name := range []string{"sessions_open", "sessions_opened_total", "sessions_closed_total", "viewers_attached",
		"output_bytes_total", "input_bytes_total", "session_setup_duration_seconds", "keystroke_echo_duration_seconds",
		"jetstream_errors_total", "nats_connected"} {
		if !got[namespace+"_"+name] {
			t.Errorf("/metrics would not have %s_%s", namespace, name)
		}
	}
	if err := testutil.GatherAndCompare(legacyregistry.DefaultGatherer, strings.NewReader(`
# HELP terminal_nats_connected [ALPHA] 1 while this replica is connected to NATS, else 0.
# TYPE terminal_nats_connected gauge
terminal_nats_connected 1
`), "terminal_nats_connected"); err != nil {
		t.Error(err)
	}
}
