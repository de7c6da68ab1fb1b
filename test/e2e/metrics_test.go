package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshery/terminal-apiserver/test/framework"
)

// serverMetrics scrapes the local terminal-apiserver's /metrics (as admin,
// on its own port: kube-apiserver does not proxy an aggregated server's
// /metrics) into series → value, a series being a line's name and labels.
func serverMetrics(t *testing.T) map[string]float64 {
	t.Helper()
	cfg := rest.CopyConfig(restConfig(t, "admin"))
	cfg.Host = "https://127.0.0.1:" + os.Getenv("TERMINAL_APISERVER_PORT")
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = nil, ""
	cfg.TLSClientConfig.Insecure = true // its serving cert names the in-cluster Service
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(cfg.Host + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	m := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(l, ' ')
		if i < 0 || strings.HasPrefix(l, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m
}

// The server's own metrics move with a session: opened, a read-write
// viewer, input and output bytes, setup and echo timed, closed as Exited.
// Other tests run sessions at the same time, so each figure is asked to
// grow, not to grow by exactly one.
func TestMetricsFollowASession(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := serverMetrics(t)
	if before["terminal_nats_connected"] != 1 {
		t.Errorf("terminal_nats_connected is %v, want 1", before["terminal_nats_connected"])
	}
	for _, name := range []string{"terminal_sessions_open", "terminal_sessions_opened_total", "terminal_output_bytes_total",
		"terminal_input_bytes_total", "terminal_session_setup_duration_seconds_count", "terminal_keystroke_echo_duration_seconds_count"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	s := runningSession(t, "metrics")
	in, typeIn := io.Pipe()
	defer typeIn.Close()
	var screen framework.Screen
	done := attach(ctx, t, "alice", "team-a", s.Name, true, in, &screen)
	id := marker()
	if _, err := fmt.Fprintf(typeIn, "echo metrics-%s\r", id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the echo on the viewer's screen", func(context.Context) (bool, error) {
		return strings.Contains(screen.String(), "metrics-"+id), nil
	})
	during := serverMetrics(t)
	if v := during[`terminal_viewers_attached{mode="read-write"}`]; v < 1 {
		t.Errorf(`terminal_viewers_attached{mode="read-write"} is %v with alice attached`, v)
	}
	for _, name := range []string{"terminal_sessions_opened_total", "terminal_input_bytes_total", "terminal_output_bytes_total",
		"terminal_session_setup_duration_seconds_count", "terminal_keystroke_echo_duration_seconds_count"} {
		if during[name] <= before[name] {
			t.Errorf("%s did not grow with a session: %v, then %v", name, before[name], during[name])
		}
	}

	if _, err := io.WriteString(typeIn, "exit 0\r"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the attach ended with %v, want the shell's exit 0", err)
	}
	closed := `terminal_sessions_closed_total{reason="Exited"}`
	eventually(t, 30*time.Second, closed+" to grow", func(context.Context) (bool, error) {
		return serverMetrics(t)[closed] > before[closed], nil
	})
}
