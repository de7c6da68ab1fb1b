package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The four scenarios of the product page (issue 3 item 7), each a shell that
// alice opens in team-a and drives only through the session's NATS subjects:
// typed on terminal.<uid>.in, read from terminal.<uid>.out.
//
// On kwok the shell is a local process on this machine (artifacts/README.md,
// "What kwok fakes"): the network, process table and filesystem are the
// machine's, the working directory holds the container's ConfigMap files and
// the environment is the container's. The assertions are written for that.

const scenarioTimeout = 20 * time.Second

// Connectivity checks from inside the container: an HTTP request with curl,
// and a raw TCP connection (what `nc` would do; nc is not installed here, so
// bash's /dev/tcp) to a port that only this test listens on.
func TestScenarioConnectivity(t *testing.T) {
	t.Parallel()
	httpToken := "http-" + marker()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintln(w, httpToken)
	}))
	t.Cleanup(srv.Close)

	tcpToken := "tcp-" + marker()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(conn, tcpToken)
			conn.Close()
		}
	}()

	sh := openShell(t, "team-a", "shell-demo", "")

	out := sh.run(t, "curl -s "+srv.URL+"/", scenarioTimeout)
	if got := strings.TrimSpace(out); got != httpToken {
		t.Errorf("curl %s/ printed %q, want the server's token %q", srv.URL, got, httpToken)
	}
	if hits.Load() == 0 {
		t.Error("the HTTP server saw no request")
	}

	port := ln.Addr().(*net.TCPAddr).Port
	out = sh.run(t, fmt.Sprintf("cat < /dev/tcp/127.0.0.1/%d", port), scenarioTimeout)
	if got := strings.TrimSpace(out); got != tcpToken {
		t.Errorf("reading 127.0.0.1:%d printed %q, want the listener's token %q", port, got, tcpToken)
	}
}

// A file that the web Deployment mounts from its ConfigMap reads as the
// ConfigMap's content. (kwok puts the files in the working directory, not at
// the mount path /etc/web.)
func TestScenarioConfigFile(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// web's volume maps key config.yaml of web-config to path config.yaml.
	cm, err := kubeClient(t, "alice").CoreV1().ConfigMaps("team-a").Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := cm.Data["config.yaml"]
	if want == "" {
		t.Fatal("ConfigMap team-a/web-config has no config.yaml")
	}

	sh := openShell(t, "team-a", runningPod(t, "team-a", "web"), "")
	if got := sh.run(t, "cat config.yaml", scenarioTimeout); got != want {
		t.Errorf("cat config.yaml:\n%q\nwant the ConfigMap's config.yaml:\n%q", got, want)
	}
}

// The process table: ps aux and one batch iteration of top print their
// headers and processes.
func TestScenarioProcesses(t *testing.T) {
	t.Parallel()
	sh := openShell(t, "team-a", "shell-demo", "")

	out := sh.run(t, "ps aux", scenarioTimeout)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := strings.Fields(lines[0])
	if strings.Join(header, " ") != "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND" {
		t.Errorf("ps aux header: %q", lines[0])
	}
	// ps lists itself: the table is the live one, not just a header.
	if !strings.Contains(out, "ps aux") {
		t.Errorf("ps aux does not list itself:\n%s", out)
	}

	out = sh.run(t, "top -b -n1", scenarioTimeout)
	for _, want := range []string{"load average", "Tasks:", "%Cpu(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("top -b -n1 summary lacks %q:\n%s", want, out)
		}
	}
	var columns bool
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "PID" && strings.Contains(l, "%CPU") && strings.Contains(l, "COMMAND") {
			columns = true
		}
	}
	if !columns {
		t.Errorf("top -b -n1 has no PID ... %%CPU ... COMMAND header:\n%s", out)
	}
}

// env prints the variables the pod spec gives the container, literal values
// and those taken from a ConfigMap, as the pod object states them.
func TestScenarioEnv(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kubeClient(t, "alice").CoreV1()
	podName := runningPod(t, "team-a", "web")
	pod, err := kc.Pods("team-a").Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, e := range podContainer(t, pod, "web").Env {
		switch {
		case e.ValueFrom == nil:
			want[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, err := kc.ConfigMaps("team-a").Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want[e.Name] = cm.Data[ref.Key]
		}
	}
	// The demo's values, so the test cannot pass vacuously on an emptied spec.
	for k, v := range map[string]string{"APP_NAME": "web", "TEAM": "team-a", "LOG_LEVEL": "debug"} {
		if want[k] != v {
			t.Fatalf("web pod's %s = %q, demo.yaml gives %q", k, want[k], v)
		}
	}

	sh := openShell(t, "team-a", podName, "")
	got := map[string]string{}
	for _, l := range strings.Split(sh.run(t, "env", scenarioTimeout), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("env: %s=%q (set: %t), want %q", k, g, ok, v)
		}
	}
}

func podContainer(t *testing.T, pod *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("pod %s/%s has no container %s", pod.Namespace, pod.Name, name)
	return corev1.Container{}
}
