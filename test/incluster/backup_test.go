package incluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Transcripts backed up and restored as docs/operations.md says, with the
// nats CLI in a nats-box pod: the stream lost after the backup comes back
// with the transcript of a session that closed before it, with three
// replicas, and sessions opened afterwards are recorded into it.
func TestTranscriptsBackedUpAndRestored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	admin := kubeClient(t, "admin")
	box := natsBox(ctx, t, admin)

	before := openShell(ctx, t, "backup")
	before.run(t, "echo backed-up-$((6*7))", "backed-up-42")
	before.exit(t, 0)
	waitTranscript(ctx, t, before.name, "backed-up-42", "the closed session's transcript")

	box("nats", "backup", "stream", wire.TranscriptStream, "/backup/transcripts", "--no-progress")
	// The loss: the stream and everything in it.
	box("nats", "stream", "rm", "--force", wire.TranscriptStream)
	if _, err := transcript(ctx, t, before.name); !apierrors.IsNotFound(err) {
		t.Fatalf("the transcript with its stream removed: %v, want NotFound", err)
	}
	box("nats", "backup", "restore", "stream", "/backup/transcripts", "--no-progress")

	waitTranscript(ctx, t, before.name, "backed-up-42", "after the restore, the transcript of a session closed before the backup")
	js := natsConn(ctx, t, admin)
	s, err := js.Stream(ctx, wire.TranscriptStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("the restored stream has %d replicas, want 3", r)
	}

	after := openShell(ctx, t, "restored")
	after.run(t, "echo recorded-again-$((6*7))", "recorded-again-42")
	after.exit(t, 0)
	waitTranscript(ctx, t, after.name, "recorded-again-42", "the transcript of a session opened after the restore")
}

// waitTranscript waits for want in the session's transcript (written as
// the session closes).
func waitTranscript(ctx context.Context, t *testing.T, name, want, what string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return transcriptHas(ctx, t, name, want), nil
	})
	if err != nil {
		t.Fatalf("%s has no %q: %v", what, want, err)
	}
}

// natsBox starts artifacts/operations/nats-box.yaml in the install's
// namespace, as docs/operations.md does (the nats CLI with the install's
// CA and password), and returns a func that runs a command in it.
func natsBox(ctx context.Context, t *testing.T, admin *kubernetes.Clientset) func(cmd ...string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "artifacts", "operations", "nats-box.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		t.Fatal(err)
	}
	// The nats CLI at the version hack/build-images.sh pins, in the
	// node's containerd.
	pod.Namespace = env.namespace
	pod.Spec.Containers[0].Image, pod.Spec.Containers[0].ImagePullPolicy = "terminal.local/nats-box:1", corev1.PullNever
	pods := admin.CoreV1().Pods(env.namespace)
	if _, err := pods.Create(ctx, &pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
		_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		t.Fatalf("the nats-box pod does not run: %v", err)
	}
	return func(cmd ...string) string {
		t.Helper()
		args := append([]string{"--kubeconfig", env.kubeconfig, "--context", "admin", "-n", env.namespace, "exec", pod.Name, "--"}, cmd...)
		out, err := exec.CommandContext(ctx, env.kubectl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
		return string(out)
	}
}

// transcript is alice's session's transcript, or why she cannot read it.
func transcript(ctx context.Context, t *testing.T, name string) ([]byte, error) {
	t.Helper()
	res := kubeClient(t, "alice").Discovery().RESTClient().Get().
		AbsPath("/apis/terminal.meshery.io/v1alpha1/namespaces/team-a/terminalsessions", name, "transcript").Do(ctx)
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

// transcriptHas says whether alice reads want in her session's transcript.
func transcriptHas(ctx context.Context, t *testing.T, name, want string) bool {
	t.Helper()
	raw, err := transcript(ctx, t, name)
	if err != nil {
		t.Logf("the transcript of %s: %v", name, err)
		return false
	}
	return strings.Contains(string(raw), want)
}
