package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	"sigs.k8s.io/yaml"
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

// The alert rules an operator installs (artifacts/monitoring) name only
// metrics this server serves from its start, before anything is counted
// (a series that appears with its first count hides it from increase()).
func TestAlertRulesNameServedMetrics(t *testing.T) {
	Register(func() bool { return true })
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, f := range families {
		served[f.GetName()] = true
	}
	raw, err := os.ReadFile("../../artifacts/monitoring/prometheus-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, g := range rules.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("rule %q has no alert name or expression", r.Alert)
			}
			for _, m := range regexp.MustCompile(namespace+`_[a-z_]+`).FindAllString(r.Expr, -1) {
				named++
				if !served[strings.TrimSuffix(m, "_bucket")] {
					t.Errorf("alert %s names %s, which /metrics does not serve", r.Alert, m)
				}
			}
		}
	}
	if named == 0 {
		t.Error("no rule names a terminal_ metric")
	}
}
