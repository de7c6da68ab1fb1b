package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The four scenarios of the product page, each a shell that alice opens in
// team-a and drives only through the session's NATS subjects: typed on
// terminal.<uid>.in, read from terminal.<uid>.out. The shells run in real
// containers on the local node (docs/local-node.md).

const scenarioTimeout = 20 * time.Second

// Connectivity checks from inside the container: an HTTP request with wget
// to the web Deployment through its Service (kube-proxy's rules), and a raw
// TCP connection with nc to the api pod's address.
func TestScenarioConnectivity(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kubeClient(t, "admin").CoreV1()
	svc, err := kc.Services("team-a").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kc.ConfigMaps("team-a").Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runningPod(t, "team-a", "web")
	api, err := kc.Pods("team-b").Get(ctx, runningPod(t, "team-b", "api"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	sh := openShell(t, "team-a", "shell-demo", "")
	url := fmt.Sprintf("http://%s/config.yaml", svc.Spec.ClusterIP)
	out := sh.run(t, "timeout 5 wget -qO- "+url, scenarioTimeout)
	if out != cm.Data["config.yaml"] {
		t.Errorf("wget %s printed %q, want web-config's config.yaml %q", url, out, cm.Data["config.yaml"])
	}
	out = sh.run(t, fmt.Sprintf(`printf 'GET /api.yaml HTTP/1.0\r\n\r\n' | nc -w 5 %s 9090`, api.Status.PodIP), scenarioTimeout)
	if !strings.Contains(out, "200 OK") || !strings.Contains(out, "hello from team-b/api") {
		t.Errorf("nc to %s:9090 printed %q, want the api pod's HTTP answer", api.Status.PodIP, out)
	}
}

// A file that the web Deployment mounts from its ConfigMap reads, at its
// mount path, as the ConfigMap's content.
func TestScenarioConfigFile(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// web's volume maps key config.yaml of web-config to /etc/web/config.yaml.
	cm, err := kubeClient(t, "alice").CoreV1().ConfigMaps("team-a").Get(ctx, "web-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := cm.Data["config.yaml"]
	if want == "" {
		t.Fatal("ConfigMap team-a/web-config has no config.yaml")
	}

	sh := openShell(t, "team-a", runningPod(t, "team-a", "web"), "")
	if got := sh.run(t, "cat /etc/web/config.yaml", scenarioTimeout); got != want {
		t.Errorf("cat /etc/web/config.yaml:\n%q\nwant the ConfigMap's config.yaml:\n%q", got, want)
	}
}

// The process table is the container's: ps shows the container's own
// command as PID 1, this session's shell and ps itself (and other sessions'
// processes in the same container: the runtime does not end an exec's
// process when its stream closes), and nothing of the machine; one batch
// iteration of top prints its summary and the same processes.
func TestScenarioProcesses(t *testing.T) {
	t.Parallel()
	sh := openShell(t, "team-a", "shell-demo", "")

	out := sh.run(t, "ps", scenarioTimeout)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if header := strings.Join(strings.Fields(lines[0]), " "); header != "PID USER COMMAND" {
		t.Errorf("ps header: %q", lines[0])
	}
	commands := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("ps line %q", l)
		}
		commands[f[0]] = strings.Join(f[2:], " ")
	}
	if commands["1"] != "sleep infinity" {
		t.Errorf("PID 1 is %q, want the container's command (sleep infinity):\n%s", commands["1"], out)
	}
	// Other sessions' commands may be there too; the machine's may not.
	for pid, cmd := range commands {
		for _, host := range []string{"kube-apiserver", "etcd", "containerd", "kubelet", "terminal-apiserver", "go test"} {
			if strings.Contains(cmd, host) {
				t.Errorf("ps in the container shows the machine's PID %s %q:\n%s", pid, cmd, out)
			}
		}
	}
	if !strings.Contains(out, " bash") || !strings.Contains(out, " ps") {
		t.Errorf("ps does not show this session's shell and itself:\n%s", out)
	}

	out = sh.run(t, "top -b -n1", scenarioTimeout)
	for _, want := range []string{"Mem:", "CPU:", "Load average:", "sleep infinity"} {
		if !strings.Contains(out, want) {
			t.Errorf("top -b -n1 lacks %q:\n%s", want, out)
		}
	}
}

// env prints the variables the pod spec gives the container, literal values
// and those taken from a ConfigMap, as the pod object states them, and
// nothing of the machine it runs on.
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
	// Nothing else but what the runtime, the kubelet (Service variables) and
	// the shell set: none of the machine's or the server's environment.
	for k, v := range got {
		if _, ok := want[k]; ok || runtimeEnv[k] || serviceEnv.MatchString(k) {
			continue
		}
		t.Errorf("env: %s=%q is neither the pod spec's nor the runtime's", k, v)
	}
}

var (
	runtimeEnv = map[string]bool{"PATH": true, "HOSTNAME": true, "HOME": true, "TERM": true, "PWD": true,
		"SHLVL": true, "OLDPWD": true, "_": true, "LINES": true, "COLUMNS": true}
	serviceEnv = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)
)

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
