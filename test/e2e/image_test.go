package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// terminal-apiserver's image (make image) runs in the real node's runtime
// under the hardened security context the deployment gives it (non-root,
// read-only root file system, no capabilities, RuntimeDefault seccomp): the
// static binary starts as its entrypoint and says which build it is.
func TestImageRunsHardenedOnTheNode(t *testing.T) {
	t.Parallel()
	if os.Getenv("LOCAL_NODE") == "kwok" {
		t.Skip("kwok runs no images: the real node (the default) does")
	}
	image := os.Getenv("TERMINAL_APISERVER_IMAGE")
	if image == "" {
		t.Fatal("TERMINAL_APISERVER_IMAGE is not set: hack/e2e.sh imports the image on the real node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("image")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "server", Image: image, ImagePullPolicy: corev1.PullNever, Args: []string{"--version"},
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	createPod(t, pod)
	pods := kubeClient(t, "admin").CoreV1().Pods("team-a")
	var done *corev1.Pod
	eventually(t, 90*time.Second, "the image's pod to finish", func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		done = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	logs, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("the pod %s: %+v\n%s", done.Status.Phase, done.Status.ContainerStatuses, logs)
	}
	if line := strings.TrimSpace(string(logs)); !strings.HasPrefix(line, "terminal-apiserver ") || !strings.Contains(line, strings.TrimSpace(string(head))) {
		t.Errorf("the image printed %q, want terminal-apiserver's version line with commit %s", line, head)
	}
}
