// Package e2e tests terminal-apiserver end to end on the local control plane
// that hack/local-up.sh starts (real etcd, kube-apiserver, controllers, a real
// node with kubelet, kube-proxy, containerd and runc, and terminal-apiserver
// behind the aggregation layer), through real kubectl
// and the generated clientset. hack/e2e.sh sources _output/local/env.sh
// first; the tests refuse to run without it rather than skip.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	clientset "github.com/meshery/terminal-apiserver/pkg/generated/clientset/versioned"
	"github.com/meshery/terminal-apiserver/test/framework"
)

var env struct {
	kubeconfig string
	root       string
	localDir   string
}

func TestMain(m *testing.M) {
	env.kubeconfig = os.Getenv("KUBECONFIG")
	env.localDir = os.Getenv("LOCAL_DIR")
	if env.kubeconfig == "" || env.localDir == "" {
		fmt.Fprintln(os.Stderr, "e2e: KUBECONFIG and LOCAL_DIR are unset; run through `make e2e` (hack/e2e.sh)")
		os.Exit(2)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	env.root = root
	code := m.Run()
	writeFigures(os.Stdout)
	os.Exit(code)
}

// restConfig is the client configuration of a kubeconfig context (admin,
// alice, bob, viewer).
func restConfig(t testing.TB, context string) *rest.Config {
	t.Helper()
	cfg, err := framework.RESTConfig(env.kubeconfig, context)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func terminalClient(t testing.TB, context string) *clientset.Clientset {
	t.Helper()
	c, err := clientset.NewForConfig(restConfig(t, context))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func kubeClient(t testing.TB, context string) *kubernetes.Clientset {
	t.Helper()
	c, err := kubernetes.NewForConfig(restConfig(t, context))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// kubectl runs the pinned kubectl with a context, feeding stdin.
func kubectl(t testing.TB, context, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := contextWithTimeout(t, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--context", context}, args...)...)
	cmd.Dir = env.root
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// mustKubectl fails the test unless kubectl succeeds.
func mustKubectl(t testing.TB, context, stdin string, args ...string) string {
	t.Helper()
	r := kubectl(t, context, stdin, args...)
	if r.code != 0 {
		t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

func contextWithTimeout(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

var nameSeq atomic.Int64

// uniqueName keeps parallel tests' objects apart.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

// eventually polls cond every 100ms until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
}
